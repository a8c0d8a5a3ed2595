//go:build keyquorum_clock_offset

package cluster

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The jepsen build's clock follows the offset file while the node runs,
// and goes back when the file says 0s.
func TestClockOffsetFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock")
	testClock.path, testClock.read, testClock.offset = path, time.Time{}, 0
	if err := os.WriteFile(path, []byte("1h"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d := clockOffset(time.Now()); d != time.Hour {
		t.Errorf("offset = %v, want 1h", d)
	}
	if err := os.WriteFile(path, []byte("0s"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d := clockOffset(time.Now().Add(time.Second)); d != 0 {
		t.Errorf("offset after 0s = %v, want 0", d)
	}
}
