package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// memNetwork is an in-memory Network for a test cluster: every node's
// node port is a listener in a map, every connection a net.Pipe, and a test
// cuts and heals links between nodes. Cutting a link refuses new dials
// both ways and closes the connections open across it, as a partition
// that drops packets ends TCP streams once their timeouts fire.
type memNetwork struct {
	mu        sync.Mutex
	listeners map[string]*memListener
	cut       map[[2]string]bool // unordered pairs of addresses, sorted
	conns     map[[2]string][]net.Conn
}

func newMemNetwork() *memNetwork {
	return &memNetwork{listeners: map[string]*memListener{}, cut: map[[2]string]bool{}, conns: map[[2]string][]net.Conn{}}
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// node is the Network of the node whose node port is at self.
func (m *memNetwork) node(self string) Network { return &memEndpoint{net: m, self: self} }

// partition cuts every link between a node of one side and a node of the
// other.
func (m *memNetwork) partition(side, other []string) {
	m.mu.Lock()
	var doomed []net.Conn
	for _, a := range side {
		for _, b := range other {
			p := pair(a, b)
			m.cut[p] = true
			doomed = append(doomed, m.conns[p]...)
			delete(m.conns, p)
		}
	}
	m.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

// heal restores every link.
func (m *memNetwork) heal() {
	m.mu.Lock()
	m.cut = map[[2]string]bool{}
	m.mu.Unlock()
}

type memEndpoint struct {
	net  *memNetwork
	self string
}

func (e *memEndpoint) Listen(addr string) (net.Listener, error) {
	m := e.net
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.listeners[addr]; l != nil && !l.isClosed() {
		return nil, fmt.Errorf("listen %s: address already in use", addr)
	}
	l := &memListener{addr: memAddr(addr), conns: make(chan net.Conn), done: make(chan struct{})}
	m.listeners[addr] = l
	return l, nil
}

func (e *memEndpoint) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	m := e.net
	p := pair(e.self, addr)
	m.mu.Lock()
	l := m.listeners[addr]
	cut := m.cut[p]
	m.mu.Unlock()
	if cut || l == nil {
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(addr), Err: errors.New("no route to host")}
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
	case <-l.done:
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(addr), Err: errors.New("connection refused")}
	case <-ctx.Done():
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(addr), Err: ctx.Err()}
	}
	m.mu.Lock()
	if m.cut[p] {
		m.mu.Unlock()
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(addr), Err: errors.New("no route to host")}
	}
	m.conns[p] = append(m.conns[p], client, server)
	m.mu.Unlock()
	return client, nil
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

type memListener struct {
	addr  memAddr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *memListener) Addr() net.Addr { return l.addr }

func (l *memListener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}
