package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// createECDSA stores an assembled ECDSA P-256 key, sealed under the
// cluster key as keyctl key create --type ecdsa does, kept by a node
// that signs with it for ttl.
func (c *testCluster) createECDSA(name string, ttl time.Duration) (*ecdsa.PrivateKey, *fsm.Key) {
	c.t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		c.t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		c.t.Fatal(err)
	}
	ct := c.seal(name, der)
	res, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
		Name: name, Type: fsm.KeyTypeECDSA, Public: pub, R: ct.R, Sealed: ct.Sealed, AssembleTTL: ttl}})
	if err != nil {
		c.t.Fatalf("creating %q: %v", name, err)
	}
	return priv, res.Key
}

// counted is what tn counted of op with keys of keyType, every gateway,
// result ok.
func counted(tn *testNode, op, keyType string) float64 {
	return testutil.ToFloat64(tn.n.Metrics().Operations.WithLabelValues(op, keyType, metrics.NoGateway, metrics.ResultOK))
}

func heldBy(tn *testNode, name string) *HeldKey {
	for _, h := range tn.n.Held() {
		if h.Name == name && h.Gateway == heldForSigning {
			return &h
		}
	}
	return nil
}

// TestAssembledECDSASignsThroughEveryNode: ECDSA P-256 has no practical
// threshold scheme, so an ecdsa key signs assembled: an operator's signing
// request (the generic path: REST /v1/sign, gRPC Sign, keyctl key sign)
// through any node has a quorum release the key to that node, which signs
// the message's SHA-256; every signature verifies with crypto/ecdsa and
// api.VerifySignature, and not for another message. With assemble_ttl 0
// no node keeps the key; a padding, an ephemeral key or no message are
// refused.
func TestAssembledECDSASignsThroughEveryNode(t *testing.T) {
	c := newTestCluster(t, 3)
	priv, k := c.createECDSA("sig/ecdsa", 0)
	for _, tn := range c.running() {
		c.waitHasKey(tn, "sig/ecdsa")
		msg := []byte("release v2 signed through " + tn.id())
		sig, err := c.signThrough(tn, c.signRequest("sig/ecdsa", msg))
		if err != nil {
			t.Fatalf("signing through %s: %v (kind %s)", tn.id(), err, KindOf(err))
		}
		digest := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig.Signature) {
			t.Fatalf("the signature made through %s does not verify with crypto/ecdsa", tn.id())
		}
		if sig.Type != fsm.KeyTypeECDSA || sig.Check(msg, "") != nil || api.VerifySignature(k, msg, sig.Signature, "") != nil {
			t.Fatalf("the answer (type %q) does not check", sig.Type)
		}
		if err := api.VerifySignature(k, []byte("another message"), sig.Signature, ""); !errors.Is(err, api.ErrBadSignature) {
			t.Errorf("the signature verified another message: %v", err)
		}
		if h := heldBy(tn, "sig/ecdsa"); h != nil {
			t.Errorf("%s keeps a key whose assemble_ttl is 0: %+v", tn.id(), *h)
		}
	}
	bad := []struct {
		what string
		req  *fsm.ReleaseRequest
		kind Kind
	}{
		{"a padding", &fsm.ReleaseRequest{Key: "sig/ecdsa", Op: fsm.OpSign, Message: []byte("m"), Padding: fsm.PaddingPSS}, KindInvalid},
		{"an ephemeral key", &fsm.ReleaseRequest{Key: "sig/ecdsa", Op: fsm.OpSign, Message: []byte("m"), Ephemeral: make([]byte, 32)}, KindInvalid},
		{"no message", &fsm.ReleaseRequest{Key: "sig/ecdsa", Op: fsm.OpSign}, KindInvalid},
	}
	for _, b := range bad {
		if _, err := c.signThrough(c.leader(), c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: b.req})); KindOf(err) != b.kind {
			t.Errorf("a signing request with %s: %v (kind %s), want %s", b.what, err, KindOf(err), b.kind)
		}
	}
}

// TestAssembledECDSAKeyIsHeldForItsTTL: with an assemble_ttl, the node
// that coordinated a signature keeps the key (its status lists it, gateway
// "sign") and signs the next requests without asking the holders, each
// still checked at a read index and its nonce spent once, also across the
// coordinator's restart; a revoke drops the key from memory as soon as the
// node applies it, and no signature follows.
func TestAssembledECDSAKeyIsHeldForItsTTL(t *testing.T) {
	c := newTestCluster(t, 3)
	priv, _ := c.createECDSA("sig/held", time.Hour)
	coord := c.leader()
	sg := c.signRequest("sig/held", []byte("first"))
	if _, err := c.signThrough(coord, sg); err != nil {
		t.Fatal(err)
	}
	h := heldBy(coord, "sig/held")
	if h == nil {
		t.Fatalf("the coordinator does not list the key it holds: %+v", coord.n.Held())
	}
	if until := time.Until(h.Until); until <= 0 || until > time.Hour {
		t.Errorf("held until %s: not within the key's assemble_ttl of an hour", h.Until)
	}
	for _, tn := range c.running() {
		if tn != coord && heldBy(tn, "sig/held") != nil {
			t.Errorf("%s, a holder that only gave its partial, lists the key as held", tn.id())
		}
	}
	partials := func() float64 {
		var n float64
		for _, tn := range c.running() {
			if tn != coord {
				n += counted(tn, opHolder, fsm.KeyTypeECDSA)
			}
		}
		return n
	}
	before := partials()
	if before == 0 {
		t.Fatal("no holder counted a partial for the first signature: the test proves nothing")
	}
	msg := []byte("second, with the held key")
	sig, err := c.signThrough(coord, c.signRequest("sig/held", msg))
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig.Signature) {
		t.Fatal("the held key's signature does not verify")
	}
	if partials() != before {
		t.Errorf("a signature with the held key asked the holders again")
	}
	if _, err := c.signThrough(coord, sg); KindOf(err) != KindUnauthenticated {
		t.Errorf("a replayed signing request with the held key: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
	// The second request's nonce was spent on the coordinator only; after
	// a restart it holds no key, and refuses the replay itself.
	held := c.signRequest("sig/held", []byte("signed with the held key, then replayed after a restart"))
	if _, err := c.signThrough(coord, held); err != nil {
		t.Fatal(err)
	}
	c.stop(coord)
	c.restart(coord)
	c.waitSettled(0, coord)
	c.waitHasKey(coord, "sig/held")
	if h := heldBy(coord, "sig/held"); h != nil {
		t.Fatalf("the restarted coordinator holds the key: %+v", *h)
	}
	if _, err := c.signThrough(coord, held); KindOf(err) != KindUnauthenticated {
		t.Errorf("a request signed with the held key, replayed after the coordinator's restart: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
	if _, err := c.signThrough(coord, c.signRequest("sig/held", []byte("after the restart"))); err != nil {
		t.Fatalf("a new request after the restart: %v", err)
	}
	c.revoke(coord, "sig/held")
	deadline := time.Now().Add(opTimeout)
	for heldBy(coord, "sig/held") != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h := heldBy(coord, "sig/held"); h != nil {
		t.Fatalf("the coordinator still holds the revoked key: %+v", *h)
	}
	if _, err := c.signThrough(coord, c.signRequest("sig/held", []byte("after the revoke"))); KindOf(err) != KindDenied {
		t.Errorf("signing after the revoke: %v (kind %s), want %s", err, KindOf(err), KindDenied)
	}
}

// TestSignRequestGoesOnlyWhereItsKeyTypeSigns: a lying coordinator that
// sends a signing request to a holder's other answers gets nothing: an
// ecdsa key's to the FROST or threshold RSA share paths, a FROST key's to
// the partial path (which would give a partial of the cluster key).
func TestSignRequestGoesOnlyWhereItsKeyTypeSigns(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createECDSA("sig/e", 0)
	c.createFROST("sig/f", nil)
	holder := c.anyRunning(c.leader())
	c.waitHasKey(holder, "sig/e")
	c.waitHasKey(holder, "sig/f")
	ask := func(name string) *partialRequest {
		return &partialRequest{Request: c.signRequest(name, []byte("m")), Version: storedKey(t, holder, name).Version}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := holder.n.answerFROSTSign(ctx, &frostSignRequest{Partial: *ask("sig/e"),
		Commitments: []shamir.NonceCommitment{{Index: 1}, {Index: 2}}}); KindOf(err) != KindInvalid {
		t.Errorf("an ecdsa signing request for a FROST share: %v (kind %s), want %s", err, KindOf(err), KindInvalid)
	}
	if _, err := holder.n.answerRSAShare(ctx, ask("sig/e")); err == nil {
		t.Error("an ecdsa signing request got a threshold RSA share")
	}
	req := ask("sig/f")
	req.Epoch = storedKey(t, holder, "sig/f").Frost().Epoch
	if _, err := holder.n.answerPartial(ctx, req); KindOf(err) != KindInvalid {
		t.Errorf("a FROST signing request for a partial: %v (kind %s), want %s", err, KindOf(err), KindInvalid)
	}
}
