package cluster

import (
	"log/slog"
	"runtime/debug"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

// TestLargeSnapshotSetsGCPercent: once a node writes or restores a
// snapshot of freeAfterSnapshot bytes or more, the collector runs at
// largeStateGCPercent, unless the operator set GOGC or GOMEMLIMIT; a
// smaller snapshot changes nothing. It sets the process's GC percent, so
// it does not run in parallel.
func TestLargeSnapshotSetsGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, c := range []struct {
		name      string
		gogc, lim string
		n         int64
		wantAfter int
	}{
		{"small snapshot", "", "", freeAfterSnapshot - 1, 100},
		{"large snapshot", "", "", freeAfterSnapshot, largeStateGCPercent},
		{"large snapshot, GOGC set", "100", "", freeAfterSnapshot, 100},
		{"large snapshot, GOMEMLIMIT set", "", "1GiB", freeAfterSnapshot, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GOGC", c.gogc)
			t.Setenv("GOMEMLIMIT", c.lim)
			debug.SetGCPercent(100)
			returnFreedMemory(c.n)
			if got := gcPercent(); got != c.wantAfter {
				t.Errorf("GC percent %d after a snapshot of %d bytes, want %d", got, c.n, c.wantAfter)
			}
		})
	}
}

// TestManyKeysSetGCPercent: a node whose state reaches largeKeys keys
// takes the memory policy of a large state at that Apply, without
// waiting for a snapshot (a bulk load brings few entries, and so no
// snapshot); below it, nothing changes. It sets the process's GC
// percent, so it does not run in parallel.
func TestManyKeysSetGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	newFSM := func(largeKeys int) *raftFSM {
		f := fsm.New(dealChecker{})
		f.TokenWrites = WriteTokenCheck
		r := newRaftFSM(f, slog.New(slog.DiscardHandler), metrics.New())
		r.largeKeys = largeKeys
		return r
	}
	debug.SetGCPercent(100)
	below := newFSM(1) // and no key
	below.Apply(&raft.Log{Index: 1, Data: []byte("{}")})
	if got := gcPercent(); got != 100 || below.large.Load() {
		t.Fatalf("GC percent %d after an apply below the keys, want 100", got)
	}
	r := newFSM(0)
	r.Apply(&raft.Log{Index: 1, Data: []byte("{}")})
	for gcPercent() != largeStateGCPercent { // set by a goroutine
		if !r.large.Load() {
			t.Fatal("an apply at the keys did not take the large state's policy")
		}
		time.Sleep(time.Millisecond)
	}
}
