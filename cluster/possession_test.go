package cluster

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// TestHoldersProveTheirShares: every holder of a real cluster answers a
// client's challenge with a proof of its share that the client's check
// (api.PossessionCheck, which client.Confirm and keyagent enroll
// --confirm run) accepts against the pinned key, at t and more distinct
// indexes; an answer is good for its own nonce and holder only, and a
// node's share proves nothing about a view in which it holds the key
// alone.
func TestHoldersProveTheirShares(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	st := c.waitSettled(0)
	pin := c.clusterKey()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	nonce := randomBytes(t, api.PossessionNonceSize)
	check := &api.PossessionCheck{ClusterID: st.ClusterID, Epoch: st.Epoch, Threshold: st.Threshold, PublicKey: pin}
	answers := map[string]*api.Possession{}
	for _, m := range st.Members {
		if !m.Holder {
			t.Fatalf("%s is not a holder of the settled cluster", m.ID)
		}
		tn := c.byID(m.ID)
		p, err := tn.n.ProvePossession(ctx, nonce)
		if err != nil {
			t.Fatalf("%s answers the challenge: %v", m.ID, err)
		}
		if err := check.Add(p, m.ID, m.Index, nonce); err != nil {
			t.Fatalf("%s's proof: %v", m.ID, err)
		}
		answers[m.ID] = p
	}
	if got := check.Proven(); got != len(st.Members) || got < st.Threshold {
		t.Fatalf("%d holders proved their shares, want all %d (threshold %d)", got, len(st.Members), st.Threshold)
	}

	m0, m1 := st.Members[0], st.Members[1]
	fresh := &api.PossessionCheck{ClusterID: st.ClusterID, Epoch: st.Epoch, Threshold: st.Threshold, PublicKey: pin}
	if err := fresh.Add(answers[m0.ID], m0.ID, m0.Index, randomBytes(t, api.PossessionNonceSize)); err == nil {
		t.Error("an answer was accepted for another nonce")
	}
	if err := fresh.Add(answers[m0.ID], m1.ID, m1.Index, nonce); err == nil {
		t.Error("one holder's answer was accepted as another's")
	}
	// A view in which m0 holds the key alone (t=1): its own answer, and
	// one made with its share against the constant polynomial X, fail.
	alone := &api.PossessionCheck{ClusterID: st.ClusterID, Epoch: st.Epoch, Threshold: 1, PublicKey: pin}
	if err := alone.Add(answers[m0.ID], m0.ID, m0.Index, nonce); err == nil || !strings.Contains(err.Error(), "threshold") {
		t.Errorf("a holder's answer in a view where it holds the key alone: %v", err)
	}
	share := c.byID(m0.ID).n.shares.current(st.Epoch)
	forged, err := api.ProvePossession(rand.Reader, share, st.ClusterID, st.Epoch, m0.ID, [][]byte{pin}, nonce)
	share.Erase()
	if err != nil {
		t.Fatal(err)
	}
	if err := alone.Add(forged, m0.ID, m0.Index, nonce); err == nil || alone.Proven() != 0 {
		t.Errorf("a share proved the constant polynomial X: %v", err)
	}

	if _, err := c.byID(m0.ID).n.ProvePossession(ctx, nonce[:8]); KindOf(err) != KindInvalid {
		t.Errorf("a short nonce: %v, want %s", err, KindInvalid)
	}
}

func (c *testCluster) byID(id string) *testNode {
	c.t.Helper()
	for _, tn := range c.nodes {
		if tn.id() == id {
			return tn
		}
	}
	c.t.Fatalf("no node %s", id)
	return nil
}
