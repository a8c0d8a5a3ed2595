package vocab

import (
	"testing"
	"time"
)

// TestWaitPreference: the Prefer header's wait, as a machine sends it and
// among other preferences, bounded by the node's maximum; anything else is
// no wait.
func TestWaitPreference(t *testing.T) {
	limit := 25 * time.Second
	for _, c := range []struct {
		header string
		want   time.Duration
	}{
		{WaitPreference(10 * time.Second), 10 * time.Second},
		{WaitPreference(time.Hour), limit},
		{WaitPreference(time.Millisecond), time.Second}, // at least a second
		{"respond-async, wait=5", 5 * time.Second},
		{"return=minimal; foo=bar, WAIT = \"7\"", 7 * time.Second},
		{"", 0},
		{"wait", 0},
		{"wait=-1", 0},
		{"wait=1.5", 0},
		{"wait=99999999999999999999", 0},
		{"handling=lenient", 0},
	} {
		if got := ParseWaitPreference(c.header, limit); got != c.want {
			t.Errorf("Prefer: %q = %v, want %v", c.header, got, c.want)
		}
	}
}

// FuzzParseWaitPreference: any Prefer header reads as a wait from 0 to the
// maximum, in whole seconds, without failing.
func FuzzParseWaitPreference(f *testing.F) {
	for _, seed := range []string{"wait=10", "respond-async, wait=5", "wait=", "wait=\"", ",,;;==", "wait=4294967296"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		got := ParseWaitPreference(header, 25*time.Second)
		if got < 0 || got > 25*time.Second || got%time.Second != 0 {
			t.Fatalf("Prefer: %q = %v, want whole seconds from 0 to 25s", header, got)
		}
	})
}
