package cli

import (
	"bytes"
	"fmt"
	"github.com/keyquorum/keyquorum/golden"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// at is the fixed time of the golden outputs' inputs.
var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// goldenStatus is a three-node cluster, as node-2 sees it, in the middle
// of a resharing to a fourth node, node-3 unreachable, node-1 holding
// an assembled key in memory, node-4 diverged (cluster/chain.go), and
// node-5 a new member waiting for its promotion (docs/autopilot.md).
func goldenStatus() *api.Status {
	return &api.Status{
		ClusterID: "kq-7f3a", Node: "node-2", Leader: "node-1", Epoch: 4, N: 3, Threshold: 2, InitialNodes: 3,
		PublicKey: bytes.Repeat([]byte{0xA0}, 32), Applied: 1207, FailureTolerance: 0, QuorumTolerance: 1, RemoveDeadAfter: 5 * time.Minute,
		Resharing: &api.RoundStatus{Round: 1200, Threshold: 3, Members: []string{"node-1", "node-2", "node-3", "node-4"}, Deals: 1, Needed: 2, Acks: 0},
		Members: []api.MemberStatus{
			{ID: "node-1", APIAddr: "10.0.0.1:8443", RaftAddr: "10.0.0.1:7000", Index: 1, Holder: true, Voter: true, RaftState: "Leader", Applied: 1207, Health: "alive",
				Held: []api.HeldKey{{Name: "tls/www", Gateway: "tlv", Version: 2, Until: at.Add(5 * time.Minute)}}},
			{ID: "node-2", APIAddr: "10.0.0.2:8443", RaftAddr: "10.0.0.2:7000", Index: 2, Holder: true, Voter: true, RaftState: "Follower", Applied: 1207, Health: "alive"},
			{ID: "node-3", APIAddr: "10.0.0.3:8443", RaftAddr: "10.0.0.3:7000", Index: 3, Holder: true, Voter: true, Leaving: true, RaftState: "unreachable", Health: "suspect"},
			{ID: "node-4", APIAddr: "10.0.0.4:8443", RaftAddr: "10.0.0.4:7000", Index: 4, RaftState: "Follower", Applied: 1199, Health: "alive",
				Diverged: "its history differs from leader node-1's at entry 1190 (found 2026-03-01T11:58:00Z): it applied entries the leader never wrote, or skipped some it did"},
			{ID: "node-5", APIAddr: "10.0.0.5:8443", RaftAddr: "10.0.0.5:7000", Index: 5, Pending: true, RaftState: "Follower", Applied: 1207, Health: "alive"},
		},
	}
}

// TestClusterStatusGolden pins keyctl cluster status's text, which
// operators read and scripts grep.
func TestClusterStatusGolden(t *testing.T) {
	var b bytes.Buffer
	if err := writeStatus(&b, goldenStatus()); err != nil {
		t.Fatal(err)
	}
	st := goldenStatus()
	st.Resharing, st.Leader = nil, ""
	st.Members = st.Members[:2]
	st.Members[0].Held = nil
	st.FailureTolerance, st.QuorumTolerance = -1, -1
	fmt.Fprintln(&b, "# a cluster at rest, without a leader")
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "cluster-status.txt", b.Bytes())
}

// TestKeyShowGolden pins keyctl key show's text for each kind of key: a
// secret that expires, an assembled key kept in memory with its access,
// an assembled key for one operation, a revoked secret, a Tang key, and
// threshold RSA keys, one of them needing re-import.
func TestKeyShowGolden(t *testing.T) {
	ns := func(d time.Duration) int64 { return at.Add(d).UnixNano() }
	keys := []*fsm.Key{
		{Name: "db/root", Type: fsm.KeyTypeSecret, Version: 3, State: fsm.KeyActive, CreatedAt: ns(-48 * time.Hour), UpdatedAt: ns(-time.Hour), ExpiresAt: ns(30 * 24 * time.Hour)},
		{Name: "tls/www", Type: fsm.KeyTypeRSA, Version: 2, State: fsm.KeyActive, CreatedAt: ns(-time.Hour), UpdatedAt: ns(-time.Hour),
			KeyDetail: &fsm.KeyDetail{AssembleTTL: 10 * time.Minute, Access: &fsm.Access{Gateways: []string{"tlv"}, ClientCerts: [][]byte{{1}, {2}},
				Hosts: []string{"edge-a", "edge-b"}, Networks: []string{"10.0.0.0/8"}, EmailTo: []string{"sec@example.com"}, RatePerMinute: 60}}},
		{Name: "tls/api", Type: fsm.KeyTypeECDSA, Version: 1, State: fsm.KeyActive, CreatedAt: ns(0), UpdatedAt: ns(0),
			KeyDetail: &fsm.KeyDetail{Access: &fsm.Access{Gateways: []string{"tlv", "kxd"}, Hosts: []string{}}}},
		{Name: "db/old", Type: fsm.KeyTypeSecret, Version: 1, State: fsm.KeyRevoked, CreatedAt: ns(-72 * time.Hour), UpdatedAt: ns(-24 * time.Hour)},
		{Name: "disks/web", Type: fsm.KeyTypeTang, Version: 1, State: fsm.KeyActive, CreatedAt: ns(0), UpdatedAt: ns(0),
			KeyDetail: &fsm.KeyDetail{Access: &fsm.Access{Gateways: []string{"tang"}}, Tang: &fsm.TangKey{Kid: "0tgE_M7kgxaW9hPc_EjxtYsyjxMTvBMziW0xTO6tszA", Thp: "k5uovqkL3EG2P1I6OVk1Cl32He3FP8EwsCY4xoyfdKY", Threshold: 2,
				Shares: make([]fsm.TangShare, 3)}}},
		{Name: "tls/edge", Type: fsm.KeyTypeRSAThreshold, Version: 1, State: fsm.KeyActive, CreatedAt: ns(0), UpdatedAt: ns(0),
			KeyDetail: &fsm.KeyDetail{Access: &fsm.Access{Gateways: []string{"tlv"}}, RSA: &fsm.RSAThresholdKey{Threshold: 2, Shares: make([]fsm.RSAShare, 3)}}},
		{Name: "tls/old-edge", Type: fsm.KeyTypeRSAThreshold, Version: 1, State: fsm.KeyActive, CreatedAt: ns(0), UpdatedAt: ns(0),
			KeyDetail: &fsm.KeyDetail{Access: &fsm.Access{Gateways: []string{"tlv"}}, RSA: &fsm.RSAThresholdKey{Threshold: 2, Shares: make([]fsm.RSAShare, 3),
				Reimport: "dealt to node-3, no longer share holders: destroy and import it again"}}},
	}
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteString("\n")
		}
		held := func() string { return heldIn(goldenStatus(), k.Name) }
		if err := writeKey(&b, k, held); err != nil {
			t.Fatal(err)
		}
	}
	golden.Check(t, "key-show.txt", b.Bytes())
}
