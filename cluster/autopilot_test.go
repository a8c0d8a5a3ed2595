package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

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
	t.Parallel()
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

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// suffrage is tn's suffrage in the leader's Raft configuration, or "".
func (c *testCluster) suffrage(tn *testNode) string {
	for _, s := range c.leader().n.servers() {
		if string(s.ID) == tn.id() {
			return s.Suffrage.String()
		}
	}
	return ""
}

// TestNewMemberIsPromotedAfterItsStablePeriod: a node that joins enters
// Raft as a non-voter (status shows it, and it does not count in the
// quorum's tolerance) and stays one, however long it has been caught up,
// while the leader's clock has not passed the stable period since it saw
// it caught up; once it has,
// the leader promotes it to voter.
func TestNewMemberIsPromotedAfterItsStablePeriod(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Now()}
	c := newEmptyCluster(t)
	c.configure = func(cfg *Config) { cfg.PromoteAfter = time.Minute }
	for range 2 {
		c.addNode().n.cons.now = clock.Now
	}
	c.initFirst(1)
	node2 := c.nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := node2.n.Start(ctx, c.startRequest(node2)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddNode, AddNode: c.nodeRecord(node2)}); err != nil {
		t.Fatal(err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		got := c.suffrage(node2)
		return got == raft.Nonvoter.String(), fmt.Sprintf("node2 is %q in Raft, want a non-voter", got)
	})
	c.waitFor(settleTimeout, func() (bool, string) {
		_, ok := c.nodes[0].n.cons.stableSince(node2.id())
		return ok, "the leader has not seen node2 caught up"
	})
	st := c.status(c.nodes[0])
	for _, m := range st.Members {
		if m.ID == node2.id() && m.Voter {
			t.Fatal("status shows node2 a voter before its stable period")
		}
	}
	if st.QuorumTolerance != 0 {
		t.Fatalf("quorum tolerance %d with one voter, want 0", st.QuorumTolerance)
	}
	if got := c.suffrage(node2); got != raft.Nonvoter.String() {
		t.Fatalf("node2 is %q before the leader's clock passed the stable period", got)
	}
	// Each poll moves the clock past another stable period: a check that
	// found node2 behind the leader's moving applied index (a busy
	// machine) starts the period again at the clock's time, which would
	// otherwise never move past it.
	c.waitFor(settleTimeout, func() (bool, string) {
		clock.Advance(2 * time.Minute)
		got := c.suffrage(node2)
		return got == raft.Voter.String(), fmt.Sprintf("node2 is %q in Raft, want a voter", got)
	})
}
