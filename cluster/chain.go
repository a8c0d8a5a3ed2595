package cluster

import (
	"crypto/subtle"
	"fmt"
	"time"
)

// Divergence: a replica that applied entries the real leader never wrote.
//
// Raft matches logs by (index, term) and takes whoever leads a term for
// its leader. A member's certificate is all the node port asks of a peer,
// so a compromised member (or the thief of its data directory) can open a
// Raft stream to a follower, claim the next term and append entries of its
// own; when the real leader of that same term writes other entries at
// those indexes (a revoke, say), the follower never gets them: for Raft
// its log already matches. Its state then differs from every other
// replica's, silently, for good (TestForgedTermMakesTheFollowerStopServing).
//
// So the state machine keeps a chain hash over every entry it applies
// (fsm.State.Chain, fsm/chain.go), and this replica remembers it for the
// last chainRing indexes. The leader's answer to a read index carries its
// chain hash at that index. A holder, before it uses its share, waits
// until it has applied that index and compares its own hash there with
// the leader's: a difference means the two replicas applied different
// histories, and the holder stops serving (every partial, signature share
// and exchange) until an operator rebuilds it (docs/operations.md, "A
// diverged replica"). Honest replicas apply the same committed entries,
// so they never differ (TestHonestReplicasNeverDiverge); the hash is part
// of the state, so certified checkpoints carry it and a snapshot's restore
// rebuilds it by replaying the entries after its checkpoint: a forged
// snapshot that leaves out a revoke leaves a different hash too.

// chainRing is how many recent indexes a replica keeps the chain hash of:
// a holder compares at the leader's read index, a few entries behind its
// own applied one.
const chainRing = 4096

// chainMark is a replica's chain hash at an index; Hash is empty from a
// leader that sent none.
type chainMark struct {
	Index uint64
	Hash  []byte
}

// chainRingOf keeps the chain hash of recent indexes. Its owner
// (raftFSM) guards it.
type chainRingOf struct {
	slots []chainMark
}

func newChainRing() *chainRingOf { return &chainRingOf{slots: make([]chainMark, chainRing)} }

func (r *chainRingOf) put(m chainMark) { r.slots[m.Index%chainRing] = m }

// at is the hash at index, if the ring still holds it.
func (r *chainRingOf) at(index uint64) ([]byte, bool) {
	m := r.slots[index%chainRing]
	if m.Index != index || m.Hash == nil {
		return nil, false
	}
	return m.Hash, true
}

// divergence is what a replica found when its chain hash differed from
// the leader's.
type divergence struct {
	Index  uint64    `json:"index"`
	Leader string    `json:"leader"`
	At     time.Time `json:"at"`
}

func (d *divergence) String() string {
	return fmt.Sprintf("its log differs from leader %s's at entry %d (found %s): it applied entries the leader never wrote",
		d.Leader, d.Index, d.At.UTC().Format(time.RFC3339))
}

// compareChain compares the leader's mark with this replica's hash at the
// same index, which the replica has applied. It records and reports a
// divergence; it says nothing when either side does not know its hash
// there (a leader from before this check, a ring that moved on, a
// snapshot that carried none).
func (c *consensus) compareChain(leader string, m chainMark) error {
	if len(m.Hash) == 0 {
		return nil
	}
	own, ok := c.rfsm.chainAt(m.Index)
	if !ok {
		return nil
	}
	c.chainChecks.Add(1)
	if subtle.ConstantTimeCompare(own, m.Hash) == 1 {
		return nil
	}
	d := &divergence{Index: m.Index, Leader: leader, At: time.Now()}
	if c.diverged.CompareAndSwap(nil, d) {
		c.log.Error("DIVERGED: this replica applied entries the leader never wrote; it refuses every use of its share until an operator rebuilds it (docs/operations.md)",
			"index", m.Index, "leader", leader)
	}
	return c.divergedErr()
}

// divergedErr says why this replica serves no share, once it diverged.
func (c *consensus) divergedErr() error {
	d := c.diverged.Load()
	if d == nil {
		return nil
	}
	return Errorf(KindConflict, "node %s has diverged: %s; it serves no share until an operator rebuilds it", c.nodeID, d)
}
