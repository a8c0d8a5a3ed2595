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

// pendingIn says how node tn's state machine sees member m: waiting for
// its promotion, holding a share, and whether a round is in progress.
func pendingIn(tn, m *testNode) (pending, holder, round bool) {
	tn.n.fsm.Read(func(s *fsm.State) {
		if n := s.Nodes[m.id()]; n != nil {
			pending, holder = n.Pending, n.Holder
		}
		round = s.Reshare != nil
	})
	return pending, holder, round
}

// newStablePeriodCluster is a cluster of one member with its key (node1)
// and a second node (node2), not started, whose stable period as a new
// member is a minute of the leader's clock, a fake one that the test moves.
func newStablePeriodCluster(t *testing.T) (c *testCluster, clock *fakeClock, node1, node2 *testNode) {
	clock = &fakeClock{now: time.Now()}
	c = newEmptyCluster(t)
	c.configure = func(cfg *Config) { cfg.PromoteAfter = time.Minute }
	for range 2 {
		c.addNode().n.cons.now = clock.Now
	}
	c.initFirst(1)
	return c, clock, c.nodes[0], c.nodes[1]
}

// startNonVoter starts tn and adds it to the cluster (add_node), which
// makes it a Raft non-voter waiting for its stable period.
func (c *testCluster) startNonVoter(tn *testNode) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := tn.n.Start(ctx, c.startRequest(tn)); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddNode, AddNode: c.nodeRecord(tn)}); err != nil {
		c.t.Fatal(err)
	}
}

// TestNewMemberIsPromotedAfterItsStablePeriod: a node that joins once the
// cluster has its key enters Raft as a non-voter (status shows it, and it
// does not count in the quorum's tolerance) and waits in no resharing
// round, holding nothing, however long it has been caught up, while the
// leader's clock has not passed the stable period since it first saw it
// answer; once it has, the leader promotes it to voter, and only then does
// the round that gives it a share start: the state never shows it
// promoted while Raft still has it a non-voter.
func TestNewMemberIsPromotedAfterItsStablePeriod(t *testing.T) {
	t.Parallel()
	c, clock, node1, node2 := newStablePeriodCluster(t)
	c.startNonVoter(node2)
	c.waitFor(settleTimeout, func() (bool, string) {
		got := c.suffrage(node2)
		return got == raft.Nonvoter.String(), fmt.Sprintf("node2 is %q in Raft, want a non-voter", got)
	})
	c.waitFor(settleTimeout, func() (bool, string) {
		_, _, ok := node1.n.cons.stableSince(node2.id())
		return ok, "the leader has not seen node2 answer"
	})
	st := c.status(node1)
	for _, m := range st.Members {
		if m.ID == node2.id() && (m.Voter || !m.Pending || m.Holder) {
			t.Fatalf("status shows node2 %+v before its stable period, want a pending non-voter holding nothing", m)
		}
	}
	if st.QuorumTolerance != 0 || st.Epoch != 1 || st.Resharing != nil {
		t.Fatalf("quorum tolerance %d, epoch %d, round %v with one voter: want 0, 1 and no round", st.QuorumTolerance, st.Epoch, st.Resharing)
	}
	if got := c.suffrage(node2); got != raft.Nonvoter.String() {
		t.Fatalf("node2 is %q before the leader's clock passed the stable period", got)
	}
	// Each poll moves the clock past another stable period: a call to
	// node2 that failed or was late (a busy machine) starts the period
	// again at the clock's time, which would otherwise never move past it.
	c.waitFor(settleTimeout, func() (bool, string) {
		clock.Advance(2 * time.Minute)
		pending, _, round := pendingIn(node1, node2)
		got := c.suffrage(node2) // read after the state: a promotion in it follows Raft's
		if (!pending || round) && got != raft.Voter.String() {
			t.Fatalf("node2 promoted in the state (pending %v, round %v) while Raft has it %q", pending, round, got)
		}
		return !pending, fmt.Sprintf("node2 is %q in Raft, pending %v", got, pending)
	})
	st = c.waitSettled(1)
	for _, m := range st.Members {
		if m.ID == node2.id() && (!m.Holder || m.Pending) {
			t.Fatalf("after its promotion node2 is %+v, want a holder", m)
		}
	}
}

// TestNewMemberIsPromotedOnlyOnceItsStateMachineHasCaughtUp: a joining
// node whose Raft log has the entries but whose state machine has not
// applied them (a node stalled in its catch-up) is never promoted, however
// far past its stable period the leader's clock moves, although it
// answers every poll: Raft's applied index, which counts the entries
// queued for the state machine, says it has them all. Once it applies
// them it is promoted with no second period: the period ran while it
// answered and caught up.
func TestNewMemberIsPromotedOnlyOnceItsStateMachineHasCaughtUp(t *testing.T) {
	t.Parallel()
	c, clock, node1, node2 := newStablePeriodCluster(t)
	c.createSecret("db/stalled", randomBytes(t, 32))
	resume := c.holdApplies(node2)
	c.startNonVoter(node2)
	var leaderApplied uint64
	node1.n.fsm.Read(func(s *fsm.State) { leaderApplied = s.Applied })
	c.waitFor(settleTimeout, func() (bool, string) {
		got := node2.n.cons.appliedIndex()
		return got >= leaderApplied, fmt.Sprintf("node2's Raft has applied %d, the leader's state machine %d", got, leaderApplied)
	})
	c.waitFor(settleTimeout, func() (bool, string) {
		_, _, ok := node1.n.cons.stableSince(node2.id())
		return ok, "the leader has not seen node2 answer"
	})
	clock.Advance(time.Hour)
	_, polls, _ := node1.n.cons.stableSince(node2.id())
	c.waitFor(settleTimeout, func() (bool, string) {
		_, now, ok := node1.n.cons.stableSince(node2.id())
		if got := c.suffrage(node2); got != raft.Nonvoter.String() {
			t.Fatalf("node2, whose state machine has applied nothing, is %q in Raft", got)
		}
		if !ok {
			t.Fatal("the leader saw node2, which answers, stop answering")
		}
		return now >= polls+2*promoteKeptUp, fmt.Sprintf("the leader polled node2 %d times past its period, want %d", now-polls, 2*promoteKeptUp)
	})
	if got := c.suffrage(node2); got != raft.Nonvoter.String() {
		t.Fatalf("node2, whose state machine has applied nothing, is %q in Raft", got)
	}
	if pending, holder, round := pendingIn(node1, node2); !pending || holder || round {
		t.Fatalf("node2, whose state machine has applied nothing: pending %v, holder %v, round %v", pending, holder, round)
	}

	resume()
	c.waitVoter(node2)
	c.waitSettled(1)
}

// TestNewMemberThatFailsItsStablePeriodIsNeverAHolder: a joining node
// that goes down during its stable period is never promoted, however far
// the leader's clock moves: it stays a non-voter in no round, holding
// nothing, and the cluster releases without it. Back up (a node that
// flaps), its stable period starts again; an admin's removal of a node
// still waiting drops it at once, with no resharing.
func TestNewMemberThatFailsItsStablePeriodIsNeverAHolder(t *testing.T) {
	t.Parallel()
	c, clock, node1, node2 := newStablePeriodCluster(t)
	secret := randomBytes(t, 32)
	c.createSecret("db/flap", secret)
	c.startNonVoter(node2)
	c.waitFor(settleTimeout, func() (bool, string) {
		_, _, ok := node1.n.cons.stableSince(node2.id())
		return ok, "the leader has not seen node2 caught up"
	})
	c.stop(node2)
	c.waitFor(settleTimeout, func() (bool, string) {
		_, _, ok := node1.n.cons.stableSince(node2.id())
		return !ok, "the leader has not seen node2 down"
	})
	clock.Advance(time.Hour)
	// A write makes the leader look at its members again (and so would
	// its one-second tick): a node that is down is never caught up.
	c.createSecret("db/flap2", secret)
	if got := c.mustRelease(node1, "db/flap"); string(got) != string(secret) {
		t.Fatal("released another secret")
	}
	if got := c.suffrage(node2); got != raft.Nonvoter.String() {
		t.Fatalf("node2, down during its stable period, is %q in Raft", got)
	}
	if pending, holder, round := pendingIn(node1, node2); !pending || holder || round {
		t.Fatalf("node2, down during its stable period: pending %v, holder %v, round %v", pending, holder, round)
	}

	// Back up: the stable period starts again, at the leader's clock now.
	c.restart(node2)
	c.waitFor(settleTimeout, func() (bool, string) {
		since, _, ok := node1.n.cons.stableSince(node2.id())
		return ok && !since.Before(clock.Now()), "the leader has not seen node2 caught up again"
	})
	if got := c.suffrage(node2); got != raft.Nonvoter.String() {
		t.Fatalf("node2, back for less than its stable period, is %q in Raft", got)
	}
	if pending, _, _ := pendingIn(node1, node2); !pending {
		t.Fatal("node2, back for less than its stable period, was promoted")
	}

	// Removed while it waits: it leaves at once, and no round starts.
	epoch := c.status(node1).Epoch
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRemoveNode, RemoveNode: node2.id()}); err != nil {
		t.Fatal(err)
	}
	node1.n.fsm.Read(func(s *fsm.State) {
		if s.Nodes[node2.id()] != nil || s.Reshare != nil || s.Epoch != epoch {
			t.Errorf("after removing the waiting node2: member %v, round %v, epoch %d (was %d)", s.Nodes[node2.id()], s.Reshare, s.Epoch, epoch)
		}
	})
	c.waitFor(settleTimeout, func() (bool, string) {
		got := c.suffrage(node2)
		return got == "", fmt.Sprintf("node2 is still %q in Raft", got)
	})
}

// TestLeaderThatNeverPromotesCostsOnlyAvailability: leaders that withhold
// promote_node (every node here, the new one too) leave a joined node a
// Raft voter that waits, in no round and holding nothing, for as long as
// they withhold it; the cluster releases as before, at the same epoch.
// Once a leader promotes it (the hold lifted, as a new honest leader
// would), it gets its share.
func TestLeaderThatNeverPromotesCostsOnlyAvailability(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("db/held", secret)
	n4 := c.addNode()
	for _, tn := range c.nodes {
		tn.n.promoteHeld.Store(true)
	}
	before := c.status(c.nodes[0]).Epoch
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := n4.n.Start(ctx, c.startRequest(n4)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddNode, AddNode: c.nodeRecord(n4)}); err != nil {
		t.Fatal(err)
	}
	c.waitVoter(n4)
	if got := c.mustRelease(c.nodes[0], "db/held"); string(got) != string(secret) {
		t.Fatal("released another secret while node4 waits")
	}
	st := c.status(c.nodes[0])
	for _, m := range st.Members {
		if m.ID == n4.id() && (!m.Pending || m.Holder) {
			t.Fatalf("node4, never promoted by the leader, is %+v: want waiting, holding nothing", m)
		}
	}
	if st.Epoch != before || st.Resharing != nil || st.N != 3 {
		t.Fatalf("epoch %d (was %d), round %v, %d holders while node4 waits: want no change", st.Epoch, before, st.Resharing, st.N)
	}

	for _, tn := range c.nodes {
		tn.n.promoteHeld.Store(false)
	}
	st = c.waitSettled(before)
	if st.N != 4 {
		t.Fatalf("after the promotion: %d holders, want 4", st.N)
	}
	if got := c.mustRelease(n4, "db/held"); string(got) != string(secret) {
		t.Fatal("node4 released another secret")
	}
}
