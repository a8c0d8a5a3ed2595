// Package https is keyquorum's HTTPS gateway: the REST v1 API in JSON that
// keyctl and applications use (through package client, whose types are
// the API's bodies), and the bootstrap calls that admit a new node. It
// adapts HTTP onto cluster.Service and holds no state of its own.
//
// Every call but the bootstrap ones needs a client certificate of the
// cluster CA with the operator role, whose key belongs to an operator the
// cluster knows. Writes and releases also carry a command signed by that
// operator's key; share holders check the signature themselves, so the
// node that serves this API cannot forge them.
//
// Errors are {"error":{"kind":K,"message":M}} with an HTTP status chosen by
// the kind (see StatusOf).
package https

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/quic-go/quic-go/http3"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

const maxBody = 256 << 10

// Server serves the API of one node.
type Server struct {
	svc  cluster.Service
	log  *slog.Logger
	http *http.Server
	self []byte // self-signed certificate, served until the node joins
	key  ed25519.PrivateKey
	h3   atomic.Pointer[http3.Server]
	// timeouts bound the connections of both servers.
	timeouts Timeouts
	// tlsBase is the TLS configuration both servers clone; net/http
	// changes the one it is given (it adds "h2"), so it never gets this.
	tlsBase *tls.Config
}

// Option configures a Server.
type Option func(*options)

type options struct {
	mounts   []mount
	timeouts *Timeouts
}

type mount struct {
	patterns []string
	h        http.Handler
}

// Mount serves h at each of patterns (http.ServeMux patterns) on the API
// address, beside the REST API: another protocol that shares the port,
// such as Tang (gateway/tang.Handler at tang.Patterns). A gateway never
// imports another, so the command that runs the node mounts them.
func Mount(patterns []string, h http.Handler) Option {
	return func(o *options) { o.mounts = append(o.mounts, mount{patterns, h}) }
}

// NewServer makes the API server of a node. key is the node's Ed25519
// key: the server presents the node's CA certificate once it has one, and
// a self-signed certificate before.
//
// When svc is also a cluster.MachineService, it serves the machine flow
// (machines.go); Mount adds other protocols.
func NewServer(svc cluster.Service, key ed25519.PrivateKey, log *slog.Logger, opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	self, err := cluster.SelfSigned(key, svc.Identity().NodeID)
	if err != nil {
		return nil, err
	}
	s := &Server{svc: svc, log: log, self: self, key: key, timeouts: DefaultTimeouts(cluster.DefaultRequestTimeout)}
	if o.timeouts != nil {
		s.timeouts = *o.timeouts
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/bootstrap/identity", s.identity)
	mux.HandleFunc("POST /v1/bootstrap/start", s.start)
	mux.HandleFunc("GET /v1/cluster/status", s.operator(s.status))
	mux.HandleFunc("POST /v1/nodes", s.operator(s.command(fsm.TypeAddNode)))
	mux.HandleFunc("POST /v1/nodes/{id}/remove", s.operator(s.command(fsm.TypeRemoveNode)))
	mux.HandleFunc("POST /v1/operators", s.operator(s.command(fsm.TypeAddOperator)))
	mux.HandleFunc("POST /v1/operators/{id}/remove", s.operator(s.command(fsm.TypeRemoveOperator)))
	mux.HandleFunc("POST /v1/rules", s.operator(s.command(fsm.TypePutRule)))
	mux.HandleFunc("POST /v1/access", s.operator(s.command(fsm.TypeSetAccess)))
	mux.HandleFunc("POST /v1/rules/{id}/remove", s.operator(s.command(fsm.TypeDeleteRule)))
	mux.HandleFunc("GET /v1/keys", s.operator(s.listKeys))
	mux.HandleFunc("POST /v1/keys", s.operator(s.command(fsm.TypeCreateKey)))
	mux.HandleFunc("GET /v1/keys/{name...}", s.operator(s.showKey))
	mux.HandleFunc("POST /v1/release", s.operator(s.release))
	mux.HandleFunc("POST /v1/cas", s.operator(s.cas))
	mux.HandleFunc("POST /v1/revoke", s.operator(s.command(fsm.TypeRevokeKey)))
	mux.HandleFunc("POST /v1/destroy", s.operator(s.command(fsm.TypeDestroyKey)))
	if m, ok := svc.(cluster.MachineService); ok {
		s.registerMachines(mux, m)
	}
	if j, ok := svc.(cluster.JoinTokenService); ok {
		s.registerJoinTokens(mux, j)
	}
	for _, m := range o.mounts {
		for _, p := range m.patterns {
			mux.Handle(p, m.h)
		}
	}
	s.http = &http.Server{
		Handler:  altSvc(&s.h3, mux),
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	s.timeouts.Apply(s.http)
	s.tlsBase = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequestClientCert,
		GetCertificate: s.GetCertificate,
	}
	s.http.TLSConfig = s.tlsBase.Clone()
	return s, nil
}

// GetCertificate is the node's TLS certificate: the one the cluster CA issued,
// or a self-signed one before the node joins. The other gateways of the
// node present it too.
func (s *Server) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	pemCert := s.self
	if _, nodeCert := s.svc.Membership(); nodeCert != nil {
		pemCert = nodeCert
	}
	c, err := cluster.ParseCertPEM(pemCert)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: s.key, Leaf: c}, nil
}

// Serve serves TLS on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for calls in progress, within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	return errors.Join(s.http.Shutdown(ctx), s.shutdownQUIC(ctx))
}

// StatusOf maps an error kind to its HTTP status: the project's one table
// (vocab.Kind.HTTPStatus), which kxd answers with too.
func StatusOf(k cluster.Kind) int { return k.HTTPStatus() }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers with err's kind and message. An error without a kind
// is a fault of this node whose text may name files or peers: the client
// gets "internal error" and the text goes to the log.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	var e *cluster.Error
	if !errors.As(err, &e) {
		s.log.Error("internal error answering a request", "err", err)
		e = &cluster.Error{Kind: cluster.KindInternal, Message: "internal error"}
	}
	writeJSON(w, StatusOf(e.Kind), vocab.ErrorReply{Error: e})
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return cluster.Errorf(cluster.KindInvalid, "request body is not valid JSON for this call: %v", err)
	}
	return nil
}

func (s *Server) identity(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.svc.Identity())
}

func (s *Server) start(w http.ResponseWriter, r *http.Request) {
	var req cluster.StartRequest
	if err := readJSON(r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	if err := s.svc.Start(r.Context(), &req); err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.svc.Identity())
}

type principalKey struct{}

// operator authenticates the caller: a client certificate of the cluster
// CA with the operator role, for a key the cluster knows.
func (s *Server) operator(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		op, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, op)))
	}
}

func (s *Server) authenticate(r *http.Request) (*fsm.Operator, error) {
	caPEM, _ := s.svc.Membership()
	if caPEM == nil {
		return nil, cluster.Errorf(cluster.KindNotInitialized, "node %q is not part of a cluster yet: run keyctl cluster init or join", s.svc.Identity().NodeID)
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "a client certificate of the cluster CA is required")
	}
	ca, err := cluster.ParseCertPEM(caPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	leaf := r.TLS.PeerCertificates[0]
	// Only the leaf the client proved it holds is an identity; further
	// certificates are intermediates at most.
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "client certificate: %v", err)
	}
	if role, _, err := cluster.CertRole(leaf); err != nil || role != cluster.RoleOperator {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "client certificate is not an operator certificate")
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "client certificate key is not Ed25519")
	}
	return s.svc.Principal(pub)
}

func principal(r *http.Request) *fsm.Operator {
	return r.Context().Value(principalKey{}).(*fsm.Operator)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.svc.Status(r.Context())
	if err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// command submits a signed command of one type.
func (s *Server) command(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sg fsm.Signed
		if err := readJSON(r, &sg); err != nil {
			s.writeError(w, err)
			return
		}
		if err := checkSigned(&sg, principal(r), typ); err != nil {
			s.writeError(w, err)
			return
		}
		res, err := s.svc.Submit(r.Context(), &sg)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// checkSigned makes sure a signed command is of the type the endpoint
// takes and is signed by the operator of the client certificate.
func checkSigned(sg *fsm.Signed, op *fsm.Operator, typ string) error {
	var cmd struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		return cluster.Errorf(cluster.KindInvalid, "signed payload is not a command: %v", err)
	}
	if cmd.Type != typ {
		return cluster.Errorf(cluster.KindInvalid, "this call takes a %q command, not %q", typ, cmd.Type)
	}
	if sg.Signer != op.ID {
		return cluster.Errorf(cluster.KindUnauthenticated, "command is signed by %s, the client certificate is %s's", sg.Signer, op.ID)
	}
	return nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.svc.Keys(r.Context(), principal(r).ID)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if keys == nil {
		keys = []*fsm.Key{}
	}
	writeJSON(w, http.StatusOK, keys)
}

func (s *Server) showKey(w http.ResponseWriter, r *http.Request) {
	k, err := s.svc.Key(r.Context(), principal(r).ID, r.PathValue("name"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	var sg fsm.Signed
	if err := readJSON(r, &sg); err != nil {
		s.writeError(w, err)
		return
	}
	if err := checkSigned(&sg, principal(r), fsm.TypeRelease); err != nil {
		s.writeError(w, err)
		return
	}
	sr, err := s.svc.Release(r.Context(), &sg)
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, sr)
}

func (s *Server) cas(w http.ResponseWriter, r *http.Request) {
	var req client.CASRequest
	if err := readJSON(r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	if req.Release != nil {
		s.writeError(w, cluster.Errorf(cluster.KindInvalid, "the node no longer compares: release the current secret blindly, compare it, and send only the replace (update the client)"))
		return
	}
	if req.Replace == nil {
		s.writeError(w, cluster.Errorf(cluster.KindInvalid, "a compare-and-swap needs the signed replace"))
		return
	}
	if err := checkSigned(req.Replace, principal(r), fsm.TypeReplaceKey); err != nil {
		s.writeError(w, err)
		return
	}
	k, err := s.svc.CompareAndSwap(r.Context(), req.Replace)
	if err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}
