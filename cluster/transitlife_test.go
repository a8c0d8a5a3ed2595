package cluster

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// A transit key's lifecycle (docs/transit.md, "Lifecycle"), on real raft
// on disk: expiry, import, exportable.

// transitHolders are the current share holders, as the client confirms
// them.
func (c *testCluster) transitHolders() *Status {
	c.t.Helper()
	return c.status(c.anyRunning())
}

func holdersOf(st *Status) []MemberStatus {
	var holders []MemberStatus
	for _, m := range st.Members {
		if m.Holder {
			holders = append(holders, m)
		}
	}
	return holders
}

// createTransitKey submits ck and waits until every running node has it.
func (c *testCluster) createTransitKey(ck *fsm.CreateKey) {
	c.t.Helper()
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: ck}); err != nil {
		c.t.Fatalf("creating %q: %v", ck.Name, err)
	}
	for _, tn := range c.running() {
		c.waitHasKey(tn, ck.Name)
	}
}

// TestTransitKeyExpires: a transit key created with an expiry decrypts
// and derives until then; after it every node refuses both (denied,
// "expired"), and the client refuses to encrypt to it.
func TestTransitKeyExpires(t *testing.T) {
	c := newTestCluster(t, 3)
	const life = 3 * time.Second
	expires := time.Now().Add(life)
	c.createTransitKey(&fsm.CreateKey{Name: "exp/a", Type: fsm.KeyTypeTransit, ExpiresAt: expires.UnixNano(),
		Transit: &fsm.TransitKey{Cipher: shamir.CipherAES256GCM, Versions: []fsm.TransitVersion{{Sharing: c.transitDeal("exp/a")}}}})
	ct := c.encrypt("exp/a", []byte("before the expiry"), nil)
	res, err := c.open(c.decryptThrough(c.nodes[0], "exp/a", []string{ct}, make([][]byte, 1)), "exp/a")
	if err != nil || string(res[0].Plaintext) != "before the expiry" {
		t.Fatalf("before the expiry: %+v, %v", res, err)
	}
	derive := []fsm.TransitDerivation{{Version: 1, Context: []byte("tenant-1")}}
	if dres, err := c.openDerive(c.deriveThrough(c.nodes[1], "exp/a", derive), "exp/a", shamir.DeriveSHA256, 32); err != nil || dres[0].Error != nil {
		t.Fatalf("deriving before the expiry: %+v, %v", dres, err)
	}
	time.Sleep(time.Until(expires) + 100*time.Millisecond)
	for _, tn := range c.nodes {
		call := c.decryptThrough(tn, "exp/a", []string{ct}, make([][]byte, 1))
		if KindOf(call.err) != KindDenied || !strings.Contains(call.err.Error(), "expired") {
			t.Errorf("decrypting through %s after the expiry: %v; want denied, expired", tn.id(), call.err)
		}
		dcall := c.deriveThrough(tn, "exp/a", derive)
		if KindOf(dcall.err) != KindDenied || !strings.Contains(dcall.err.Error(), "expired") {
			t.Errorf("deriving through %s after the expiry: %v; want denied, expired", tn.id(), dcall.err)
		}
	}
	if _, err := api.TransitEncrypt(rand.Reader, c.transitMeta("exp/a"), []byte("after"), nil); KindOf(err) != KindDenied {
		t.Errorf("encrypting to an expired key: %v; want denied", err)
	}
	// A key cannot be created already expired.
	_, err = c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: "exp/b", Type: fsm.KeyTypeTransit,
		ExpiresAt: time.Now().Add(-time.Second).UnixNano(),
		Transit:   &fsm.TransitKey{Cipher: shamir.CipherAES256GCM, Versions: []fsm.TransitVersion{{Sharing: c.transitDeal("exp/b")}}}}})
	if KindOf(err) != KindInvalid {
		t.Errorf("creating an expired key: %v; want invalid", err)
	}
}

// TestTransitImport: a version imported from a given scalar (dealt by
// the caller, as create deals a drawn one) decrypts through every node
// what the whole key encrypted, with a public key computed here from the
// scalar and not read from the cluster; what the cluster's public key
// encrypts opens with the whole scalar. A scalar that is not canonical,
// or zero, is refused before anything is sent.
func TestTransitImport(t *testing.T) {
	c := newTestCluster(t, 3)
	secret, err := shamir.RandomSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := c.transitHolders()
	sharing, err := api.DealTransitSharing(rand.Reader, secret, "imp/a", st.ClusterID, st.Epoch, st.Threshold, holdersOf(st))
	if err != nil {
		t.Fatal(err)
	}
	c.createTransitKey(&fsm.CreateKey{Name: "imp/a", Type: fsm.KeyTypeTransit,
		Transit: &fsm.TransitKey{Cipher: shamir.CipherChaCha20, Versions: []fsm.TransitVersion{{Sharing: sharing, Imported: true}}}})
	meta := c.transitMeta("imp/a")
	if !meta.Transit().Latest().Imported || meta.Transit().Exportable {
		t.Errorf("the imported key's metadata: imported %v, exportable %v; want true, false", meta.Transit().Latest().Imported, meta.Transit().Exportable)
	}

	s, err := edwards25519.NewScalar().SetCanonicalBytes(secret)
	if err != nil {
		t.Fatal(err)
	}
	whole := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
	bind := api.TransitBinding(meta.ID, 1, nil)
	E, proof, sealed, err := shamir.TransitSeal(rand.Reader, whole, shamir.CipherChaCha20, bind, bind, []byte("sealed to the whole key"))
	if err != nil {
		t.Fatal(err)
	}
	ct := (&api.TransitCiphertext{Version: 1, E: E, Proof: proof, Sealed: sealed}).String()
	for _, tn := range c.nodes {
		res, err := c.open(c.decryptThrough(tn, "imp/a", []string{ct}, make([][]byte, 1)), "imp/a")
		if err != nil || res[0].Error != nil || string(res[0].Plaintext) != "sealed to the whole key" {
			t.Fatalf("through %s: %+v, %v", tn.id(), res, err)
		}
	}

	// The other way: the cluster's public key encrypts; the whole scalar opens.
	theirs, _ := api.ParseTransitCiphertext(c.encrypt("imp/a", []byte("to the cluster's key"), nil))
	K, err := shamir.TransitSharedPoint(secret, theirs.E)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := shamir.TransitOpen(K, theirs.E, whole, shamir.CipherChaCha20, bind, bind, theirs.Sealed)
	if err != nil || string(pt) != "to the cluster's key" {
		t.Fatalf("opening with the whole scalar: %q, %v", pt, err)
	}

	for what, bad := range map[string][]byte{"zero": make([]byte, 32), "not canonical": bytes.Repeat([]byte{0xff}, 32), "short": secret[:31]} {
		if _, err := api.DealTransitSharing(rand.Reader, bad, "imp/b", st.ClusterID, st.Epoch, st.Threshold, holdersOf(st)); KindOf(err) != KindInvalid {
			t.Errorf("importing a %s scalar: %v; want invalid", what, err)
		}
	}
}
