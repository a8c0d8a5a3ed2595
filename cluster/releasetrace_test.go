package cluster

import (
	"testing"
)

// TestReleaseTraceRecordsTheSteps: with the trace on (keyd --debug-addr,
// keybench -trace), a release through the leader leaves its steps on the
// coordinator and on the other holder, under the request's name, and
// TakeReleaseTrace empties the trace. It sets the process-wide trace, so
// it does not run in parallel.
func TestReleaseTraceRecordsTheSteps(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createSecret("traced", randomBytes(t, 32))
	leader := c.leader()
	for _, tn := range c.running() {
		c.waitHasKey(tn, "traced")
	}
	EnableReleaseTrace()
	t.Cleanup(func() { releaseTrace.Store(nil) })
	TakeReleaseTrace()
	sg := c.releaseRequest("traced")
	if _, err := c.releaseSigned(leader, sg); err != nil {
		t.Fatal(err)
	}
	id := traceID(sg)
	seen := map[string]bool{}
	for _, s := range TakeReleaseTrace() {
		if s.End < s.Start {
			t.Errorf("step %q on %s ends before it starts", s.Step, s.Node)
		}
		if s.Req == id {
			seen[s.Step] = seen[s.Step] || s.Node != leader.id() || s.Step == "coordinator: read ahead"
		}
	}
	for _, step := range []string{"coordinator: read ahead", "holder: the whole answer", "holder: partial", "holder: seal"} {
		if !seen[step] {
			t.Errorf("no step %q recorded for the release (%v)", step, seen)
		}
	}
	if left := TakeReleaseTrace(); len(left) != 0 {
		t.Errorf("%d steps left after they were taken", len(left))
	}
}
