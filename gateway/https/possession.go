package https

import (
	"net/http"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
)

// A holder's proof of possession, for an operator's client confirming the
// cluster (client.Confirm, keyagent enroll --confirm):
//
//	POST /v1/cluster/possession  {"nonce":...} -> api.Possession

func (s *Server) registerPossession(mux *http.ServeMux, p cluster.PossessionService) {
	mux.HandleFunc("POST "+api.PossessionPath, s.operator(func(w http.ResponseWriter, r *http.Request) {
		var req api.PossessionRequest
		if err := readJSON(r, &req); err != nil {
			s.writeError(w, err)
			return
		}
		out, err := p.ProvePossession(r.Context(), req.Nonce)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}))
}
