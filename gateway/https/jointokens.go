package https

import (
	"net/http"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// Join tokens and the join of a node with one, for admins:
//
//	GET  /v1/join-tokens              -> [api.JoinTokenInfo]
//	POST /v1/join-tokens              create_join_token
//	POST /v1/join-tokens/{id}/revoke  revoke_join_token
//	POST /v1/nodes/join               join_node: add a node, spending its token

func (s *Server) registerJoinTokens(mux *http.ServeMux, j cluster.JoinTokenService) {
	mux.HandleFunc("GET /v1/join-tokens", s.operator(func(w http.ResponseWriter, r *http.Request) {
		out, err := j.JoinTokens(r.Context(), principal(r).ID)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}))
	mux.HandleFunc("POST /v1/join-tokens", s.operator(s.command(fsm.TypeCreateJoinToken)))
	mux.HandleFunc("POST /v1/join-tokens/{id}/revoke", s.operator(s.command(fsm.TypeRevokeJoinToken)))
	mux.HandleFunc("POST /v1/nodes/join", s.operator(s.command(fsm.TypeJoinNode)))
}
