// Package https is keyquorum's HTTPS gateway: the REST v1 API in JSON that
// keyctl and applications use (through package client, whose types are
// the API's bodies), and the bootstrap calls that admit a new node. It
// adapts HTTP onto cluster.Service and holds no state of its own.
//
// Every call but the bootstrap ones needs a client certificate of the
// cluster CA with the operator role, whose key belongs to an operator the
// cluster knows (cluster.AuthorizeOperator). Writes and releases also
// carry a command signed by that operator's key (cluster.CheckSigned);
// share holders check the signature themselves, so the node that serves
// this API cannot forge them.
//
// Errors are {"error":{"kind":K,"message":M}} with an HTTP status chosen by
// the kind (see StatusOf).
package https

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/quic-go/quic-go/http3"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

const maxBody = 256 << 10

// maxBatchBody bounds a create_keys request (POST /v1/keys/batch):
// fsm.MaxCreateKeys small secrets fit (about 500 bytes each, signed and
// encoded), fewer large ones; the client splits a bulk load to fit.
const maxBatchBody = 4 << 20

// Server serves the API of one node.
type Server struct {
	svc  cluster.Service
	log  *slog.Logger
	node string // the node's ID, which an internal error's answer names
	http *http.Server
	h3   atomic.Pointer[http3.Server]
	// timeouts bound the connections of both servers.
	timeouts Timeouts
	// tlsBase is the TLS configuration both servers clone; net/http
	// changes the one it is given (it adds "h2"), so it never gets this.
	tlsBase *tls.Config
	// metrics, if not nil, count the server's connections and errors.
	metrics *metrics.Set
}

// Option configures a Server.
type Option func(*options)

type options struct {
	mounts   []mount
	timeouts *Timeouts
	metrics  *metrics.Set
}

// Gateway is the gateway label of the requests this server answers
// (metrics.WithGateway).
const Gateway = "https"

// WithMetrics labels the server's requests as the https gateway's and
// counts its connections and error answers in m.
func WithMetrics(m *metrics.Set) Option { return func(o *options) { o.metrics = m } }

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

// NewServer makes the API server of a node. cert is the node's serving
// certificate (cluster.Node.ServingCert), which every gateway of the node
// presents: its certificate of the cluster CA once it has one, a
// self-signed one before.
//
// When svc is also a cluster.MachineService, it serves the machine flow
// (machines.go); Mount adds other protocols.
func NewServer(svc cluster.Service, cert *cluster.ServingCert, log *slog.Logger, opts ...Option) (*Server, error) {
	if cert == nil {
		return nil, errors.New("https: a serving certificate is required")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{svc: svc, log: log, node: svc.Identity().NodeID, timeouts: DefaultTimeouts(cluster.DefaultRequestTimeout)}
	if o.timeouts != nil {
		s.timeouts = *o.timeouts
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/bootstrap/identity", s.identity)
	mux.HandleFunc("POST /v1/bootstrap/start", s.start)
	mux.HandleFunc("GET /v1/cluster/status", s.operator(s.status))
	mux.HandleFunc("POST /v1/nodes", s.operator(s.command(fsm.TypeAddNode)))
	mux.HandleFunc("POST /v1/nodes/{id}/remove", s.operator(s.command(fsm.TypeRemoveNode)))
	mux.HandleFunc("POST /v1/autopilot", s.operator(s.command(fsm.TypeSetAutopilot)))
	mux.HandleFunc("POST /v1/operators", s.operator(s.command(fsm.TypeAddOperator)))
	mux.HandleFunc("POST /v1/operators/{id}/remove", s.operator(s.command(fsm.TypeRemoveOperator)))
	mux.HandleFunc("POST /v1/rules", s.operator(s.command(fsm.TypePutRule)))
	mux.HandleFunc("POST /v1/access", s.operator(s.command(fsm.TypeSetAccess)))
	mux.HandleFunc("POST /v1/rules/{id}/remove", s.operator(s.command(fsm.TypeDeleteRule)))
	mux.HandleFunc("GET /v1/keys", s.operator(s.listKeys))
	mux.HandleFunc("POST /v1/keys", s.operator(s.command(fsm.TypeCreateKey)))
	mux.HandleFunc("POST /v1/keys/batch", s.operator(s.commandSized(fsm.TypeCreateKeys, maxBatchBody)))
	mux.HandleFunc("GET /v1/keys/{name...}", s.operator(s.showKey))
	mux.HandleFunc("POST /v1/release", s.operator(s.release))
	mux.HandleFunc("POST /v1/cas", s.operator(s.cas))
	mux.HandleFunc("POST /v1/verify", s.operator(s.verify))
	if sv, ok := svc.(cluster.SignService); ok {
		mux.HandleFunc("POST /v1/sign", s.operator(s.sign(sv)))
	}
	if sv, ok := svc.(cluster.SymmetricService); ok {
		mux.HandleFunc("POST /v1/assembled", s.operator(s.symmetric(sv)))
	}
	mux.HandleFunc("POST /v1/revoke", s.operator(s.command(fsm.TypeRevokeKey)))
	s.registerTokens(mux, svc)
	mux.HandleFunc("POST /v1/destroy", s.operator(s.command(fsm.TypeDestroyKey)))
	if m, ok := svc.(cluster.MachineService); ok {
		s.registerMachines(mux, m)
	}
	if ts, ok := svc.(cluster.TransitService); ok {
		s.registerTransit(mux, ts)
	}
	if j, ok := svc.(cluster.JoinTokenService); ok {
		s.registerJoinTokens(mux, j)
	}
	if j, ok := svc.(cluster.AutoJoinService); ok {
		s.registerAutoJoin(mux, j)
	}
	if p, ok := svc.(cluster.PossessionService); ok {
		s.registerPossession(mux, p)
	}
	if b, ok := svc.(cluster.SnapshotService); ok {
		s.registerSnapshot(mux, b)
	}
	for _, m := range o.mounts {
		for _, p := range m.patterns {
			mux.Handle(p, m.h)
		}
	}
	var h http.Handler = mux
	if o.metrics != nil {
		h = o.metrics.HTTP(Gateway, h)
	}
	s.metrics = o.metrics
	s.http = &http.Server{
		Handler:  altSvc(&s.h3, h),
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	s.timeouts.Apply(s.http)
	s.tlsBase = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequestClientCert,
		GetCertificate: cert.GetCertificate,
	}
	s.http.TLSConfig = s.tlsBase.Clone()
	return s, nil
}

// Serve serves TLS on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.metrics != nil {
		ln = s.metrics.CountConnections(ln, Gateway)
	}
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
// gets an internal error that names the node, whose log has the text.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	var e *cluster.Error
	if !errors.As(err, &e) {
		s.log.Error("internal error answering a request", "err", err)
		e = cluster.Errorf(cluster.KindInternal, "internal error on node %q (its log has the cause)", s.node)
	}
	writeJSON(w, StatusOf(e.Kind), vocab.ErrorReply{Error: e})
}

func readJSON(r *http.Request, v any) error { return readJSONSized(r, v, maxBody) }

// readJSONSized is readJSON with a body of up to limit bytes.
func readJSONSized(r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return cluster.Errorf(cluster.KindInvalid, "request body is not valid JSON for this call: %v", err)
	}
	return nil
}

// readSigned reads the body: a release request signed by the caller.
func readSigned(r *http.Request) (*fsm.Signed, error) {
	var sg fsm.Signed
	if err := readJSON(r, &sg); err != nil {
		return nil, err
	}
	if err := cluster.CheckSigned(principal(r), &sg, fsm.TypeRelease); err != nil {
		return nil, err
	}
	return &sg, nil
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
// CA with the operator role, for a key the cluster knows
// (cluster.AuthorizeOperator).
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

// authenticate takes the certificates of the request's TLS handshake to
// the node's one check of an operator (cluster.AuthorizeOperator).
func (s *Server) authenticate(r *http.Request) (*fsm.Operator, error) {
	var chain []*x509.Certificate
	if r.TLS != nil {
		chain = r.TLS.PeerCertificates
	}
	return cluster.AuthorizeOperator(r.Context(), s.svc, chain)
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
func (s *Server) command(typ string) http.HandlerFunc { return s.commandSized(typ, maxBody) }

// commandSized is command with a body of up to limit bytes.
func (s *Server) commandSized(typ string, limit int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sg fsm.Signed
		if err := readJSONSized(r, &sg, limit); err != nil {
			s.writeError(w, err)
			return
		}
		if err := cluster.CheckSigned(principal(r), &sg, typ); err != nil {
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

// listKeys answers a page of keys (api.MaxKeysPage): ?after=NAME&limit=N,
// with the name to continue after in the api.NextPageHeader header.
func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxKeysPage {
			s.writeError(w, cluster.Errorf(cluster.KindInvalid, "limit %q: want a number of keys from 1 to %d", v, api.MaxKeysPage))
			return
		}
		limit = n
	}
	keys, next, err := s.svc.Keys(r.Context(), principal(r).ID, q.Get("after"), limit)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if keys == nil {
		keys = []*fsm.Key{}
	}
	if next != "" {
		w.Header().Set(api.NextPageHeader, next)
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
	sg, err := readSigned(r)
	if err != nil {
		s.writeError(w, err)
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
	if err := cluster.CheckSigned(principal(r), req.Replace, fsm.TypeReplaceKey); err != nil {
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

// sign makes a signature by quorum for the operator's signed signing
// request (op sign): the holders check the request themselves.
func (s *Server) sign(sv cluster.SignService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sg, err := readSigned(r)
		if err != nil {
			s.writeError(w, err)
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

// symmetric answers an operator's signed request of op encrypt, decrypt,
// mac or verify with an AES-CBC or HMAC key, which the coordinating node
// assembles (docs/signing.md): the holders check the request themselves.
func (s *Server) symmetric(sv cluster.SymmetricService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sg, err := readSigned(r)
		if err != nil {
			s.writeError(w, err)
			return
		}
		res, err := sv.Symmetric(r.Context(), sg)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// verify checks a signature with a key's public key, for an operator who
// may read the key: {"valid": true}, or false with the reason.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	var req api.VerifyRequest
	if err := readJSON(r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	k, err := s.svc.Key(r.Context(), principal(r).ID, req.Key)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if err := api.VerifySignature(k, req.Message, req.Signature, req.Padding); err != nil {
		writeJSON(w, http.StatusOK, api.VerifyReply{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, api.VerifyReply{Valid: true})
}
