package cluster

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// joinGossip keeps the node in gossip with every member the state lists.
func (n *Node) joinGossip(ctx context.Context, rt *runtime) {
	var last time.Time
	for {
		_, changed := n.watch()
		var addrs []string
		n.fsm.Read(func(s *fsm.State) {
			for id, node := range s.Nodes {
				if id != n.id.NodeID {
					addrs = append(addrs, node.GossipAddr)
				}
			}
		})
		// A missing member is retried at most once a second, however
		// often the state changes.
		if len(addrs) > 0 && rt.gossip.NumMembers() < len(addrs)+1 && time.Since(last) > time.Second {
			last = time.Now()
			rt.gossip.Join(addrs)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(2 * time.Second):
		}
	}
}

// removalCheckEvery is how often a node that hears no leader asks its
// peers whether it was removed.
const removalCheckEvery = 5 * time.Second

// watchRemoval erases the shares of a node that was removed while it was
// down. Such a node is no longer a voter, so it never hears the log that
// removed it; when it hears no leader, it asks the peers its state lists,
// and if most of them are at a later epoch without it, it erases its
// shares and old encryption keys.
func (n *Node) watchRemoval(ctx context.Context, rt *runtime) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(removalCheckEvery):
		}
		if _, leader := n.leader(); leader != "" {
			continue
		}
		cur, pend := n.shares.snapshot()
		if cur == nil && pend == nil {
			continue
		}
		var epoch uint64
		if cur != nil {
			epoch = cur.Epoch
		}
		var peers []fsm.Node
		n.fsm.Read(func(s *fsm.State) {
			for id, node := range s.Nodes {
				if id != n.id.NodeID {
					peers = append(peers, *node)
				}
			}
		})
		if len(peers) == 0 {
			// Raft replays the log into the state machine only once a
			// leader tells it the commit index, so a restarted node that
			// hears no leader has an empty state; the configuration Raft
			// read from its log still names the peers.
			for _, s := range n.servers() {
				if string(s.ID) != n.id.NodeID {
					peers = append(peers, fsm.Node{ID: string(s.ID), RaftAddr: string(s.Address)})
				}
			}
		}
		if len(peers) == 0 {
			continue
		}
		votes := 0
		for _, p := range peers {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			var ns nodeStatus
			_, err := n.call(cctx, p.RaftAddr, statusPath, nil, &ns)
			cancel()
			if err == nil && ns.Epoch > epoch && !slices.Contains(ns.Members, n.id.NodeID) {
				votes++
			}
		}
		if 2*votes <= len(peers) {
			continue
		}
		n.log.Warn("this node was removed from the cluster: erasing its shares", "peers_agreeing", votes, "epoch", epoch)
		if err := errors.Join(n.shares.eraseCurrent(), n.shares.erasePending()); err != nil {
			n.log.Error("erasing shares", "err", err)
		}
	}
}
