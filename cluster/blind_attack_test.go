package cluster

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Attacks by the coordinating node on an operator's release (issue 9,
// hole 4): the coordinator used to get every holder's partial in the clear
// and combine them, so it saw every secret an operator, an application or
// a compare-and-swap released. Now holders seal their partials to the
// ephemeral key in the request the operator signed, and the coordinator
// only relays them.

// TestCoordinatorNeverHoldsTheReleasedSecret: nothing the coordinator has
// after relaying a release opens the secret. The sealed partials open with
// no key any node holds, the relayed answer does not carry the secret, and
// the client (the test, with its ephemeral key and pin) opens it.
func TestCoordinatorNeverHoldsTheReleasedSecret(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("blind", secret)
	coord := c.nodes[1]
	sg := c.releaseRequest("blind")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	sr, err := coord.n.Release(ctx, sg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.Partials) < 2 {
		t.Fatalf("%d partials relayed, want the threshold 2", len(sr.Partials))
	}
	relayed, _ := json.Marshal(sr)
	if bytes.Contains(relayed, secret) || strings.Contains(string(relayed), hex.EncodeToString(secret)) {
		t.Fatal("the relayed release carries the secret")
	}
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		t.Fatal(err)
	}
	rctx := fsm.ReleaseContext(sr.ClusterID, "blind", sr.Version, sr.Epoch, sg.Payload)
	for _, tn := range c.nodes {
		tn.n.idMu.Lock()
		var keys [][]byte
		for _, k := range tn.n.id.Keyring {
			keys = append(keys, k)
		}
		tn.n.idMu.Unlock()
		for _, k := range keys {
			// A node key as an X25519 private key, in case a holder
			// sealed to its own key.
			priv, err := ecdh.X25519().NewPrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			for _, sp := range sr.Partials {
				ct := &shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}
				if _, err := shamir.OpenX25519(priv, ct, fsm.PartialSealInfo(rctx, sp.Index)); err == nil {
					t.Fatalf("the partial of share %d opens with a key of node %s", sp.Index, tn.id())
				}
			}
		}
	}
	got, err := c.openRelease(sg, sr)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the client's open: %v", err)
	}
}

// TestHolderGivesNoClearPartialForAnOperatorsRelease: a coordinator that
// asks a holder for its partial in the clear, for an operator's request,
// gets none; an operator's request without an ephemeral key is refused by
// every holder, so a coordinator cannot strip it either (it is signed).
func TestHolderGivesNoClearPartialForAnOperatorsRelease(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("clear", randomBytes(t, 32))
	victim := c.nodes[2]
	c.waitHasKey(victim, "clear")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	req := c.holderRequest("clear", 0)
	if p, err := victim.n.answerPartial(ctx, req); err == nil {
		t.Fatalf("a holder gave share %d in the clear for an operator's request with an ephemeral key", p.Index)
	}
	req.Request = c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "clear", Op: fsm.OpGet}})
	if p, err := victim.n.answerPartial(ctx, req); err == nil {
		t.Fatalf("a holder gave share %d in the clear for an operator's request without an ephemeral key", p.Index)
	} else if KindOf(err) != KindInvalid {
		t.Errorf("an operator's request without an ephemeral key: %v (kind %s), want %s", err, KindOf(err), KindInvalid)
	}
}

// TestClientNamesAForgedPartial: a coordinator can seal to the request's
// ephemeral key too (it is in the request), so it can put a partial of its
// own among the holders'. The client checks each proof against the public
// polynomial whose constant term is its pin, and names the forged one; a
// forged polynomial is refused.
func TestClientNamesAForgedPartial(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("forged", randomBytes(t, 32))
	sg := c.releaseRequest("forged")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	sr, err := c.nodes[0].n.Release(ctx, sg)
	if err != nil {
		t.Fatal(err)
	}
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		t.Fatal(err)
	}
	rctx := fsm.ReleaseContext(sr.ClusterID, "forged", sr.Version, sr.Epoch, sg.Payload)

	// The coordinator's own partial, for the share of another node, with
	// a value of its choosing and a proof it cannot make.
	forged := *sr
	forged.Partials = append([]SealedPartial(nil), sr.Partials...)
	victim := &forged.Partials[len(forged.Partials)-1]
	_, point, _ := shamir.GenerateEncryptionKey(rand.Reader)
	plain, _ := json.Marshal(&shamir.Partial{Index: victim.Index, Value: point, Challenge: make([]byte, 32), Response: make([]byte, 32)})
	ct, err := shamir.SealX25519(rand.Reader, cmd.Release.Ephemeral, fsm.PartialSealInfo(rctx, victim.Index), plain)
	if err != nil {
		t.Fatal(err)
	}
	victim.R, victim.Sealed = ct.R, ct.Sealed
	_, err = c.openRelease(sg, &forged)
	if err == nil {
		t.Fatal("the client opened a release with a forged partial")
	}
	if want := "partial of share " + itoa(victim.Index) + " (node \"" + victim.Node + "\")"; !strings.Contains(err.Error(), want) {
		t.Errorf("the client's error %q does not name %s", err, want)
	}

	// A polynomial with the pinned constant term and another slope: no
	// holder's proof verifies against it.
	slope := *sr
	_, other, _ := shamir.GenerateEncryptionKey(rand.Reader)
	slope.Poly = [][]byte{sr.Poly[0], other}
	if _, err := c.openRelease(sg, &slope); err == nil {
		t.Fatal("the client opened a release against a forged polynomial with the pinned constant term")
	}
	// A polynomial for another cluster key.
	otherKey := *sr
	otherKey.Poly = [][]byte{other, sr.Poly[1]}
	if _, err := c.openRelease(sg, &otherKey); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("a release for another cluster key: %v, want a refusal naming the pin", err)
	}
	// The honest relay opens.
	if _, err := c.openRelease(sg, sr); err != nil {
		t.Fatalf("the honest release: %v", err)
	}
}

func itoa(i uint32) string {
	b, _ := json.Marshal(i)
	return string(b)
}
