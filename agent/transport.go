package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/keyquorum/keyquorum/vocab"
)

// UnlockPath is the node's API call for a machine's release.
const UnlockPath = vocab.UnlockPath

// maxReply bounds a node's answer; a release is a few kilobytes.
const maxReply = 1 << 20

// reply is one node's HTTP answer.
type reply struct {
	status int
	body   []byte
	proto  string // "h3" or "http/1.1"
	// held is whether the node says it held the request for an
	// operator's decision (vocab.PreferenceAppliedHeader).
	held bool
}

// conn is one established connection to a node, over QUIC or TCP.
type conn interface {
	post(ctx context.Context, addr, path string, body []byte, hold time.Duration) (*reply, error)
	close()
}

// post sends body to path on one node and returns its answer, within
// ctx; hold, if positive, asks the node to hold a pending unlock that long
// for an operator's decision (vocab.PreferHeader). It connects with QUIC
// first; TCP starts beside it after the QUIC head start or as soon as QUIC
// fails, and the first handshake to finish carries the request. The
// request is sent once, on one connection.
func (a *Agent) post(ctx context.Context, addr, path string, body []byte, hold time.Duration) (*reply, error) {
	c, err := a.connect(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.post(ctx, addr, path, body, hold)
}

func (a *Agent) tlsConfig(addr string, proto string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    a.roots, // nil: the system's roots
		ServerName: host,
		NextProtos: []string{proto},
	}, nil
}

type dialResult struct {
	c   conn
	err error
}

func (a *Agent) connect(ctx context.Context, addr string) (conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the losing handshake stops here
	results := make(chan dialResult, 2)
	pending := 0
	var startTCP <-chan time.Time
	tcpStarted := false
	dialTCP := func() {
		tcpStarted = true
		startTCP = nil
		pending++
		go func() {
			c, err := a.dialTCP(ctx, addr)
			results <- dialResult{c, err}
		}()
	}
	if a.cfg.TCPOnly {
		dialTCP()
	} else {
		pending++
		go func() {
			c, err := a.dialQUIC(ctx, addr)
			results <- dialResult{c, err}
		}()
		t := time.NewTimer(a.quicHeadStart())
		defer t.Stop()
		startTCP = t.C
	}
	var errs []error
	for {
		select {
		case <-startTCP:
			dialTCP()
		case r := <-results:
			pending--
			if r.err == nil {
				// The loser, if any, is cancelled by the deferred cancel;
				// close it if its handshake finished anyway.
				if pending > 0 {
					go func() {
						if l := <-results; l.c != nil {
							l.c.close()
						}
					}()
				}
				return r.c, nil
			}
			errs = append(errs, r.err)
			switch {
			case !tcpStarted:
				dialTCP()
			case pending == 0:
				return nil, errors.Join(errs...)
			case errors.Is(r.err, syscall.ECONNREFUSED):
				// Nothing listens on the node's port: keyd serves QUIC and
				// TCP together, so do not wait out QUIC's handshake (an
				// unconnected UDP socket never sees the ICMP refusal).
				return nil, errors.Join(append(errs, errors.New("QUIC: abandoned as TCP was refused"))...)
			}
		}
	}
}

// quicConn is an HTTP/3 connection on a UDP socket of its own.
type quicConn struct {
	udp *net.UDPConn
	tr  *quic.Transport
	qc  *quic.Conn
}

func (a *Agent) dialQUIC(ctx context.Context, addr string) (conn, error) {
	cfg, err := a.tlsConfig(addr, http3.NextProtoH3)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("QUIC: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("QUIC: port %q: %w", port, err)
	}
	// A socket of either family (quic.DialAddr's is IPv4 only).
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("QUIC: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	raddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(p)))
	qc, err := tr.Dial(ctx, raddr, cfg, &quic.Config{
		HandshakeIdleTimeout: a.timeoutPerNode(),
		MaxIdleTimeout:       a.timeoutPerNode(),
		// A node holding a pending unlock sends nothing until the
		// operator decides: keep the connection alive meanwhile.
		KeepAlivePeriod: a.timeoutPerNode() / 3,
	})
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, fmt.Errorf("QUIC: %w", err)
	}
	return &quicConn{udp: udp, tr: tr, qc: qc}, nil
}

func (c *quicConn) post(ctx context.Context, addr, path string, body []byte, hold time.Duration) (*reply, error) {
	req, err := newRequest(ctx, addr, path, body, hold)
	if err != nil {
		return nil, err
	}
	cc := (&http3.Transport{}).NewClientConn(c.qc)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("HTTP/3: %w", err)
	}
	defer resp.Body.Close()
	return readReply(resp, "h3")
}

func (c *quicConn) close() {
	c.qc.CloseWithError(0, "")
	c.tr.Close()
	c.udp.Close()
}

// tcpConn is an HTTP/1.1 connection over TLS.
type tcpConn struct {
	tc *tls.Conn
}

func (a *Agent) dialTCP(ctx context.Context, addr string) (conn, error) {
	cfg, err := a.tlsConfig(addr, "http/1.1")
	if err != nil {
		return nil, err
	}
	d := &tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TCP: %w", err)
	}
	return &tcpConn{tc: c.(*tls.Conn)}, nil
}

func (c *tcpConn) post(ctx context.Context, addr, path string, body []byte, hold time.Duration) (*reply, error) {
	req, err := newRequest(ctx, addr, path, body, hold)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		c.tc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.tc.Close() })
	defer stop()
	req.Close = true
	if err := req.Write(c.tc); err != nil {
		return nil, fmt.Errorf("TCP: sending: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c.tc), req)
	if err != nil {
		return nil, fmt.Errorf("TCP: reading the answer: %w", err)
	}
	defer resp.Body.Close()
	return readReply(resp, "http/1.1")
}

func (c *tcpConn) close() { c.tc.Close() }

func newRequest(ctx context.Context, addr, path string, body []byte, hold time.Duration) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "keyagent")
	if hold > 0 {
		req.Header.Set(vocab.PreferHeader, vocab.WaitPreference(hold))
	}
	return req, nil
}

func readReply(resp *http.Response, proto string) (*reply, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(b) > maxReply {
		return nil, fmt.Errorf("the answer is larger than %d bytes", maxReply)
	}
	held := vocab.ParseWaitPreference(resp.Header.Get(vocab.PreferenceAppliedHeader), time.Hour) > 0
	return &reply{status: resp.StatusCode, body: b, proto: proto, held: held}, nil
}
