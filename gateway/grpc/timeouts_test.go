package grpc

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// waitEnd reads r until the server ends it. The minute is a safety net
// against a hang: reaching it means the server kept the connection.
func waitEnd(t *testing.T, r io.Reader) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the server kept the connection open")
	}
}

// http2Start is what an HTTP/2 client sends first: the preface and an
// empty SETTINGS frame.
const http2Start = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"

// TestSilentClientsAreDropped: a client that connects and sends nothing,
// one that stops after the TLS handshake, one that starts HTTP/2 and makes
// no call, and a QUIC connection that opens no stream while it keeps QUIC
// alive, are all disconnected.
func TestSilentClientsAreDropped(t *testing.T) {
	e := newEnv(t, false, WithConnectionTimeout(time.Second), WithMaxConnectionIdle(300*time.Millisecond))
	dialTLS := func(t *testing.T) *tls.Conn {
		c, err := tls.Dial("tcp", e.addr[overTCP], &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ALPN}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	t.Run("tcp/silent", func(t *testing.T) {
		c, err := net.Dial("tcp", e.addr[overTCP])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waitEnd(t, c)
	})
	t.Run("tcp/no preface", func(t *testing.T) {
		waitEnd(t, dialTLS(t))
	})
	t.Run("tcp/half a preface", func(t *testing.T) {
		c := dialTLS(t)
		if _, err := io.WriteString(c, http2Start[:10]); err != nil {
			t.Fatal(err)
		}
		waitEnd(t, c)
	})
	t.Run("tcp/no call", func(t *testing.T) {
		c := dialTLS(t)
		if _, err := io.WriteString(c, http2Start); err != nil {
			t.Fatal(err)
		}
		waitEnd(t, c)
	})
	t.Run("quic/no stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a safety net against a hang
		defer cancel()
		qc, err := quic.DialAddr(ctx, e.addr[overQUIC], &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ALPNQUIC}},
			&quic.Config{KeepAlivePeriod: 50 * time.Millisecond, MaxIdleTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer qc.CloseWithError(0, "")
		select {
		case <-qc.Context().Done():
		case <-ctx.Done():
			t.Fatal("the server kept the QUIC connection open")
		}
		var ae *quic.ApplicationError
		if err := context.Cause(qc.Context()); !errors.As(err, &ae) || !ae.Remote {
			t.Fatalf("connection ended with %v, want the server's close", err)
		}
	})
}
