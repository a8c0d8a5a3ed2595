package cluster

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A secret created through the leader can be released at once through
// every follower: the followers learn that the command is committed from
// the barrier the leader appends after applying it (tellCommits), not
// from the commit timeout, here set longer than any release may take.
func TestFollowersApplyCommandsWithoutTheCommitTimeout(t *testing.T) {
	t.Parallel()
	c := newTestClusterWith(t, 3, func(cfg *Config) { cfg.commitTimeout = time.Hour })
	for i := range 3 {
		name := fmt.Sprintf("told/%d", i)
		secret := randomBytes(t, 32)
		c.createSecret(name, secret)
		for _, tn := range c.members() {
			if tn == c.leader() {
				continue
			}
			if got := c.mustRelease(tn, name); !bytes.Equal(got, secret) {
				t.Fatalf("%s released another secret for %q", tn.id(), name)
			}
		}
	}
}

// A leader heartbeats at half a follower's pace (paceHeartbeats), and a
// node that stops being leader gets the configured heartbeat timeout
// back, the one that decides when it stands for election.
func TestOnlyTheLeaderHeartbeatsAtHalfPace(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	paced := func(want *testNode) (bool, string) {
		for _, tn := range c.members() {
			got := tn.n.cons.current().raft.ReloadableConfig()
			hb, el := tn.cfg.HeartbeatTimeout, tn.cfg.ElectionTimeout
			if tn == want {
				hb, el = leaderHeartbeatFactor*hb, max(el, leaderHeartbeatFactor*hb)
			}
			if got.HeartbeatTimeout != hb || got.ElectionTimeout != el {
				return false, fmt.Sprintf("%s (%s) has heartbeat and election timeouts %v and %v, want %v and %v",
					tn.id(), tn.n.raftState(), got.HeartbeatTimeout, got.ElectionTimeout, hb, el)
			}
		}
		return true, ""
	}
	old := c.leader()
	c.waitFor(settleTimeout, func() (bool, string) { return paced(old) })
	if err := old.n.cons.current().raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		if l := c.leader(); l == old || l.n.raftState() != raft.Leader {
			return false, "leadership has not moved"
		}
		return paced(c.leader())
	})
}
