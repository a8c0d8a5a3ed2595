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
//
// A node that restarts without a Raft snapshot applies its log again from
// index 1, as the leader sends it, and a lying leader can send another
// history from a founding entry of its own (fsm.PinFounding). So
// keepClusterKey also writes the hash of the founding entry the node
// applied (fsm.Founding), and startRuntime pins it before Raft starts. It
// does so only once the state has a checkpoint certified under the pinned
// key: t holders signed that state, which a history from another founding
// entry never reaches, so a joiner that was sent a forged log pins nothing
// from it. A node that restored a snapshot past the founding entry has no
// hash to keep and needs none: its applied index starts at the snapshot's.
func (n *Node) keepClusterKey(ctx context.Context, rt *runtime) {
	for {
		_, changed := n.watch()
		if n.keepPins(rt) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// keepPins writes what the state gives of the cluster key and founding
// entry pins into membership.json, and says whether there is nothing more
// to keep.
func (n *Node) keepPins(rt *runtime) (done bool) {
	var key []byte
	var certified bool
	n.fsm.Read(func(s *fsm.State) {
		key = bytes.Clone(s.PublicKey())
		certified = key != nil && s.Checkpoint != nil && len(s.Checkpoint.Poly) > 0 && bytes.Equal(s.Checkpoint.Poly[0], key)
	})
	if key == nil {
		return false
	}
	n.mu.Lock()
	old := *rt.m
	n.mu.Unlock()
	m := old
	switch {
	case len(m.ClusterKey) == 0:
		m.ClusterKey = key
	case !bytes.Equal(m.ClusterKey, key):
		// The state is past a verified restore or replay, so this means
		// an operator pinned another cluster's key.
		n.log.Error("the cluster key in the state is not the one this node was started with")
		return true
	}
	founding := n.fsm.Founding()
	if len(m.Founding) == 0 && certified {
		m.Founding = founding
	}
	if !bytes.Equal(m.ClusterKey, old.ClusterKey) || !bytes.Equal(m.Founding, old.Founding) {
		if err := writeJSON(filepath.Join(n.cfg.DataDir, membershipFile), &m); err != nil {
			n.log.Error("keeping the cluster key", "err", err)
			return true
		}
		n.mu.Lock()
		rt.m.ClusterKey, rt.m.Founding = m.ClusterKey, m.Founding
		n.mu.Unlock()
		n.fsm.PinClusterKey(m.ClusterKey)
		if m.Founding != nil {
			n.fsm.PinFounding(m.Founding)
		}
	}
	return len(m.Founding) > 0 || certified && founding == nil
}
