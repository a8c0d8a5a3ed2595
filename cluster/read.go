package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Linearizable reads (docs/architecture.md): the leader records the index
// of the last entry its state machine has applied, confirms it is still
// leader with a round of heartbeats, and returns the index; a reader waits
// until its own state machine has applied that index and then reads its
// own state. Concurrent confirmations share one round.
//
// The index is the state machine's, not Raft's commit index: Raft's own
// entries (no-ops, configuration changes, barriers) never reach the state
// machine, so a reader could not wait for one, and Raft's AppliedIndex
// counts entries handed to the state machine's queue, not applied ones. It
// is enough: a write is acknowledged only once the leader's state machine
// applied it, and a new leader is ready only after a barrier, when its
// state machine has applied everything earlier leaders committed.

// leaderReadIndex is the leader's side.
func (n *Node) leaderReadIndex() (uint64, error) {
	rt, err := n.joined()
	if err != nil {
		return 0, err
	}
	if rt.raft.State() != raft.Leader || !n.leaderReady.Load() {
		return 0, Errorf(kindNotLeader, "node %s is not a ready leader", n.id.NodeID)
	}
	n.readIndexes.Add(1)
	idx, _ := n.rfsm.watch()
	if err := n.verifyLeader(rt); err != nil {
		return 0, Errorf(kindNotLeader, "node %s could not confirm its leadership: %v", n.id.NodeID, err)
	}
	return idx, nil
}

// readIndex gets a read index from the leader, wherever it is, retrying
// through elections until ctx ends.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	rt, err := n.joined()
	if err != nil {
		return 0, err
	}
	if staleReads { // the broken build of stale_reads.go
		idx, _ := n.rfsm.watch()
		return idx, nil
	}
	var last error
	for {
		addr, id := rt.raft.LeaderWithID()
		switch {
		case id == "":
			last = errors.New("no leader known")
		case string(id) == n.id.NodeID:
			idx, err := n.leaderReadIndex()
			if err == nil {
				return idx, nil
			}
			last = err
		default:
			var reply readIndexReply
			_, err := n.call(ctx, rt, string(addr), "/internal/v1/readindex", struct{}{}, &reply)
			if err == nil {
				return reply.Index, nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return 0, Errorf(KindNoQuorum, "no leader confirmed a consistent read (%v)", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitApplied waits until the node's state machine has applied index, an
// index from leaderReadIndex.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	if _, err := n.joined(); err != nil {
		return err
	}
	for {
		applied, changed := n.rfsm.watch()
		if applied >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Errorf(KindNoQuorum, "node %s has applied %d of the %d entries a consistent read needs", n.id.NodeID, applied, index)
		}
	}
}

// verifyBatch runs raft.VerifyLeader once for every caller that arrived
// before the round started.
type verifyBatch struct {
	mu      sync.Mutex
	waiting []chan error
	running bool
}

func (n *Node) verifyLeader(rt *runtime) error {
	b := &n.verify
	ch := make(chan error, 1)
	b.mu.Lock()
	b.waiting = append(b.waiting, ch)
	if !b.running {
		b.running = true
		go b.run(rt)
	}
	b.mu.Unlock()
	return <-ch
}

func (b *verifyBatch) run(rt *runtime) {
	for {
		b.mu.Lock()
		batch := b.waiting
		b.waiting = nil
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		err := rt.raft.VerifyLeader().Error()
		for _, ch := range batch {
			ch <- err
		}
	}
}
