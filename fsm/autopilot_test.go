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
	h.must(admin, addNodeCmd(nodeSpec(4)))
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
		{"a round is in progress", then(threeHolders, on, doing(admin, addNodeCmd(nodeSpec(4)))), node(1), removeDeadCmd(node(3).ID, time.Hour), fsm.CodeState},
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
