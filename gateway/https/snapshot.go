package https

import (
	"net/http"

	"github.com/keyquorum/keyquorum/cluster"
)

// Backups, for admins:
//
//	GET /v1/snapshot  -> api.Backup (keyctl snapshot save)

func (s *Server) registerSnapshot(mux *http.ServeMux, b cluster.SnapshotService) {
	mux.HandleFunc("GET /v1/snapshot", s.operator(func(w http.ResponseWriter, r *http.Request) {
		out, err := b.Backup(r.Context(), principal(r).ID)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}))
}
