package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/cluster/pki"
)

// ALPN protocol names on the node port.
const (
	alpnRaft = "keyquorum-raft/1"
	alpnRPC  = "h2"
)

// nodeTLS builds the TLS configurations of the node port: both sides
// present node certificates of the cluster CA and check the peer's, on
// dial and on accept. Operators' certificates are refused here.
type nodeTLS struct {
	cert tls.Certificate
	pool *x509.CertPool
	// member says whether a node ID and key are a current member's. A
	// certificate of the CA is not enough to be a peer: it may be a
	// removed node's, or minted by a thief of the CA key.
	member    func(id string, key ed25519.PublicKey) error
	raftConns connRegistry
}

func newNodeTLS(m *membership, id *identity) (*nodeTLS, error) {
	chain, err := pki.ParseChainPEM(m.NodeCert)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	ca, err := ParseCertPEM(m.CACert)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &nodeTLS{
		cert: *tlsCertificate(chain, id.SignKey),
		pool: pool,
	}, nil
}

// verifyPeer checks a peer's chain against the CA and its role. It is used
// in VerifyConnection on both sides, so the node role is enforced whatever
// the standard verification did.
func (t *nodeTLS) verifyPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("peer sent no certificate")
	}
	if _, err := checkRole(cs.PeerCertificates, t.pool, x509.ExtKeyUsageAny, RoleNode); err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	return nil
}

// checkMember checks that a peer certificate is a current member's: its
// key is the signing key the replicated state holds for the node it names.
func (t *nodeTLS) checkMember(leaf *x509.Certificate, id string) error {
	key, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return errors.New("peer certificate's key is not Ed25519")
	}
	if t.member == nil {
		return nil
	}
	return t.member(id, key)
}

// peerMember checks that a connection's peer, whose certificate verifyPeer
// accepted, is a current member.
func (t *nodeTLS) peerMember(cs *tls.ConnectionState) error {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return errors.New("peer sent no certificate")
	}
	_, id, err := CertRole(cs.PeerCertificates[0])
	if err != nil {
		return err
	}
	return t.checkMember(cs.PeerCertificates[0], id)
}

func (t *nodeTLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{t.cert},
		ClientAuth:       tls.RequireAnyClientCert,
		NextProtos:       []string{alpnRaft, alpnCallFollow, alpnCall, alpnRPC},
		VerifyConnection: t.verifyPeer,
	}
}

// clientConfig is the TLS configuration of a node's connections to its
// peers for protos, in the order it prefers them.
func (t *nodeTLS) clientConfig(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		// The chain and role are checked by verifyPeer; host names are not
		// part of a node's identity here.
		InsecureSkipVerify: true,
		VerifyConnection:   t.verifyPeer,
		NextProtos:         protos,
	}
}

// portMux serves the node port. A node binds the port when it is made
// (NewNode), before it joins a cluster, so that no other program takes it
// in between (heldPorts); until the consensus starts, and once it has
// stopped, the mux closes every connection at once. While the consensus
// runs (open), it hands each TLS connection to the Raft stream layer, the
// call server or the HTTP/2 server by its negotiated ALPN protocol.
type portMux struct {
	ln  net.Listener
	log *slog.Logger
	mu  sync.Mutex
	on  *portRoutes // nil until the consensus starts
}

// portRoutes are where one run of the consensus takes the node port's
// connections, with the TLS credentials of its membership.
type portRoutes struct {
	tls  *nodeTLS
	cfg  *tls.Config
	raft *chanListener
	rpc  *chanListener // HTTP/2
	call *chanListener // alpnCallFollow, alpnCall
}

// listenNodePort binds the node port at addr and serves it (closing every
// connection until open).
func listenNodePort(network Network, addr string, log *slog.Logger) (*portMux, error) {
	ln, err := network.Listen(addr)
	if err != nil {
		return nil, err
	}
	m := &portMux{ln: ln, log: log}
	go m.serve()
	return m, nil
}

// open routes the port's connections, with t's credentials, to new
// listeners, which close when the port does or the routes are closed.
func (m *portMux) open(t *nodeTLS) *portRoutes {
	a := m.ln.Addr()
	r := &portRoutes{tls: t, cfg: t.serverConfig(), raft: newChanListener(a), rpc: newChanListener(a), call: newChanListener(a)}
	m.mu.Lock()
	old := m.on
	m.on = r
	m.mu.Unlock()
	if old != nil {
		old.close()
	}
	return r
}

func (m *portMux) routes() *portRoutes {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on
}

func (m *portMux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if r := m.routes(); r != nil {
				r.close()
			}
			return
		}
		r := m.routes()
		if r == nil || r.closed() {
			c.Close()
			continue
		}
		go m.route(r, tls.Server(c, r.cfg))
	}
}

func (m *portMux) route(r *portRoutes, c *tls.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		m.log.Debug("node port handshake failed", "peer", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	cs := c.ConnectionState()
	switch cs.NegotiatedProtocol {
	case alpnRaft:
		if err := r.tls.peerMember(&cs); err != nil {
			m.log.Warn("refused a raft stream", "peer", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
		r.raft.push(r.tls.raftConns.track(c))
	case alpnRPC:
		r.rpc.push(c)
	case alpnCallFollow, alpnCall:
		r.call.push(c)
	default:
		c.Close()
	}
}

// close closes the node port, and with it the routes.
func (m *portMux) close() error { return m.ln.Close() }

// close closes the routes' listeners: the port's connections are closed
// from then on.
func (r *portRoutes) close() {
	r.raft.close()
	r.rpc.close()
	r.call.close()
}

func (r *portRoutes) closed() bool {
	select {
	case <-r.raft.done:
		return true
	default:
		return false
	}
}

// chanListener is a net.Listener fed by portMux.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) close()         { l.once.Do(func() { close(l.done) }) }
func (l *chanListener) Close() error   { l.close(); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// streamLayer is Raft's transport over the node port.
type streamLayer struct {
	*chanListener
	tls       *nodeTLS
	network   Network
	advertise net.Addr
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := dialTLS(ctx, s.network, string(address), s.tls.clientConfig(alpnRaft))
	if err != nil {
		return nil, err
	}
	return s.tls.raftConns.track(c), nil
}

// Network is how a node reaches its peers' node ports and listens on its
// own. It is TCP unless a Config gives another: tests use an in-memory
// network to cut links between nodes.
type Network interface {
	Listen(addr string) (net.Listener, error)
	DialContext(ctx context.Context, addr string) (net.Conn, error)
}

// tcpNetwork is the Network of a real node.
type tcpNetwork struct{}

func (tcpNetwork) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func (tcpNetwork) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// dialTLS opens a TLS connection to a peer's node port over network.
func dialTLS(ctx context.Context, network Network, addr string, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := network.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// connRegistry keeps the Raft streams open with peers, so that those of a
// node that stops being a member are closed when its removal applies:
// Raft keeps its streams open and would otherwise go on using them.
type connRegistry struct {
	mu    sync.Mutex
	conns map[*raftConn]struct{}
}

// raftConn is a Raft stream that leaves the registry when it is closed.
type raftConn struct {
	*tls.Conn
	reg  *connRegistry
	once sync.Once
}

func (c *raftConn) Close() error {
	c.once.Do(func() {
		c.reg.mu.Lock()
		delete(c.reg.conns, c)
		c.reg.mu.Unlock()
	})
	return c.Conn.Close()
}

func (r *connRegistry) track(c *tls.Conn) net.Conn {
	rc := &raftConn{Conn: c, reg: r}
	r.mu.Lock()
	if r.conns == nil {
		r.conns = map[*raftConn]struct{}{}
	}
	r.conns[rc] = struct{}{}
	r.mu.Unlock()
	return rc
}

// closeIf closes the streams whose peer drop says to drop, and returns how
// many it closed.
func (r *connRegistry) closeIf(drop func(*tls.ConnectionState) bool) int {
	r.mu.Lock()
	var doomed []*raftConn
	for c := range r.conns {
		cs := c.ConnectionState()
		if drop(&cs) {
			doomed = append(doomed, c)
		}
	}
	r.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
	return len(doomed)
}
