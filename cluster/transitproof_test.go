package cluster

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/json"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/token"
)

// The encryptor's proof (docs/transit.md, "Why decrypt is not derive"):
// a holder answers s_i*E only for a point E whose ciphertext carries a
// proof of knowledge of r with E = r*G, bound to the ciphertext's key,
// version and context. A derivation's point has no known discrete log,
// so decrypt cannot be used to derive.

// askHolder asks tn alone, as a coordinator would, for its answers to the
// transit request sg, and opens them with eph: each item's partial or
// error. An error is the holder's refusal of the whole request.
func (c *testCluster) askHolder(tn *testNode, sg *fsm.Signed, eph *ecdh.PrivateKey) ([]api.TransitItemPartial, error) {
	c.t.Helper()
	var epoch uint64
	tn.n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var rel *fsm.ReleaseRequest
	if cmd := decodeCommand(sg); cmd != nil {
		rel = cmd.Release
	}
	key := c.transitMeta(rel.Key)
	sp, err := tn.n.answerTransitDecrypt(ctx, &partialRequest{Request: sg, Version: key.Version, Epoch: epoch})
	if err != nil {
		return nil, err
	}
	base := api.TransitDecryptContext(c.clusterID, key.Name, epoch, sg.Payload, -1)
	plain, err := shamir.OpenX25519(eph, &shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}, fsm.PartialSealInfo(base, sp.Index))
	if err != nil {
		c.t.Fatalf("%s's answer does not open: %v", tn.id(), err)
	}
	var ans []api.TransitItemPartial
	if err := json.Unmarshal(plain, &ans); err != nil {
		c.t.Fatalf("%s's answer: %v", tn.id(), err)
	}
	return ans, nil
}

// TestTransitDecryptIsNotDerive: a caller whose token allows decrypt and
// not derive sends, in a decryption request, the point a derivation
// with the key hashes its context to. Every holder refuses that item
// (it carries no proof that its sender knows the point's discrete log:
// nobody does), so the caller does not get the derived key through any
// coordinator, while its real ciphertext in the same batch decrypts.
func TestTransitDecryptIsNotDerive(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	k := c.transitMeta("enc/a")
	tenant := []byte("tenant-1")
	want := c.wholeDerive("enc/a", 1, tenant, shamir.DeriveSHA256, 32)
	X, err := shamir.TransitDerivePoint(api.TransitDeriveBinding(k.ID, 1, tenant))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := api.ParseTransitCiphertext(c.encrypt("enc/a", []byte("attack at dawn"), nil))
	decrypt := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"enc/a"}, Flags: []string{token.FlagDecrypt}})
	points := []fsm.TransitPoint{{Version: 1, Point: X}, {Version: 1, Point: good.E}}
	derived := []fsm.TransitDerivation{{Version: 1, Context: tenant}}
	for _, tn := range c.nodes {
		// Through tn as coordinator: the derived key does not come out.
		sg, eph := c.tokenTransit(decrypt, &fsm.ReleaseRequest{Key: "enc/a", Op: fsm.OpDecrypt, Points: points[:1]})
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		rep, err := tn.n.TransitDecrypt(ctx, sg)
		cancel()
		if err != nil {
			t.Fatalf("through %s: %v", tn.id(), err)
		}
		res, err := api.OpenTransitDerive(rep, c.clusterID, k, derived, shamir.DeriveSHA256, 32, sg.Payload, eph)
		if err == nil && bytes.Equal(res[0].Plaintext, want) {
			t.Fatalf("through %s: a decrypt-only caller got the derived key of context %q", tn.id(), tenant)
		}
		// And tn as holder refuses the derivation's point on its own.
		sg, eph = c.tokenTransit(decrypt, &fsm.ReleaseRequest{Key: "enc/a", Op: fsm.OpDecrypt, Points: points})
		ans, err := c.askHolder(tn, sg, eph)
		if err != nil {
			t.Fatalf("%s refused the whole request: %v", tn.id(), err)
		}
		if ans[0].Partial != nil || ans[0].Error == nil || ans[0].Error.Kind != KindInvalid {
			t.Errorf("%s answered the derivation's point: %+v", tn.id(), ans[0])
		}
		if ans[1].Partial == nil || ans[1].Error != nil {
			t.Errorf("%s refused the real ciphertext beside it: %+v", tn.id(), ans[1].Error)
		}
	}
}
