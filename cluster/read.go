package cluster

import (
	"context"
	"errors"
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

// leaderReadIndex is the leader's side. With the index it gives its
// chain hash there (chain.go).
func (c *consensus) leaderReadIndex() (chainMark, error) {
	run, err := c.running()
	if err != nil {
		return chainMark{}, err
	}
	if run.raft.State() != raft.Leader || !c.leaderReady.Load() {
		return chainMark{}, Errorf(kindNotLeader, "node %s is not a ready leader", c.nodeID)
	}
	c.readIndexes.Add(1)
	m := c.rfsm.mark()
	if err := c.verifyLeader(run); err != nil {
		return chainMark{}, Errorf(kindNotLeader, "node %s could not confirm its leadership: %v", c.nodeID, err)
	}
	return m, nil
}

// leaderReadAhead is leaderReadIndex with its heartbeat round left in
// flight: the mark at once, and the round's outcome on confirmed (nil
// when it confirmed this node's leadership). Until then the mark is no
// read: a coordinator may work ahead with it, but nothing it makes may
// leave the nodes before the round confirms (docs/coordinator.md).
func (c *consensus) leaderReadAhead() (chainMark, <-chan error, error) {
	run, err := c.running()
	if err != nil {
		return chainMark{}, nil, err
	}
	if run.raft.State() != raft.Leader || !c.leaderReady.Load() {
		return chainMark{}, nil, Errorf(kindNotLeader, "node %s is not a ready leader", c.nodeID)
	}
	c.readIndexes.Add(1)
	m := c.rfsm.mark()
	return m, c.verifyRound(run), nil
}

// readIndex gets a read index from the leader, wherever it is, retrying
// through elections until ctx ends.
func (c *consensus) readIndex(ctx context.Context) (uint64, error) {
	m, _, err := c.readMark(ctx)
	return m.Index, err
}

// readMark is readIndex with the leader's chain hash at the index, and
// the leader's ID.
func (c *consensus) readMark(ctx context.Context) (chainMark, string, error) {
	run, err := c.running()
	if err != nil {
		return chainMark{}, "", err
	}
	if staleReads { // the broken build of stale_reads.go
		return c.rfsm.mark(), c.nodeID, nil
	}
	var last error
	for {
		addr, id := run.raft.LeaderWithID()
		switch {
		case id == "":
			last = errors.New("no leader known")
		case string(id) == c.nodeID:
			m, err := c.leaderReadIndex()
			if err == nil {
				return m, c.nodeID, nil
			}
			last = err
		default:
			var reply readIndexReply
			endCall := traceStep(c.nodeID, nil, "read index: ask the leader")
			_, err := c.callWith(ctx, run, string(addr), "/internal/v1/readindex", struct{}{}, &reply)
			endCall()
			if err == nil {
				return chainMark{Index: reply.Index, Hash: reply.Chain}, string(id), nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return chainMark{}, "", Errorf(KindNoQuorum, "no leader confirmed a consistent read (%v)", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitApplied waits until the node's state machine has applied index, an
// index from leaderReadIndex.
func (c *consensus) waitApplied(ctx context.Context, index uint64) error {
	if _, err := c.running(); err != nil {
		return err
	}
	for {
		applied, changed := c.rfsm.watch()
		if applied >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Errorf(KindNoQuorum, "node %s has applied %d of the %d entries a consistent read needs", c.nodeID, applied, index)
		}
	}
}

// verifyLeader confirms this node's leadership with a round of heartbeats,
// one round for every caller that arrived before it started.
func (c *consensus) verifyLeader(run *raftRun) error {
	return <-c.verifyRound(run)
}

// verifyRound joins the next round of verifyLeader and returns where its
// outcome arrives.
func (c *consensus) verifyRound(run *raftRun) <-chan error {
	return c.verify.join(func() error {
		defer traceStep(c.nodeID, nil, "leader: heartbeat round")()
		return run.raft.VerifyLeader().Error()
	})
}
