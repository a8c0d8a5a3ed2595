package https

import (
	"net/http"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// Auto-join, for nodes that join by themselves with a join token (keyd
// --retry-join); no client certificate, since the joining node has none:
//
//	GET  /v1/bootstrap/ca    -> api.ClusterCA, which the node compares with the fingerprint it was given
//	POST /v1/bootstrap/join  fsm.AutoJoin -> api.AutoJoinReply (cluster/autojoin.go)

func (s *Server) registerAutoJoin(mux *http.ServeMux, j cluster.AutoJoinService) {
	mux.HandleFunc("GET /v1/bootstrap/ca", func(w http.ResponseWriter, r *http.Request) {
		out, err := j.ClusterCA()
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/bootstrap/join", func(w http.ResponseWriter, r *http.Request) {
		var req fsm.AutoJoin
		if err := readJSON(r, &req); err != nil {
			s.writeError(w, err)
			return
		}
		out, err := j.AutoJoin(r.Context(), &req)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}
