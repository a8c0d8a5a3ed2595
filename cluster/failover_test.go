package cluster

import (
	"testing"

	"github.com/hashicorp/raft"
)

// A leader that stops gracefully hands its leadership to another voter
// first: handOff alone, with the old leader still running and healthy,
// makes another node the ready leader (without it, a healthy leader stays
// leader), and the cluster releases through it.
func TestGracefulStopHandsLeadershipOver(t *testing.T) {
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("handoff", secret)
	old := c.leader()
	old.n.cons.handOff()
	var next *testNode
	if !c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range c.members() {
			if tn != old && tn.n.raftState() == raft.Leader && tn.n.cons.leaderReady.Load() {
				next = tn
				return true, ""
			}
		}
		return false, "no other node leads after the hand-off"
	}) {
		t.Fatalf("%s handed over, but no other node became a ready leader", old.id())
	}
	if old.n.raftState() == raft.Leader {
		t.Fatalf("%s still leads after handing over to %s", old.id(), next.id())
	}
	c.stop(old)
	if got := c.mustRelease(c.anyRunning(), "handoff"); string(got) != string(secret) {
		t.Fatal("the release after the hand-off returned another secret")
	}
}
