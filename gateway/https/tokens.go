package https

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// Requests a capability token authorizes (docs/tokens.md) need no client
// certificate: the token, bound to the request, is the credential, and
// every node that acts on it verifies it. The node passes on the address
// of the connection's peer, which a token restricted to a network is
// checked against.

func (s *Server) registerTokens(mux *http.ServeMux, svc cluster.Service) {
	mux.HandleFunc("POST /v1/token/release", s.tokenRelease)
	if sv, ok := svc.(cluster.SignService); ok {
		mux.HandleFunc("POST /v1/token/sign", s.tokenSign(sv))
	}
	if ts, ok := svc.(cluster.TransitService); ok {
		// Transit by quorum: the reply is sealed to the caller, as on
		// /v1/transit/decrypt, /v1/transit/derive/NAME and
		// /v1/transit/exchange/NAME.
		mux.HandleFunc("POST /v1/token/transit/decrypt", s.tokenTransit(ts.TransitDecrypt))
		mux.HandleFunc("POST /v1/token/transit/derive", s.tokenTransit(ts.TransitDerive))
		mux.HandleFunc("POST /v1/token/transit/export", s.tokenTransit(ts.TransitExport))
		mux.HandleFunc("POST /v1/token/transit/exchange", s.tokenTransit(ts.TransitExchange))
	}
	mux.HandleFunc("POST /v1/tokens/revoke", s.operator(s.command(fsm.TypeRevokeToken)))
	if tw, ok := svc.(cluster.TokenWriteService); ok {
		// Writes to the log a token authorizes: every replica verifies
		// the token in Apply.
		mux.HandleFunc("POST /v1/token/keys/revoke", s.tokenWrite(tw, fsm.TypeRevokeKey))
		mux.HandleFunc("POST /v1/token/keys/destroy", s.tokenWrite(tw, fsm.TypeDestroyKey))
	}
}

// tokenWrite submits a command of type typ that carries a capability
// token in place of its signature.
func (s *Server) tokenWrite(tw cluster.TokenWriteService, typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sg fsm.Signed
		if err := readJSON(r, &sg); err != nil {
			s.writeError(w, err)
			return
		}
		if err := cluster.CheckTokenWrite(&sg, typ); err != nil {
			s.writeError(w, err)
			return
		}
		res, err := tw.SubmitTokenWrite(r.Context(), &sg)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// tokenRequest reads a request with a capability token, and the context
// with the caller's address.
func (s *Server) tokenRequest(w http.ResponseWriter, r *http.Request) (*fsm.Signed, *http.Request, bool) {
	var sg fsm.Signed
	if err := readJSON(r, &sg); err != nil {
		s.writeError(w, err)
		return nil, nil, false
	}
	if err := cluster.CheckTokenRequest(&sg); err != nil {
		s.writeError(w, err)
		return nil, nil, false
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		r = r.WithContext(cluster.WithCaller(r.Context(), ap.Addr().Unmap()))
	}
	return &sg, r, true
}

func (s *Server) tokenRelease(w http.ResponseWriter, r *http.Request) {
	sg, r, ok := s.tokenRequest(w, r)
	if !ok {
		return
	}
	sr, err := s.svc.Release(r.Context(), sg)
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, sr)
}

func (s *Server) tokenSign(sv cluster.SignService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sg, r, ok := s.tokenRequest(w, r)
		if !ok {
			return
		}
		sig, err := sv.Sign(r.Context(), sg)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, sig)
	}
}

// tokenTransit relays a transit request (op decrypt, derive or exchange) that a
// capability token authorizes to t holders; relay checks the op.
func (s *Server) tokenTransit(relay func(context.Context, *fsm.Signed) (*api.TransitDecryptReply, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sg, r, ok := s.tokenRequest(w, r)
		if !ok {
			return
		}
		rep, err := relay(r.Context(), sg)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	}
}
