package cluster

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
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
// So every replica keeps a chain hash over the entries its state machine
// applies, H_i = SHA-256(label || H_{i-1} || index || term || data), for
// the last chainRing indexes. The leader's answer to a read index carries
// its own H at that index. A holder, before it uses its share, waits until
// it has applied that index and compares its H there with the leader's: a
// difference means the two replicas applied different histories, and the
// holder stops serving (every partial, signature share and exchange) until
// an operator rebuilds it (docs/operations.md). Two honest replicas apply
// the same committed entries with the same terms, so they never differ:
// the chain survives restarts and snapshots because a snapshot carries the
// chain hash at its index (fsm.Snap.Chain), and a restart replays from the
// node's own snapshot.
//
// What it does not do: a snapshot's chain hash is its sender's word, so an
// attacker that installs a whole snapshot (rather than appending entries)
// can carry the real hash with a state of its own; and a replica that
// restored a snapshot without one (made before this check) compares
// nothing until an operator rebuilds it. docs/threat-model.md says so.

// chainRing is how many recent indexes a replica keeps the chain hash of:
// a holder compares at the leader's read index, a few entries behind its
// own applied one.
const chainRing = 4096

// chainLabel starts every link's input.
const chainLabel = "keyquorum chain v1\x00"

// chainMark is a replica's chain hash at an index. Hash is nil when the
// replica does not know it (it restored a snapshot that carried none).
type chainMark struct {
	Index uint64
	Hash  []byte
}

type chainSlot struct {
	index uint64
	hash  [32]byte
	known bool
}

// chain is the running hash and its ring. Its owner (raftFSM) guards it.
type chain struct {
	head  [32]byte
	known bool
	ring  []chainSlot
}

func newChain() *chain {
	return &chain{known: true, ring: make([]chainSlot, chainRing)}
}

// extend links the entry at index, of term, with data.
func (c *chain) extend(index, term uint64, data []byte) {
	h := sha256.New()
	h.Write([]byte(chainLabel))
	h.Write(c.head[:])
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], index)
	binary.BigEndian.PutUint64(n[8:], term)
	h.Write(n[:])
	h.Write(data)
	h.Sum(c.head[:0])
	c.ring[index%chainRing] = chainSlot{index: index, hash: c.head, known: c.known}
}

// reset restarts the chain at a restored snapshot's index, with the hash
// the snapshot carried (none: unknown from here on).
func (c *chain) reset(index uint64, hash []byte) {
	clear(c.ring)
	c.head, c.known = [32]byte{}, len(hash) == len(c.head)
	if c.known {
		copy(c.head[:], hash)
	}
	c.ring[index%chainRing] = chainSlot{index: index, hash: c.head, known: c.known}
}

// current is the hash at the last applied index, nil when unknown.
func (c *chain) current() []byte {
	if !c.known {
		return nil
	}
	return append([]byte(nil), c.head[:]...)
}

// at is the hash at index, if the ring still holds it and it is known.
func (c *chain) at(index uint64) ([]byte, bool) {
	s := c.ring[index%chainRing]
	if s.index != index || !s.known {
		return nil, false
	}
	return s.hash[:], true
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
