package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// The node-to-node calls (rpc.go) travel as frames of their own on the
// node port (ALPN alpnCall), not as HTTP/2: a call is one frame each way
// on a TLS connection the caller keeps open to each peer, many calls at a
// time, told apart by an ID the caller chooses. The caller writes its
// request frame itself; one goroutine per connection reads the answers
// and hands each to its caller; the answering node reads with one
// goroutine per connection, runs each call in its own and writes its
// answer itself. HTTP/2 took twice the system calls per call and three
// more goroutine hand-offs (its serve loop between the frame reader, the
// handler and a frame writer per flush), each a wait for a core on a busy
// node (docs/coordinator.md, "A fifth pass", has the figures).
//
// A call is still an HTTP request to the node's handler (rpcHandler behind
// membersOnly), made from the frame: the same routes, the same checks of
// the peer's certificate, the same answers. HTTP/2 stays on the port
// (alpnRPC) for nodes of an earlier version during a rolling upgrade; a
// node calls such a peer over HTTP/2 (callClient.legacy).
//
// A frame is its length (4 bytes, big-endian, of what follows), its kind
// (1 byte), the call's ID (8 bytes) and the kind's fields:
//
//	request  method (1 byte: 'G' GET, 'P' POST), path length (2 bytes), path, body
//	cancel   nothing: the caller gave up on the call (its context ended)
//	answer   HTTP status (2 bytes), body
//	follow   body: more for a running call, after its request (alpnCallFollow)
//
// A body is at most maxRPCBody, a path at most maxCallPath.
//
// Version 2 (alpnCallFollow) adds the follow frame: a caller sends one at
// most per call, and the answering node hands its body to the call's
// handler (callFollow), which may be waiting for it. A release's leader
// sends its read this way once its heartbeat round confirms it, after the
// request it overlapped (docs/coordinator.md). A node of version 1 ends
// the connection at a frame kind it does not know, so a caller sends
// follow frames only on a connection that negotiated version 2.
const (
	alpnCallFollow = "keyquorum-call/2"
	alpnCall       = "keyquorum-call/1"
)

// Frame kinds.
const (
	frameRequest byte = 1
	frameCancel  byte = 2
	frameAnswer  byte = 3
	frameFollow  byte = 4
)

const (
	maxCallPath = 256
	// frameHead is the length, kind and ID.
	frameHead = 4 + 1 + 8
	// maxCallFrame bounds what follows a frame's length.
	maxCallFrame = 1 + 8 + 1 + 2 + maxCallPath + maxRPCBody
	// callFrameTimeout is how long a peer may take to send the rest of a
	// frame it started, and to take a frame written to it.
	callFrameTimeout = 10 * time.Second
	// maxCallsInFlight is how many calls of one connection a node runs at
	// a time; it reads the connection's next frame when one ends.
	maxCallsInFlight = 256
)

// callFrame is a frame's content after its length.
type callFrame struct {
	kind   byte
	id     uint64
	method string // request
	path   string // request
	status int    // answer
	body   []byte // request, answer, follow
}

// parseCallFrame parses what follows a frame's length. body aliases b.
func parseCallFrame(b []byte) (callFrame, error) {
	if len(b) < 1+8 {
		return callFrame{}, errors.New("call frame: too short")
	}
	f := callFrame{kind: b[0], id: binary.BigEndian.Uint64(b[1:9])}
	rest := b[9:]
	switch f.kind {
	case frameRequest:
		if len(rest) < 3 {
			return callFrame{}, errors.New("call frame: request too short")
		}
		switch rest[0] {
		case 'G':
			f.method = http.MethodGet
		case 'P':
			f.method = http.MethodPost
		default:
			return callFrame{}, fmt.Errorf("call frame: unknown method %q", rest[0])
		}
		n := int(binary.BigEndian.Uint16(rest[1:3]))
		rest = rest[3:]
		if n == 0 || n > maxCallPath || n > len(rest) || rest[0] != '/' {
			return callFrame{}, errors.New("call frame: bad path")
		}
		f.path, f.body = string(rest[:n]), rest[n:]
	case frameCancel:
		if len(rest) != 0 {
			return callFrame{}, errors.New("call frame: cancel with a body")
		}
	case frameFollow:
		f.body = rest
	case frameAnswer:
		if len(rest) < 2 {
			return callFrame{}, errors.New("call frame: answer too short")
		}
		f.status, f.body = int(binary.BigEndian.Uint16(rest[:2])), rest[2:]
		if f.status < 100 || f.status > 999 {
			return callFrame{}, fmt.Errorf("call frame: status %d", f.status)
		}
	default:
		return callFrame{}, fmt.Errorf("call frame: unknown kind %d", f.kind)
	}
	if len(f.body) > maxRPCBody {
		return callFrame{}, errors.New("call frame: body too large")
	}
	return f, nil
}

// readCallFrame reads one frame's bytes after its length into a buffer of
// their own (a request's body outlives the next frame) and returns them.
// Once the length has arrived, the rest must arrive within
// callFrameTimeout (setDeadline is the connection's SetReadDeadline, or
// nil).
func readCallFrame(r *bufio.Reader, setDeadline func(time.Time) error) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > maxCallFrame {
		return nil, fmt.Errorf("call frame: %d bytes, at most %d", n, maxCallFrame)
	}
	if setDeadline != nil && r.Buffered() < int(n) {
		setDeadline(time.Now().Add(callFrameTimeout))
		defer setDeadline(time.Time{})
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// appendFrameHead starts a frame of kind and id in b; finishFrame sets its
// length once the frame is whole.
func appendFrameHead(b []byte, kind byte, id uint64) []byte {
	b = append(b, 0, 0, 0, 0, kind)
	return binary.BigEndian.AppendUint64(b, id)
}

func finishFrame(b []byte) []byte {
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	return b
}

// requestFrame is a whole request frame.
func requestFrame(id uint64, method, path string, body []byte) ([]byte, error) {
	if len(path) == 0 || len(path) > maxCallPath || path[0] != '/' {
		return nil, fmt.Errorf("call path %q", path)
	}
	if len(body) > maxRPCBody {
		return nil, errors.New("call body too large")
	}
	m := byte('P')
	if method == http.MethodGet {
		m = 'G'
	}
	b := appendFrameHead(make([]byte, 0, frameHead+3+len(path)+len(body)), frameRequest, id)
	b = append(b, m)
	b = binary.BigEndian.AppendUint16(b, uint16(len(path)))
	b = append(b, path...)
	return finishFrame(append(b, body...)), nil
}

// callServer answers the calls of the connections the port mux hands it
// with handler.
type callServer struct {
	handler http.Handler
	log     *slog.Logger
	mu      sync.Mutex
	conns   map[*tls.Conn]struct{}
	closed  bool
}

// serve answers the calls of the connections l accepts until l closes.
func (s *callServer) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go s.serveConn(c.(*tls.Conn))
	}
}

func (s *callServer) serveConn(c *tls.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	if s.conns == nil {
		s.conns = map[*tls.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	sc := &serverConn{c: c, cs: c.ConnectionState(), handler: s.handler, log: s.log, ctx: ctx,
		running: map[uint64]*runningCall{}, slots: make(chan struct{}, maxCallsInFlight)}
	err := sc.readCalls()
	cancel()
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("node call connection ended", "peer", c.RemoteAddr(), "err", err)
	}
}

// close closes every connection and refuses new ones.
func (s *callServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}

// serverConn is one connection of a callServer.
type serverConn struct {
	c       *tls.Conn
	cs      tls.ConnectionState
	handler http.Handler
	log     *slog.Logger
	ctx     context.Context
	slots   chan struct{}
	wmu     sync.Mutex
	mu      sync.Mutex
	running map[uint64]*runningCall
}

// runningCall is a call a serverConn runs: how to cancel it, and where its
// follow frame's body goes (one at most; the handler takes it with
// callFollow).
type runningCall struct {
	cancel context.CancelFunc
	follow chan []byte
	slots  chan struct{} // the connection's (serverConn.slots)
}

// awaitFollow waits for the body of the call's follow frame. Meanwhile
// the call gives its place among the connection's running calls back, so
// that the connection's reader, which stops at maxCallsInFlight, still
// reads the follow frames that waiting calls need; it takes a place again
// before it returns.
func (rc *runningCall) awaitFollow(ctx context.Context) ([]byte, error) {
	<-rc.slots
	defer func() { rc.slots <- struct{}{} }()
	select {
	case b := <-rc.follow:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// followKey is the context key of a call's runningCall.
type followKey struct{}

// callFollow returns what waits for the body of the call's follow frame,
// if the caller sends one; nil for a request that came over HTTP/2, which
// has none.
func callFollow(r *http.Request) func(context.Context) ([]byte, error) {
	if rc, ok := r.Context().Value(followKey{}).(*runningCall); ok {
		return rc.awaitFollow
	}
	return nil
}

// readCalls reads the connection's frames and starts each call, until the
// connection fails or the peer breaks the protocol.
func (sc *serverConn) readCalls() error {
	r := bufio.NewReaderSize(sc.c, 16<<10)
	for {
		select {
		case sc.slots <- struct{}{}:
		case <-sc.ctx.Done():
			return sc.ctx.Err()
		}
		b, err := readCallFrame(r, sc.c.SetReadDeadline)
		if err != nil {
			return err
		}
		f, err := parseCallFrame(b)
		if err != nil {
			return err
		}
		switch f.kind {
		case frameRequest:
			sc.mu.Lock()
			_, dup := sc.running[f.id]
			if !dup {
				ctx, cancel := context.WithCancel(sc.ctx)
				rc := &runningCall{cancel: cancel, follow: make(chan []byte, 1), slots: sc.slots}
				sc.running[f.id] = rc
				go sc.answer(context.WithValue(ctx, followKey{}, rc), f)
			}
			sc.mu.Unlock()
			if dup {
				return fmt.Errorf("call %d is already running", f.id)
			}
		case frameCancel:
			sc.mu.Lock()
			if rc := sc.running[f.id]; rc != nil {
				rc.cancel()
			}
			sc.mu.Unlock()
			<-sc.slots
		case frameFollow:
			// For a call that has ended, or a second follow, there is no
			// one to take it.
			sc.mu.Lock()
			if rc := sc.running[f.id]; rc != nil {
				select {
				case rc.follow <- f.body:
				default:
				}
			}
			sc.mu.Unlock()
			<-sc.slots
		default:
			return fmt.Errorf("call frame of kind %d from a caller", f.kind)
		}
	}
}

// answer runs one call through the handler and writes its answer.
func (sc *serverConn) answer(ctx context.Context, f callFrame) {
	defer func() { <-sc.slots }()
	defer func() {
		sc.mu.Lock()
		sc.running[f.id].cancel()
		delete(sc.running, f.id)
		sc.mu.Unlock()
	}()
	r := &http.Request{
		Method:        f.method,
		URL:           &url.URL{Path: f.path},
		RequestURI:    f.path,
		Proto:         alpnCall,
		Header:        http.Header{},
		Body:          io.NopCloser(bytes.NewReader(f.body)),
		ContentLength: int64(len(f.body)),
		Host:          sc.c.LocalAddr().String(),
		RemoteAddr:    sc.c.RemoteAddr().String(),
		TLS:           &sc.cs,
	}
	w := &callAnswer{header: http.Header{}, b: appendFrameHead(make([]byte, 0, 512), frameAnswer, f.id)}
	w.b = append(w.b, 0, 0) // the status, set below
	if !sc.serve(w, r.WithContext(ctx)) {
		return
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if len(w.b)-frameHead-2 > maxRPCBody {
		w.b = w.b[:frameHead+2]
		w.status = http.StatusInternalServerError
		w.b = append(w.b, `{"kind":"internal","message":"the answer is too large"}`...)
	}
	binary.BigEndian.PutUint16(w.b[frameHead:], uint16(w.status))
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.c.SetWriteDeadline(time.Now().Add(callFrameTimeout))
	if _, err := sc.c.Write(finishFrame(w.b)); err != nil {
		sc.c.Close()
	}
}

// serve runs the handler on one call. A handler that panics ends the
// connection, not the node, as net/http's servers do, and serve returns
// false.
func (sc *serverConn) serve(w http.ResponseWriter, r *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			sc.c.Close()
			if p != http.ErrAbortHandler {
				sc.log.Error("panic serving a node call", "peer", sc.c.RemoteAddr(), "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			}
		}
	}()
	sc.handler.ServeHTTP(w, r)
	return true
}

// callAnswer is the http.ResponseWriter of a call: the answer frame, its
// body appended as the handler writes it.
type callAnswer struct {
	header http.Header
	status int
	b      []byte
}

func (w *callAnswer) Header() http.Header { return w.header }

func (w *callAnswer) WriteHeader(status int) {
	if w.status == 0 && status >= 100 && status <= 999 {
		w.status = status
	}
}

func (w *callAnswer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// errCallNotSent is a call that never left this node: its connection had
// ended before the call was written.
var errCallNotSent = errors.New("call not sent")

// callClient makes this node's calls to its peers, on one connection per
// peer address, opened at the first call and kept.
type callClient struct {
	network Network
	tls     *tls.Config
	// legacy calls peers that do not speak alpnCall (nodes of an earlier
	// version) over HTTP/2.
	legacy *http.Client
	mu     sync.Mutex
	peers  map[string]*peerCalls
	closed bool
}

// peerCalls is the connection to one peer: being opened until ready is
// closed, then conn (nil if the peer speaks HTTP/2 only) or err.
type peerCalls struct {
	ready  chan struct{}
	conn   *clientConn
	legacy bool
	err    error
}

// errNoCallProtocol is what a peer of an earlier version answers to
// alpnCall.
const errNoCallProtocol = "no application protocol"

// conn returns the open connection to addr, opening it if there is none;
// legacy is true when the peer speaks only HTTP/2.
func (cl *callClient) conn(ctx context.Context, addr string) (cc *clientConn, legacy bool, dialErr error) {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil, false, net.ErrClosed
	}
	if cl.peers == nil {
		cl.peers = map[string]*peerCalls{}
	}
	p := cl.peers[addr]
	if p == nil {
		p = &peerCalls{ready: make(chan struct{})}
		cl.peers[addr] = p
		cl.mu.Unlock()
		cl.open(ctx, addr, p)
	} else {
		cl.mu.Unlock()
	}
	select {
	case <-p.ready:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	return p.conn, p.legacy, p.err
}

// open dials addr for p and makes p ready.
func (cl *callClient) open(ctx context.Context, addr string, p *peerCalls) {
	defer close(p.ready)
	// Other calls may wait for this connection: it does not end with the
	// first caller's context.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callFrameTimeout)
	defer cancel()
	c, err := dialTLS(ctx, cl.network, addr, cl.tls)
	switch {
	case err != nil && strings.Contains(err.Error(), errNoCallProtocol):
		// Asked again in a while: the peer may have been upgraded.
		p.legacy = true
		time.AfterFunc(time.Minute, func() { cl.forget(addr, p) })
		return
	case err == nil && c.ConnectionState().NegotiatedProtocol != alpnCallFollow && c.ConnectionState().NegotiatedProtocol != alpnCall:
		c.Close()
		err = fmt.Errorf("peer %s did not take protocol %s", addr, alpnCall)
	}
	if err != nil {
		p.err = &net.OpError{Op: "dial", Net: "tcp", Err: err}
		cl.forget(addr, p)
		return
	}
	cl.mu.Lock()
	closed := cl.closed
	cl.mu.Unlock()
	if closed {
		c.Close()
		p.err = net.ErrClosed
		return
	}
	p.conn = &clientConn{c: c, follows: c.ConnectionState().NegotiatedProtocol == alpnCallFollow, pending: map[uint64]chan callFrame{}}
	go func() {
		p.conn.readAnswers()
		cl.forget(addr, p)
	}()
}

// forget drops p, a connection that failed, so the next call opens another.
func (cl *callClient) forget(addr string, p *peerCalls) {
	cl.mu.Lock()
	if cl.peers[addr] == p {
		delete(cl.peers, addr)
	}
	cl.mu.Unlock()
}

// close closes every connection.
func (cl *callClient) close() {
	cl.mu.Lock()
	cl.closed = true
	peers := cl.peers
	cl.peers = nil
	cl.mu.Unlock()
	for _, p := range peers {
		select {
		case <-p.ready:
			if p.conn != nil {
				p.conn.c.Close()
			}
		default: // being opened: it fails on its own or is closed with the node's port
		}
	}
	cl.legacy.CloseIdleConnections()
}

// clientConn is one connection of a callClient.
type clientConn struct {
	c *tls.Conn
	// follows is whether the peer takes follow frames (alpnCallFollow).
	follows bool
	wmu     sync.Mutex
	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan callFrame
	err     error // why the connection ended, once it has
}

// follow is a body a caller sends on its call after the request, in a
// follow frame, once ready is closed: body gives it, or the error that
// ends the call instead (the call is then cancelled on the answering
// node).
type follow struct {
	ready <-chan struct{}
	body  func() ([]byte, error)
}

// errNoFollow is a call with a follow to a peer that takes none (of
// version 1 of the protocol, or over HTTP/2): it was not sent.
var errNoFollow = errors.New("the peer takes no follow frames")

// call sends one request, and fw's body after it if fw is not nil, and
// waits for the answer.
func (cc *clientConn) call(ctx context.Context, method, path string, body []byte, fw *follow) (status int, answer []byte, err error) {
	if fw != nil && !cc.follows {
		return 0, nil, errNoFollow
	}
	ch := make(chan callFrame, 1)
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: %w", errCallNotSent, cc.err)
	}
	cc.nextID++
	id := cc.nextID
	cc.pending[id] = ch
	cc.mu.Unlock()
	frame, err := requestFrame(id, method, path, body)
	if err == nil {
		err = cc.write(frame)
	}
	if err != nil {
		cc.drop(id)
		return 0, nil, err
	}
	var ready <-chan struct{}
	if fw != nil {
		ready = fw.ready
	}
	for {
		select {
		case f, ok := <-ch:
			if !ok {
				cc.mu.Lock()
				defer cc.mu.Unlock()
				return 0, nil, cc.err
			}
			return f.status, f.body, nil
		case <-ready:
			ready = nil
			b, err := fw.body()
			if err == nil && len(b) > maxRPCBody {
				err = errors.New("call follow too large")
			}
			if err != nil {
				cc.cancel(id)
				return 0, nil, err
			}
			// A connection that fails to take it is closed, which ends
			// the call.
			cc.write(finishFrame(append(appendFrameHead(make([]byte, 0, frameHead+len(b)), frameFollow, id), b...)))
		case <-ctx.Done():
			cc.cancel(id)
			return 0, nil, ctx.Err()
		}
	}
}

// cancel gives up on call id, and tells the answering node if the call
// was still waiting.
func (cc *clientConn) cancel(id uint64) {
	if cc.drop(id) {
		go cc.write(finishFrame(appendFrameHead(make([]byte, 0, frameHead), frameCancel, id)))
	}
}

// drop forgets call id, and reports whether it was still waiting.
func (cc *clientConn) drop(id uint64) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	_, ok := cc.pending[id]
	delete(cc.pending, id)
	return ok
}

// write writes one whole frame; a connection that fails to take it is
// closed, which ends every call on it.
func (cc *clientConn) write(frame []byte) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.c.SetWriteDeadline(time.Now().Add(callFrameTimeout))
	if _, err := cc.c.Write(frame); err != nil {
		cc.c.Close()
		return err
	}
	return nil
}

// readAnswers hands each answer to its call until the connection fails,
// then ends the calls still waiting.
func (cc *clientConn) readAnswers() {
	r := bufio.NewReaderSize(cc.c, 16<<10)
	var err error
	for {
		var b []byte
		if b, err = readCallFrame(r, cc.c.SetReadDeadline); err != nil {
			break
		}
		var f callFrame
		if f, err = parseCallFrame(b); err != nil {
			break
		}
		if f.kind != frameAnswer {
			err = fmt.Errorf("call frame of kind %d from the answering node", f.kind)
			break
		}
		cc.mu.Lock()
		ch := cc.pending[f.id]
		delete(cc.pending, f.id)
		cc.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}
	cc.c.Close()
	cc.mu.Lock()
	cc.err = fmt.Errorf("connection ended: %w", err)
	for id, ch := range cc.pending {
		close(ch)
		delete(cc.pending, id)
	}
	cc.mu.Unlock()
}
