package tlv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// ErrClosed is returned by calls on a Conn after Close.
var ErrClosed = errors.New("keyless: connection closed")

// Conn is a client connection to a keyless server, over TLS or one QUIC
// stream. It numbers requests itself, pipelines them (many calls may wait
// at once, from any number of goroutines) and matches replies by ID. It
// stops at the first transport or framing error; every waiting call gets
// that error.
type Conn struct {
	rw      io.ReadWriter
	closeFn func() error

	sendq chan *call
	done  chan struct{} // closed when the connection fails or is closed

	mu      sync.Mutex
	pending map[uint32]*call
	nextID  uint32
	err     error
}

type call struct {
	msg  []byte
	resp *Response
	err  error
	done chan struct{}
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// Dial connects to a keyless server over TCP and TLS. config needs the
// client certificate and the roots to trust, like any tls.Config.
func Dial(ctx context.Context, addr string, config *tls.Config) (*Conn, error) {
	d := tls.Dialer{Config: config}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

// DialQUIC connects to a keyless server over QUIC and opens one stream.
// ALPN "keyless" is offered unless config names its own protocols.
// Closing the Conn closes the QUIC connection.
func DialQUIC(ctx context.Context, addr string, config *tls.Config) (*Conn, error) {
	config = config.Clone()
	if len(config.NextProtos) == 0 {
		config.NextProtos = []string{ALPN}
	}
	// Keep-alives, since the server drops a QUIC connection idle for
	// quic-go's idle timeout (30 s by default).
	qc, err := quic.DialAddr(ctx, addr, config, &quic.Config{KeepAlivePeriod: 15 * time.Second})
	if err != nil {
		return nil, err
	}
	str, err := qc.OpenStreamSync(ctx)
	if err != nil {
		qc.CloseWithError(0, "")
		return nil, err
	}
	return newConn(str, func() error {
		str.Close()
		return qc.CloseWithError(0, "")
	}), nil
}

// NewConn runs the client protocol over an established stream, such as a
// *tls.Conn or a *quic.Stream; Close closes it.
func NewConn(rwc io.ReadWriteCloser) *Conn { return newConn(rwc, rwc.Close) }

func newConn(rw io.ReadWriter, closeFn func() error) *Conn {
	c := &Conn{
		rw:      rw,
		closeFn: closeFn,
		sendq:   make(chan *call, 256),
		done:    make(chan struct{}),
		pending: map[uint32]*call{},
	}
	go c.writeLoop()
	go c.readLoop()
	return c
}

// Close closes the connection; waiting calls fail with ErrClosed.
func (c *Conn) Close() error {
	if c.fail(ErrClosed) {
		return c.closeFn()
	}
	return nil
}

// fail stops the connection with err; it reports whether it was the first
// to do so.
func (c *Conn) fail(err error) bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	c.err = err
	close(c.done)
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, cl := range pending {
		cl.err = err
		cl.done <- struct{}{}
	}
	return true
}

// Do sends a request and waits for its reply. It sets the request's ID
// on the wire (req.ID is ignored). The error is an *Error when the server
// answered with an error; the reply is returned with it.
func (c *Conn) Do(ctx context.Context, req *Request) (*Response, error) {
	cl := callPool.Get().(*call)
	msg, err := req.Append(cl.msg[:0])
	if err != nil {
		callPool.Put(cl)
		return nil, err
	}
	cl.msg = msg
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		callPool.Put(cl)
		return nil, err
	}
	id := c.nextID
	for {
		id++
		if _, used := c.pending[id]; !used {
			break
		}
	}
	c.nextID = id
	binary.BigEndian.PutUint32(msg[4:8], id)
	c.pending[id] = cl
	c.mu.Unlock()

	select {
	case c.sendq <- cl:
	case <-c.done:
	case <-ctx.Done():
		c.forget(id, cl)
		return nil, ctx.Err()
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		c.forget(id, cl)
		return nil, ctx.Err()
	}
	resp, err := cl.resp, cl.err
	if err != nil {
		// The connection failed: the writer may still be copying this
		// call's message, so the call is not reused.
		return nil, err
	}
	// A reply came, so the whole request was written: nothing else holds
	// the call.
	cl.resp = nil
	callPool.Put(cl)
	return resp, resp.Err()
}

// forget drops an abandoned call. The call is not reused: the writer or
// the reader may still hold it.
func (c *Conn) forget(id uint32, cl *call) {
	c.mu.Lock()
	if c.pending[id] == cl {
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// Ping sends a ping with payload and checks the pong echoes it.
func (c *Conn) Ping(ctx context.Context, payload []byte) error {
	if payload == nil {
		payload = []byte{}
	}
	resp, err := c.Do(ctx, &Request{Op: OpPing, Payload: payload})
	if err != nil {
		return err
	}
	if resp.Op != OpPong || !bytes.Equal(resp.Payload, payload) {
		return fmt.Errorf("keyless: ping answered with %v and a payload of %d bytes", resp.Op, len(resp.Payload))
	}
	return nil
}

func (c *Conn) writeLoop() {
	bw := bufio.NewWriterSize(c.rw, writeBufferSize)
	for {
		select {
		case cl := <-c.sendq:
			_, err := bw.Write(cl.msg)
			if err == nil && len(c.sendq) == 0 {
				err = bw.Flush()
			}
			if err != nil {
				if c.fail(fmt.Errorf("keyless: write: %w", err)) {
					c.closeFn()
				}
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *Conn) readLoop() {
	br := bufio.NewReaderSize(c.rw, readBufferSize)
	var msg []byte
	for {
		if err := c.readOne(br, &msg); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("keyless: the server closed the connection: %w", err)
			} else {
				err = fmt.Errorf("keyless: read: %w", err)
			}
			if c.fail(err) {
				c.closeFn()
			}
			return
		}
	}
}

// readOne reads one reply into *msg and hands it to its call.
func (c *Conn) readOne(br *bufio.Reader, msg *[]byte) error {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(br, hb[:]); err != nil {
		return err
	}
	h, _ := ParseHeader(hb[:])
	m := grow(*msg, HeaderSize+int(h.Length))
	*msg = m
	copy(m, hb[:])
	if _, err := io.ReadFull(br, m[HeaderSize:]); err != nil {
		return err
	}
	resp, err := ParseResponse(m)
	if err != nil {
		return err
	}
	resp.Payload = bytes.Clone(resp.Payload)
	c.mu.Lock()
	cl := c.pending[h.ID]
	delete(c.pending, h.ID)
	c.mu.Unlock()
	if cl != nil {
		cl.resp = resp
		cl.done <- struct{}{}
	}
	return nil
}
