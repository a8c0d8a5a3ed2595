package cluster

import (
	"runtime/debug"
	"testing"
)

// TestLargeSnapshotSetsGCPercent: once a node writes or restores a
// snapshot of freeAfterSnapshot bytes or more, the collector runs at
// largeStateGCPercent, unless the operator set GOGC or GOMEMLIMIT; a
// smaller snapshot changes nothing. It sets the process's GC percent, so
// it does not run in parallel.
func TestLargeSnapshotSetsGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	gcPercent := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
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
