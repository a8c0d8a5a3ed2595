//go:build keyquorum_clock_offset

package cluster

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// A build for the jepsen suite's clock nemesis: the node's wall clock
// (now) runs ahead by the duration written in the file named by
// KEYQUORUM_TEST_CLOCK_OFFSET_FILE ("0s" or absent: none), read again at
// most every 100 ms. The monotonic clock (timeouts, Raft's timers) is
// untouched, as when an operator's NTP goes wrong. Each change is
// written to stderr so that the suite sees it took effect. Never ship it.

// EnvTestClockOffsetFile names the offset file.
const EnvTestClockOffsetFile = "KEYQUORUM_TEST_CLOCK_OFFSET_FILE"

var testClock struct {
	mu     sync.Mutex
	path   string
	read   time.Time
	offset time.Duration
}

func init() {
	testClock.path = os.Getenv(EnvTestClockOffsetFile)
	if testClock.path == "" {
		return
	}
	now = func() time.Time {
		t := time.Now()
		return t.Add(clockOffset(t))
	}
}

func clockOffset(t time.Time) time.Duration {
	c := &testClock
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Sub(c.read) < 100*time.Millisecond {
		return c.offset
	}
	c.read = t
	off := time.Duration(0)
	if b, err := os.ReadFile(c.path); err == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
			off = d
		}
	}
	if off != c.offset {
		fmt.Fprintf(os.Stderr, "keyquorum test build: the clock is now %v ahead\n", off)
		c.offset = off
	}
	return c.offset
}
