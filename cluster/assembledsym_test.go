package cluster

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// createSymmetric stores an AES-CBC or HMAC key of the bytes raw, sealed
// under the cluster key as keyctl transit create --key-file does.
func (c *testCluster) createSymmetric(name, typ string, raw []byte, ttl time.Duration) {
	c.t.Helper()
	ct := c.seal(name, raw)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
		Name: name, Type: typ, R: ct.R, Sealed: ct.Sealed, AssembleTTL: ttl}}); err != nil {
		c.t.Fatalf("creating %q: %v", name, err)
	}
}

func (c *testCluster) symmetricThrough(tn *testNode, sg *fsm.Signed) (*api.Symmetric, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return tn.n.Symmetric(ctx, sg)
}

func (c *testCluster) symmetricRequest(name, op string, msg, input []byte) *fsm.Signed {
	c.t.Helper()
	return c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: name, Op: op, Message: msg, Input: input}})
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAssembledSymmetricKnownAnswersThroughEveryNode: the SP 800-38A
// F.2.1 (AES-128-CBC) and F.2.5 (AES-256-CBC) keys, imported, decrypt
// the vectors' ciphertexts (IV in front, the PKCS #7 padding block after)
// to their plaintexts through every node, and what each node encrypts
// opens with crypto/cipher's CBC under the whole key; the RFC 4231 case 1
// key's HMAC-SHA256 and HMAC-SHA512 through every node are the RFC's and
// verify there, another MAC does not. With assemble_ttl 0 no node keeps
// a key; a CBC key does not MAC and an HMAC key does not encrypt.
func TestAssembledSymmetricKnownAnswersThroughEveryNode(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	plain := mustHex(t, "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
	cbc := []struct{ name, typ, key, ct string }{
		{"sym/f21", fsm.KeyTypeAES128CBC, "2b7e151628aed2a6abf7158809cf4f3c",
			"7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"},
		{"sym/f25", fsm.KeyTypeAES256CBC, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
			"f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"},
	}
	hkey := bytes.Repeat([]byte{0x0b}, 20)
	hdata := []byte("Hi There")
	hmacs := []struct{ name, typ, want string }{
		{"sym/h256", fsm.KeyTypeHMACSHA256, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{"sym/h512", fsm.KeyTypeHMACSHA512, "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
	}
	for _, v := range cbc {
		c.createSymmetric(v.name, v.typ, mustHex(t, v.key), 0)
	}
	for _, v := range hmacs {
		c.createSymmetric(v.name, v.typ, hkey, 0)
	}
	for _, tn := range c.running() {
		for _, v := range cbc {
			c.waitHasKey(tn, v.name)
			key := mustHex(t, v.key)
			// The vector's blocks, IV in front, and the padding block a
			// 64-byte plaintext takes, made here with the whole key.
			body := mustHex(t, v.ct)
			padded := paddingBlock(t, key, body[len(body)-16:])
			vec := append(append(mustHex(t, "000102030405060708090a0b0c0d0e0f"), body...), padded...)
			res, err := c.symmetricThrough(tn, c.symmetricRequest(v.name, fsm.OpDecrypt, vec, nil))
			if err != nil || !bytes.Equal(res.Output, plain) {
				t.Fatalf("%s through %s: decrypt: %+v, %v; want the vector's plaintext", v.name, tn.id(), res, err)
			}
			msg := []byte("encrypted through " + tn.id())
			res, err = c.symmetricThrough(tn, c.symmetricRequest(v.name, fsm.OpEncrypt, msg, nil))
			if err != nil {
				t.Fatalf("%s through %s: encrypt: %v", v.name, tn.id(), err)
			}
			if got, err := api.CBCDecrypt(key, res.Output); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%s through %s: the ciphertext does not open with the whole key: %v", v.name, tn.id(), err)
			}
			if _, err := c.symmetricThrough(tn, c.symmetricRequest(v.name, fsm.OpMAC, msg, nil)); KindOf(err) != KindInvalid {
				t.Errorf("%s: a CBC key made a MAC: %v", v.name, err)
			}
		}
		for _, v := range hmacs {
			c.waitHasKey(tn, v.name)
			res, err := c.symmetricThrough(tn, c.symmetricRequest(v.name, fsm.OpMAC, hdata, nil))
			if err != nil || hex.EncodeToString(res.Output) != v.want {
				t.Fatalf("%s through %s: %+v, %v; want RFC 4231's %s", v.name, tn.id(), res, err, v.want)
			}
			res, err = c.symmetricThrough(tn, c.symmetricRequest(v.name, fsm.OpVerify, hdata, mustHex(t, v.want)))
			if err != nil || !res.Valid {
				t.Fatalf("%s through %s: the RFC's MAC does not verify: %v", v.name, tn.id(), err)
			}
			res, err = c.symmetricThrough(tn, c.symmetricRequest(v.name, fsm.OpVerify, []byte("Hi there"), mustHex(t, v.want)))
			if err != nil || res.Valid {
				t.Fatalf("%s through %s: the MAC verified another message: %v", v.name, tn.id(), err)
			}
			if _, err := c.symmetricThrough(tn, c.symmetricRequest(v.name, fsm.OpEncrypt, hdata, nil)); KindOf(err) != KindInvalid {
				t.Errorf("%s: an HMAC key encrypted: %v", v.name, err)
			}
		}
		for _, name := range []string{"sym/f21", "sym/h256"} {
			if h := heldBy(tn, name); h != nil {
				t.Errorf("%s keeps a key whose assemble_ttl is 0: %+v", tn.id(), *h)
			}
		}
	}
	// The key is never released to a client.
	if _, err := c.symmetricThrough(c.leader(), c.symmetricRequest("sym/h256", fsm.OpGet, nil, nil)); err == nil {
		t.Error("an HMAC key answered get on the assembled path")
	}
	get := c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "sym/h256", Op: fsm.OpGet, Ephemeral: make([]byte, 32)}})
	var refused *fsm.Error
	c.leader().n.fsm.Read(func(s *fsm.State) { _, _, refused = s.AuthorizeRelease(get, time.Now()) })
	if refused == nil {
		t.Error("an HMAC key is released to a client")
	}
}

// paddingBlock is the AES-CBC block of a full PKCS #7 padding chained
// on prev.
func paddingBlock(t *testing.T, key, prev []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.Repeat([]byte{aes.BlockSize}, aes.BlockSize)
	cipher.NewCBCEncrypter(b, prev).CryptBlocks(out, out)
	return out
}

// TestAssembledSymmetricKeyIsHeldForItsTTL: with an assemble_ttl, the
// node that coordinated an HMAC keeps the key (its status lists it,
// gateway "sign", until within the ttl), MACs the next requests without
// asking the holders, refuses a replay, and drops the key as soon as it
// applies a revoke, after which nothing is computed.
func TestAssembledSymmetricKeyIsHeldForItsTTL(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	key := make([]byte, 32)
	rand.Read(key)
	c.createSymmetric("sym/held", fsm.KeyTypeHMACSHA256, key, time.Hour)
	coord := c.leader()
	sg := c.symmetricRequest("sym/held", fsm.OpMAC, []byte("first"), nil)
	if _, err := c.symmetricThrough(coord, sg); err != nil {
		t.Fatal(err)
	}
	h := heldBy(coord, "sym/held")
	if h == nil {
		t.Fatalf("the coordinator does not list the key it holds: %+v", coord.n.Held())
	}
	if until := time.Until(h.Until); until <= 0 || until > time.Hour {
		t.Errorf("held until %s: not within the key's assemble_ttl of an hour", h.Until)
	}
	for _, tn := range c.running() {
		if tn != coord && heldBy(tn, "sym/held") != nil {
			t.Errorf("%s, a holder that only gave its partial, lists the key as held", tn.id())
		}
	}
	partials := func() float64 {
		var n float64
		for _, tn := range c.running() {
			if tn != coord {
				n += counted(tn, opHolder, fsm.KeyTypeHMACSHA256)
			}
		}
		return n
	}
	before := partials()
	if before == 0 {
		t.Fatal("no holder counted a partial for the first MAC: the test proves nothing")
	}
	msg := []byte("second, with the held key")
	res, err := c.symmetricThrough(coord, c.symmetricRequest("sym/held", fsm.OpMAC, msg, nil))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	if !hmac.Equal(res.Output, m.Sum(nil)) {
		t.Fatal("the held key's MAC is not crypto/hmac's")
	}
	if partials() != before {
		t.Errorf("a MAC with the held key asked the holders again")
	}
	if _, err := c.symmetricThrough(coord, sg); KindOf(err) != KindUnauthenticated {
		t.Errorf("a replayed request with the held key: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
	c.revoke(coord, "sym/held")
	c.waitFor(opTimeout, func() (bool, string) {
		if h := heldBy(coord, "sym/held"); h != nil {
			return false, "the coordinator still holds the revoked key"
		}
		return true, ""
	})
	if _, err := c.symmetricThrough(coord, c.symmetricRequest("sym/held", fsm.OpMAC, []byte("after the revoke"), nil)); KindOf(err) != KindDenied {
		t.Errorf("a MAC after the revoke: %v (kind %s), want %s", err, KindOf(err), KindDenied)
	}
}

// TestAssembledSymmetricRefusedWithoutTheRule: an operator whose rule
// grants read, get and sign but not encrypt, decrypt, mac or verify is
// refused by every node as coordinator, and by every holder a lying
// coordinator asks directly for its partial: no share of the key leaves.
// An allowed request sent by a lying coordinator to the holders' transit
// or sealed paths is not answered there either.
func TestAssembledSymmetricRefusedWithoutTheRule(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSymmetric("sym/cbc", fsm.KeyTypeAES256CBC, make([]byte, 32), time.Hour)
	c.createSymmetric("sym/mac", fsm.KeyTypeHMACSHA512, make([]byte, 64), time.Hour)
	opPub, opKey, _ := ed25519.GenerateKey(rand.Reader)
	bob := fsm.PrincipalID(opPub)
	for _, cmd := range []*fsm.Command{
		{Type: fsm.TypeAddOperator, AddOperator: &fsm.Operator{ID: bob, Name: "bob", PublicKey: opPub}},
		{Type: fsm.TypePutRule, PutRule: &fsm.Rule{ID: "bob-other", Principal: bob, Key: "sym/*", Ops: []string{fsm.OpRead, fsm.OpGet, fsm.OpSign, fsm.OpDerive}}},
	} {
		if _, err := c.submit(cmd); err != nil {
			t.Fatal(err)
		}
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range c.nodes {
			ok := false
			tn.n.fsm.Read(func(s *fsm.State) { ok = s.Rules["bob-other"] != nil && s.Keys["sym/mac"] != nil })
			if !ok {
				return false, tn.id() + " has not applied bob's rule"
			}
		}
		return true, ""
	})
	var epoch uint64
	c.leader().n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
	reqs := []*fsm.ReleaseRequest{
		{Key: "sym/cbc", Op: fsm.OpEncrypt, Message: []byte("m")},
		{Key: "sym/cbc", Op: fsm.OpDecrypt, Message: make([]byte, 32)},
		{Key: "sym/mac", Op: fsm.OpMAC, Message: []byte("m")},
		{Key: "sym/mac", Op: fsm.OpVerify, Message: []byte("m"), Input: make([]byte, 64)},
	}
	for _, r := range reqs {
		for _, tn := range c.nodes {
			req := *r
			if _, err := c.symmetricThrough(tn, signWith(t, bob, opKey, &fsm.Command{Type: fsm.TypeRelease, Release: &req})); KindOf(err) != KindDenied {
				t.Errorf("bob's %s of %s through %s: %v; want denied", r.Op, r.Key, tn.id(), err)
			}
			req = *r
			sg := signWith(t, bob, opKey, &fsm.Command{Type: fsm.TypeRelease, Release: &req})
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			if p, err := tn.n.answerPartial(ctx, &partialRequest{Request: sg, Epoch: epoch}); KindOf(err) != KindDenied || p != nil {
				t.Errorf("bob's %s of %s, asked of holder %s directly: %v; want denied", r.Op, r.Key, tn.id(), err)
			}
			cancel()
			if h := heldBy(tn, r.Key); h != nil {
				t.Errorf("%s holds %s after refusals only", tn.id(), r.Key)
			}
		}
	}
	// A lying coordinator sends an allowed CBC decrypt request to the
	// holders' transit and sealed paths: neither answers.
	for _, tn := range c.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		sg := c.symmetricRequest("sym/cbc", fsm.OpDecrypt, make([]byte, 32), nil)
		if p, err := tn.n.answerTransitDecrypt(ctx, &partialRequest{Request: sg, Epoch: epoch}); err == nil || p != nil {
			t.Errorf("holder %s answered a CBC decrypt on the transit path", tn.id())
		}
		sg = c.symmetricRequest("sym/cbc", fsm.OpDecrypt, make([]byte, 32), nil)
		if p, err := tn.n.answerSealedPartial(ctx, &partialRequest{Request: sg, Epoch: epoch, Version: 1}); err == nil || p != nil {
			t.Errorf("holder %s answered a CBC decrypt on the sealed path", tn.id())
		}
		cancel()
	}
	// The operator with every op computes: the refusals were the rule's.
	if _, err := c.symmetricThrough(c.nodes[0], c.symmetricRequest("sym/mac", fsm.OpMAC, []byte("m"), nil)); err != nil {
		t.Fatalf("the admin's MAC: %v", err)
	}
}
