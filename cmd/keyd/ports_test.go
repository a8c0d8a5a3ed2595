package main

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
)

// TestNodeStartReportsATakenPort: keyd binds every port a node is
// configured with when it starts, before an operator forms or joins it:
// a port another program took after keyd dev found it free (e2e
// TestKeydDevResumesItsDir lost its third node's node port so in CI,
// seconds later, at the join) is reported by the start, naming it, and
// the ports the node did bind are free again.
func TestNodeStartReportsATakenPort(t *testing.T) {
	ports, err := cluster.FreeLoopbackPorts(6)
	if err != nil {
		t.Fatal(err)
	}
	m := devNode{ID: "dev1", API: ports[0], Raft: ports[1], Gossip: ports[2], Kxd: ports[3], TLV: ports[4], GRPC: ports[5]}
	for _, c := range []struct{ name, network, addr string }{
		{"API", "tcp", m.API}, {"HTTP/3", "udp", m.API},
		{"node port", "tcp", m.Raft},
		{"gossip TCP", "tcp", m.Gossip}, {"gossip UDP", "udp", m.Gossip},
		{"kxd", "tcp", m.Kxd},
		{"TLV", "tcp", m.TLV}, {"TLV over QUIC", "udp", m.TLV},
		{"gRPC", "tcp", m.GRPC}, {"gRPC over QUIC", "udp", m.GRPC},
	} {
		t.Run(c.name, func(t *testing.T) {
			other := listenOn(c.network, c.addr)
			if other == nil {
				t.Fatalf("%s %s is not free", c.network, c.addr)
			}
			defer other.Close()
			r, err := startNode(m.flags(t.TempDir(), ""), slog.New(slog.DiscardHandler))
			if err == nil {
				r.shutdown()
				t.Fatalf("a node started with its %s %s taken", c.name, c.addr)
			}
			if !strings.Contains(err.Error(), c.addr) || !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("the error does not name the taken port %s: %v", c.addr, err)
			}
			// The HTTP servers close their listeners as their Serve
			// returns, in a goroutine of its own: soon, not at once.
			for _, p := range ports {
				for _, network := range []string{"tcp", "udp"} {
					if network == c.network && p == c.addr {
						continue
					}
					var l io.Closer
					for deadline := time.Now().Add(2 * time.Second); l == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
						l = listenOn(network, p)
					}
					if l == nil {
						t.Errorf("a node that failed to start left %s %s bound", network, p)
						continue
					}
					l.Close()
				}
			}
		})
	}
}

// listenOn binds addr over network (tcp or udp), or returns nil.
func listenOn(network, addr string) io.Closer {
	var (
		c   io.Closer
		err error
	)
	if network == "tcp" {
		c, err = net.Listen("tcp", addr)
	} else {
		c, err = net.ListenPacket("udp", addr)
	}
	if err != nil {
		return nil
	}
	return c
}
