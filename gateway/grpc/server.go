// Package grpc is keyquorum's gRPC gateway: ClusterService, the REST v1
// API of the HTTPS gateway call for call, and MachineService, klefki's flow
// of a machine waiting for its key (both in rpc/keyquorum/v1). It adapts
// gRPC onto cluster.Service and a Machines implementation and holds no
// state of its own.
//
// # Transports
//
// One grpc.Server serves both transports. Serve takes a TLS listener
// (tls.NewListener with a config from ServerTLSConfig(cfg, ALPN)); the TLS
// configuration, and so the server certificate, is the caller's. ServeQUIC
// takes a quic.Listener (made with ServerTLSConfig(cfg, ALPNQUIC)): gRPC
// is HTTP/2 over a byte stream, so each QUIC connection's first
// bidirectional stream becomes a net.Conn that the same grpc.Server reads;
// further streams are refused. DialQUIC is the matching client.
//
// # Authentication
//
// Every call needs a client certificate of the cluster CA with the
// operator role (URI SAN keyquorum:operator:<id>), for an Ed25519 key that
// belongs to an operator the cluster knows: cluster.AuthorizeOperator,
// the check the REST gateway makes too, made on every call. The only exceptions are MachineService.GetTime and
// MachineService.GetKey, which a machine authenticates with its signature;
// server reflection needs an operator too.
//
// The certificate comes from the TLS state of the connection the call
// arrived on, which the transport credentials of this package report: on
// TCP the state of the *tls.Conn they handshake, on QUIC the state of the
// QUIC connection the stream belongs to. A quic.Listener returns only
// connections whose TLS 1.3 handshake (with the client certificate) has
// completed, and only streams this package made from such a connection
// are accepted as QUIC; a connection that is neither is refused, so a
// plain listener cannot serve the API by mistake. Writes and releases also
// carry a command signed by the operator of that certificate, which the
// share holders verify themselves.
//
// # Errors
//
// Errors are gRPC statuses with the code of their kind (CodeOf) and an
// ErrorInfo detail whose reason is the kind, in ErrorDomain; clients get
// the kind back with ErrorFromStatus.
package grpc

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"runtime/debug"

	"github.com/quic-go/quic-go"
	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// maxMessage bounds a request, as the REST gateway bounds a body.
const maxMessage = 256 << 10

// public are the methods a caller without an operator certificate may
// call: a machine authenticates GetKey with its own signature.
var public = map[string]bool{
	keyquorumv1.MachineService_GetTime_FullMethodName: true,
	keyquorumv1.MachineService_GetKey_FullMethodName:  true,
}

// Server serves the gRPC API of one node.
type Server struct {
	svc      cluster.Service
	machines Machines
	log      *slog.Logger
	grpc     *gogrpc.Server
	opt      options
}

// NewServer makes the gRPC server of a node. machines may be nil: the
// MachineService then answers Unimplemented. log may be nil.
func NewServer(svc cluster.Service, machines Machines, log *slog.Logger, opts ...Option) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := options{connectionTimeout: DefaultConnectionTimeout, maxConnectionIdle: DefaultMaxConnectionIdle}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{svc: svc, machines: machines, log: log, opt: o}
	s.grpc = gogrpc.NewServer(append(o.serverOptions(),
		gogrpc.Creds(transportSecurity{}),
		gogrpc.MaxRecvMsgSize(maxMessage),
		gogrpc.ChainUnaryInterceptor(s.unary),
		gogrpc.ChainStreamInterceptor(s.stream),
	)...)
	keyquorumv1.RegisterClusterServiceServer(s.grpc, &clusterService{s: s})
	keyquorumv1.RegisterMachineServiceServer(s.grpc, &machineService{s: s})
	reflection.Register(s.grpc)
	return s
}

// Serve serves gRPC on ln until Stop or Shutdown, and then returns nil.
// ln must be a TLS listener whose config comes from ServerTLSConfig(cfg,
// ALPN); connections that are not TLS are closed.
func (s *Server) Serve(ln net.Listener) error {
	if s.opt.metrics != nil {
		ln = s.opt.metrics.CountConnections(ln, Gateway)
	}
	return s.grpc.Serve(ln)
}

// ServeQUIC serves gRPC on the QUIC connections ln accepts until Stop or
// Shutdown, and then returns nil. ln's TLS config must come from
// ServerTLSConfig(cfg, ALPNQUIC), and its QUIC config from QUICConfig.
// Stop and Shutdown close ln.
func (s *Server) ServeQUIC(ln *quic.Listener) error {
	return s.grpc.Serve(newQUICListener(ln, s.opt.connectionTimeout))
}

// Stop closes the listeners and every connection at once; calls in
// progress fail.
func (s *Server) Stop() { s.grpc.Stop() }

// Shutdown stops accepting and waits for calls in progress, within ctx;
// when ctx ends first it stops at once and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
		return ctx.Err()
	}
}

type principalKey struct{}

// principal is the operator of the call's client certificate; only calls
// that are not public have one.
func principal(ctx context.Context) *fsm.Operator {
	op, _ := ctx.Value(principalKey{}).(*fsm.Operator)
	return op
}

// admit authenticates the caller of every method that is not public, and
// puts the operator into the context.
func (s *Server) admit(ctx context.Context, method string) (context.Context, error) {
	if public[method] {
		return ctx, nil
	}
	if ctx, ok, err := admitToken(ctx, method); ok || err != nil {
		return ctx, err
	}
	op, err := s.authenticate(ctx)
	if err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, principalKey{}, op), nil
}

// authenticate takes the client certificates of the call's connection to
// the node's one check of an operator (cluster.AuthorizeOperator).
func (s *Server) authenticate(ctx context.Context) (*fsm.Operator, error) {
	var chain []*x509.Certificate
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			chain = info.State.PeerCertificates
		}
	}
	return cluster.AuthorizeOperator(ctx, s.svc, chain)
}

func (s *Server) unary(ctx context.Context, req any, info *gogrpc.UnaryServerInfo, handler gogrpc.UnaryHandler) (resp any, err error) {
	defer s.recoverPanic(info.FullMethod, &err)
	if s.opt.metrics != nil {
		ctx = metrics.WithGateway(ctx, Gateway)
	}
	ctx, err = s.admit(ctx, info.FullMethod)
	if err == nil {
		resp, err = handler(ctx, req)
	}
	if err != nil {
		return nil, s.statusError(ctx, info.FullMethod, err)
	}
	return resp, nil
}

func (s *Server) stream(srv any, ss gogrpc.ServerStream, info *gogrpc.StreamServerInfo, handler gogrpc.StreamHandler) (err error) {
	defer s.recoverPanic(info.FullMethod, &err)
	ctx := ss.Context()
	if s.opt.metrics != nil {
		ctx = metrics.WithGateway(ctx, Gateway)
	}
	ctx, err = s.admit(ctx, info.FullMethod)
	if err == nil {
		err = handler(srv, &admittedStream{ServerStream: ss, ctx: ctx})
	}
	return s.statusError(ss.Context(), info.FullMethod, err)
}

// admittedStream is a stream whose context carries the operator.
type admittedStream struct {
	gogrpc.ServerStream
	ctx context.Context
}

func (a *admittedStream) Context() context.Context { return a.ctx }

// statusError converts a call's error and logs it: internal errors as
// errors, others at debug level. Messages never carry key material.
func (s *Server) statusError(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	kind := cluster.KindOf(err)
	level := slog.LevelDebug
	if kind == cluster.KindInternal && !isStatus(err) {
		level = slog.LevelError
	}
	attrs := []any{"method", method, "kind", kind, "error", err}
	if p, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, "peer", p.Addr.String())
	}
	s.log.Log(ctx, level, "grpc call failed", attrs...)
	st := StatusError(err)
	if s.opt.metrics != nil {
		s.opt.metrics.GatewayErrors.WithLabelValues(Gateway, status.Code(st).String()).Inc()
	}
	return st
}

// recoverPanic turns a handler's panic into an internal error, so one bad
// call cannot take the node down.
func (s *Server) recoverPanic(method string, err *error) {
	if r := recover(); r != nil {
		s.log.Error("grpc handler panicked", "method", method, "panic", r, "stack", string(debug.Stack()))
		*err = StatusError(cluster.Errorf(cluster.KindInternal, "the node failed while serving %s", method))
	}
}
