package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// portsConfig is the configuration of an unjoined node on free ports.
func portsConfig(t *testing.T) Config {
	t.Helper()
	ports := freePorts(t, 3)
	cfg := DefaultConfig()
	cfg.NodeID, cfg.DataDir = "n1", filepath.Join(t.TempDir(), "n1")
	cfg.RaftAddr, cfg.GossipAddr, cfg.APIAddr = ports[0], ports[1], ports[2]
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return cfg
}

// takePorts tries to take the node port (TCP) and the gossip port (TCP
// and UDP) of cfg, and returns the ones it could, each with a closer.
func takePorts(cfg Config) map[string]io.Closer {
	taken := map[string]io.Closer{}
	if l, err := net.Listen("tcp", cfg.RaftAddr); err == nil {
		taken["node port "+cfg.RaftAddr] = l
	}
	if l, err := net.Listen("tcp", cfg.GossipAddr); err == nil {
		taken["gossip TCP "+cfg.GossipAddr] = l
	}
	if u, err := net.ListenPacket("udp", cfg.GossipAddr); err == nil {
		taken["gossip UDP "+cfg.GossipAddr] = u
	}
	return taken
}

// TestNewNodeHoldsItsPorts: an unjoined node binds its node port and its
// gossip port when it is made, not when it joins seconds later, so that
// no other program takes one in between (keyd dev's third node lost its
// node port so in CI, and its join failed: e2e TestKeydDevResumesItsDir),
// and it frees them when it stops.
func TestNewNodeHoldsItsPorts(t *testing.T) {
	t.Parallel()
	cfg := portsConfig(t)
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	taken := takePorts(cfg)
	for what, c := range taken {
		c.Close()
		t.Errorf("another program took the %s of an unjoined node", what)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	taken = takePorts(cfg)
	for _, c := range taken {
		c.Close()
	}
	if len(taken) != 3 {
		t.Fatalf("a stopped node freed %d of its 3 ports: %v", len(taken), taken)
	}
}

// TestNewNodeReportsATakenPort: a node whose node port or gossip port
// another program holds fails to start, naming the port, before an
// operator forms or joins it.
func TestNewNodeReportsATakenPort(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, network string
		addr          func(Config) string
	}{
		{"node port", "tcp", func(c Config) string { return c.RaftAddr }},
		{"gossip TCP", "tcp", func(c Config) string { return c.GossipAddr }},
		{"gossip UDP", "udp", func(c Config) string { return c.GossipAddr }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := portsConfig(t)
			var other io.Closer
			var err error
			if c.network == "tcp" {
				other, err = net.Listen("tcp", c.addr(cfg))
			} else {
				other, err = net.ListenPacket("udp", c.addr(cfg))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			n, err := NewNode(cfg)
			if err == nil {
				n.Shutdown(context.Background())
				t.Fatalf("a node started with its %s %s taken", c.name, c.addr(cfg))
			}
			if !strings.Contains(err.Error(), c.addr(cfg)) || !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("the error does not name the taken port %s: %v", c.addr(cfg), err)
			}
			// The ports it did bind are free again.
			taken := takePorts(cfg)
			for _, c := range taken {
				c.Close()
			}
			if len(taken) != 2 {
				t.Fatalf("a node that failed to start left %d of its 2 other ports bound (free: %v)", 2-len(taken), taken)
			}
		})
	}
}

// TestUnjoinedNodePortServesNothing: the node port an unjoined node
// holds (heldPorts) closes every connection before any byte is read or
// written, so whoever dials it there (any program, a member of another
// cluster with its certificate) reaches neither Raft nor a node call:
// the TLS handshake itself fails.
func TestUnjoinedNodePortServesNothing(t *testing.T) {
	t.Parallel()
	cfg := portsConfig(t)
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	for _, proto := range []string{alpnRaft, alpnRPC, alpnCall} {
		c, err := net.DialTimeout("tcp", cfg.RaftAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("dialing the node port: %v", err)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Errorf("an unjoined node's port completed a TLS handshake for %s", proto)
		} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("an unjoined node's port held a connection for %s open instead of closing it", proto)
		}
		tc.Close()
	}
}
