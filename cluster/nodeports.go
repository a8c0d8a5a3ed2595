package cluster

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"

	"github.com/hashicorp/memberlist"
)

// heldPorts are a node's node port and gossip port, bound when the node is
// made (NewNode) and served once it is in a cluster (startRuntime). An
// unjoined node waits for an operator's init or join, seconds or days: were
// its ports bound only then, another program could take one in between,
// and the join would fail (keyd dev's third node lost its node port so to
// another test's cluster in CI). Bound at once, a port another program
// holds is reported when the node starts, to whoever starts it.
type heldPorts struct {
	// node serves the node port, closing every connection until the
	// consensus starts.
	node *portMux
	// gossip is memberlist's transport on the gossip port (UDP and TCP),
	// which memberlist takes when the node joins (startGossip).
	gossip *memberlist.NetTransport
}

// bindPorts binds the node port and the gossip port of cfg.
func bindPorts(cfg Config, log *slog.Logger) (*heldPorts, error) {
	node, err := listenNodePort(cfg.Network, cfg.RaftAddr, log)
	if err != nil {
		return nil, fmt.Errorf("node port %s: %w", cfg.RaftAddr, err)
	}
	gossip, err := gossipTransport(cfg.GossipAddr)
	if err != nil {
		node.close()
		return nil, fmt.Errorf("gossip port %s: %w", cfg.GossipAddr, err)
	}
	return &heldPorts{node: node, gossip: gossip}, nil
}

// gossipTransport binds memberlist's transport, UDP and TCP, on addr.
func gossipTransport(addr string) (*memberlist.NetTransport, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	return memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: p, Logger: log.New(io.Discard, "", 0)})
}

// close frees both ports. Memberlist shuts the gossip transport down with
// itself; the transport of a node that never joined has no memberlist
// reading what it received, so close drains it while it shuts down (its
// listeners, blocked handing a packet or a connection on, would never
// end).
func (p *heldPorts) close() {
	p.node.close()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-p.gossip.PacketCh():
			case c := <-p.gossip.StreamCh():
				c.Close()
			case <-done:
				return
			}
		}
	}()
	p.gossip.Shutdown()
	close(done)
}
