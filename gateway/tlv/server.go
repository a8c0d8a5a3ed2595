package tlv

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPN is the application protocol of keyless over QUIC.
const ALPN = "keyless"

// Defaults of the server's options.
const (
	// DefaultMaxBody is the largest request body read; a header announcing
	// more is answered with CodeFormatError and the connection is closed.
	// Real requests are a few hundred bytes (an RSA-8192 ciphertext is 1 KiB).
	DefaultMaxBody = 16 << 10
	// DefaultMaxInFlight is how many requests of one connection may be
	// queued or executing before the server stops reading it.
	DefaultMaxInFlight = 256
	// DefaultHandshakeTimeout bounds the TLS handshake of a connection.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds how long a connection may refuse to take
	// replies before the server drops it.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout bounds how long a connection or QUIC stream may
	// go without sending a whole request (a client that sends nothing, or
	// half a request, is dropped after it), and a QUIC connection without
	// a stream open.
	DefaultIdleTimeout = 5 * time.Minute
	// QUICMaxIdleTimeout closes a QUIC connection whose peer has sent
	// nothing, not even a keep-alive, for this long.
	QUICMaxIdleTimeout = 30 * time.Second
)

const (
	readBufferSize  = 16 << 10
	writeBufferSize = 16 << 10 // one full TLS record per flush
	// quicNoCertificate is the QUIC application error code of a connection
	// refused for lack of a verified client certificate.
	quicNoCertificate quic.ApplicationErrorCode = 0x101
)

// An Option changes a server default.
type Option func(*options)

type options struct {
	workers          int
	maxBody          int
	maxInFlight      int
	handshakeTimeout time.Duration
	writeTimeout     time.Duration
	idleTimeout      time.Duration
	paddedDecrypt    bool
}

// WithPaddedRSADecrypt makes opcode 0x01 answer the whole PKCS #1 v1.5
// block (c^d mod n, as long as the modulus), as gokeyless' server does and
// gokeyless' Go client expects (it removes the padding itself), instead of
// the unpadded plaintext of the C keyless server, which Cloudflare's C
// client expects. No answer serves both clients: a deployment chooses by
// the client its TLS terminators run (see the package doc, "RSA
// decryption").
func WithPaddedRSADecrypt() Option {
	return func(o *options) { o.paddedDecrypt = true }
}

// WithWorkers sets the size of the worker pool that executes requests for
// all connections; the default is four per CPU (GOMAXPROCS), so that a few
// slow Lookups do not idle the CPUs. n < 1 keeps the default.
func WithWorkers(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.workers = n
		}
	}
}

// WithMaxBody sets the largest request body the server reads (at most
// MaxBody, at least 64 bytes).
func WithMaxBody(n int) Option {
	return func(o *options) { o.maxBody = min(max(n, 64), MaxBody) }
}

// WithMaxInFlight sets how many requests of one connection may be in
// flight before the server stops reading it. n < 1 keeps the default.
func WithMaxInFlight(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.maxInFlight = n
		}
	}
}

// WithHandshakeTimeout sets how long a TLS handshake may take.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.handshakeTimeout = d
		}
	}
}

// WithWriteTimeout sets how long a connection may refuse to take replies
// before the server drops it.
func WithWriteTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.writeTimeout = d
		}
	}
}

// WithIdleTimeout sets how long a connection or QUIC stream may go
// without sending a whole request, and a QUIC connection without a stream.
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.idleTimeout = d
		}
	}
}

// QUICConfig is the QUIC configuration of ServeQUIC's listener: the
// handshake bounded by the handshake timeout (QUIC gives up after twice
// HandshakeIdleTimeout), and a silent connection closed after
// QUICMaxIdleTimeout.
func (s *Server) QUICConfig() *quic.Config {
	return &quic.Config{HandshakeIdleTimeout: s.opt.handshakeTimeout / 2, MaxIdleTimeout: QUICMaxIdleTimeout}
}

// ServerTLSConfig returns a copy of base, which supplies the server
// certificate (Certificates or GetCertificate) and ClientCAs, for a
// keyless server over TCP: TLS 1.3 preferred, TLS 1.2 allowed with
// ECDHE-ECDSA-AES256-GCM-SHA384 and ECDHE-RSA-AES256-GCM-SHA384 (the suites
// of gokeyless and of the C server), and a client certificate required and
// verified against ClientCAs. It sets no ALPN, since keyless clients over
// TCP send none.
func ServerTLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.MinVersion = tls.VersionTLS12
	c.CipherSuites = []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	}
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c
}

// ServerQUICConfig is ServerTLSConfig for QUIC: TLS 1.3 only, ALPN
// "keyless". Give it to quic.Listen or quic.ListenAddr.
func ServerQUICConfig(base *tls.Config) *tls.Config {
	c := ServerTLSConfig(base)
	c.MinVersion = tls.VersionTLS13
	c.CipherSuites = nil
	c.NextProtos = []string{ALPN}
	return c
}

// Stats are counters since the server started.
type Stats struct {
	Connections uint64 // connections and QUIC streams being served
	Requests    uint64 // requests answered, including errors
	// Errors counts error replies by code (index = code, 0 unused).
	Errors [CodeInternalError + 1]uint64
}

// Server serves the keyless protocol. Make one with NewServer; it can serve
// several listeners, TCP and QUIC, at once.
type Server struct {
	keys Keys
	log  *slog.Logger
	opt  options

	jobs        chan *job
	workersOnce sync.Once
	workersUp   bool // set inside workersOnce

	// ctx is canceled when Shutdown starts: it stops accepting connections
	// and streams, and aborts handshakes. force is canceled when Shutdown
	// gives up waiting: it cancels Lookups and kills what is left.
	ctx       context.Context
	stop      context.CancelFunc
	force     context.Context
	forceStop context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[io.Closer]struct{}
	sessions  map[*session]struct{}
	wg        sync.WaitGroup // goroutines serving connections

	connections atomic.Int64
	requests    atomic.Uint64
	errors      [CodeInternalError + 1]atomic.Uint64
}

// NewServer makes a server that finds keys with keys. It logs connection
// events (refused handshakes, accept failures) to log, never requests.
func NewServer(keys Keys, log *slog.Logger, opts ...Option) *Server {
	o := options{
		workers:          4 * runtime.GOMAXPROCS(0),
		maxBody:          DefaultMaxBody,
		maxInFlight:      DefaultMaxInFlight,
		handshakeTimeout: DefaultHandshakeTimeout,
		writeTimeout:     DefaultWriteTimeout,
		idleTimeout:      DefaultIdleTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		keys:      keys,
		log:       log,
		opt:       o,
		jobs:      make(chan *job, 4*o.workers),
		listeners: map[io.Closer]struct{}{},
		sessions:  map[*session]struct{}{},
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.force, s.forceStop = context.WithCancel(context.Background())
	return s
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Connections: uint64(max(s.connections.Load(), 0)), Requests: s.requests.Load()}
	for i := range s.errors {
		st.Errors[i] = s.errors[i].Load()
	}
	return st
}

// Serve accepts connections on l, which must yield *tls.Conn (from
// tls.NewListener with a configuration like ServerTLSConfig), until
// Shutdown; then it returns nil. A connection whose client has no verified
// certificate is closed after the handshake, before anything is read.
func (s *Server) Serve(l net.Listener) error {
	if !s.addListener(l) {
		l.Close()
		return nil
	}
	defer s.removeListener(l)
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				// Out of descriptors or memory for now: wait and retry.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("keyless: accept failed, retrying", "err", err, "in", delay)
				select {
				case <-time.After(delay):
				case <-s.ctx.Done():
				}
				continue
			}
			return err
		}
		delay = 0
		if !s.spawn(func() { s.serveTLS(c) }) {
			c.Close()
			return nil
		}
	}
}

// ServeQUIC accepts QUIC connections on l (made with a configuration like
// ServerQUICConfig) until Shutdown; then it returns nil. Each bidirectional
// stream is served like one TCP connection.
func (s *Server) ServeQUIC(l *quic.Listener) error {
	if !s.addListener(l) {
		l.Close()
		return nil
	}
	defer s.removeListener(l)
	for {
		c, err := l.Accept(s.ctx)
		if err != nil {
			if s.isClosed() {
				return nil
			}
			return err
		}
		if !s.spawn(func() { s.serveQUICConn(c) }) {
			c.CloseWithError(0, "server shutting down")
			return nil
		}
	}
}

// Shutdown stops the server: it closes the listeners, stops reading
// requests, answers those already read, and closes the connections. If ctx
// ends first, it closes everything at once (Lookups in progress see their
// context canceled) and returns ctx's error. A QUIC connection that had a
// stream in progress is left for the client to close once its streams are
// answered and closed, until ctx ends: closing it at once could lose the
// last replies before QUIC sends them. Idle QUIC connections are closed at
// once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("keyless: server already shut down")
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for sess := range s.sessions {
		sess.stopReading()
	}
	s.mu.Unlock()
	s.stop()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.forceStop()
		s.mu.Lock()
		for sess := range s.sessions {
			sess.kill()
		}
		s.mu.Unlock()
		<-done // every goroutine ends once its connection is closed
	}
	s.forceStop()
	s.workersOnce.Do(func() {}) // no worker starts after this
	if s.workersUp {
		close(s.jobs)
	}
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) addListener(l io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) removeListener(l io.Closer) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
}

// spawn runs fn on a goroutine Shutdown waits for, unless the server is
// closed.
func (s *Server) spawn(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

func (s *Server) startWorkers() {
	s.workersOnce.Do(func() {
		s.workersUp = true
		for range s.opt.workers {
			go s.work()
		}
	})
}

func (s *Server) work() {
	for j := range s.jobs {
		j.sess.handle(j)
		j.sess.out <- j
	}
}

// serveTLS serves one TCP connection.
func (s *Server) serveTLS(c net.Conn) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		s.log.Error("keyless: the listener yields connections without TLS; refusing them", "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opt.handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Debug("keyless: handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		s.log.Warn("keyless: refusing a client without a verified certificate; is the listener's ClientAuth RequireAndVerifyClientCert?", "remote", c.RemoteAddr().String())
		tc.Close()
		return
	}
	sess := s.newSession(tc, Client{Cert: st.PeerCertificates[0], Addr: tc.RemoteAddr()})
	sess.close = func() { tc.Close() }
	sess.kill = func() { tc.NetConn().Close() }
	s.run(sess)
}

// serveQUICConn serves the streams of one QUIC connection.
func (s *Server) serveQUICConn(c *quic.Conn) {
	st := c.ConnectionState().TLS
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		s.log.Warn("keyless: refusing a QUIC client without a verified certificate", "remote", c.RemoteAddr().String())
		c.CloseWithError(quicNoCertificate, "client certificate required")
		return
	}
	client := Client{Cert: st.PeerCertificates[0], Addr: c.RemoteAddr()}
	var (
		streams sync.WaitGroup
		grace   atomic.Bool // a stream was being served when Shutdown began
		open    atomic.Int64
	)
	for {
		// A connection with no stream open and none opened for the idle
		// timeout is closed.
		ctx, cancel := context.WithTimeout(s.ctx, s.opt.idleTimeout)
		str, err := c.AcceptStream(ctx)
		idle := ctx.Err() == context.DeadlineExceeded && s.ctx.Err() == nil
		cancel()
		if err != nil && idle && open.Load() > 0 && c.Context().Err() == nil {
			continue
		}
		if err != nil {
			break
		}
		sess := s.newSession(str, client)
		sess.close = func() {
			str.Close()
			str.CancelRead(0)
		}
		sess.kill = func() {
			str.CancelWrite(0)
			str.CancelRead(0)
		}
		sess.grace = &grace
		streams.Add(1)
		open.Add(1)
		go func() {
			defer streams.Done()
			defer open.Add(-1)
			s.run(sess)
		}()
	}
	streams.Wait()
	if grace.Load() && c.Context().Err() == nil {
		// Streams were answered during Shutdown: closing the connection now
		// could drop their last replies before they are sent. Let the client
		// close it, until Shutdown gives up.
		select {
		case <-c.Context().Done():
		case <-s.force.Done():
		}
	}
	c.CloseWithError(0, "")
}

// stream is a TLS connection or a QUIC stream.
type stream interface {
	io.Reader
	io.Writer
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// session serves one TLS connection or one QUIC stream: a reader goroutine
// that frames requests and hands them to the worker pool, and a writer
// goroutine that writes replies, flushing when none is waiting.
type session struct {
	srv    *Server
	rw     stream
	client Client
	ctx    context.Context // for Lookup; canceled when the session ends
	cancel context.CancelFunc
	close  func() // after the last reply: a graceful close
	kill   func() // a forced close, safe to call at any time
	// grace, for a QUIC stream, is its connection's flag that Shutdown
	// found a stream being served.
	grace *atomic.Bool
	// stopped is set by stopReading, before its deadline in the past.
	stopped atomic.Bool

	out    chan *job     // replies to write
	tokens chan struct{} // one per request in flight
}

func (s *Server) newSession(rw stream, client Client) *session {
	sess := &session{
		srv:    s,
		rw:     rw,
		client: client,
		out:    make(chan *job, s.opt.maxInFlight),
		tokens: make(chan struct{}, s.opt.maxInFlight),
	}
	sess.ctx, sess.cancel = context.WithCancel(s.force)
	return sess
}

// stopReading makes the reader stop at its next read; requests already
// read are still answered.
func (sess *session) stopReading() {
	if sess.grace != nil {
		sess.grace.Store(true)
	}
	sess.stopped.Store(true)
	sess.rw.SetReadDeadline(time.Unix(1, 0))
}

// run registers and serves the session until its client goes or the
// server stops.
func (s *Server) run(sess *session) {
	defer sess.cancel()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sess.kill()
		return
	}
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	s.connections.Add(1)
	defer func() {
		s.connections.Add(-1)
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
	}()

	s.startWorkers()
	written := make(chan struct{})
	go func() {
		defer close(written)
		sess.writeLoop()
	}()
	sess.readLoop()
	// Wait until every request read has been answered: all tokens free.
	for range cap(sess.tokens) {
		sess.tokens <- struct{}{}
	}
	close(sess.out)
	<-written
	sess.close()
}

// readLoop reads requests until the client ends its side, the connection
// fails, or the server stops reading.
func (sess *session) readLoop() {
	s := sess.srv
	br := bufio.NewReaderSize(sess.rw, readBufferSize)
	var hb [HeaderSize]byte
	idle := s.opt.idleTimeout
	var deadline time.Time // the read deadline set last
	for {
		// A client that sends no whole request for the idle timeout is
		// dropped. The deadline is kept at least 7/8 of the timeout ahead
		// without being set for every request; it never replaces the one
		// of stopReading.
		if now := time.Now(); deadline.Sub(now) < idle-idle/8 {
			deadline = now.Add(idle)
			sess.rw.SetReadDeadline(deadline)
			if sess.stopped.Load() {
				return
			}
		}
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			return // the end, or a partial header: there is no ID to answer
		}
		h, _ := ParseHeader(hb[:])
		sess.tokens <- struct{}{}
		j := newJob(sess, h)
		if int(h.Length) > s.opt.maxBody {
			// The only request that closes the connection: its body is not read.
			j.fail(CodeFormatError)
			sess.out <- j
			return
		}
		j.body = grow(j.body, int(h.Length))
		if _, err := io.ReadFull(br, j.body); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				// The client ended its side in the middle of a message.
				j.fail(CodeReadError)
				sess.out <- j
				return
			}
			j.release()
			<-sess.tokens
			return
		}
		s.jobs <- j
	}
}

// writeLoop writes replies until out is closed, flushing whenever no other
// reply is waiting. After a write fails it keeps draining, so that the
// reader and the workers never wait for it.
func (sess *session) writeLoop() {
	timeout := sess.srv.opt.writeTimeout
	bw := bufio.NewWriterSize(sess.rw, writeBufferSize)
	var (
		err      error
		deadline time.Time // the write deadline set last
	)
	for j := range sess.out {
		if err == nil {
			// Keep the deadline at least 7/8 of the timeout ahead without
			// setting it for every reply.
			if now := time.Now(); deadline.Sub(now) < timeout-timeout/8 {
				deadline = now.Add(timeout)
				sess.rw.SetWriteDeadline(deadline)
			}
			_, err = bw.Write(j.reply)
			if err == nil && len(sess.out) == 0 {
				err = bw.Flush()
			}
			if err != nil {
				sess.kill() // also wakes the reader
			}
		}
		j.release()
		<-sess.tokens
	}
}

// job is one request: read by the session's reader, executed by a worker,
// written by the session's writer. Jobs and their buffers are reused.
type job struct {
	sess  *session
	hdr   Header
	body  []byte
	req   Request
	reply []byte
}

var jobPool = sync.Pool{New: func() any { return &job{reply: make([]byte, 0, PaddedSize)} }}

func newJob(sess *session, h Header) *job {
	j := jobPool.Get().(*job)
	j.sess = sess
	j.hdr = h
	return j
}

func (j *job) release() {
	j.sess = nil
	j.req = Request{}
	j.reply = j.reply[:0]
	j.body = j.body[:0]
	jobPool.Put(j)
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

var codePayloads = func() (p [CodeInternalError + 1][1]byte) {
	for i := range p {
		p[i][0] = byte(i)
	}
	return p
}()

// fail makes the job's reply an error.
func (j *job) fail(c Code) {
	if c == 0 || c > CodeInternalError {
		c = CodeInternalError
	}
	j.reply = appendReply(j.reply[:0], j.hdr.ID, OpError, codePayloads[c][:])
	s := j.sess.srv
	s.requests.Add(1)
	s.errors[c].Add(1)
}

func (j *job) succeed(op Op, payload []byte) {
	if len(payload) > MaxBody-2*itemHeaderSize-1 {
		j.fail(CodeInternalError) // a signer's result that no reply can carry
		return
	}
	j.reply = appendReply(j.reply[:0], j.hdr.ID, op, payload)
	j.sess.srv.requests.Add(1)
}

// handle executes a request and sets its reply. It never panics: a panic
// of a Keys implementation or of a signer is answered as an internal error.
func (sess *session) handle(j *job) {
	defer func() {
		if r := recover(); r != nil {
			sess.srv.log.Error("keyless: panic while executing a request", "panic", r)
			j.fail(CodeInternalError)
		}
	}()
	if j.hdr.Major != VersionMajor {
		j.fail(CodeVersionMismatch)
		return
	}
	r := &j.req
	r.ID = j.hdr.ID
	if err := r.parseBody(j.body); err != nil {
		j.fail(CodeFormatError)
		return
	}
	info := ops[r.Op]
	switch info.kind {
	case kindUnknown:
		j.fail(CodeBadOpcode)
		return
	case kindReply:
		j.fail(CodeUnexpectedOpcode)
		return
	case kindPing:
		j.succeed(OpPong, r.Payload)
		return
	}
	if checkPayload(info, r.Payload) != "" {
		j.fail(CodeFormatError)
		return
	}
	key, err := sess.srv.keys.Lookup(sess.ctx, r.SKI, r.Digest, r.SNI, sess.client)
	switch {
	case errors.Is(err, ErrKeyNotFound), errors.Is(err, ErrDenied):
		j.fail(CodeKeyNotFound)
		return
	case err != nil || key == nil:
		j.fail(CodeInternalError)
		return
	}
	if info.kind == kindRSADecrypt && sess.srv.opt.paddedDecrypt {
		info = ops[OpRSADecryptRaw]
	}
	out, err := perform(info, key, r.Payload)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			j.fail(pe.Code)
		} else {
			j.fail(CodeCryptoFailed)
		}
		return
	}
	j.succeed(OpResponse, out)
}
