package fsm_test

import (
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

func autopilotCmd(after time.Duration) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeSetAutopilot, SetAutopilot: &fsm.Autopilot{RemoveDeadAfter: after}}
}

func removeDeadCmd(id string, downFor time.Duration) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRemoveDeadNode, RemoveDeadNode: &fsm.RemoveDead{Node: id, DownFor: downFor}}
}

// fourHolders: epoch 4 with node-1..4 holding shares, threshold 3.
func fourHolders(h *harness) {
	threeHolders(h)
	h.admit(nodeSpec(4))
	h.dealAll()
}

// TestAutopilotRemovesADeadMemberKeepingTheThreshold: with the autopilot
// on, a member's remove_dead_node (the leader's) marks the dead member
// leaving and starts a round without it that keeps the threshold, even
// where a majority of the members that stay would be fewer (4 holders at
// t=3 become 3 at t=3, not t=2).
func TestAutopilotRemovesADeadMemberKeepingTheThreshold(t *testing.T) {
	h := newHarness(t)
	fourHolders(h)
	h.must(admin, autopilotCmd(10*time.Second))
	h.must(node(1), removeDeadCmd(node(4).ID, 11*time.Second))
	s := h.state()
	if !s.Nodes[node(4).ID].Leaving || s.Reshare == nil {
		t.Fatalf("node-4 leaving %v, round %v", s.Nodes[node(4).ID].Leaving, s.Reshare)
	}
	if s.Reshare.Threshold != 3 || len(s.Reshare.Members) != 3 {
		t.Fatalf("the round without node-4: t %d of %d, want 3 of 3", s.Reshare.Threshold, len(s.Reshare.Members))
	}
}

// TestAutopilotRefusals: what a lying member, or a leader that has not
// waited, cannot make the state machine do.
func TestAutopilotRefusals(t *testing.T) {
	on := doing(admin, autopilotCmd(10*time.Second))
	for _, tc := range []struct {
		name  string
		setup func(h *harness)
		by    principal
		cmd   *fsm.Command
		want  fsm.Code
	}{
		{"the autopilot is off", threeHolders, node(1), removeDeadCmd(node(3).ID, time.Hour), fsm.CodeState},
		{"down for less than the period", then(threeHolders, on), node(1), removeDeadCmd(node(3).ID, 9*time.Second), fsm.CodeState},
		{"too few holders would stay", then(twoHolders, on), node(1), removeDeadCmd(node(2).ID, time.Hour), fsm.CodeState},
		{"a round is in progress", then(threeHolders, on, admitting(nodeSpec(4))), node(1), removeDeadCmd(node(3).ID, time.Hour), fsm.CodeState},
		{"itself", then(threeHolders, on), node(3), removeDeadCmd(node(3).ID, time.Hour), fsm.CodeInvalid},
		{"not a member", then(threeHolders, on), node(1), removeDeadCmd("node-9", time.Hour), fsm.CodeNotFound},
		{"proposed by a stranger", then(threeHolders, on), node(5), removeDeadCmd(node(3).ID, time.Hour), fsm.CodeBadSignature},
		{"proposed by an operator", then(threeHolders, on), admin, removeDeadCmd(node(3).ID, time.Hour), fsm.CodeBadSignature},
		{"turned on by a node", threeHolders, node(1), autopilotCmd(time.Minute), fsm.CodeBadSignature},
		{"turned on by a non-admin", threeHolders, op, autopilotCmd(time.Minute), fsm.CodeDenied},
		{"a period too short", threeHolders, admin, autopilotCmd(time.Millisecond), fsm.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			before := h.snapshot()
			res := h.do(tc.by, tc.cmd)
			if codeOf(res) != tc.want {
				t.Fatalf("got %v, want %s", res.Error, tc.want)
			}
			assertUnchanged(t, before, h.snapshot(), "applied")
		})
	}
}

// TestPromoteNode: a node admitted once the cluster has its key waits in
// no round until a promoted member (the leader, once the node has been a
// stable Raft voter) proposes promote_node; the round that gives it a
// share starts then. What a lying node can and cannot do with it: the
// joining node cannot promote itself, nor can another waiting node or a
// leaving one; nothing is promoted twice.
func TestPromoteNode(t *testing.T) {
	added4 := then(threeHolders, doing(admin, addNodeCmd(nodeSpec(4))))
	runTransition(t, []transitionCase{
		{name: "starts the round that gives it a share", setup: added4, by: node(1), cmd: promoteCmd(node(4).ID),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				s := h.state()
				if s.Nodes[node(4).ID].Pending {
					t.Error("node-4 is still waiting")
				}
				wantRound(t, s.Reshare, fsm.Reshare{Round: res.Index, Threshold: 3,
					Members: []fsm.Member{member(1), member(2), member(3), member(4)}, Dealers: []uint32{1, 2, 3}, Needed: 2})
			}},
		{name: "replaces a round in progress, without the member leaving",
			setup: then(added4, doing(admin, removeNodeCmd(node(3).ID))), by: node(2), cmd: promoteCmd(node(4).ID),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				wantRound(t, h.state().Reshare, fsm.Reshare{Round: res.Index, Threshold: 2,
					Members: []fsm.Member{member(1), member(2), member(4)}, Dealers: []uint32{1, 2, 3}, Needed: 2})
			}},
		{name: "by the joining node itself", setup: added4, by: node(4), cmd: promoteCmd(node(4).ID), code: fsm.CodeDenied},
		{name: "by another waiting node", setup: then(added4, doing(admin, addNodeCmd(nodeSpec(5)))), by: node(5),
			cmd: promoteCmd(node(4).ID), code: fsm.CodeDenied},
		{name: "by a leaving member", setup: then(added4, doing(admin, removeNodeCmd(node(3).ID))), by: node(3),
			cmd: promoteCmd(node(4).ID), code: fsm.CodeDenied},
		{name: "a member that is not waiting", setup: added4, by: node(1), cmd: promoteCmd(node(2).ID), code: fsm.CodeState},
		{name: "twice", setup: then(added4, doing(node(1), promoteCmd(node(4).ID))), by: node(2), cmd: promoteCmd(node(4).ID), code: fsm.CodeState},
		{name: "not a member", setup: added4, by: node(1), cmd: promoteCmd("node-9"), code: fsm.CodeNotFound},
		{name: "by an operator", setup: added4, by: admin, cmd: promoteCmd(node(4).ID), code: fsm.CodeBadSignature},
		{name: "by a stranger", setup: added4, by: node(6), cmd: promoteCmd(node(4).ID), code: fsm.CodeBadSignature},
	})
}

// TestWaitingNodeLeavesAtOnce: a node that never was promoted (it failed
// during its stable period) holds no share and is in no round, so an
// admin's removal, or the autopilot's, drops it at once, with no round,
// even while another round runs; it does not count as a member that
// stays, and cannot propose a removal itself.
func TestWaitingNodeLeavesAtOnce(t *testing.T) {
	on := doing(admin, autopilotCmd(10*time.Second))
	added4 := then(threeHolders, on, doing(admin, addNodeCmd(nodeSpec(4))))
	gone := func(t *testing.T, h *harness, _ *fsm.Result) {
		s := h.state()
		if s.Nodes[node(4).ID] != nil || s.Epoch != 3 {
			t.Errorf("node-4 %+v, epoch %d: want it gone, at epoch 3", s.Nodes[node(4).ID], s.Epoch)
		}
	}
	runTransition(t, []transitionCase{
		{name: "removed by an admin", setup: added4, by: admin, cmd: removeNodeCmd(node(4).ID),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				gone(t, h, res)
				if h.state().Reshare != nil {
					t.Error("a round started to reshare away a share no one gave it")
				}
			}},
		{name: "removed by the autopilot while a round runs",
			setup: then(added4, doing(admin, addNodeCmd(nodeSpec(5))), doing(node(1), promoteCmd(node(5).ID))),
			by:    node(2), cmd: removeDeadCmd(node(4).ID, time.Hour),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				gone(t, h, res)
				if r := h.state().Reshare; r == nil || len(r.Members) != 4 || r.Member(node(5).ID) == nil {
					t.Errorf("round %+v, want node-5's, untouched", r)
				}
			}},
		{name: "proposing a removal", setup: added4, by: node(4), cmd: removeDeadCmd(node(3).ID, time.Hour), code: fsm.CodeDenied},
		{name: "counted as a member that stays", setup: then(ready, doing(admin, addNodeCmd(nodeSpec(2)))), by: admin,
			cmd: removeNodeCmd(node(1).ID), code: fsm.CodeState},
	})
}
