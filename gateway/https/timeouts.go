package https

import (
	"net/http"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/keyquorum/keyquorum/cluster"
)

// The bounds on what a client may hold of the node's HTTP servers (the
// API over TCP and HTTP/3, and kxd's) without finishing a request.
const (
	// ReadHeaderTimeout bounds the TLS handshake and then each request's
	// line and headers: a client that opens a connection and sends
	// nothing, or half a request, is disconnected after it.
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request, body included; bodies
	// are at most 256 KiB.
	ReadTimeout = 30 * time.Second
	// IdleTimeout closes a kept-alive connection that has had no request
	// for this long (on HTTP/3: no request in progress, whatever the QUIC
	// keep-alives).
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes bounds a request's line and headers (on HTTP/3, its
	// HEADERS frame and the headers decoded from it).
	MaxHeaderBytes = 64 << 10
	// WriteSlack is what the write timeout allows beyond the cluster
	// calls of the slowest request: a kxd hook and e-mail, a DNS lookup,
	// and the client taking the answer.
	WriteSlack = 30 * time.Second
	// QUICMaxIdleTimeout closes a QUIC connection whose peer has sent
	// nothing, not even a keep-alive, for this long.
	QUICMaxIdleTimeout = 30 * time.Second
)

// Timeouts are the bounds of one HTTP server's connections.
// DefaultTimeouts gives a node's; tests set short ones.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
	// Handshake bounds a QUIC handshake (HTTP/3); the TLS handshake over
	// TCP is bounded by ReadHeader.
	Handshake time.Duration
	// QUICIdle closes a silent QUIC connection.
	QUICIdle       time.Duration
	MaxHeaderBytes int
}

// DefaultTimeouts are the timeouts of a node whose calls to the cluster
// are each bounded by requestTimeout (keyd's --request-timeout). The
// slowest request, a compare-and-swap, makes three such calls (a read, a
// release and a write), and a machine's unlock held for an approval two
// around cluster.MaxUnlockHold, so the write timeout is the longer of the
// two plus WriteSlack: a request that waits out its request timeouts
// still gets its answer.
func DefaultTimeouts(requestTimeout time.Duration) Timeouts {
	return Timeouts{
		ReadHeader:     ReadHeaderTimeout,
		Read:           ReadTimeout,
		Write:          max(3*requestTimeout, 2*requestTimeout+cluster.MaxUnlockHold) + WriteSlack,
		Idle:           IdleTimeout,
		Handshake:      ReadHeaderTimeout,
		QUICIdle:       QUICMaxIdleTimeout,
		MaxHeaderBytes: MaxHeaderBytes,
	}
}

// WithTimeouts sets the API server's timeouts; the default is
// DefaultTimeouts(cluster.DefaultRequestTimeout).
func WithTimeouts(t Timeouts) Option { return func(o *options) { o.timeouts = &t } }

// Apply sets t on srv: the API server's, and kxd's.
func (t Timeouts) Apply(srv *http.Server) {
	srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout = t.ReadHeader, t.Read, t.Write, t.Idle
	srv.MaxHeaderBytes = t.MaxHeaderBytes
}

// quicConfig is the QUIC configuration of the HTTP/3 server. QUIC gives up
// a handshake after twice HandshakeIdleTimeout in all.
func (t Timeouts) quicConfig() *quic.Config {
	return &quic.Config{HandshakeIdleTimeout: t.Handshake / 2, MaxIdleTimeout: t.QUICIdle}
}

// Timeouts returns the API server's timeouts, for the node's other HTTP
// servers.
func (s *Server) Timeouts() Timeouts { return s.timeouts }
