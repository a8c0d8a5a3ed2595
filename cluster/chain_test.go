package cluster

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestHonestReplicasNeverDiverge: the chain hash check (chain.go) never
// stops an honest replica, through what an honest cluster goes through: a
// follower's restart from its own snapshot and log, a follower that was
// away while the leader cut its log and gets the leader's snapshot, a
// leader change and the old leader's return, and a restart of every
// node. After each, every node answers as a holder, having compared its
// chain hash with the leader's (the comparison was made, not skipped).
func TestHonestReplicasNeverDiverge(t *testing.T) {
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 4
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.TrailingLogs = 2
	})
	c.createSecret("luks/a", randomBytes(t, 32))
	filled := 0
	fill := func(n int) {
		for range n {
			c.createSecret(fmt.Sprintf("filler/%d", filled), randomBytes(t, 16))
			filled++
		}
	}
	checkAll := func(phase string) {
		t.Helper()
		for _, tn := range c.running() {
			c.waitHasKey(tn, fmt.Sprintf("filler/%d", filled-1))
			before := tn.n.cons.chainChecks.Load()
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			_, err := tn.n.answerSealedPartial(ctx, c.holderRequest("luks/a", 0))
			cancel()
			if err != nil {
				t.Fatalf("%s: %s refused a holder's partial: %v", phase, tn.id(), err)
			}
			if tn.n.cons.chainChecks.Load() == before {
				t.Errorf("%s: %s answered without comparing its chain hash with the leader's", phase, tn.id())
			}
			if d := tn.n.cons.diverged.Load(); d != nil {
				t.Fatalf("%s: %s, honest, says it diverged: %s", phase, tn.id(), d)
			}
			if err := tn.n.Ready(); err != nil {
				t.Logf("%s: %s is not ready: %v", phase, tn.id(), err)
			}
		}
	}
	fill(8)
	checkAll("a new cluster with snapshots")

	leader := c.leader()
	follower := c.anyRunning(leader)
	c.stop(follower)
	c.restart(follower)
	fill(1)
	checkAll("a follower restarted from its own snapshot and log")

	c.stop(follower)
	var away uint64
	follower.n.fsm.Read(func(s *fsm.State) { away = s.Applied })
	fill(12)
	c.waitFor(settleTimeout, func() (bool, string) {
		first, err := c.leader().n.cons.current().store.FirstIndex()
		return err == nil && first > away+1, fmt.Sprintf("the leader's log starts at %d (%v), not yet past %d", first, err, away+1)
	})
	c.restart(follower)
	fill(1)
	checkAll("a follower restored from the leader's snapshot")

	leader = c.leader()
	c.stop(leader)
	fill(1)
	checkAll("a new leader")
	c.restart(leader)
	fill(1)
	checkAll("the old leader back")

	for _, tn := range c.nodes {
		c.stop(tn)
	}
	for _, tn := range c.nodes {
		c.restart(tn)
	}
	fill(1)
	checkAll("every node restarted")
}

// TestChainRingStateAt: a replica's chain hash at an index it applied is
// the one recorded there; at an index it skipped (an entry that never
// reached its state machine), the one after the entry it applied before;
// at one a snapshot jumped over, none.
func TestChainRingStateAt(t *testing.T) {
	r := newChainRing()
	h := func(i byte) []byte { return []byte{i} }
	for i := range uint64(3) {
		r.applied(i+1, h(byte(i+1)))
	}
	r.applied(10, h(10))
	r.restored(20, h(20))
	r.applied(21, h(21))
	for _, tc := range []struct {
		index uint64
		want  []byte
		ok    bool
	}{
		{2, h(2), true},
		{5, h(3), true}, // 4..9 never reached the state machine: its state there is the one after 3
		{10, h(10), true},
		{15, nil, false}, // the snapshot at 20 jumped over it
		{20, h(20), true},
		{21, h(21), true},
	} {
		got, ok := r.stateAt(tc.index)
		if ok != tc.ok || !bytes.Equal(got, tc.want) {
			t.Errorf("stateAt(%d) = %x, %v; want %x, %v", tc.index, got, ok, tc.want, tc.ok)
		}
	}
	fresh := newChainRing()
	fresh.applied(7, h(7))
	if got, ok := fresh.stateAt(3); !ok || len(got) != 0 {
		t.Errorf("before the first entry applied: %x, %v; want the empty chain", got, ok)
	}
}
