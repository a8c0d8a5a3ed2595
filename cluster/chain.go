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

// chainSlot is the chain hash after the state machine reached index:
// by applying the entry there, after the one at prev, or by restoring a
// snapshot.
type chainSlot struct {
	index    uint64
	hash     []byte
	prev     uint64
	restored bool
}

// chainRingOf keeps the chain hash of recent indexes. Its owner
// (raftFSM) guards it.
type chainRingOf struct {
	slots []chainSlot
	last  uint64 // the index the state machine reached last
}

func newChainRing() *chainRingOf { return &chainRingOf{slots: make([]chainSlot, chainRing)} }

// applied records the hash after the entry at index was applied.
func (r *chainRingOf) applied(index uint64, hash []byte) {
	r.slots[index%chainRing] = chainSlot{index: index, hash: hash, prev: r.last}
	r.last = index
}

// restored records the hash of a snapshot restored at index.
func (r *chainRingOf) restored(index uint64, hash []byte) {
	r.slots[index%chainRing] = chainSlot{index: index, hash: hash, restored: true}
	r.last = index
}

func (r *chainRingOf) slot(index uint64) *chainSlot {
	if s := &r.slots[index%chainRing]; s.index == index {
		return s
	}
	return nil
}

// stateAt is the chain hash of this replica's state at index, which it
// has reached, if the ring tells. Where the replica applied no entry at
// index (Raft's own entries never reach the state machine; nor does a
// forged configuration entry that took the place of a command), its
// state there is the one after the entry it applied before: the leader's
// read index is always an entry its own state machine applied, so an
// honest replica that applied that history has a slot there.
func (r *chainRingOf) stateAt(index uint64) ([]byte, bool) {
	if s := r.slot(index); s != nil {
		return s.hash, s.hash != nil
	}
	var next *chainSlot
	for i := range r.slots {
		if s := &r.slots[i]; s.index > index && (next == nil || s.index < next.index) {
			next = s
		}
	}
	switch {
	case next == nil || next.restored || next.prev >= index:
		return nil, false // a snapshot jumped over index, or the ring moved on
	case next.prev == 0:
		return []byte{}, true // nothing applied before: the empty chain
	}
	if p := r.slot(next.prev); p != nil && p.hash != nil {
		return p.hash, true
	}
	return nil, false
}

// divergence is what a replica found when its chain hash differed from
// the leader's.
type divergence struct {
	Index  uint64    `json:"index"`
	Leader string    `json:"leader"`
	At     time.Time `json:"at"`
}

func (d *divergence) String() string {
	return fmt.Sprintf("its history differs from leader %s's at entry %d (found %s): it applied entries the leader never wrote, or skipped some it did",
		d.Leader, d.Index, d.At.UTC().Format(time.RFC3339))
}

// compareChain compares the leader's mark with this replica's hash at the
// same index, which the replica has applied. It records and reports a
// divergence; it says nothing when either side does not know its hash
// there (a leader from before this check, a ring that moved on, a
// snapshot's restore that jumped over the index).
func (c *consensus) compareChain(leader string, m chainMark) error {
	if len(m.Hash) == 0 {
		return nil
	}
	own, ok := c.rfsm.stateChainAt(m.Index)
	if !ok {
		return nil
	}
	c.chainChecks.Add(1)
	if subtle.ConstantTimeCompare(own, m.Hash) == 1 {
		return nil
	}
	d := &divergence{Index: m.Index, Leader: leader, At: time.Now()}
	if c.diverged.CompareAndSwap(nil, d) {
		c.log.Error("DIVERGED: this replica's history differs from the leader's (it applied entries the leader never wrote, or skipped some); it refuses every use of its share until an operator rebuilds it (docs/operations.md)",
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
