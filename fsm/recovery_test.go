package fsm_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// The fake checker's recovery kit: a deal "ok" verifies; the kit and the
// rebuilt sharing share fixedPoly's constant term.

func (c *fakeChecker) CheckRecoveryDeal(kit *fsm.RecoveryKit, epochPoly [][]byte, dealer uint32, deal []byte) error {
	if string(deal) != "ok" {
		return errors.New("deal does not verify")
	}
	return nil
}

func (c *fakeChecker) CombineRecovery(deals []fsm.Deal) ([][]byte, error) {
	return [][]byte{fixedPoly()[0], bytes.Repeat([]byte{0xB1}, 32)}, nil
}

func (c *fakeChecker) CheckRebuild(kit *fsm.RecoveryKit, holders []uint32, deals [][]byte, t int, indexes []uint32) ([][]byte, error) {
	if len(deals) < kit.Threshold {
		return nil, errors.New("too few officers")
	}
	for _, d := range deals {
		if string(d) != "ok" {
			return nil, errors.New("an officer's deal does not verify")
		}
	}
	return [][]byte{fixedPoly()[0], bytes.Repeat([]byte{0xC1}, 32)}, nil
}

func kitRequest() *fsm.RecoveryKitRequest {
	return &fsm.RecoveryKitRequest{Threshold: 2, Officers: []fsm.RecoveryOfficer{
		{Name: "alice", EncKey: bytes.Repeat([]byte{0x51}, 32)},
		{Name: "bob", EncKey: bytes.Repeat([]byte{0x52}, 32)},
		{Name: "carol", EncKey: bytes.Repeat([]byte{0x53}, 32)},
	}}
}

func initKitCmd() *fsm.Command {
	c := initCmd()
	c.Init.Recovery = kitRequest()
	return c
}

// kitThreeHolders: founded with a 2-of-3 kit, epoch 3 with node-1..3
// holding shares at t=2, the non-admin op added; nobody has dealt the
// kit.
func kitThreeHolders(h *harness) {
	h.must(admin, initKitCmd())
	h.dealAll()
	h.must(admin, addOperatorCmd(operatorSpec(op, "bob", false)))
	for i := 2; i <= 3; i++ {
		h.admit(nodeSpec(i))
		h.dealAll()
	}
}

func recoveryDealCmd(epoch uint64, dealer uint32, deal string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRecoveryDeal, RecoveryDeal: &fsm.RecoveryDeal{Epoch: epoch, Dealer: dealer, Deal: []byte(deal)}}
}

// kitUsable: kitThreeHolders, with holders 1 and 2 dealt: usable.
func kitUsable(h *harness) {
	kitThreeHolders(h)
	h.must(node(1), recoveryDealCmd(3, 1, "ok"))
	h.must(node(2), recoveryDealCmd(3, 2, "ok"))
}

func rebuildCmd(deals ...string) *fsm.Command {
	r := &fsm.Rebuild{Holders: []uint32{1, 2}, Threshold: 2}
	for i := 5; i <= 7; i++ {
		n := nodeSpec(i)
		n.Index = uint32(i - 4)
		r.Nodes = append(r.Nodes, n)
	}
	for _, d := range deals {
		r.Deals = append(r.Deals, []byte(d))
	}
	return &fsm.Command{Type: fsm.TypeRebuild, Rebuild: r}
}

func TestRecoveryKitTransitions(t *testing.T) {
	badKit := func(change func(*fsm.RecoveryKitRequest)) *fsm.Command {
		c := initKitCmd()
		change(c.Init.Recovery)
		return c
	}
	runTransition(t, []transitionCase{
		{name: "init asks for a kit", by: admin, cmd: initKitCmd(), check: func(t *testing.T, h *harness, _ *fsm.Result) {
			if k := h.state().Recovery; k == nil || k.Threshold != 2 || len(k.Officers) != 3 || k.Usable() {
				t.Errorf("kit %+v", k)
			}
		}},
		{name: "a threshold above the officers", by: admin, cmd: badKit(func(r *fsm.RecoveryKitRequest) { r.Threshold = 4 }), code: fsm.CodeInvalid},
		{name: "an officer twice", by: admin, cmd: badKit(func(r *fsm.RecoveryKitRequest) { r.Officers[2].EncKey = r.Officers[0].EncKey }), code: fsm.CodeInvalid},
		{name: "a short officer key", by: admin, cmd: badKit(func(r *fsm.RecoveryKitRequest) { r.Officers[1].EncKey = []byte{1} }), code: fsm.CodeInvalid},

		{name: "the first holder deals", setup: kitThreeHolders, by: node(1), cmd: recoveryDealCmd(3, 1, "ok"), check: func(t *testing.T, h *harness, _ *fsm.Result) {
			if k := h.state().Recovery; len(k.Deals) != 1 || k.Usable() || k.Epoch != 3 || k.Needed != 2 {
				t.Errorf("kit %+v", k)
			}
		}},
		{name: "t holders make it usable, with the cluster key", setup: kitThreeHolders, cmdAt: func(h *harness) *fsm.Command {
			h.must(node(1), recoveryDealCmd(3, 1, "ok"))
			return recoveryDealCmd(3, 2, "ok")
		}, by: node(2), check: func(t *testing.T, h *harness, _ *fsm.Result) {
			k := h.state().Recovery
			if !k.Usable() || !bytes.Equal(k.Poly[0], fixedPoly()[0]) {
				t.Errorf("kit %+v", k)
			}
		}},
		{name: "the last holder's deal is kept too", setup: kitUsable, by: node(3), cmd: recoveryDealCmd(3, 3, "ok"), check: func(t *testing.T, h *harness, _ *fsm.Result) {
			if k := h.state().Recovery; len(k.Deals) != 3 {
				t.Errorf("kit %+v", k)
			}
		}},
		{name: "under another holder's index", setup: kitThreeHolders, by: node(1), cmd: recoveryDealCmd(3, 2, "ok"), code: fsm.CodeDenied},
		{name: "twice", setup: kitUsable, by: node(1), cmd: recoveryDealCmd(3, 1, "ok"), code: fsm.CodeExists},
		{name: "for another epoch", setup: kitThreeHolders, by: node(1), cmd: recoveryDealCmd(2, 1, "ok"), code: fsm.CodeConflict},
		{name: "a deal that does not verify", setup: kitThreeHolders, by: node(1), cmd: recoveryDealCmd(3, 1, "bad"), code: fsm.CodeInvalid},
		{name: "signed by an operator", setup: kitThreeHolders, by: admin, cmd: recoveryDealCmd(3, 1, "ok"), code: fsm.CodeBadSignature},
		{name: "by a node that holds no share", setup: then(kitThreeHolders, admitting(nodeSpec(4))), by: node(4), cmd: recoveryDealCmd(3, 4, "ok"), code: fsm.CodeDenied},
		{name: "in a cluster without a kit", setup: threeHolders, by: node(1), cmd: recoveryDealCmd(3, 1, "ok"), code: fsm.CodeState},

		{name: "the rebuild", setup: then(kitUsable, doing(admin, createKeyCmd("db/a"))), by: admin, cmd: rebuildCmd("ok", "ok"), check: func(t *testing.T, h *harness, _ *fsm.Result) {
			s := h.state()
			if s.Epoch != 4 || s.Threshold != 2 || len(s.Nodes) != 3 || s.Nodes[node(5).ID] == nil || !s.Nodes[node(5).ID].Holder || s.Nodes[node(1).ID] != nil {
				t.Errorf("after the rebuild: epoch %d, t %d, nodes %v", s.Epoch, s.Threshold, s.Nodes)
			}
			if !bytes.Equal(s.Poly[0], fixedPoly()[0]) || s.Keys["db/a"].State != fsm.KeyActive {
				t.Errorf("the cluster key or its secret changed: %x, %+v", s.Poly[0], s.Keys["db/a"])
			}
		}},
		{name: "the rebuild by a non-admin", setup: kitUsable, by: op, cmd: rebuildCmd("ok", "ok"), code: fsm.CodeDenied},
		{name: "the rebuild with one officer", setup: kitUsable, by: admin, cmd: rebuildCmd("ok"), code: fsm.CodeInvalid},
		{name: "the rebuild with a deal that does not verify", setup: kitUsable, by: admin, cmd: rebuildCmd("ok", "bad"), code: fsm.CodeInvalid},
		{name: "the rebuild below a majority", setup: kitUsable, by: admin, cmd: with(rebuildCmd("ok", "ok"), func(c *fsm.Command) { c.Rebuild.Threshold = 1 }), code: fsm.CodeInvalid},
		{name: "the rebuild with an index twice", setup: kitUsable, by: admin, cmd: with(rebuildCmd("ok", "ok"), func(c *fsm.Command) { c.Rebuild.Nodes[2].Index = 1 }), code: fsm.CodeInvalid},
		{name: "the rebuild before the kit is usable", setup: kitThreeHolders, by: admin, cmd: rebuildCmd("ok", "ok"), code: fsm.CodeState},
		{name: "the rebuild without a kit", setup: threeHolders, by: admin, cmd: rebuildCmd("ok", "ok"), code: fsm.CodeState},
	})
}

// TestRebuildDestroysTheKeysTheKitCannotBring: a Tang key's shares were the
// lost nodes'; the rebuild destroys it and keeps the secrets.
func TestRebuildDestroysTheKeysTheKitCannotBring(t *testing.T) {
	h := newHarness(t)
	h.must(admin, initKitCmd())
	h.dealAll()
	h.must(node(1), recoveryDealCmd(1, 1, "ok"))
	h.must(admin, tangKeyCmd(t, "tang/a"))
	h.must(admin, createKeyCmd("db/a"))
	c := rebuildCmd("ok", "ok")
	c.Rebuild.Holders = []uint32{1}
	h.must(admin, c)
	s := h.state()
	if k := s.Keys["tang/a"]; k.State != fsm.KeyDestroyed || k.Tang() != nil {
		t.Errorf("the Tang key after the rebuild: %+v", k)
	}
	if k := s.Keys["db/a"]; k.State != fsm.KeyActive || len(k.Sealed) == 0 {
		t.Errorf("the secret after the rebuild: %+v", k)
	}
	if len(s.TangKeys()) != 0 {
		t.Errorf("Tang keys after the rebuild: %v", s.TangKeys())
	}
}

// TestRecoveryKitAcrossEpochs: deals of an epoch that moved on before the
// kit was usable are dropped, and the new epoch's holders deal anew; a
// usable kit stays usable, and nobody deals it again.
func TestRecoveryKitAcrossEpochs(t *testing.T) {
	h := newHarness(t)
	kitThreeHolders(h)
	h.must(node(1), recoveryDealCmd(3, 1, "ok"))
	h.admit(nodeSpec(4))
	h.dealAll()
	s := h.state()
	if s.Epoch != 4 || !s.MayDealRecovery(1) {
		t.Fatalf("epoch %d; holder 1 may deal the kit again: %v", s.Epoch, s.MayDealRecovery(1))
	}
	h.must(node(1), recoveryDealCmd(4, 1, "ok"))
	if k := h.state().Recovery; k.Epoch != 4 || len(k.Deals) != 1 {
		t.Fatalf("the kit after the epoch moved on: %+v", k)
	}
	for _, i := range []uint32{2, 3} {
		h.must(h.nodeByIndex(i), recoveryDealCmd(4, i, "ok"))
	}
	if k := h.state().Recovery; !k.Usable() || k.Needed != 3 {
		t.Fatalf("the kit at epoch 4 (t=3): %+v", k)
	}
	h.admit(nodeSpec(5))
	h.dealAll()
	s = h.state()
	if !s.Recovery.Usable() || s.Recovery.Epoch != 4 || s.MayDealRecovery(1) || s.MayDealRecovery(5) {
		t.Fatalf("a usable kit at epoch %d: %+v; may deal: %v %v", s.Epoch, s.Recovery, s.MayDealRecovery(1), s.MayDealRecovery(5))
	}
	if res := h.do(node(1), recoveryDealCmd(s.Epoch, 1, "ok")); codeOf(res) != fsm.CodeExists {
		t.Fatalf("a deal of a kit that is usable: %v", res.Error)
	}
}
