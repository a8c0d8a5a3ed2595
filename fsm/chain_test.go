package fsm_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestChainHashFollowsTheHistory: the chain hash (chain.go) is the same on
// every replica that applied the same entries, and moves on every entry,
// refused or not; a replica that applied another entry at an index, even
// one the state machine refused, keeps another hash from there on, though
// its state may otherwise be the same; a restore from a snapshot rebuilds
// the source's hash (TestSnapshotGolden: from a certified one too).
func TestChainHashFollowsTheHistory(t *testing.T) {
	h := newHarness(t)
	withKey(h)
	chainOf := func(f *fsm.FSM) []byte { _, c := f.ChainAt(); return c }

	replay := func(entries []logEntry) *fsm.FSM {
		g := fsm.New(&fakeChecker{})
		for _, e := range entries {
			g.Apply(e.index, e.at, e.data)
		}
		return g
	}
	same := replay(h.log)
	if c := chainOf(h.f); len(c) != 32 || !bytes.Equal(c, chainOf(same)) {
		t.Fatalf("two replicas of the same history: chain hashes %x and %x", c, chainOf(same))
	}

	// A refused entry moves it.
	before := chainOf(h.f)
	if res := h.apply([]byte("-")); res.Error == nil {
		t.Fatal("a non-JSON entry was accepted")
	}
	if bytes.Equal(before, chainOf(h.f)) {
		t.Fatal("a refused entry left the chain hash where it was")
	}

	// Another history: the last entry replaced by another refused one.
	forked := append(append([]logEntry(nil), h.log[:len(h.log)-1]...), logEntry{h.index, h.at, []byte("--")})
	other := replay(forked)
	if bytes.Equal(chainOf(other), chainOf(h.f)) {
		t.Fatal("two histories that differ at their last entry have the same chain hash")
	}
	// The same entries on top do not bring them back together.
	h.must(admin, revokeKeyCmd("db/a"))
	last := h.log[len(h.log)-1]
	other.Apply(last.index, last.at, last.data)
	if bytes.Equal(chainOf(other), chainOf(h.f)) {
		t.Fatal("the forked history's chain hash joined the other's again")
	}

	// A restore rebuilds it.
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := fsm.New(&fakeChecker{})
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chainOf(r), chainOf(h.f)) {
		t.Fatalf("restored from a snapshot: chain hash %x, the source's %x", chainOf(r), chainOf(h.f))
	}
}

// TestForgedSnapshotLeavesAnotherChainHash: a snapshot whose entries after
// its checkpoint are not the cluster's (here a revoke replaced by an entry
// the state machine refuses, as a forged Raft leader would send) restores
// on a replica that has not applied that far, and gives a state without
// the revoke, but not the cluster's chain hash: the holder's check
// (cluster/chain.go) then finds it out.
func TestForgedSnapshotLeavesAnotherChainHash(t *testing.T) {
	h := newHarness(t)
	withKey(h)
	h.must(admin, revokeKeyCmd("db/a"))
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sn fsm.Snap
	if err := json.Unmarshal(snap, &sn); err != nil {
		t.Fatal(err)
	}
	last := &sn.Entries[len(sn.Entries)-1]
	if last.Index != h.index {
		t.Fatalf("the snapshot's last entry is %d, not the revoke at %d", last.Index, h.index)
	}
	last.Data = []byte("-")
	forged, err := sn.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	r := fsm.New(&fakeChecker{})
	if err := r.Restore(forged); err != nil {
		t.Fatalf("the forged snapshot does not restore, so this test proves nothing: %v", err)
	}
	var revoked bool
	r.Read(func(s *fsm.State) { revoked = s.Keys["db/a"].State == fsm.KeyRevoked })
	if revoked {
		t.Fatal("the forged snapshot's state has the revoke: the test proves nothing")
	}
	ai, a := r.ChainAt()
	bi, b := h.f.ChainAt()
	if ai != bi || bytes.Equal(a, b) {
		t.Errorf("the forged snapshot restores to index %d with chain hash %x, the cluster's is %x at %d", ai, a, b, bi)
	}
}
