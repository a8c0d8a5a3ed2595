package cluster

import (
	"bytes"
	"context"
	"path/filepath"

	"github.com/keyquorum/keyquorum/fsm"
)

// The cluster public key a node checks snapshots against (fsm.Restore)
// must not come from the snapshot itself. A node has it in its own state
// once it has applied the first key generation; before that, its
// operator may give it at start (StartRequest.ClusterKey). keepClusterKey
// writes it into membership.json the first time the node's state has it,
// so that a restarted node, whose state is empty until Raft restores a
// snapshot, checks that snapshot against the key it saw before and never
// takes one on trust.
func (n *Node) keepClusterKey(ctx context.Context, rt *runtime) {
	for {
		_, changed := n.watch()
		var key []byte
		n.fsm.Read(func(s *fsm.State) { key = bytes.Clone(s.PublicKey()) })
		if key != nil {
			n.mu.Lock()
			m := *rt.m
			n.mu.Unlock()
			switch {
			case len(m.ClusterKey) == 0:
				m.ClusterKey = key
				if err := writeJSON(filepath.Join(n.cfg.DataDir, membershipFile), &m); err != nil {
					n.log.Error("keeping the cluster key", "err", err)
					break
				}
				n.mu.Lock()
				rt.m.ClusterKey = key
				n.mu.Unlock()
				n.fsm.PinClusterKey(key)
				return
			case !bytes.Equal(m.ClusterKey, key):
				// The state is past a verified restore or replay, so this
				// means an operator pinned another cluster's key.
				n.log.Error("the cluster key in the state is not the one this node was started with")
				return
			default:
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}
