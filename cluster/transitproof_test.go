package cluster

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"strings"
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
	// The caller has no proof for X (nobody has): it sends its real
	// ciphertext's, the best it can do.
	points := []fsm.TransitPoint{{Version: 1, Point: X, Proof: good.Proof}, good.Point(nil)}
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
		if ans[0].Partial != nil || ans[0].Error == nil || ans[0].Error.Kind != KindWrongKey {
			t.Errorf("%s answered the derivation's point: %+v", tn.id(), ans[0])
		}
		if ans[1].Partial == nil || ans[1].Error != nil {
			t.Errorf("%s refused the real ciphertext beside it: %+v", tn.id(), ans[1].Error)
		}
	}
}

// signedDecrypt is an operator's decryption request for points of key
// name, and its ephemeral key.
func (c *testCluster) signedDecrypt(name string, points []fsm.TransitPoint) (*fsm.Signed, *ecdh.PrivateKey) {
	c.t.Helper()
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpDecrypt,
		Ephemeral: eph.PublicKey().Bytes(), Points: points}}), eph
}

// TestTransitProofRefusedByEveryHolder: every holder refuses, each item
// alone, a point whose proof is for another binding (another context,
// another version, another key's ciphertext) or for another point, and in
// the same batch answers the items whose proofs verify. A batch of good
// items is answered whole (the batch check), and one bad item among many
// is named alone (the item-by-item fallback).
func TestTransitProofRefusedByEveryHolder(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	c.createTransit("enc/b", shamir.CipherAES256GCM, true)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRotateKey, RotateKey: &fsm.RotateKey{Name: "enc/a", Sharing: c.transitDeal("enc/a")}}); err != nil {
		t.Fatal(err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		return storedKey(t, c.leader(), "enc/a").Version == 2, "the leader has not applied the rotation"
	})
	for _, tn := range c.nodes {
		c.waitFor(settleTimeout, func() (bool, string) {
			return storedKey(t, tn, "enc/a").Version == 2, tn.id() + " has not applied the rotation"
		})
	}
	parse := func(s string) *api.TransitCiphertext {
		ct, err := api.ParseTransitCiphertext(s)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	a1 := parse(c.encrypt("enc/a", []byte("one"), nil)) // version 2
	a2 := parse(c.encrypt("enc/a", []byte("two"), nil))
	b := parse(c.encrypt("enc/b", []byte("of b"), []byte("tenant-1")))
	with := func(p fsm.TransitPoint, f func(p *fsm.TransitPoint)) fsm.TransitPoint { f(&p); return p }
	points := []fsm.TransitPoint{
		a1.Point(nil), // good
		with(a1.Point(nil), func(p *fsm.TransitPoint) { p.Context = []byte("tenant-1") }),       // another context
		with(a1.Point(nil), func(p *fsm.TransitPoint) { p.Version = 1 }),                        // another version
		with(a1.Point(nil), func(p *fsm.TransitPoint) { p.Proof = a2.Proof }),                   // another point's proof
		with(b.Point(nil), func(p *fsm.TransitPoint) { p.Version = 2 }),                         // another key's ciphertext
		with(a1.Point(nil), func(p *fsm.TransitPoint) { p.Proof = make([]byte, len(p.Proof)) }), // not a proof's encoding
		a2.Point(nil), // good
	}
	for _, tn := range c.nodes {
		sg, eph := c.signedDecrypt("enc/a", points)
		ans, err := c.askHolder(tn, sg, eph)
		if err != nil {
			t.Fatalf("%s refused the whole batch: %v", tn.id(), err)
		}
		for i, a := range ans {
			good := i == 0 || i == len(points)-1
			if good && (a.Partial == nil || a.Error != nil) {
				t.Errorf("%s: good item %d: %v", tn.id(), i, a.Error)
			}
			if !good && (a.Partial != nil || a.Error == nil || a.Error.Kind != KindWrongKey || !strings.Contains(a.Error.Message, "proof")) {
				t.Errorf("%s: item %d with a proof that is not its own: %+v", tn.id(), i, a)
			}
		}
	}
	// Through a coordinator the good items open and the others fail alone.
	res, err := c.open(c.decryptThrough(c.nodes[0], "enc/a", []string{a1.String(), a1.String(), a2.String()}, [][]byte{nil, []byte("x"), nil}), "enc/a")
	if err != nil || string(res[0].Plaintext) != "one" || res[1].Error == nil || string(res[2].Plaintext) != "two" {
		t.Fatalf("through a coordinator: %+v, %v", res, err)
	}
	// A batch of 40 good items, and the same with one bad among them.
	var many []fsm.TransitPoint
	for range 40 {
		many = append(many, parse(c.encrypt("enc/a", []byte("x"), nil)).Point(nil))
	}
	sg, eph := c.signedDecrypt("enc/a", many)
	ans, err := c.askHolder(c.nodes[1], sg, eph)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range ans {
		if a.Partial == nil {
			t.Fatalf("a batch of good items: item %d refused: %v", i, a.Error)
		}
	}
	many[23].Proof = many[24].Proof
	sg, eph = c.signedDecrypt("enc/a", many)
	if ans, err = c.askHolder(c.nodes[2], sg, eph); err != nil {
		t.Fatal(err)
	}
	for i, a := range ans {
		if (a.Partial == nil) != (i == 23) {
			t.Fatalf("one bad item among 40: item %d: %+v", i, a)
		}
	}
}

// TestTransitCoordinatorCannotStripProofs: the proofs ride in the signed
// request, so a coordinator that strips a proof, swaps two or puts one
// of its own in (to get s_i*X for a derivation's point X) changes what the
// caller signed, and every holder refuses the request.
func TestTransitCoordinatorCannotStripProofs(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	k := c.transitMeta("enc/a")
	a1, _ := api.ParseTransitCiphertext(c.encrypt("enc/a", []byte("one"), nil))
	a2, _ := api.ParseTransitCiphertext(c.encrypt("enc/a", []byte("two"), nil))
	X, err := shamir.TransitDerivePoint(api.TransitDeriveBinding(k.ID, 1, []byte("tenant-1")))
	if err != nil {
		t.Fatal(err)
	}
	for name, lie := range map[string]func(rel *fsm.ReleaseRequest){
		"a stripped proof": func(rel *fsm.ReleaseRequest) { rel.Points[0].Proof = nil },
		"swapped proofs": func(rel *fsm.ReleaseRequest) {
			rel.Points[0].Proof, rel.Points[1].Proof = rel.Points[1].Proof, rel.Points[0].Proof
		},
		"a derivation point":  func(rel *fsm.ReleaseRequest) { rel.Points[0].Point = X },
		"another context":     func(rel *fsm.ReleaseRequest) { rel.Points[0].Context = []byte("tenant-1") },
		"a point and a proof": func(rel *fsm.ReleaseRequest) { rel.Points[1] = rel.Points[0] },
	} {
		sg, eph := c.signedDecrypt("enc/a", []fsm.TransitPoint{a1.Point(nil), a2.Point(nil)})
		cmd := decodeCommand(sg)
		lie(cmd.Release)
		payload, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		changed := &fsm.Signed{Signer: sg.Signer, Payload: payload, Signature: sg.Signature}
		for _, tn := range c.nodes {
			if ans, err := c.askHolder(tn, changed, eph); err == nil {
				t.Errorf("%s: %s: %s answered %+v", name, tn.id(), tn.id(), ans)
			}
		}
	}
}
