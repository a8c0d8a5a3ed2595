package https

import (
	"net"
	"net/http"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

// The machine flow over REST. A machine's unlock needs no client
// certificate: its body is a release request signed by the machine's key,
// which every share holder checks, and the answer is partials sealed to
// the machine's ephemeral key, which this node cannot open. Listing and
// registering machines, listing sessions and approving need an operator.
//
//	POST /v1/machine/unlock       fsm.Signed by the machine -> cluster.MachineUnlock; with
//	                              "Prefer: wait=N" a pending unlock is held up to N s
//	                              (cluster.MaxUnlockHold) until an operator decides
//	GET  /v1/machines             -> [fsm.Machine]
//	POST /v1/machines             add_machine, signed by an admin
//	POST /v1/machines/{id}/revoke revoke_machine, signed by an admin
//	GET  /v1/sessions             -> [fsm.Session]
//	POST /v1/approvals            approve, signed by an operator (or its passkey)
//	POST /v1/denials              deny, signed by an operator (or its passkey)
//	POST /v1/passkeys             add_passkey, signed by an admin

func (s *Server) registerMachines(mux *http.ServeMux, m cluster.MachineService) {
	mux.HandleFunc("POST "+vocab.UnlockPath, func(w http.ResponseWriter, r *http.Request) {
		var sg fsm.Signed
		if err := readJSON(r, &sg); err != nil {
			s.writeError(w, err)
			return
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		hold := vocab.ParseWaitPreference(r.Header.Get(vocab.PreferHeader), cluster.MaxUnlockHold)
		out, held, err := m.MachineUnlock(r.Context(), &sg, host, hold)
		if held {
			w.Header().Set(vocab.PreferenceAppliedHeader, vocab.WaitPreference(hold))
		}
		if err != nil {
			s.writeError(w, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/machines", s.operator(func(w http.ResponseWriter, r *http.Request) {
		list, err := m.Machines(r.Context())
		writeList(s, w, list, err)
	}))
	mux.HandleFunc("POST /v1/machines", s.operator(s.command(fsm.TypeAddMachine)))
	mux.HandleFunc("POST /v1/machines/{id}/revoke", s.operator(s.command(fsm.TypeRevokeMachine)))
	mux.HandleFunc("GET /v1/sessions", s.operator(func(w http.ResponseWriter, r *http.Request) {
		list, err := m.Sessions(r.Context())
		writeList(s, w, list, err)
	}))
	mux.HandleFunc("POST /v1/approvals", s.operator(s.command(fsm.TypeApprove)))
	mux.HandleFunc("POST /v1/denials", s.operator(s.command(fsm.TypeDeny)))
	mux.HandleFunc("POST /v1/passkeys", s.operator(s.command(fsm.TypeAddPasskey)))
}

// writeList writes a list, [] rather than null when it is empty.
func writeList[T any](s *Server, w http.ResponseWriter, list []T, err error) {
	if err != nil {
		s.writeError(w, err)
		return
	}
	if list == nil {
		list = []T{}
	}
	writeJSON(w, http.StatusOK, list)
}
