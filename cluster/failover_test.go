package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A leader that stops gracefully hands its leadership to another voter
// first: handOff alone, with the old leader still running and healthy,
// makes another node the ready leader (without it, a healthy leader stays
// leader), and the cluster releases through it.
func TestGracefulStopHandsLeadershipOver(t *testing.T) {
	t.Parallel()
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

// The default Raft timing is the LAN one (config.go), and SetRaftTiming
// keeps its proportions, which Raft and validate accept.
func TestRaftTimingProportions(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	if c.HeartbeatTimeout != 150*time.Millisecond || c.ElectionTimeout != 150*time.Millisecond || c.LeaderLeaseTimeout != 150*time.Millisecond {
		t.Fatalf("default timing %v/%v/%v, want 150ms/150ms/150ms", c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout)
	}
	c.SetRaftTiming(600 * time.Millisecond)
	if c.HeartbeatTimeout != 600*time.Millisecond || c.ElectionTimeout != 600*time.Millisecond || c.LeaderLeaseTimeout != 600*time.Millisecond {
		t.Fatalf("timing %v/%v/%v, want 600ms/600ms/600ms", c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout)
	}
	c.NodeID, c.DataDir, c.RaftAddr, c.GossipAddr, c.APIAddr = "n1", t.TempDir(), "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
}
