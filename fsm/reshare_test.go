package fsm_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// nodeView is what a test asserts about one node.
type nodeView struct {
	Index           uint32
	Holder, Leaving bool
}

func nodesOf(s *fsm.State) map[string]nodeView {
	out := map[string]nodeView{}
	for id, n := range s.Nodes {
		out[id] = nodeView{n.Index, n.Holder, n.Leaving}
	}
	return out
}

func wantEpoch(t *testing.T, h *harness, epoch uint64, threshold int, nodes map[string]nodeView) {
	t.Helper()
	s := h.state()
	if s.Epoch != epoch || s.Threshold != threshold {
		t.Errorf("epoch %d threshold %d, want %d and %d", s.Epoch, s.Threshold, epoch, threshold)
	}
	if got := nodesOf(s); !reflect.DeepEqual(got, nodes) {
		t.Errorf("nodes %v, want %v", got, nodes)
	}
}

// TestReshareLifecycle follows the cluster key from the first DKG through
// joins and a removal: who deals, how many deals qualify a round, who must
// acknowledge, and what each completed round leaves.
func TestReshareLifecycle(t *testing.T) {
	h := newHarness(t)

	// init: the first DKG, a fresh round whose one member deals.
	res := h.must(admin, initCmd())
	wantRound(t, h.state().Reshare, fsm.Reshare{Round: res.Index, Fresh: true, Threshold: 1,
		Members: []fsm.Member{member(1)}, Dealers: []uint32{1}, Needed: 1})
	refusedWith(t, h, node(1), ackCmd(res.Index), fsm.CodeState) // not qualified yet
	h.must(node(1), dealCmd(res.Index, 1, "ok"))
	if r := h.state().Reshare; !r.Qualified() || !reflect.DeepEqual(r.Poly, fixedPoly()) {
		t.Fatalf("after the only deal the round is %+v, want qualified", r)
	}
	h.must(node(1), ackCmd(res.Index))
	wantEpoch(t, h, 1, 1, map[string]nodeView{"node-1": {1, true, false}})
	if s := h.state(); s.Reshare != nil || !bytes.Equal(s.PublicKey(), fixedPoly()[0]) {
		t.Fatalf("round %+v, public key %x after the first DKG", s.Reshare, s.PublicKey())
	}

	// add node-2: the holders reshare to both; threshold 2 of 2.
	res = h.must(admin, addNodeCmd(nodeSpec(2)))
	r2 := res.Index
	wantRound(t, h.state().Reshare, fsm.Reshare{Round: r2, Threshold: 2,
		Members: []fsm.Member{member(1), member(2)}, Dealers: []uint32{1}, Needed: 1})
	refusedWith(t, h, node(2), dealCmd(r2, 2, "ok"), fsm.CodeDenied) // not a holder yet
	h.must(node(1), dealCmd(r2, 1, "ok"))
	h.must(node(1), ackCmd(r2))
	wantEpoch(t, h, 1, 1, map[string]nodeView{"node-1": {1, true, false}, "node-2": {2, false, false}})
	h.must(node(2), ackCmd(r2))
	wantEpoch(t, h, 2, 2, map[string]nodeView{"node-1": {1, true, false}, "node-2": {2, true, false}})

	// add node-3: two holders deal, as the current threshold needs.
	r3 := h.must(admin, addNodeCmd(nodeSpec(3))).Index
	wantRound(t, h.state().Reshare, fsm.Reshare{Round: r3, Threshold: 2,
		Members: []fsm.Member{member(1), member(2), member(3)}, Dealers: []uint32{1, 2}, Needed: 2})
	h.must(node(2), dealCmd(r3, 2, "ok"))
	if h.state().Reshare.Qualified() {
		t.Fatalf("one deal of two qualified the round")
	}
	refusedWith(t, h, node(3), ackCmd(r3), fsm.CodeState)
	h.must(node(1), dealCmd(r3, 1, "ok"))
	for i := 1; i <= 3; i++ {
		h.must(node(i), ackCmd(r3))
	}
	wantEpoch(t, h, 3, 2, map[string]nodeView{
		"node-1": {1, true, false}, "node-2": {2, true, false}, "node-3": {3, true, false}})

	// remove node-2: it stays, leaving, and may deal its share, but the
	// round excludes it; once the round completes it is gone.
	r4 := h.must(admin, removeNodeCmd("node-2")).Index
	wantRound(t, h.state().Reshare, fsm.Reshare{Round: r4, Threshold: 2,
		Members: []fsm.Member{member(1), member(3)}, Dealers: []uint32{1, 2, 3}, Needed: 2})
	wantEpoch(t, h, 3, 2, map[string]nodeView{
		"node-1": {1, true, false}, "node-2": {2, true, true}, "node-3": {3, true, false}})
	h.must(node(2), dealCmd(r4, 2, "ok"))
	h.must(node(3), dealCmd(r4, 3, "ok"))
	refusedWith(t, h, node(2), ackCmd(r4), fsm.CodeDenied)
	h.must(node(1), ackCmd(r4))
	h.must(node(3), ackCmd(r4))
	wantEpoch(t, h, 4, 2, map[string]nodeView{"node-1": {1, true, false}, "node-3": {3, true, false}})
	refusedWith(t, h, node(2), dealCmd(r4, 2, "ok"), fsm.CodeBadSignature) // no longer a node

	// add node-4, then node-5 before that round completes: the second
	// round replaces the first, and what was sent for the first is refused.
	r5 := h.must(admin, addNodeCmd(nodeSpec(4))).Index
	h.must(node(1), dealCmd(r5, 1, "ok"))
	r6 := h.must(admin, addNodeCmd(nodeSpec(5))).Index
	wantRound(t, h.state().Reshare, fsm.Reshare{Round: r6, Threshold: 3,
		Members: []fsm.Member{member(1), member(3), member(4), member(5)}, Dealers: []uint32{1, 3}, Needed: 2})
	refusedWith(t, h, node(3), dealCmd(r5, 3, "ok"), fsm.CodeState)
	refusedWith(t, h, node(1), ackCmd(r5), fsm.CodeState)
	h.must(node(1), dealCmd(r6, 1, "ok"))
	h.must(node(3), dealCmd(r6, 3, "ok"))
	for _, i := range []int{5, 4, 3, 1} {
		h.must(node(i), ackCmd(r6))
	}
	wantEpoch(t, h, 5, 3, map[string]nodeView{"node-1": {1, true, false}, "node-3": {3, true, false},
		"node-4": {4, true, false}, "node-5": {5, true, false}})

	// node-2 may rejoin, under a new share index: indexes are never reused.
	h.must(admin, addNodeCmd(nodeSpec(2)))
	if n := h.state().Nodes["node-2"]; n.Index != 6 || n.Holder {
		t.Errorf("rejoined node-2 = %+v, want index 6, not yet a holder", n)
	}
	if s := h.state(); !bytes.Equal(s.PublicKey(), fixedPoly()[0]) {
		t.Errorf("the public key changed to %x across resharings", s.PublicKey())
	}
}

// TestRemoveNodeBeforeFirstDKG: a node removed before the cluster key
// exists is dropped when the first DKG completes.
func TestRemoveNodeBeforeFirstDKG(t *testing.T) {
	h := newHarness(t)
	h.must(admin, initCmd())
	h.must(admin, addNodeCmd(nodeSpec(2)))
	h.must(admin, addNodeCmd(nodeSpec(3)))
	h.must(admin, removeNodeCmd("node-2"))
	r := h.state().Reshare
	wantRound(t, r, fsm.Reshare{Round: r.Round, Fresh: true, Threshold: 2,
		Members: []fsm.Member{member(1), member(3)}, Dealers: []uint32{1, 3}, Needed: 2})
	refusedWith(t, h, node(2), dealCmd(r.Round, 2, "ok"), fsm.CodeDenied)
	h.dealAll()
	wantEpoch(t, h, 1, 2, map[string]nodeView{"node-1": {1, true, false}, "node-3": {3, true, false}})
}

// TestFailedCombineRefusesTheDeal is the part of the failed-combine path
// that works: the deal is refused, not recorded, and may be sent again.
func TestFailedCombineRefusesTheDeal(t *testing.T) {
	h := newHarness(t)
	initialized(h)
	h.must(admin, addNodeCmd(nodeSpec(2)))
	h.must(node(1), dealCmd(h.round(), 1, "ok"))
	h.checker.combineErr = errors.New("cannot combine")
	before := h.snapshot()
	deal := h.entry(node(2), dealCmd(h.round(), 2, "ok"))
	if res := h.apply(deal); codeOf(res) != fsm.CodeInvalid {
		t.Fatalf("deal when CombinePublic fails: %v, want %q", res.Error, fsm.CodeInvalid)
	}
	assertUnchanged(t, before, h.snapshot())
	h.checker.combineErr = nil
	if res := h.apply(deal); res.Error != nil {
		t.Fatalf("the same deal once CombinePublic works: %v", res.Error)
	}
	if r := h.state().Reshare; !r.Qualified() || len(r.Deals) != 2 {
		t.Errorf("round %+v, want qualified with two deals", r)
	}
}
