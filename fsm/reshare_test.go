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
	res = h.admit(nodeSpec(2))
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
	r3 := h.admit(nodeSpec(3)).Index
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
	r5 := h.admit(nodeSpec(4)).Index
	h.must(node(1), dealCmd(r5, 1, "ok"))
	r6 := h.admit(nodeSpec(5)).Index
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
	h.admit(nodeSpec(2))
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
	h.admit(nodeSpec(2))
	h.admit(nodeSpec(3))
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
	h.admit(nodeSpec(2))
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

// removingNode3: three holders (t=2); node-3 is being removed, so holders
// 1..3 may deal to members node-1 and node-2 (t'=2).
func removingNode3(h *harness) {
	threeHolders(h)
	h.must(admin, removeNodeCmd("node-3"))
}

// TestBadDealerDoesNotBlockItsOwnRemoval (issue 9, hole 6): node-3 deals
// node-2 a bad sub-share in the round that removes it. Before complaints,
// node-2 could neither acknowledge nor do anything else, and the round,
// and every later membership change, waited for ever. node-2's complaint
// disqualifies node-3, the other holders deal, and the removal completes.
func TestBadDealerDoesNotBlockItsOwnRemoval(t *testing.T) {
	h := newHarness(t)
	removingNode3(h)
	r := h.round()
	h.must(node(3), dealCmd(r, 3, "ok")) // publicly fine; bad for node-2 only
	h.must(node(1), dealCmd(r, 1, "ok"))
	if !h.state().Reshare.Qualified() {
		t.Fatal("two deals did not qualify the round")
	}
	h.must(node(1), ackCmd(r))
	// node-2 cannot open node-3's sub-share: it complains.
	h.must(node(2), complaintCmd(r, 3, "holds"))
	got := h.state().Reshare
	if got.Qualified() || len(got.Acks) != 0 || got.HasDealt(3) || !reflect.DeepEqual(got.Disqualified, []uint32{3}) {
		t.Fatalf("after the complaint the round is %+v, want node-3's deal out, not qualified, no acks", got)
	}
	refusedWith(t, h, node(3), dealCmd(r, 3, "ok"), fsm.CodeDenied)
	h.must(node(2), dealCmd(r, 2, "ok"))
	h.must(node(1), ackCmd(r))
	h.must(node(2), ackCmd(r))
	wantEpoch(t, h, 4, 2, map[string]nodeView{"node-1": {1, true, false}, "node-2": {2, true, false}})
}

// TestDownMemberDoesNotHoldTheRound (issue 9, hole 6): a join with one of
// three holders down completes with the acknowledgements of t' members;
// the member that was down is a holder of the new epoch, acknowledges
// late once it opened its share from the last round's deals, and may
// complain against them instead if one is bad.
func TestDownMemberDoesNotHoldTheRound(t *testing.T) {
	h := newHarness(t)
	threeHolders(h)
	r := h.admit(nodeSpec(4)).Index
	h.must(node(1), dealCmd(r, 1, "ok"))
	h.must(node(2), dealCmd(r, 2, "ok"))
	for _, i := range []int{1, 2, 4} { // node-3 is down
		h.must(node(i), ackCmd(r))
	}
	wantEpoch(t, h, 4, 3, map[string]nodeView{"node-1": {1, true, false}, "node-2": {2, true, false},
		"node-3": {3, true, false}, "node-4": {4, true, false}})
	s := h.state()
	if s.Reshare != nil || s.LastRound == nil || s.LastRound.Round != r || len(s.LastRound.Deals) != 2 {
		t.Fatalf("round %+v, last round %+v: want none in progress and round %d kept with its deals", s.Reshare, s.LastRound, r)
	}
	// Back, node-3 may still complain (it has not acknowledged): the epoch
	// stands and a new round without the dealer gives it a share.
	before := h.snapshot()
	refusedWith(t, h, node(1), complaintCmd(r, 2, "holds"), fsm.CodeDenied) // acknowledged: its share checked out
	refusedWith(t, h, node(3), complaintCmd(r, 2, "no"), fsm.CodeInvalid)
	assertUnchanged(t, before, h.snapshot(), "nonces")
	h.must(node(3), ackCmd(r))
	if s := h.state(); !s.LastRound.HasAcked("node-3") {
		t.Errorf("late acknowledgement not recorded: %v", s.LastRound.Acks)
	}
	refusedWith(t, h, node(3), complaintCmd(r, 2, "holds"), fsm.CodeDenied)
}

// TestLateComplaintStartsARound: a member that missed a round and finds
// its sub-share of a deal in it bad gets a new round without that dealer.
func TestLateComplaintStartsARound(t *testing.T) {
	h := newHarness(t)
	threeHolders(h)
	r := h.admit(nodeSpec(4)).Index
	h.must(node(1), dealCmd(r, 1, "ok"))
	h.must(node(2), dealCmd(r, 2, "ok"))
	for _, i := range []int{1, 2, 4} {
		h.must(node(i), ackCmd(r))
	}
	c := h.must(node(3), complaintCmd(r, 2, "holds")).Index
	s := h.state()
	wantRound(t, s.Reshare, fsm.Reshare{Round: c, Threshold: 3,
		Members: []fsm.Member{member(1), member(2), member(3), member(4)}, Dealers: []uint32{1, 2, 3, 4}, Needed: 3,
		Disqualified: []uint32{2}})
	if s.Epoch != 4 || !reflect.DeepEqual(s.LastRound.Disqualified, []uint32{2}) {
		t.Errorf("epoch %d, last round's disqualified %v", s.Epoch, s.LastRound.Disqualified)
	}
	refusedWith(t, h, node(3), complaintCmd(r, 2, "holds"), fsm.CodeState) // the new round gives it a share
}

// TestComplaint is the complaint transition's table.
func TestComplaint(t *testing.T) {
	dealtBy := func(dealers ...int) func(h *harness) {
		return func(h *harness) {
			for _, d := range dealers {
				h.must(node(d), dealCmd(h.round(), uint32(d), "ok"))
			}
		}
	}
	against := func(dealer uint32, proof string) func(h *harness) *fsm.Command {
		return func(h *harness) *fsm.Command { return complaintCmd(h.round(), dealer, proof) }
	}
	runTransition(t, []transitionCase{
		{name: "a true complaint disqualifies the dealer", setup: then(removingNode3, dealtBy(3)), by: node(2),
			cmdAt: against(3, "holds"), check: func(t *testing.T, h *harness, _ *fsm.Result) {
				r := h.state().Reshare
				if len(r.Deals) != 0 || !reflect.DeepEqual(r.Disqualified, []uint32{3}) || r.Aborted != "" {
					t.Errorf("round %+v", r)
				}
			}},
		{name: "after the round qualified: deals again", setup: then(removingNode3, dealtBy(3, 1), func(h *harness) { h.must(node(1), ackCmd(h.round())) }), by: node(2),
			cmdAt: against(3, "holds"), check: func(t *testing.T, h *harness, _ *fsm.Result) {
				r := h.state().Reshare
				if r.Qualified() || len(r.Acks) != 0 || len(r.Deals) != 1 {
					t.Errorf("round %+v, want one deal left, no poly, no acks", r)
				}
			}},
		{name: "too few dealers left: aborted, the epoch serves on",
			setup: then(twoHolders, admitting(nodeSpec(3)), dealtBy(2)), by: node(3),
			cmdAt: against(2, "holds"), check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if s.Reshare.Aborted == "" || s.Epoch != 2 || len(s.Holders()) != 2 {
					t.Errorf("round %+v epoch %d holders %d, want aborted at epoch 2", s.Reshare, s.Epoch, len(s.Holders()))
				}
				refusedWith(t, h, node(1), dealCmd(s.Reshare.Round, 1, "ok"), fsm.CodeState)
			}},

		{name: "a false complaint", setup: then(removingNode3, dealtBy(3)), by: node(2), cmdAt: against(3, "lies"), code: fsm.CodeInvalid},
		{name: "against a dealer with no deal", setup: then(removingNode3, dealtBy(3)), by: node(2), cmdAt: against(1, "holds"), code: fsm.CodeNotFound},
		{name: "twice", setup: then(removingNode3, dealtBy(3), func(h *harness) { h.must(node(1), complaintCmd(h.round(), 3, "holds")) }),
			by: node(2), cmdAt: against(3, "holds"), code: fsm.CodeExists},
		{name: "from a leaving node, not a member", setup: then(removingNode3, dealtBy(1)), by: node(3), cmdAt: against(1, "holds"), code: fsm.CodeDenied},
		{name: "for another round", setup: then(removingNode3, dealtBy(3)), by: node(2), code: fsm.CodeState,
			cmdAt: func(h *harness) *fsm.Command { return complaintCmd(h.round()+1, 3, "holds") }},
		{name: "in an aborted round",
			setup: then(twoHolders, admitting(nodeSpec(3)), dealtBy(2, 1),
				func(h *harness) { h.must(node(3), complaintCmd(h.round(), 2, "holds")) }),
			by: node(3), cmdAt: against(1, "holds"), code: fsm.CodeState},
		{name: "from an operator", setup: then(removingNode3, dealtBy(3)), by: admin, cmdAt: against(3, "holds"), code: fsm.CodeBadSignature},
		{name: "no body", setup: then(removingNode3, dealtBy(3)), by: node(2), cmd: &fsm.Command{Type: fsm.TypeComplaint}, code: fsm.CodeInvalid},
	})
}

// TestRestartReshare: an admin replaces a round that waits on a dealer
// (down, or refusing to deal) by one without it.
func TestRestartReshare(t *testing.T) {
	added4 := then(threeHolders, admitting(nodeSpec(4)))
	runTransition(t, []transitionCase{
		{name: "without a dealer", setup: added4, by: admin, cmd: restartCmd(3),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				wantRound(t, h.state().Reshare, fsm.Reshare{Round: res.Index, Threshold: 3,
					Members: []fsm.Member{member(1), member(2), member(3), member(4)}, Dealers: []uint32{1, 2, 3},
					Needed: 2, Disqualified: []uint32{3}})
				refusedWith(t, h, node(3), dealCmd(res.Index, 3, "ok"), fsm.CodeDenied)
				h.dealAll()
				if s := h.state(); s.Epoch != 4 || len(s.Holders()) != 4 {
					t.Errorf("epoch %d with %d holders after the restarted round", s.Epoch, len(s.Holders()))
				}
			}},
		{name: "no round in progress: a refresh", setup: threeHolders, by: admin, cmd: restartCmd(),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if r := h.state().Reshare; r == nil || r.Round != res.Index || len(r.Members) != 3 {
					t.Errorf("round %+v", r)
				}
			}},
		{name: "too many left out", setup: added4, by: admin, cmd: restartCmd(1, 3), code: fsm.CodeState},
		{name: "not a dealer", setup: added4, by: admin, cmd: restartCmd(4), code: fsm.CodeInvalid},
		{name: "by a non-admin", setup: added4, by: op, cmd: restartCmd(), code: fsm.CodeDenied},
		{name: "by a node", setup: added4, by: node(1), cmd: restartCmd(), code: fsm.CodeBadSignature},
	})
}
