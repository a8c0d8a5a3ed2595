package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// TestPartitionedLeaderStopsServingAndARevokeHolds: the leader is cut off
// from both followers, in memory. It stops serving releases (no quorum,
// not a stale answer); the majority elects a leader and revokes the key;
// neither side releases it afterwards, and once the network heals the old
// leader refuses it too.
func TestPartitionedLeaderStopsServingAndARevokeHolds(t *testing.T) {
	t.Parallel()
	network := newMemNetwork()
	c := newTestClusterWith(t, 3, func(cfg *Config) { cfg.Network = network.node(cfg.RaftAddr) })
	secret := randomBytes(t, 32)
	c.createSecret("app/partitioned", secret)
	old := c.leader()
	var majority []*testNode
	var majorityAddrs []string
	for _, tn := range c.nodes {
		if tn != old {
			majority = append(majority, tn)
			majorityAddrs = append(majorityAddrs, tn.cfg.RaftAddr)
		}
	}
	for _, tn := range c.nodes {
		if got := c.mustRelease(tn, "app/partitioned"); !bytes.Equal(got, secret) {
			t.Fatalf("%s released other bytes before the partition", tn.id())
		}
	}

	network.partition([]string{old.cfg.RaftAddr}, majorityAddrs)

	if got, err := c.release(old, "app/partitioned"); err == nil {
		t.Fatalf("the cut-off leader released %d bytes", len(got))
	} else if KindOf(err) != KindNoQuorum {
		t.Errorf("release through the cut-off leader: %v (kind %s), want %s", err, KindOf(err), KindNoQuorum)
	}

	var leader *testNode
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range majority {
			if tn.n.raftState() == raft.Leader && tn.n.cons.leaderReady.Load() {
				leader = tn
				return true, ""
			}
		}
		return false, "the majority has no ready leader"
	})
	c.revoke(leader, "app/partitioned")
	for _, tn := range c.nodes {
		if got, err := c.release(tn, "app/partitioned"); err == nil {
			t.Errorf("%s released %d bytes after the revoke during the partition", tn.id(), len(got))
		}
	}

	network.heal()
	c.waitFor(settleTimeout, func() (bool, string) {
		_, err := c.release(old, "app/partitioned")
		return KindOf(err) == KindDenied, "the old leader, healed, does not refuse the revoked key yet"
	})
}
