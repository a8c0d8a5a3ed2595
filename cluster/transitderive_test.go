package cluster

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Transit derivation (op derive, docs/transit.md), on real raft on disk.

// deriveCall is one derivation request through a node.
type deriveCall struct {
	sg    *fsm.Signed
	eph   *ecdh.PrivateKey
	items []fsm.TransitDerivation
	reply *api.TransitDecryptReply
	err   error
}

func (c *testCluster) deriveThrough(tn *testNode, ref string, items []fsm.TransitDerivation, exclude ...uint32) *deriveCall {
	c.t.Helper()
	call := &deriveCall{items: items}
	var err error
	if call.eph, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		c.t.Fatal(err)
	}
	call.sg = c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: ref, Op: fsm.OpDerive,
		Ephemeral: call.eph.PublicKey().Bytes(), Derive: items, Exclude: exclude}})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	call.reply, call.err = tn.n.TransitDerive(ctx, call.sg)
	return call
}

func (c *testCluster) openDerive(call *deriveCall, name, hashName string, length int) ([]api.TransitResult, error) {
	c.t.Helper()
	if call.err != nil {
		c.t.Fatalf("deriving: %v", call.err)
	}
	return api.OpenTransitDerive(call.reply, c.clusterID, c.transitMeta(name), call.items, hashName, length, call.sg.Payload, call.eph)
}

// wholeDerive is what a derivation gives, computed outside the protocol:
// s*X from t shares read from the nodes' stores, then HKDF.
func (c *testCluster) wholeDerive(name string, version uint64, context []byte, hashName string, length int) []byte {
	c.t.Helper()
	k := c.transitMeta(name)
	tv := k.Transit().Version(version)
	var shares []*shamir.Share
	for _, tn := range c.members() {
		var fk fsm.FROSTKey
		tn.n.fsm.Read(func(s *fsm.State) { fk = *s.Keys[name].Transit().Version(version).Sharing })
		sh, err := tn.n.sharingShare(fsm.SharingRef(name, version), &fk, api.TransitShareContext(c.clusterID, name, fk.Epoch, fk.Commits[0]))
		if err != nil {
			c.t.Fatalf("%s's share of %s version %d: %v", tn.id(), name, version, err)
		}
		shares = append(shares, sh)
	}
	if len(shares) < tv.Sharing.Threshold {
		c.t.Fatalf("%d shares of %s version %d, %d needed", len(shares), name, version, tv.Sharing.Threshold)
	}
	bind := api.TransitDeriveBinding(k.ID, version, context)
	X, err := shamir.TransitDerivePoint(bind)
	if err != nil {
		c.t.Fatal(err)
	}
	out, err := shamir.TransitDeriveOutput(hashName, combineAt(c.t, X, tv.Sharing.Threshold, shares[:tv.Sharing.Threshold]), X, tv.Sharing.Commits[0], bind, length)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// TestTransitDerive: a derivation through every node equals the one
// computed from the shares outside the protocol, for SHA-256 and SHA-512;
// the same context gives the same key, another context, version or key
// another; each item has its own result (a version the key does not have
// fails alone). A derived key refuses a derivation without a context, and
// a decryption request is not a derivation nor the other way round.
func TestTransitDerive(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("kdf/a", shamir.CipherAES256GCM, false)
	c.createTransit("kdf/b", shamir.CipherAES256GCM, true)
	items := []fsm.TransitDerivation{{Version: 1, Context: []byte("tenant-1")}, {Version: 1, Context: []byte("tenant-2")},
		{Version: 1, Context: []byte("tenant-1")}, {Version: 7, Context: []byte("tenant-1")}, {Version: 1}}
	want1 := c.wholeDerive("kdf/a", 1, []byte("tenant-1"), shamir.DeriveSHA256, 32)
	for _, tn := range c.nodes {
		res, err := c.openDerive(c.deriveThrough(tn, "kdf/a", items), "kdf/a", shamir.DeriveSHA256, 32)
		if err != nil {
			t.Fatalf("through %s: %v", tn.id(), err)
		}
		if !bytes.Equal(res[0].Plaintext, want1) || !bytes.Equal(res[2].Plaintext, want1) {
			t.Errorf("through %s: the derived key %x is not the one the shares give, %x", tn.id(), res[0].Plaintext, want1)
		}
		if len(res[1].Plaintext) != 32 || bytes.Equal(res[1].Plaintext, want1) || res[4].Error != nil || bytes.Equal(res[4].Plaintext, want1) {
			t.Errorf("through %s: another context gave %x, %v", tn.id(), res[1].Plaintext, res[4].Error)
		}
		if res[3].Error == nil || res[3].Error.Kind != KindNotFound || res[3].Plaintext != nil {
			t.Errorf("through %s: a missing version gave %x, %v; want not found", tn.id(), res[3].Plaintext, res[3].Error)
		}
	}
	// SHA-512, 64 bytes, by ID.
	id := c.transitMeta("kdf/a").ID
	res, err := c.openDerive(c.deriveThrough(c.nodes[1], id, items[:1]), "kdf/a", shamir.DeriveSHA512, 64)
	if want := c.wholeDerive("kdf/a", 1, []byte("tenant-1"), shamir.DeriveSHA512, 64); err != nil || !bytes.Equal(res[0].Plaintext, want) {
		t.Fatalf("sha2-512: %x, %v; want %x", res[0].Plaintext, err, want)
	}
	// Another key, same context: another derived key.
	res, err = c.openDerive(c.deriveThrough(c.nodes[2], "kdf/b", items[:1]), "kdf/b", shamir.DeriveSHA256, 32)
	if err != nil || res[0].Error != nil || bytes.Equal(res[0].Plaintext, want1) || !bytes.Equal(res[0].Plaintext, c.wholeDerive("kdf/b", 1, []byte("tenant-1"), shamir.DeriveSHA256, 32)) {
		t.Fatalf("kdf/b: %x, %v", res[0].Plaintext, err)
	}
	// A derived key needs a context.
	if call := c.deriveThrough(c.nodes[0], "kdf/b", []fsm.TransitDerivation{{Version: 1}}); KindOf(call.err) != KindInvalid {
		t.Fatalf("a derived key without a context: %v; want invalid", call.err)
	}
	// A node counts the derivations it coordinates under op derive: node
	// 1 coordinated the loop's and the SHA-512 one.
	if got := testutil.ToFloat64(c.nodes[1].n.Metrics().Operations.WithLabelValues(opDerive, fsm.KeyTypeTransit, metrics.NoGateway, metrics.ResultOK)); got != 2 {
		t.Errorf("node 1 counted %v derivations, want 2", got)
	}
	// A decryption request is not a derivation, and the other way round.
	dec := c.decryptThrough(c.nodes[0], "kdf/a", []string{c.encrypt("kdf/a", []byte("x"), nil)}, make([][]byte, 1))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := c.nodes[0].n.TransitDerive(ctx, dec.sg); KindOf(err) != KindInvalid {
		t.Fatalf("a decryption request as a derivation: %v", err)
	}
	if _, err := c.nodes[0].n.TransitDecrypt(ctx, c.deriveThrough(c.nodes[0], "kdf/a", items[:1]).sg); KindOf(err) != KindInvalid {
		t.Fatalf("a derivation request as a decryption: %v", err)
	}
}

// TestTransitDeriveLyingHolder: a holder whose partials for a derivation
// are wrong is named (its proof fails: nothing else would tell, as no
// AEAD authenticates a derived key), and without it the derivation
// gives the key the shares give.
func TestTransitDeriveLyingHolder(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("kdf/a", shamir.CipherAES256GCM, false)
	liar := c.nodes[1]
	liar.n.transitHook = func(answers []api.TransitItemPartial) {
		for _, a := range answers {
			if a.Partial != nil {
				a.Partial.Value = bytes.Clone(c.transitMeta("kdf/a").Transit().Latest().Sharing.Commits[0])
			}
		}
	}
	items := []fsm.TransitDerivation{{Version: 1, Context: []byte("ctx")}}
	_, err := c.openDerive(c.deriveThrough(liar, "kdf/a", items), "kdf/a", shamir.DeriveSHA256, 32)
	var bad api.BadAnswers
	if !errors.As(err, &bad) || bad[c.shareIndex(liar)] == "" || len(bad) != 1 {
		t.Fatalf("a lying holder's partial: %v; want it named alone", err)
	}
	res, err := c.openDerive(c.deriveThrough(liar, "kdf/a", items, c.shareIndex(liar)), "kdf/a", shamir.DeriveSHA256, 32)
	if err != nil || !bytes.Equal(res[0].Plaintext, c.wholeDerive("kdf/a", 1, []byte("ctx"), shamir.DeriveSHA256, 32)) {
		t.Fatalf("without the liar: %+v, %v", res, err)
	}
}
