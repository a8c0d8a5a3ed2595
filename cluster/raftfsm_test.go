package cluster

import (
	"encoding/json"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

// TestRaftFSMApplyBatch: Raft hands the state machine batches of
// committed entries (raft.BatchingFSM), its own configuration entries
// among them; each command gets the Result Apply would give it, in
// order, a configuration entry none, every command's chain hash is
// recorded, and the applied index is the last command's.
func TestRaftFSMApplyBatch(t *testing.T) {
	t.Parallel()
	newFSM := func() *raftFSM {
		f := fsm.New(dealChecker{})
		f.TokenWrites = WriteTokenCheck
		return newRaftFSM(f, slog.New(slog.DiscardHandler), metrics.New())
	}
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: []byte("{}")},
		{Index: 2, Type: raft.LogConfiguration, Data: []byte("not a command")},
		{Index: 3, Type: raft.LogCommand, Data: []byte("not JSON")},
		{Index: 4, Type: raft.LogCommand, Data: []byte(`{"signer":"nobody"}`)},
		{Index: 5, Type: raft.LogConfiguration},
	}
	one := newFSM()
	var want []any
	for _, l := range logs {
		if l.Type == raft.LogCommand {
			want = append(want, one.Apply(l))
		} else {
			want = append(want, nil)
		}
	}
	r := newFSM()
	got := r.ApplyBatch(logs)
	if len(got) != len(logs) {
		t.Fatalf("%d results for %d entries", len(got), len(logs))
	}
	for i := range logs {
		g, _ := json.Marshal(got[i])
		w, _ := json.Marshal(want[i])
		if string(g) != string(w) {
			t.Errorf("entry %d: %s in a batch, %s one at a time", logs[i].Index, g, w)
		}
	}
	if applied, _ := r.watch(); applied != 4 {
		t.Errorf("applied index %d after the batch, want 4 (its last command)", applied)
	}
	for _, i := range []uint64{1, 3, 4} {
		g, ok := r.stateChainAt(i)
		w, _ := one.stateChainAt(i)
		if !ok || string(g) != string(w) {
			t.Errorf("the chain hash at %d is not recorded as one at a time records it", i)
		}
	}
}

// TestRestoreCollectsLess: a restore runs at restoreGCPercent, and after
// it the collector is back where it was, or at largeStateGCPercent when
// the state is large; with GOGC or GOMEMLIMIT set (the operator's
// choice) it is left alone. Not parallel: it sets the environment and
// the process's GC percent.
func TestRestoreCollectsLess(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, c := range []struct {
		large bool
		after int
	}{{false, 100}, {true, largeStateGCPercent}} {
		debug.SetGCPercent(100)
		done := collectLess()
		if got := gcPercent(); got != restoreGCPercent {
			t.Fatalf("during a restore: GOGC %d, want %d", got, restoreGCPercent)
		}
		done(c.large)
		if got := gcPercent(); got != c.after {
			t.Fatalf("after a restore (large %v): GOGC %d, want %d", c.large, got, c.after)
		}
	}
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "100")
			debug.SetGCPercent(100)
			done := collectLess()
			if got := gcPercent(); got != 100 {
				t.Fatalf("with %s set, during a restore: GOGC %d, want it untouched", env, got)
			}
			done(true)
			if got := gcPercent(); got != 100 {
				t.Fatalf("with %s set, after a restore: GOGC %d, want it untouched", env, got)
			}
		})
	}
}

// TestRestoreMemoryWorkWaitsUntilCaughtUp: the memory work a restore
// leaves (settleAfterRestore) runs once the node has applied the last
// entry its log held after the snapshot, not among those applies, and
// only once however often it is asked for (at the catch-up and at
// settleAtTheLatest).
func TestRestoreMemoryWorkWaitsUntilCaughtUp(t *testing.T) {
	t.Parallel()
	f := fsm.New(dealChecker{})
	f.TokenWrites = WriteTokenCheck
	r := newRaftFSM(f, slog.New(slog.DiscardHandler), metrics.New())
	done := make(chan struct{})
	r.caughtUp.index, r.caughtUp.since = 3, time.Now()
	r.caughtUp.settle = func() { close(done) } // closing twice panics
	for i := uint64(1); i <= 2; i++ {
		r.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: []byte("{}")})
	}
	time.Sleep(20 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("the restore's memory work ran before the node applied the log it held")
	default:
	}
	r.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: []byte("{}")})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the restore's memory work did not run once the node caught up")
	}
	r.Apply(&raft.Log{Index: 4, Type: raft.LogCommand, Data: []byte("{}")})

	calls := 0
	settle := settleAfterRestore(func(bool) { calls++ }, false, 0)
	settle()
	settle()
	if calls != 1 {
		t.Errorf("the memory work ran %d times, want once", calls)
	}
}

// TestRestoreSettlesTheEarlierRestoreFirst: a restore that comes while
// an earlier one's memory work still waits for the catch-up (a snapshot
// installed from the leader, say) does that work first, before it sets
// the collector's percent for itself: done after, it would set the
// percent the new restore saved back to the restore's, for good. Not
// parallel: it sets the environment and the process's GC percent.
func TestRestoreSettlesTheEarlierRestoreFirst(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	f := fsm.New(dealChecker{})
	f.TokenWrites = WriteTokenCheck
	r := newRaftFSM(f, slog.New(slog.DiscardHandler), metrics.New())
	debug.SetGCPercent(100)
	earlier := collectLess() // an earlier restore's, its memory work pending
	ran := false
	r.caughtUp.index, r.caughtUp.since = 10, time.Now()
	r.caughtUp.settle = settleAfterRestore(func(large bool) { ran = true; earlier(large) }, false, 0)
	if err := r.Restore(io.NopCloser(strings.NewReader("not a snapshot"))); err == nil {
		t.Fatal("restored a snapshot that is none")
	}
	if !ran {
		t.Fatal("the earlier restore's memory work did not run at the next restore")
	}
	if got := gcPercent(); got != 100 {
		t.Errorf("GOGC %d after the two restores, want 100, where it was before them", got)
	}
}

// gcPercent is the process's GC percent, left as it was.
func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}
