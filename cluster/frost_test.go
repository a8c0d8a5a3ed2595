package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Signing by quorum with FROST (frost.go, docs/signing.md).

// createFROST deals a fresh Ed25519 key to the current holders as keyctl
// does (api.NewFROSTKey) and returns its public key.
func (c *testCluster) createFROST(name string, access *fsm.Access) ed25519.PublicKey {
	c.t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	st := c.status(c.anyRunning())
	var holders []MemberStatus
	for _, m := range st.Members {
		if m.Holder {
			holders = append(holders, m)
		}
	}
	ck, err := api.NewFROSTKey(rand.Reader, name, priv, st.ClusterID, st.Epoch, st.Threshold, holders)
	if err != nil {
		c.t.Fatal(err)
	}
	ck.Access = access
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: ck}); err != nil {
		c.t.Fatalf("creating %q: %v", name, err)
	}
	for _, tn := range c.running() {
		c.waitHasKey(tn, name)
	}
	return pub
}

func (c *testCluster) signRequest(name string, msg []byte) *fsm.Signed {
	c.t.Helper()
	return c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpSign, Message: msg}})
}

func (c *testCluster) signThrough(tn *testNode, sg *fsm.Signed) (*api.Signature, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return tn.n.Sign(ctx, sg)
}

// frostHolderRequest is what a coordinator sends holder tn for sg: the
// signed request and a commitment list of tn's fresh commitment and the
// other signers' (from the others' own answers).
func (c *testCluster) frostHolderRequest(sg *fsm.Signed, name string, signers ...*testNode) *frostSignRequest {
	c.t.Helper()
	k := storedKey(c.t, c.leader(), name)
	var cs []shamir.NonceCommitment
	for _, tn := range signers {
		rep, err := tn.n.answerFROSTCommit(&frostCommitRequest{Key: name, Version: k.Version, Count: 1})
		if err != nil {
			c.t.Fatalf("commitment of %s: %v", tn.id(), err)
		}
		cs = append(cs, rep.Commitments[0])
	}
	slices.SortFunc(cs, func(a, b shamir.NonceCommitment) int { return int(a.Index) - int(b.Index) })
	return &frostSignRequest{Partial: partialRequest{Request: sg, Version: k.Version}, Commitments: cs}
}

// frostIndex is tn's share index of FROST key name.
func (c *testCluster) frostIndex(tn *testNode, name string) uint32 {
	c.t.Helper()
	for _, sh := range storedKey(c.t, c.leader(), name).Frost().Shares {
		if sh.NodeID == tn.id() {
			return sh.Index
		}
	}
	c.t.Fatalf("%s holds no share of %s", tn.id(), name)
	return 0
}

func (c *testCluster) askFROST(tn *testNode, req *frostSignRequest) (*frostSignReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return tn.n.answerFROSTSign(ctx, req)
}

// askFROSTRestarted is askFROST to a holder that has just restarted:
// until it reaches the leader for its own read it answers no quorum, which
// is not the answer under test, so it is asked again.
func (c *testCluster) askFROSTRestarted(tn *testNode, req *frostSignRequest) (rep *frostSignReply, err error) {
	c.waitFor(settleTimeout, func() (bool, string) {
		rep, err = c.askFROST(tn, req)
		return KindOf(err) != KindNoQuorum, fmt.Sprintf("%s still answers: %v", tn.id(), err)
	})
	return rep, err
}

// TestFROSTSignsThroughEveryNode: a 3-node cluster signs with an imported
// Ed25519 key through every node, twice each (the second from the
// coordinator's stock of commitments, one round trip), and every
// signature verifies with crypto/ed25519 under the key's public key.
func TestFROSTSignsThroughEveryNode(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	pub := c.createFROST("sig/a", nil)
	for _, tn := range c.nodes {
		for i := range 2 {
			msg := []byte("message " + tn.id() + string(rune('0'+i)))
			sig, err := c.signThrough(tn, c.signRequest("sig/a", msg))
			if err != nil {
				t.Fatalf("signing through %s: %v (kind %s)", tn.id(), err, KindOf(err))
			}
			if !ed25519.Verify(pub, msg, sig.Signature) || !bytes.Equal(sig.PublicKey, pub) {
				t.Fatalf("through %s: the signature does not verify under the key's public key", tn.id())
			}
			if len(sig.Signers) != 2 || len(sig.Failed) != 0 {
				t.Errorf("signers %v, failed %v: want 2 signers, none failed", sig.Signers, sig.Failed)
			}
		}
	}
}

// TestFROSTBadShareIsNamedAndTheSignatureCompletes: a holder that sends
// a wrong signature share is named in the result and left out, and the
// signature completes with the other holder; with two holders lying, the
// error names both.
func TestFROSTBadShareIsNamedAndTheSignatureCompletes(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	pub := c.createFROST("sig/a", nil)
	coord := c.nodes[0]
	// The coordinator asks itself, then the holders in node ID order.
	others := slices.Clone(c.nodes[1:])
	slices.SortFunc(others, func(a, b *testNode) int { return strings.Compare(a.id(), b.id()) })
	liar := others[0]
	liar.n.frostShareHook = func(z []byte) []byte {
		z = bytes.Clone(z)
		z[0] ^= 1
		return z
	}
	msg := []byte("complete me")
	sig, err := c.signThrough(coord, c.signRequest("sig/a", msg))
	if err != nil {
		t.Fatalf("signing with one lying holder: %v", err)
	}
	if !ed25519.Verify(pub, msg, sig.Signature) {
		t.Fatal("the signature does not verify")
	}
	if reason, ok := sig.Failed[liar.id()]; !ok || !strings.Contains(reason, "does not verify") {
		t.Fatalf("failed %v: want %s named for a share that does not verify", sig.Failed, liar.id())
	}
	others[1].n.frostShareHook = liar.n.frostShareHook
	_, err = c.signThrough(coord, c.signRequest("sig/a", msg))
	if err == nil || !strings.Contains(err.Error(), liar.id()) || !strings.Contains(err.Error(), others[1].id()) {
		t.Fatalf("two lying holders: %v, want an error naming both", err)
	}
}

// TestFROSTRevokedKeySignsNoMore: once a revoke is acknowledged, every
// holder refuses to sign, even a lagging one asked by a lying coordinator
// with read index 0: it makes its own read first.
func TestFROSTRevokedKeySignsNoMore(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createFROST("sig/a", nil)
	leader := c.leader()
	victim := c.anyRunning(leader)
	sg := c.signRequest("sig/a", []byte("after the revoke"))
	req := c.frostHolderRequest(sg, "sig/a", victim, leader)
	resume := c.holdApplies(victim) // the victim acknowledges entries but applies none
	c.revoke(leader, "sig/a")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	if rep, err := victim.n.answerFROSTSign(ctx, req); err == nil {
		t.Fatalf("a lagging holder signed (share %d) with a key revoked before the request", rep.Index)
	} else if KindOf(err) != KindNoQuorum {
		t.Errorf("lagging holder: %v (kind %s), want %s: it waits for its own read", err, KindOf(err), KindNoQuorum)
	}
	cancel()
	resume()
	for _, tn := range c.nodes {
		if _, err := c.signThrough(tn, c.signRequest("sig/a", []byte("m"))); KindOf(err) != KindDenied {
			t.Errorf("signing through %s after the revoke: %v (kind %s), want %s", tn.id(), err, KindOf(err), KindDenied)
		}
	}
}

// TestFROSTReplayedSigningRequestIsRefused: a holder answers one signed
// request at most n-t+1 times (2 here), and after a restart not at all.
func TestFROSTReplayedSigningRequestIsRefused(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createFROST("sig/a", nil)
	victim, other := c.nodes[1], c.nodes[2]
	sg := c.signRequest("sig/a", []byte("once"))
	for i := range 2 {
		if _, err := c.askFROST(victim, c.frostHolderRequest(sg, "sig/a", victim, other)); err != nil {
			t.Fatalf("answer %d: %v", i+1, err)
		}
	}
	if _, err := c.askFROST(victim, c.frostHolderRequest(sg, "sig/a", victim, other)); KindOf(err) != KindUnauthenticated {
		t.Fatalf("third answer to the same request: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
	sg2 := c.signRequest("sig/a", []byte("before the restart"))
	c.stop(victim)
	c.restart(victim)
	c.waitSettled(0, victim)
	c.waitHasKey(victim, "sig/a")
	if _, err := c.askFROSTRestarted(victim, c.frostHolderRequest(sg2, "sig/a", victim, other)); KindOf(err) != KindUnauthenticated {
		t.Fatalf("a request issued before the restart: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
}

// TestFROSTLyingCoordinator: a compromised node coordinating a signature
// cannot make an honest holder sign another message than the signer's
// (it must sign the request itself, as a node, for a gateway the key is
// not open to), nor use one of its nonces twice, nor list for it a
// commitment it did not make; and nonces made before a restart are gone.
func TestFROSTLyingCoordinator(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createFROST("sig/a", nil)
	liar, victim := c.nodes[0], c.nodes[1]

	forged, err := liar.n.nodeCommand(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{
		Key: "sig/a", Op: fsm.OpSign, Gateway: fsm.GatewayTLV, Client: "attacker", Message: []byte("pay the attacker")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.askFROST(victim, c.frostHolderRequest(forged, "sig/a", liar, victim)); KindOf(err) != KindDenied {
		t.Errorf("a message the coordinator signed itself: %v (kind %s), want %s", err, KindOf(err), KindDenied)
	}

	req := c.frostHolderRequest(c.signRequest("sig/a", []byte("one")), "sig/a", liar, victim)
	if _, err := c.askFROST(victim, req); err != nil {
		t.Fatal(err)
	}
	again := *req
	again.Partial.Request = c.signRequest("sig/a", []byte("two"))
	if _, err := c.askFROST(victim, &again); KindOf(err) != KindConflict {
		t.Errorf("the same nonce commitment for another message: %v (kind %s), want %s", err, KindOf(err), KindConflict)
	}

	req = c.frostHolderRequest(c.signRequest("sig/a", []byte("three")), "sig/a", liar, victim)
	vi := c.frostIndex(victim, "sig/a")
	for i := range req.Commitments {
		if req.Commitments[i].Index == vi {
			req.Commitments[i].Hiding, req.Commitments[i].Binding = req.Commitments[i].Binding, req.Commitments[i].Hiding
		}
	}
	if _, err := c.askFROST(victim, req); KindOf(err) != KindConflict {
		t.Errorf("a commitment the victim never made: %v (kind %s), want %s", err, KindOf(err), KindConflict)
	}

	stale := c.frostHolderRequest(c.signRequest("sig/a", []byte("four")), "sig/a", liar, victim)
	c.stop(victim)
	c.restart(victim)
	c.waitSettled(0, victim)
	c.waitHasKey(victim, "sig/a")
	stale.Partial.Request = c.signRequest("sig/a", []byte("four"))
	if _, err := c.askFROSTRestarted(victim, stale); KindOf(err) != KindConflict {
		t.Errorf("a commitment made before the holder restarted: %v (kind %s), want %s", err, KindOf(err), KindConflict)
	}
	// The honest path still works after the restart (the coordinator's
	// stock of the victim's old commitments is dropped when refused).
	if _, err := c.signThrough(c.nodes[2], c.signRequest("sig/a", []byte("five"))); err != nil {
		t.Fatalf("signing after the restart: %v", err)
	}
}
