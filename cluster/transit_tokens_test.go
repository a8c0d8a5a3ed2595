package cluster

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/token"
)

// Capability tokens for transit decrypt and derive (docs/tokens.md,
// docs/transit.md), on a real cluster: a token's decrypt flag allows a
// decryption by quorum, its derive flag a derivation (and an hmac, which
// is one); every holder verifies the chain itself.

// tokenTransit is a transit request (op decrypt with points, or derive
// with items) for the key named name, with tok bound to it as
// client.TokenClient binds it, and its ephemeral key.
func (c *testCluster) tokenTransit(tok []byte, rel *fsm.ReleaseRequest) (*fsm.Signed, *ecdh.PrivateKey) {
	c.t.Helper()
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	rel.Ephemeral = eph.PublicKey().Bytes()
	cmd := &fsm.Command{Type: fsm.TypeRelease, Release: rel, Nonce: randomBytes(c.t, 16), IssuedAt: time.Now().UnixNano()}
	payload, err := json.Marshal(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	return &fsm.Signed{Signer: c.opID, Payload: payload, Token: bindRaw(c.t, tok, payload)}, eph
}

// decryptWithToken decrypts ct of key name through tn with tok.
func (c *testCluster) decryptWithToken(tn *testNode, tok []byte, name, ct string) ([]byte, error) {
	c.t.Helper()
	parsed, err := api.ParseTransitCiphertext(ct)
	if err != nil {
		c.t.Fatal(err)
	}
	sg, eph := c.tokenTransit(tok, &fsm.ReleaseRequest{Key: name, Op: fsm.OpDecrypt,
		Points: []fsm.TransitPoint{parsed.Point(nil)}})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rep, err := tn.n.TransitDecrypt(ctx, sg)
	if err != nil {
		return nil, err
	}
	res, err := api.OpenTransitDecrypt(rep, c.clusterID, c.transitMeta(name), []*api.TransitCiphertext{parsed}, [][]byte{nil}, sg.Payload, eph)
	if err != nil {
		c.t.Fatalf("%s: the decryption does not check out: %v", tn.id(), err)
	}
	if res[0].Error != nil {
		return nil, res[0].Error
	}
	return res[0].Plaintext, nil
}

// deriveWithToken derives 32 bytes from context with key name through tn
// with tok.
func (c *testCluster) deriveWithToken(tn *testNode, tok []byte, name string, derivation []byte) ([]byte, error) {
	c.t.Helper()
	items := []fsm.TransitDerivation{{Version: c.transitMeta(name).Transit().Latest().Version, Context: derivation}}
	sg, eph := c.tokenTransit(tok, &fsm.ReleaseRequest{Key: name, Op: fsm.OpDerive, Derive: items})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rep, err := tn.n.TransitDerive(ctx, sg)
	if err != nil {
		return nil, err
	}
	res, err := api.OpenTransitDerive(rep, c.clusterID, c.transitMeta(name), items, "", 32, sg.Payload, eph)
	if err != nil {
		c.t.Fatalf("%s: the derivation does not check out: %v", tn.id(), err)
	}
	if res[0].Error != nil {
		return nil, res[0].Error
	}
	return res[0].Plaintext, nil
}

// TestTransitTokenFlagsHonouredOnEveryNode: a token with decrypt decrypts
// with its key through every node and derives nothing; one with derive
// derives (the same key on every node) and decrypts nothing; neither
// reaches another key nor one outside its prefix; a revoked one is
// refused by every node.
func TestTransitTokenFlagsHonouredOnEveryNode(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	c.createTransit("enc/b", shamir.CipherAES256GCM, false)
	c.createTransit("other/c", shamir.CipherAES256GCM, false)
	for _, tn := range c.nodes {
		c.waitHasKey(tn, "other/c")
	}
	ctA, ctB, ctC := c.encrypt("enc/a", []byte("for a"), nil), c.encrypt("enc/b", []byte("for b"), nil), c.encrypt("other/c", []byte("for c"), nil)
	decrypt := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"enc/a"}, Flags: []string{token.FlagDecrypt}})
	derive := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"enc/a"}, Flags: []string{token.FlagDerive}})
	prefix := mintToken(t, c.opID, c.opKey, token.Scope{Prefixes: []string{"enc/"}, Flags: []string{token.FlagDecrypt, token.FlagDerive}})
	var derived []byte
	for _, tn := range c.nodes {
		if got, err := c.decryptWithToken(tn, decrypt, "enc/a", ctA); err != nil || string(got) != "for a" {
			t.Fatalf("%s: decrypt with a decrypt token: %q, %v", tn.id(), got, err)
		}
		if got, err := c.decryptWithToken(tn, prefix, "enc/b", ctB); err != nil || string(got) != "for b" {
			t.Fatalf("%s: decrypt with a prefix token: %q, %v", tn.id(), got, err)
		}
		got, err := c.deriveWithToken(tn, derive, "enc/a", []byte("tenant-1"))
		if err != nil || len(got) != 32 || (derived != nil && !bytes.Equal(got, derived)) {
			t.Fatalf("%s: derive with a derive token: %x, %v (first node: %x)", tn.id(), got, err, derived)
		}
		derived = got
		for _, refused := range []struct {
			what string
			call func() error
			kind Kind
		}{
			{"derive with a decrypt-only token", func() error { _, err := c.deriveWithToken(tn, decrypt, "enc/a", []byte("tenant-1")); return err }, KindTokenLacksCapability},
			{"decrypt with a derive-only token", func() error { _, err := c.decryptWithToken(tn, derive, "enc/a", ctA); return err }, KindTokenLacksCapability},
			{"decrypt of another key", func() error { _, err := c.decryptWithToken(tn, decrypt, "enc/b", ctB); return err }, KindTokenLacksCapability},
			{"decrypt outside the prefix", func() error { _, err := c.decryptWithToken(tn, prefix, "other/c", ctC); return err }, KindTokenLacksCapability},
			{"derive outside the prefix", func() error { _, err := c.deriveWithToken(tn, prefix, "other/c", []byte("x")); return err }, KindTokenLacksCapability},
		} {
			if err := refused.call(); KindOf(err) != refused.kind {
				t.Errorf("%s: %s: %v (kind %s), want %s", tn.id(), refused.what, err, KindOf(err), refused.kind)
			}
		}
	}
	info, err := token.Inspect(decrypt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := c.anyRunning().n.Submit(ctx, c.sign(&fsm.Command{Type: fsm.TypeRevokeToken, RevokeToken: &fsm.RevokedToken{ID: info.RevocationIDs[0]}})); err != nil {
		t.Fatal(err)
	}
	for _, tn := range c.nodes {
		if _, err := c.decryptWithToken(tn, decrypt, "enc/a", ctA); KindOf(err) != KindTokenRevoked {
			t.Errorf("%s: a revoked token: %v (kind %s), want %s", tn.id(), err, KindOf(err), KindTokenRevoked)
		}
		if got, err := c.deriveWithToken(tn, derive, "enc/a", []byte("tenant-1")); err != nil || !bytes.Equal(got, derived) {
			t.Errorf("%s: another token after the revoke: %v", tn.id(), err)
		}
	}
}

// TestTransitTokenCheckedByEveryHolder: a compromised coordinator that
// relays a request whose token lacks the operation's flag (a derive token
// bound to a decryption) gets no partial from an honest holder: the holder
// verifies the chain itself, whatever the coordinator checked.
func TestTransitTokenCheckedByEveryHolder(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	victim := c.nodes[1]
	c.waitHasKey(victim, "enc/a")
	parsed, err := api.ParseTransitCiphertext(c.encrypt("enc/a", []byte("secret"), nil))
	if err != nil {
		t.Fatal(err)
	}
	ask := func(tok []byte) error {
		sg, _ := c.tokenTransit(tok, &fsm.ReleaseRequest{Key: "enc/a", Op: fsm.OpDecrypt,
			Points: []fsm.TransitPoint{parsed.Point(nil)}})
		var epoch uint64
		c.leader().n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_, err := victim.n.answerTransitDecrypt(ctx, &partialRequest{Request: sg, Version: storedKey(t, c.leader(), "enc/a").Version, Epoch: epoch})
		return err
	}
	derive := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"enc/a"}, Flags: []string{token.FlagDerive}})
	if err := ask(derive); KindOf(err) != KindTokenLacksCapability {
		t.Errorf("a derive token relayed for a decryption: %v (kind %s), want %s", err, KindOf(err), KindTokenLacksCapability)
	}
	decrypt := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"enc/a"}, Flags: []string{token.FlagDecrypt}})
	if err := ask(decrypt); err != nil {
		t.Errorf("a decrypt token for a decryption: %v", err)
	}
}

// TestTransitTokenRestrictedAndBounded: a token for enc/ with every flag,
// restricted offline to decrypt, decrypts and derives nothing; restricted
// to one use, it decrypts once, through one node, and is used up on
// every node after.
func TestTransitTokenRestrictedAndBounded(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	for _, tn := range c.nodes {
		c.waitHasKey(tn, "enc/a")
	}
	ct := c.encrypt("enc/a", []byte("once"), nil)
	minted := mintToken(t, c.opID, c.opKey, token.Scope{Prefixes: []string{"enc/"}, Flags: token.Flags})
	decryptOnly := restrict(t, minted, token.Restriction{Flags: []string{token.FlagDecrypt}})
	if _, err := c.deriveWithToken(c.nodes[0], decryptOnly, "enc/a", []byte("x")); KindOf(err) != KindTokenLacksCapability {
		t.Errorf("derive with a token restricted to decrypt: %v (kind %s), want %s", err, KindOf(err), KindTokenLacksCapability)
	}
	if _, err := c.deriveWithToken(c.nodes[0], minted, "enc/a", []byte("x")); err != nil {
		t.Errorf("derive with the token it was restricted from: %v", err)
	}
	once := restrict(t, decryptOnly, token.Restriction{MaxUses: 1})
	if got, err := c.decryptWithToken(c.nodes[1], once, "enc/a", ct); err != nil || string(got) != "once" {
		t.Fatalf("the one use: %q, %v", got, err)
	}
	for _, tn := range c.nodes {
		if _, err := c.decryptWithToken(tn, once, "enc/a", ct); KindOf(err) != KindTokenUsedUp {
			t.Errorf("%s: a second use: %v (kind %s), want %s", tn.id(), err, KindOf(err), KindTokenUsedUp)
		}
	}
}

// TestTransitAuditNamesTheTokenChain: a decryption with a token is in the
// audit log of its coordinator and of every holder that answered, with the
// token chain that allowed it.
func TestTransitAuditNamesTheTokenChain(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	parsed, err := api.ParseTransitCiphertext(c.encrypt("enc/a", []byte("audited"), nil))
	if err != nil {
		t.Fatal(err)
	}
	tok := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"enc/a"}, Flags: []string{token.FlagDecrypt}})
	sg, _ := c.tokenTransit(tok, &fsm.ReleaseRequest{Key: "enc/a", Op: fsm.OpDecrypt,
		Points: []fsm.TransitPoint{parsed.Point(nil)}})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := c.nodes[0].n.TransitDecrypt(ctx, sg); err != nil {
		t.Fatal(err)
	}
	info, err := token.Inspect(sg.Token)
	if err != nil {
		t.Fatal(err)
	}
	want := "token:" + token.Short(info.RevocationIDs) + " admin"
	nonce, records := nonceOf(t, sg), 0
	for _, tn := range c.nodes {
		recs, _ := auditLog(t, tn)
		for _, r := range recs {
			if r.Nonce == nonce && r.Outcome == "allowed" {
				records++
				if r.Basis != want || r.Principal != c.opID {
					t.Errorf("%s's %s record: basis %q principal %q, want %q", tn.id(), r.Role, r.Basis, r.Principal, want)
				}
			}
		}
	}
	if records < 3 { // the coordinator and t=2 holders
		t.Errorf("%d records of the decryption, want at least 3", records)
	}
}
