package cluster

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
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

// A write that reaches the leader while it hands its leadership over is
// refused by Raft before it is logged (raft.ErrLeadershipTransferInProgress):
// it surely did not happen, so it is sent again, to whichever node leads
// once the transfer ends, as a write refused by a node that is not the
// leader is. Proposed on the leader, it was returned as it came, an error
// of no kind, which the gateways answer as an internal error; forwarded by
// a follower, it was answered as an unknown outcome. Here the transfer
// goes to a stopped voter that lacks the last entry, so it lasts the
// election timeout and fails: a write sent through the follower that runs,
// and one sent to the leader, each during the transfer, are committed.
//
// One transfer a cluster: hashicorp/raft v1.7 leaves a failed transfer's
// request to replicate to the stopped voter queued, and a second transfer
// to it then waits out that replication's backoff (seconds), refusing
// every write meanwhile. A node hands its leadership over once, as it
// stops (TestGracefulStopHandsLeadershipOver).
func TestWriteDuringLeadershipTransferIsSentAgain(t *testing.T) {
	t.Parallel()
	for _, through := range []string{"follower", "leader"} {
		t.Run("through the "+through, func(t *testing.T) {
			t.Parallel()
			c := newTestCluster(t, 3)
			ld := c.leader()
			target := c.anyRunning(ld)
			c.stop(target)
			via := ld
			if through == "follower" {
				via = c.anyRunning(ld) // the follower that runs
			}
			c.createSecret("behind", randomBytes(t, 32)) // the target lacks it
			ct, err := shamir.Seal(rand.Reader, c.status(ld).PublicKey, fsm.SealInfo(c.clusterID, "during"), randomBytes(t, 32))
			if err != nil {
				t.Fatal(err)
			}
			write := c.sign(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
				Name: "during", Type: fsm.KeyTypeSecret, R: ct.R, Sealed: ct.Sealed}})
			f := ld.n.cons.current().raft.LeadershipTransferToServer(raft.ServerID(target.id()), raft.ServerAddress(target.cfg.RaftAddr))
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			_, err = via.n.Submit(ctx, write)
			cancel()
			if err != nil {
				t.Fatalf("the write sent to %s during the transfer: %v (kind %s)", via.id(), err, KindOf(err))
			}
			if err := f.Error(); err == nil {
				t.Fatalf("the leadership went to the stopped %s", target.id())
			}
		})
	}
}
