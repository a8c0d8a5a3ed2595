package fsm_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// tangChecker is the fake checker that also checks Tang deals: a deal
// "ok" holds, and the new public share of member i is tangPublic(i).
type tangChecker struct {
	fakeChecker
	publicShares map[uint32][]byte // by dealer: what CheckTangDeal was given
}

func tangPublic(i uint32) []byte { return bytes.Repeat([]byte{0x04, byte(i)}, 32)[:64] }

func (c *tangChecker) CheckTangDeal(r *fsm.Reshare, key *fsm.TangKey, dealer uint32, publicShare, deal []byte) error {
	c.publicShares[dealer] = publicShare
	if string(deal) != "ok" {
		return errors.New("the tang deal does not verify")
	}
	return nil
}

func (c *tangChecker) CombineTang(r *fsm.Reshare, key *fsm.TangKey, deals [][]byte) (map[uint32][]byte, error) {
	out := map[uint32][]byte{}
	for _, m := range r.Members {
		out[m.Index] = tangPublic(m.Index)
	}
	return out, nil
}

func (c *tangChecker) CheckTangComplaint(clusterID string, r *fsm.Reshare, m *fsm.Member, dealer uint32, key *fsm.TangKey, deal, proof []byte) error {
	if string(proof) != "tang holds" {
		return errors.New("the tang sub-share matches the commitments")
	}
	return nil
}

func newTangHarness(t *testing.T) (*harness, *tangChecker) {
	c := &tangChecker{publicShares: map[uint32][]byte{}}
	return &harness{t: t, checker: &c.fakeChecker, f: fsm.New(c), at: t0}, c
}

func tangDealCmd(round uint64, dealer uint32, tang ...fsm.TangDeal) *fsm.Command {
	c := dealCmd(round, dealer, "ok")
	c.Deal.Tang = tang
	return c
}

// TestTangKeysAreResharedWithTheClusterKey: a round after a Tang key was
// created reshares it: its holder must deal it with its cluster deal,
// checked against its public share; the round qualifies with it; and the
// completion gives the key the members' public shares and the round's
// threshold, with no sealed share left in the state and a checkpoint
// taken to erase the log that carried them. No Tang key is created while
// a round runs, and a complaint against a Tang deal disqualifies its
// dealer.
func TestTangKeysAreResharedWithTheClusterKey(t *testing.T) {
	h, c := newTangHarness(t)
	ready(h)
	h.must(admin, tangKeyCmd(t, "tang/a"))
	holderPublic := h.state().Keys["tang/a"].Tang().Shares[0].PublicShare

	r2 := h.admit(nodeSpec(2)).Index
	if got := h.state().Reshare.Tang; len(got) != 1 || got[0].Key != "tang/a" || got[0].Kid != "kid-tang/a" {
		t.Fatalf("the round reshares tang keys %+v, want tang/a", got)
	}
	refusedWith(t, h, admin, tangKeyCmd(t, "tang/b"), fsm.CodeConflict)
	refusedWith(t, h, node(1), dealCmd(r2, 1, "ok"), fsm.CodeInvalid) // without its tang deal
	refusedWith(t, h, node(1), tangDealCmd(r2, 1, fsm.TangDeal{Key: "tang/a", Deal: []byte("bad")}), fsm.CodeInvalid)
	refusedWith(t, h, node(1), tangDealCmd(r2, 1, fsm.TangDeal{Key: "tang/a", Deal: []byte("ok")}, fsm.TangDeal{Key: "tang/a", Deal: []byte("ok")}), fsm.CodeInvalid)
	refusedWith(t, h, node(1), tangDealCmd(r2, 1, fsm.TangDeal{Key: "tang/x", Deal: []byte("ok")}), fsm.CodeInvalid)
	h.must(node(1), tangDealCmd(r2, 1, fsm.TangDeal{Key: "tang/a", Deal: []byte("ok")}))
	if !bytes.Equal(c.publicShares[1], holderPublic) {
		t.Errorf("the tang deal was checked against %x, not the dealer's public share", c.publicShares[1])
	}
	r := h.state().Reshare
	if !r.Qualified() || len(r.Tang[0].Shares) != 2 {
		t.Fatalf("round %+v, want it qualified with two new public shares of tang/a", r)
	}
	h.ackAll()
	s := h.state()
	k := s.Keys["tang/a"]
	want := []fsm.TangShare{{NodeID: node(1).ID, Index: 1, PublicShare: tangPublic(1)}, {NodeID: node(2).ID, Index: 2, PublicShare: tangPublic(2)}}
	if k.Tang().Threshold != 2 || !slices.EqualFunc(k.Tang().Shares, want, func(a, b fsm.TangShare) bool {
		return a.NodeID == b.NodeID && a.Index == b.Index && bytes.Equal(a.PublicShare, b.PublicShare) && a.Sealed == nil
	}) {
		t.Fatalf("after the round tang/a is %+v, want 2-of-%+v with nothing sealed", k.Tang(), want)
	}
	if s.Destroyed != s.LastRound.Round && s.Destroyed <= r2 {
		t.Errorf("destroyed index %d: the round that migrated sealed shares must take a checkpoint to erase them", s.Destroyed)
	}
	migrated := s.Destroyed

	// The next round: both holders deal it; a complaint against node-1's
	// tang deal disqualifies node-1.
	r3 := h.admit(nodeSpec(3)).Index
	h.must(node(1), tangDealCmd(r3, 1, fsm.TangDeal{Key: "tang/a", Deal: []byte("ok")}))
	falseComplaint := complaintCmd(r3, 1, "tang holds") // against the cluster deal: false
	refusedWith(t, h, node(3), falseComplaint, fsm.CodeInvalid)
	tangComplaint := complaintCmd(r3, 1, "holds")
	tangComplaint.Complaint.Key = "tang/a"
	refusedWith(t, h, node(3), tangComplaint, fsm.CodeInvalid) // a false complaint against the tang deal
	tangComplaint = complaintCmd(r3, 1, "tang holds")
	tangComplaint.Complaint.Key = "tang/a"
	h.must(node(3), tangComplaint)
	r = h.state().Reshare
	if !slices.Contains(r.Disqualified, 1) || r.HasDealt(1) || r.Aborted == "" {
		t.Fatalf("after the complaint round %+v, want dealer 1 out and the round aborted (one dealer of two left)", r)
	}
	if h.state().Destroyed != migrated {
		t.Error("a round that migrated nothing moved the erasure index")
	}
}
