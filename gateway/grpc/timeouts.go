package grpc

import (
	"time"

	"github.com/quic-go/quic-go"
	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/keyquorum/keyquorum/cluster/metrics"
)

// The bounds on what a client may hold of the server without making calls.
const (
	// DefaultConnectionTimeout bounds a new connection's TLS handshake and
	// HTTP/2 preface, and over QUIC the opening of its stream: a client
	// that connects and sends nothing is dropped after it.
	DefaultConnectionTimeout = 10 * time.Second
	// DefaultMaxConnectionIdle closes, with a GOAWAY, a connection that
	// has had no call in progress for this long.
	DefaultMaxConnectionIdle = 5 * time.Minute
	// KeepaliveTime is how long a connection may be silent before the
	// server pings it; without an answer within KeepaliveTimeout it is
	// closed, so a client that vanished is noticed.
	KeepaliveTime = 2 * time.Minute
	// KeepaliveTimeout is how long the server waits for a ping's answer.
	KeepaliveTimeout = 20 * time.Second
	// KeepaliveMinTime is how often a client may ping; one that pings
	// more often, or while no call is in progress, is sent a GOAWAY
	// (too_many_pings) and dropped.
	KeepaliveMinTime = 30 * time.Second
	// QUICMaxIdleTimeout closes a QUIC connection whose peer has sent
	// nothing, not even a keep-alive, for this long.
	QUICMaxIdleTimeout = 30 * time.Second
)

// An Option changes a server default.
type Option func(*options)

type options struct {
	connectionTimeout time.Duration
	maxConnectionIdle time.Duration
	metrics           *metrics.Set
}

// Gateway is the gateway label of this server's calls
// (metrics.WithGateway).
const Gateway = "grpc"

// WithMetrics labels the server's calls as the grpc gateway's and counts
// its connections (over TCP) and error answers in m.
func WithMetrics(m *metrics.Set) Option { return func(o *options) { o.metrics = m } }

// WithConnectionTimeout sets how long a new connection may take to
// handshake and start HTTP/2 (over QUIC, to open its stream).
func WithConnectionTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.connectionTimeout = d
		}
	}
}

// WithMaxConnectionIdle sets how long a connection may go without a call
// in progress before the server closes it.
func WithMaxConnectionIdle(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.maxConnectionIdle = d
		}
	}
}

// serverOptions are the grpc.Server options of o's bounds.
func (o options) serverOptions() []gogrpc.ServerOption {
	return []gogrpc.ServerOption{
		gogrpc.ConnectionTimeout(o.connectionTimeout),
		gogrpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: o.maxConnectionIdle,
			Time:              KeepaliveTime,
			Timeout:           KeepaliveTimeout,
		}),
		gogrpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime}),
	}
}

// QUICConfig is the QUIC configuration of ServeQUIC's listener: the
// handshake bounded by the connection timeout (QUIC gives up after twice
// HandshakeIdleTimeout), and a silent connection closed after
// QUICMaxIdleTimeout.
func (s *Server) QUICConfig() *quic.Config {
	return &quic.Config{HandshakeIdleTimeout: s.opt.connectionTimeout / 2, MaxIdleTimeout: QUICMaxIdleTimeout}
}
