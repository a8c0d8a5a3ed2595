package grpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// ALPN is the protocol gRPC negotiates over TLS on TCP: HTTP/2.
const ALPN = "h2"

// ALPNQUIC is the protocol gRPC negotiates over QUIC: HTTP/2 carried on the
// first bidirectional stream of the QUIC connection. It is not HTTP/3.
const ALPNQUIC = "keyquorum-grpc"

const (
	// lingerTime bounds how long a closed stream connection waits for the
	// peer to take what was written before the QUIC connection is closed.
	lingerTime = 5 * time.Second
	// clientKeepAlive keeps an idle client QUIC connection open.
	clientKeepAlive = 15 * time.Second
)

// QUIC application error codes this package closes with.
const (
	quicClosed  quic.ApplicationErrorCode = 0 // a normal close
	quicRefused quic.ApplicationErrorCode = 1 // wrong ALPN, or no stream in time
	// quicStreamRefused cancels every stream after the first.
	quicStreamRefused quic.StreamErrorCode = 1
)

// ServerTLSConfig returns a copy of base for serving gRPC: at least TLS
// 1.3, NextProtos set to alpn (ALPN for Serve, ALPNQUIC for ServeQUIC),
// and, if base asks for no client certificate, one requested but not
// required: machines call GetTime and GetKey without one, and the server
// checks operator certificates itself against the cluster CA on every
// call, as the REST gateway does. base supplies the server certificate
// (Certificates or GetCertificate).
func ServerTLSConfig(base *tls.Config, alpn string) *tls.Config {
	c := base.Clone()
	if c == nil {
		c = &tls.Config{}
	}
	if c.MinVersion < tls.VersionTLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	if c.ClientAuth == tls.NoClientCert {
		c.ClientAuth = tls.RequestClientCert
	}
	c.NextProtos = []string{alpn}
	return c
}

// tlsInfo is the authentication information of a connection: its TLS
// state, from which the server reads the client certificate.
func tlsInfo(cs tls.ConnectionState) credentials.TLSInfo {
	return credentials.TLSInfo{State: cs, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
}

// transportSecurity is the server's transport credentials for both
// transports, and the client's for QUIC. It accepts exactly two kinds of
// connection: a *tls.Conn, which it handshakes (Serve's listener must be a
// TLS listener), and a stream of a QUIC connection this package made,
// whose TLS 1.3 handshake QUIC already did. In both cases the TLS state it
// reports is that of the connection the bytes arrive on, so the client
// certificate the server authenticates is the one the peer proved it
// holds in that handshake. Anything else, such as a plain TCP connection,
// is refused: there is no way to serve this API without TLS.
type transportSecurity struct{}

func (transportSecurity) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	switch c := raw.(type) {
	case *tls.Conn:
		// gRPC has set a deadline on raw for the handshake.
		if err := c.Handshake(); err != nil {
			c.Close()
			return nil, nil, err
		}
		cs := c.ConnectionState()
		if cs.NegotiatedProtocol != ALPN {
			c.Close()
			return nil, nil, fmt.Errorf("TLS connection from %s negotiated ALPN %q, not %q: make the listener's config with ServerTLSConfig", raw.RemoteAddr(), cs.NegotiatedProtocol, ALPN)
		}
		return c, tlsInfo(cs), nil
	case *streamConn:
		return c, tlsInfo(c.conn.ConnectionState().TLS), nil
	}
	return nil, nil, fmt.Errorf("connection from %s is not TLS: Serve needs a TLS listener (tls.NewListener with ServerTLSConfig)", raw.RemoteAddr())
}

func (transportSecurity) ClientHandshake(_ context.Context, _ string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ok := raw.(*streamConn)
	if !ok {
		return nil, nil, errors.New("these credentials carry only the QUIC connections DialQUIC makes")
	}
	return c, tlsInfo(c.conn.ConnectionState().TLS), nil
}

func (transportSecurity) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (t transportSecurity) Clone() credentials.TransportCredentials { return t }

func (transportSecurity) OverrideServerName(string) error { return nil }

// streamConn is a net.Conn over the one bidirectional stream of a QUIC
// connection, which HTTP/2 runs on. It owns the QUIC connection: closing
// it closes the connection, once the peer has had the chance to read what
// was written (QUIC would drop data still in flight).
type streamConn struct {
	conn   *quic.Conn
	stream *quic.Stream

	eofOnce sync.Once
	eof     chan struct{} // closed once the peer has closed its side
	once    sync.Once
}

func newStreamConn(conn *quic.Conn, stream *quic.Stream) *streamConn {
	return &streamConn{conn: conn, stream: stream, eof: make(chan struct{})}
}

func (c *streamConn) Read(p []byte) (int, error) {
	n, err := c.stream.Read(p)
	if errors.Is(err, io.EOF) {
		c.eofOnce.Do(func() { close(c.eof) })
	}
	return n, err
}

func (c *streamConn) Write(p []byte) (int, error) { return c.stream.Write(p) }

// Close ends the stream (a FIN after everything written) and closes the
// QUIC connection: at once if the peer has already closed its side (it
// read our data or no longer wants it), otherwise when the peer closes
// the connection or its side (as gRPC does on reading the FIN), or after
// lingerTime.
func (c *streamConn) Close() error {
	c.once.Do(func() {
		c.stream.Close()
		select {
		case <-c.eof:
			c.conn.CloseWithError(quicClosed, "")
		default:
			go c.linger()
		}
	})
	return nil
}

func (c *streamConn) linger() {
	t := time.NewTimer(lingerTime)
	defer t.Stop()
	select {
	case <-c.conn.Context().Done():
	case <-c.eof:
	case <-t.C:
	}
	c.conn.CloseWithError(quicClosed, "")
}

func (c *streamConn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *streamConn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *streamConn) SetDeadline(t time.Time) error      { return c.stream.SetDeadline(t) }
func (c *streamConn) SetReadDeadline(t time.Time) error  { return c.stream.SetReadDeadline(t) }
func (c *streamConn) SetWriteDeadline(t time.Time) error { return c.stream.SetWriteDeadline(t) }

// quicListener is a net.Listener of the first bidirectional stream of each
// QUIC connection a quic.Listener accepts. A quic.Listener hands out only
// connections whose handshake has completed (no 0-RTT), so the client
// certificate is settled before the first byte of HTTP/2 is read.
type quicListener struct {
	ln     *quic.Listener
	ctx    context.Context
	cancel context.CancelFunc
	conns  chan net.Conn
	done   chan struct{} // closed when the accept loop has ended
	err    error         // why it ended; set before done is closed
	once   sync.Once

	// streamWait bounds how long a connection may go without opening its
	// stream; a gRPC client opens it at once with the HTTP/2 preface.
	streamWait time.Duration
}

func newQUICListener(ln *quic.Listener, streamWait time.Duration) *quicListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &quicListener{ln: ln, streamWait: streamWait, ctx: ctx, cancel: cancel, conns: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *quicListener) acceptLoop() {
	defer close(l.done)
	for {
		qc, err := l.ln.Accept(l.ctx)
		if err != nil {
			l.err = err
			return
		}
		go l.admit(qc)
	}
}

// admit waits for the connection's first stream and hands it to Accept;
// the connection may open no other.
func (l *quicListener) admit(qc *quic.Conn) {
	if p := qc.ConnectionState().TLS.NegotiatedProtocol; p != ALPNQUIC {
		qc.CloseWithError(quicRefused, fmt.Sprintf("ALPN %q is not %q", p, ALPNQUIC))
		return
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.streamWait)
	st, err := qc.AcceptStream(ctx)
	cancel()
	if err != nil {
		qc.CloseWithError(quicRefused, "no stream opened")
		return
	}
	go refuseStreams(qc)
	c := newStreamConn(qc, st)
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		qc.CloseWithError(quicClosed, "server closed")
	}
}

// refuseStreams cancels every further stream the peer opens, until the
// connection ends.
func refuseStreams(qc *quic.Conn) {
	go func() {
		for {
			st, err := qc.AcceptUniStream(qc.Context())
			if err != nil {
				return
			}
			st.CancelRead(quicStreamRefused)
		}
	}()
	for {
		st, err := qc.AcceptStream(qc.Context())
		if err != nil {
			return
		}
		st.CancelRead(quicStreamRefused)
		st.CancelWrite(quicStreamRefused)
	}
}

func (l *quicListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *quicListener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.ln.Close()
	})
	return err
}

func (l *quicListener) Addr() net.Addr { return l.ln.Addr() }

// DialQUIC makes a client of the gRPC API at addr ("host:port") over QUIC.
// cfg is the client's TLS configuration: RootCAs with the cluster CA and,
// for ClusterService and the operator calls of MachineService, the
// operator's certificate; DialQUIC uses a copy with NextProtos ALPNQUIC.
// As with grpc.NewClient, the QUIC connection is made when the first call
// needs it, and made again after it fails. opts are added after the
// dialer and the transport credentials.
func DialQUIC(addr string, cfg *tls.Config, opts ...gogrpc.DialOption) (*gogrpc.ClientConn, error) {
	if cfg == nil {
		return nil, errors.New("DialQUIC needs a TLS configuration with the cluster CA")
	}
	tc := cfg.Clone()
	tc.NextProtos = []string{ALPNQUIC}
	if tc.MinVersion < tls.VersionTLS13 {
		tc.MinVersion = tls.VersionTLS13
	}
	dial := func(ctx context.Context, target string) (net.Conn, error) {
		qc, err := quic.DialAddr(ctx, target, tc, &quic.Config{KeepAlivePeriod: clientKeepAlive})
		if err != nil {
			return nil, err
		}
		st, err := qc.OpenStreamSync(ctx)
		if err != nil {
			qc.CloseWithError(quicClosed, "")
			return nil, err
		}
		return newStreamConn(qc, st), nil
	}
	all := append([]gogrpc.DialOption{gogrpc.WithContextDialer(dial), gogrpc.WithTransportCredentials(transportSecurity{})}, opts...)
	return gogrpc.NewClient("passthrough:///"+addr, all...)
}
