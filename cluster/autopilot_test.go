package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// tolerances is what node tn's status says of the failure tolerance.
func (c *testCluster) tolerances(tn *testNode) (holders, voters int) {
	c.t.Helper()
	st := c.status(tn)
	return st.FailureTolerance, st.QuorumTolerance
}

// waitTolerances waits until tn's status shows these tolerances (a
// stopped member is unreachable at once; Raft's configuration follows the
// removal).
func (c *testCluster) waitTolerances(tn *testNode, holders, voters int) {
	c.t.Helper()
	c.waitFor(settleTimeout, func() (bool, string) {
		h, v := c.tolerances(tn)
		return h == holders && v == voters, fmt.Sprintf("tolerances %d and %d, want %d and %d", h, v, holders, voters)
	})
}

// TestAutopilotRemovesADeadMemberWhileTHoldersRemain: four nodes (t=3)
// with the autopilot on. Before: one more node may fail, for releases and
// for Raft. node4 is killed: once the leader has seen it down for the
// period it removes it and reshares its share away, keeping t=3; the
// cluster releases with three holders, and may lose no more holder (but
// still one voter). node3 is killed too: the leader sees it down as long,
// but three holders at t=3 would become two, so nothing is removed;
// releases have stopped, and status says so.
func TestAutopilotRemovesADeadMemberWhileTHoldersRemain(t *testing.T) {
	c := newTestCluster(t, 4)
	secret := randomBytes(t, 32)
	c.createSecret("db/ap", secret)
	node1, node3, node4 := c.nodes[0], c.nodes[2], c.nodes[3]
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeSetAutopilot, SetAutopilot: &fsm.Autopilot{RemoveDeadAfter: 2 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	c.waitTolerances(node1, 1, 1)
	before := c.status(node1)

	c.stop(node4)
	c.waitFor(settleTimeout, func() (bool, string) {
		gone := true
		node1.n.fsm.Read(func(s *fsm.State) { gone = s.Nodes[node4.id()] == nil && s.Epoch > before.Epoch })
		return gone, "node4 is still a member"
	})
	st := c.waitSettled(before.Epoch)
	if st.Threshold != 3 || st.N != 3 {
		t.Fatalf("after node4's removal: t %d of %d, want 3 of 3", st.Threshold, st.N)
	}
	if got := c.mustRelease(node1, "db/ap"); string(got) != string(secret) {
		t.Fatal("released another secret after the removal")
	}
	c.waitTolerances(node1, 0, 1)

	heldBy := func() (sum int64) {
		for _, tn := range c.running() {
			sum += tn.n.autopilotHeld.Load()
		}
		return sum
	}
	held := heldBy()
	c.stop(node3)
	c.waitFor(settleTimeout, func() (bool, string) {
		return heldBy() > held, "the leader has not found node3 down for the period yet"
	})
	node1.n.fsm.Read(func(s *fsm.State) {
		if m := s.Nodes[node3.id()]; m == nil || m.Leaving || s.Reshare != nil {
			t.Errorf("node3 was removed with too few holders left (member %v, round %v)", m, s.Reshare)
		}
	})
	c.waitTolerances(node1, -1, 0)
}
