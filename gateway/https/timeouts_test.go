package https

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/keyquorum/keyquorum/cluster"
)

// startTimeoutServer serves the API over TCP and HTTP/3 on loopback with
// timeouts t, and returns the TCP and the UDP address.
func startTimeoutServer(t *testing.T, to Timeouts) (tcpAddr, udpAddr string) {
	t.Helper()
	s := newRefusingServer(t, "n1", slog.New(slog.DiscardHandler), WithTimeouts(to))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	go s.ServeQUIC(pc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		pc.Close()
	})
	return ln.Addr().String(), pc.LocalAddr().String()
}

// shortTimeouts are the defaults with the bounds under test shortened.
func shortTimeouts(edit func(*Timeouts)) Timeouts {
	to := DefaultTimeouts(time.Second)
	edit(&to)
	return to
}

// waitClosedByServer reads c until the server closes it. The deadline is
// a safety net against a hang: reaching it means the server kept the
// connection, which fails the test.
func waitClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server kept the connection open")
	}
}

func dialAPI(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestAPIDropsSilentConnection: a client that opens a TCP connection and
// sends nothing, not even a TLS hello, is disconnected.
func TestAPIDropsSilentConnection(t *testing.T) {
	addr, _ := startTimeoutServer(t, shortTimeouts(func(to *Timeouts) { to.ReadHeader = 200 * time.Millisecond }))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitClosedByServer(t, c)
}

// TestAPIDropsHalfRequest: a client that sends half a request's headers
// and stops is disconnected.
func TestAPIDropsHalfRequest(t *testing.T) {
	addr, _ := startTimeoutServer(t, shortTimeouts(func(to *Timeouts) { to.ReadHeader = time.Second }))
	c := dialAPI(t, addr)
	if _, err := io.WriteString(c, "GET /v1/bootstrap/identity HTTP/1.1\r\nHost: n1\r\n"); err != nil {
		t.Fatal(err)
	}
	waitClosedByServer(t, c)
}

// TestAPIDropsHalfBody: a client that announces a body and sends part of
// it is disconnected.
func TestAPIDropsHalfBody(t *testing.T) {
	addr, _ := startTimeoutServer(t, shortTimeouts(func(to *Timeouts) { to.ReadHeader, to.Read = time.Second, time.Second }))
	c := dialAPI(t, addr)
	if _, err := io.WriteString(c, "POST /v1/bootstrap/start HTTP/1.1\r\nHost: n1\r\nContent-Length: 1000\r\n\r\n{\"cluster_id\":"); err != nil {
		t.Fatal(err)
	}
	waitClosedByServer(t, c)
}

// TestAPIClosesIdleConnection: a kept-alive connection with no further
// request is closed.
func TestAPIClosesIdleConnection(t *testing.T) {
	addr, _ := startTimeoutServer(t, shortTimeouts(func(to *Timeouts) { to.Idle = 200 * time.Millisecond }))
	c := dialAPI(t, addr)
	if _, err := io.WriteString(c, "GET /v1/bootstrap/identity HTTP/1.1\r\nHost: n1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("identity: status %d, close %v: want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	waitClosedByServer(t, c)
}

// TestHTTP3ClosesIdleConnection: an HTTP/3 connection that makes no
// request is closed by the server, even while the client keeps QUIC alive.
func TestHTTP3ClosesIdleConnection(t *testing.T) {
	_, udp := startTimeoutServer(t, shortTimeouts(func(to *Timeouts) { to.Idle = 200 * time.Millisecond }))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a safety net against a hang
	defer cancel()
	qc, err := quic.DialAddr(ctx, udp, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}},
		&quic.Config{KeepAlivePeriod: 50 * time.Millisecond, MaxIdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	select {
	case <-qc.Context().Done():
	case <-ctx.Done():
		t.Fatal("the server kept the HTTP/3 connection open")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(qc.Context()); !errors.As(err, &ae) || !ae.Remote {
		t.Fatalf("connection ended with %v, want the server's close", err)
	}
}

// TestDefaultWriteTimeoutOutlastsRequests: a compare-and-swap waits up to
// three request timeouts on the cluster, a held unlock two and its hold;
// their answers must still be written.
func TestDefaultWriteTimeoutOutlastsRequests(t *testing.T) {
	for _, rt := range []time.Duration{cluster.DefaultRequestTimeout, time.Minute} {
		if to := DefaultTimeouts(rt); to.Write <= 3*rt {
			t.Errorf("request timeout %v: write timeout %v cuts off a compare-and-swap", rt, to.Write)
		}
		if to := DefaultTimeouts(rt); to.Write <= 2*rt+cluster.MaxUnlockHold {
			t.Errorf("request timeout %v: write timeout %v cuts off a held unlock", rt, to.Write)
		}
	}
}
