package fsm_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// frostChecker is the fake checker that also checks FROST deals: a deal
// "ok" holds, and the key's new commitments are its public key followed
// by newFROSTCommit, one for each further coefficient.
type frostChecker struct {
	fakeChecker
	keys []*fsm.FROSTKey // what CheckFROSTDeal was given
}

var newFROSTCommit = point(7)

func (c *frostChecker) CheckFROSTDeal(r *fsm.Reshare, key *fsm.FROSTKey, dealer uint32, deal []byte) error {
	c.keys = append(c.keys, key)
	if string(deal) != "ok" {
		return errors.New("the frost deal does not verify")
	}
	return nil
}

func (c *frostChecker) CombineFROST(r *fsm.Reshare, key *fsm.FROSTKey, deals [][]byte) ([][]byte, error) {
	out := [][]byte{key.Commits[0]}
	for len(out) < r.Threshold {
		out = append(out, newFROSTCommit)
	}
	return out, nil
}

func (c *frostChecker) CheckFROSTComplaint(clusterID string, r *fsm.Reshare, m *fsm.Member, dealer uint32, name string, deal, proof []byte) error {
	if string(proof) != "frost holds" {
		return errors.New("the frost sub-share matches the commitments")
	}
	return nil
}

func frostDealCmd(round uint64, dealer uint32, deals ...fsm.FROSTDeal) *fsm.Command {
	c := dealCmd(round, dealer, "ok")
	c.Deal.Frost = deals
	return c
}

// TestFROSTKeysAreResharedWithTheClusterKey: a round after an
// ed25519-frost key was created reshares it: its holder must deal it with
// its cluster deal, checked against the key's commitments; the round
// qualifies with it; the completion moves the key to the new epoch with
// the round's threshold, the new commitments (the same public key) and
// the members as holders, with no sealed share left in the state, a
// checkpoint taken to erase the log that carried them, and no re-import
// needed. A complaint against a FROST deal disqualifies its dealer.
func TestFROSTKeysAreResharedWithTheClusterKey(t *testing.T) {
	c := &frostChecker{}
	h := &harness{t: t, checker: &c.fakeChecker, f: fsm.New(c), at: t0}
	ready(h)
	h.must(admin, frostKeyCmd(t, "sig/a"))
	pub := h.state().Keys["sig/a"].Frost().Commits[0]

	r2 := h.admit(nodeSpec(2)).Index
	if got := h.state().Reshare.Frost; len(got) != 1 || got[0].Key != "sig/a" || !bytes.Equal(got[0].Public, pub) {
		t.Fatalf("the round reshares frost keys %+v, want sig/a", got)
	}
	refusedWith(t, h, admin, frostKeyCmd(t, "sig/b"), fsm.CodeConflict)
	refusedWith(t, h, node(1), dealCmd(r2, 1, "ok"), fsm.CodeInvalid) // without its frost deal
	refusedWith(t, h, node(1), frostDealCmd(r2, 1, fsm.FROSTDeal{Key: "sig/a", Deal: []byte("bad")}), fsm.CodeInvalid)
	refusedWith(t, h, node(1), frostDealCmd(r2, 1, fsm.FROSTDeal{Key: "sig/a", Deal: []byte("ok")}, fsm.FROSTDeal{Key: "sig/a", Deal: []byte("ok")}), fsm.CodeInvalid)
	refusedWith(t, h, node(1), frostDealCmd(r2, 1, fsm.FROSTDeal{Key: "sig/x", Deal: []byte("ok")}), fsm.CodeInvalid)
	c.keys = nil
	h.must(node(1), frostDealCmd(r2, 1, fsm.FROSTDeal{Key: "sig/a", Deal: []byte("ok")}))
	if len(c.keys) != 1 || !bytes.Equal(c.keys[0].Commits[0], pub) {
		t.Errorf("the frost deal was checked against %+v, not the key's commitments", c.keys)
	}
	r := h.state().Reshare
	if !r.Qualified() || len(r.Frost[0].Commits) != 2 {
		t.Fatalf("round %+v, want it qualified with sig/a's new commitments", r)
	}
	h.ackAll()
	s := h.state()
	k := s.Keys["sig/a"]
	want := []fsm.FROSTShare{{NodeID: node(1).ID, Index: 1}, {NodeID: node(2).ID, Index: 2}}
	if k.Frost().Threshold != 2 || k.Frost().Epoch != s.Epoch || !slices.EqualFunc(k.Frost().Commits, [][]byte{pub, newFROSTCommit}, bytes.Equal) ||
		!slices.EqualFunc(k.Frost().Shares, want, func(a, b fsm.FROSTShare) bool { return a.NodeID == b.NodeID && a.Index == b.Index && a.Sealed == nil }) {
		t.Fatalf("after the round sig/a is %+v, want 2-of-%+v in epoch %d with nothing sealed", k.Frost(), want, s.Epoch)
	}
	if s.FROSTStale(k) || s.KeyView(k).Frost().NeedsReimport {
		t.Error("a reshared key is shown as needing re-import")
	}
	if s.Destroyed <= r2 {
		t.Errorf("destroyed index %d: the round that migrated sealed shares must take a checkpoint to erase them", s.Destroyed)
	}
	if _, _, err := authorize(h, h.signed(admin, signCmd("sig/a", []byte("hi"))), h.at); err != nil {
		t.Fatalf("signing with the reshared key: %v", err)
	}
	migrated := s.Destroyed

	// The next round: both holders deal it; a complaint against node-1's
	// frost deal disqualifies node-1.
	r3 := h.admit(nodeSpec(3)).Index
	h.must(node(1), frostDealCmd(r3, 1, fsm.FROSTDeal{Key: "sig/a", Deal: []byte("ok")}))
	complaint := complaintCmd(r3, 1, "holds")
	complaint.Complaint.Key = "sig/a"
	refusedWith(t, h, node(3), complaint, fsm.CodeInvalid) // a false complaint against the frost deal
	complaint = complaintCmd(r3, 1, "frost holds")
	complaint.Complaint.Key = "sig/a"
	h.must(node(3), complaint)
	r = h.state().Reshare
	if !slices.Contains(r.Disqualified, 1) || r.HasDealt(1) || r.Aborted == "" {
		t.Fatalf("after the complaint round %+v, want dealer 1 out and the round aborted (one dealer of two left)", r)
	}
	if h.state().Destroyed != migrated {
		t.Error("a round that migrated nothing moved the erasure index")
	}
}
