package tlv

import (
	"context"
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

// TestSilentClientsAreDropped: a client that connects and sends nothing
// (not even a TLS hello), half a request, or nothing after a request, and
// a QUIC connection that opens no stream while it keeps QUIC alive, are
// all disconnected.
func TestSilentClientsAreDropped(t *testing.T) {
	h := newHarness(t, WithHandshakeTimeout(time.Second), WithIdleTimeout(300*time.Millisecond))
	t.Run("tcp/no hello", func(t *testing.T) {
		c, err := net.Dial("tcp", h.tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waitEnd(t, c)
	})
	for _, tr := range transports {
		t.Run(tr+"/half a request", func(t *testing.T) {
			s := h.raw(t, tr)
			s.send(t, rawMsg(1, 7, opItem(OpPing))[:HeaderSize-2])
			waitEnd(t, s.r)
		})
		t.Run(tr+"/silent after a request", func(t *testing.T) {
			s := h.raw(t, tr)
			s.send(t, rawMsg(1, 7, opItem(OpPing)))
			if resp, _ := s.mustRecv(t); resp.Op != OpPong {
				t.Fatalf("ping: %+v", resp)
			}
			waitEnd(t, s.r)
		})
	}
	t.Run("quic/no stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a safety net against a hang
		defer cancel()
		cert := getPKI().clientA
		cfg := clientConfig(&cert)
		cfg.NextProtos = []string{ALPN}
		qc, err := quic.DialAddr(ctx, h.quicAddr, cfg, &quic.Config{KeepAlivePeriod: 50 * time.Millisecond, MaxIdleTimeout: time.Minute})
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
