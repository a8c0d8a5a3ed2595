package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/biscuit-auth/biscuit-go/v2"
	"github.com/biscuit-auth/biscuit-go/v2/parser"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/token"
)

// Capability tokens on a real cluster (raft and shares on disk): every
// node verifies the whole chain itself. The tokens are minted with the
// operator's key and restricted offline with the token and package token
// alone, as an application would.

// mintToken mints a token as the operator (id, key) for scope, for an
// hour.
func mintToken(t *testing.T, id string, key ed25519.PrivateKey, scope token.Scope) []byte {
	t.Helper()
	if scope.ExpiresAt.IsZero() {
		scope.ExpiresAt = time.Now().Add(time.Hour)
	}
	tok, err := token.Mint(id, key, scope, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func restrict(t *testing.T, tok []byte, r token.Restriction) []byte {
	t.Helper()
	out, err := token.Restrict(tok, r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tokenRelease makes a release request for name with tok bound to it, as
// client.TokenClient does, remembering its ephemeral key for openRelease.
func (c *testCluster) tokenRelease(op string, tok []byte, name string) *fsm.Signed {
	c.t.Helper()
	return c.tokenReleaseSealed(op, tok, name, "")
}

// tokenReleaseSealed is tokenRelease in seal mode seal.
func (c *testCluster) tokenReleaseSealed(op string, tok []byte, name, seal string) *fsm.Signed {
	c.t.Helper()
	priv, err := shamir.NewX25519Key(rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpGet, Ephemeral: priv.PublicKey(), Seal: seal},
		Nonce: randomBytes(c.t, 16), IssuedAt: time.Now().UnixNano()}
	payload, err := json.Marshal(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	sg := &fsm.Signed{Signer: op, Payload: payload, Token: bindRaw(c.t, tok, payload)}
	c.ephMu.Lock()
	defer c.ephMu.Unlock()
	if c.ephemerals == nil {
		c.ephemerals = map[string]*shamir.X25519Key{}
	}
	c.ephemerals[string(payload)] = priv
	return sg
}

// releaseWithToken releases name through tn with tok, from caller.
func (c *testCluster) releaseWithToken(tn *testNode, op string, tok []byte, name string, caller netip.Addr) ([]byte, error) {
	c.t.Helper()
	sg := c.tokenRelease(op, tok, name)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if caller.IsValid() {
		ctx = WithCaller(ctx, caller)
	}
	sr, err := tn.n.Release(ctx, sg)
	if err != nil {
		return nil, err
	}
	return c.openRelease(sg, sr)
}

// TestTokenRestrictedOfflineHonouredExactlyOnEveryNode: a token for app/*
// with every flag, restricted offline to decrypt of app/a from 10.0.0.0/8,
// releases app/a through every node, and nothing else: not app/b, not a
// key outside its prefix, not from another network. A restriction that
// lists a key the token was not minted for adds nothing.
func TestTokenRestrictedOfflineHonouredExactlyOnEveryNode(t *testing.T) {
	c := newTestCluster(t, 3)
	a, b := randomBytes(t, 32), randomBytes(t, 32)
	c.createSecret("app/a", a)
	c.createSecret("app/b", b)
	c.createSecret("other/c", randomBytes(t, 32))
	minted := mintToken(t, c.opID, c.opKey, token.Scope{Prefixes: []string{"app/"}, Flags: token.Flags})
	narrow := restrict(t, minted, token.Restriction{Flags: []string{token.FlagDecrypt}, Keys: []string{"app/a", "other/c"}})
	narrow = restrict(t, narrow, token.Restriction{Network: netip.MustParsePrefix("10.0.0.0/8")})
	inNet, outNet := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.1")
	readOnly := restrict(t, minted, token.Restriction{Flags: token.ReadOnly})
	widened := widen(t, narrow, `key("app/b"); key_prefix("other/"); flag("decrypt"); operator("`+c.opID+`");`)
	wideGrants := widen(t, narrow, `operation("decrypt"); resource("app/b"); caller_ipv4(167837955);`)
	for _, tn := range c.nodes {
		got, err := c.releaseWithToken(tn, c.opID, narrow, "app/a", inNet)
		if err != nil || !bytes.Equal(got, a) {
			t.Fatalf("%s: the restricted token's own key: %v", tn.id(), err)
		}
		if got, err := c.releaseWithToken(tn, c.opID, minted, "app/b", netip.Addr{}); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s: the minted token: %v", tn.id(), err)
		}
		for _, refused := range []struct {
			what   string
			tok    []byte
			key    string
			caller netip.Addr
			kind   Kind
		}{
			{"another key of the prefix", narrow, "app/b", inNet, KindTokenLacksCapability},
			{"a key the restriction names but the token was not minted for", narrow, "other/c", inNet, KindTokenLacksCapability},
			{"from another network", narrow, "app/a", outNet, KindTokenLacksCapability},
			{"with no caller address", narrow, "app/a", netip.Addr{}, KindTokenLacksCapability},
			{"a key outside the minted prefix", minted, "other/c", netip.Addr{}, KindTokenLacksCapability},
			{"decrypt with a READONLY token", readOnly, "app/a", netip.Addr{}, KindTokenLacksCapability},
			{"a key a widening block adds", widened, "app/b", inNet, KindTokenWidened},
			{"a prefix a widening block adds", widened, "other/c", inNet, KindTokenWidened},
			{"a block stating the request's own facts", wideGrants, "app/b", inNet, KindTokenLacksCapability},
		} {
			if _, err := c.releaseWithToken(tn, c.opID, refused.tok, refused.key, refused.caller); KindOf(err) != refused.kind {
				t.Errorf("%s: %s: %v (kind %s), want %s", tn.id(), refused.what, err, KindOf(err), refused.kind)
			}
		}
	}
}

// TestTokenBoundedByItsOperatorsRules: a non-admin operator may get app/a
// only; a token it mints for every key and flag releases app/a and
// nothing else. A token of another root, or naming an operator that does
// not exist, is refused.
func TestTokenBoundedByItsOperatorsRules(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createSecret("app/a", randomBytes(t, 32))
	c.createSecret("app/b", randomBytes(t, 32))
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	id := fsm.PrincipalID(pub)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddOperator, AddOperator: &fsm.Operator{ID: id, Name: "app-team", PublicKey: pub}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypePutRule, PutRule: &fsm.Rule{ID: "team-a", Principal: id, Key: "app/a", Ops: []string{fsm.OpGet}}}); err != nil {
		t.Fatal(err)
	}
	all := mintToken(t, id, key, token.Scope{Prefixes: []string{""}, Flags: token.Flags})
	tn := c.nodes[1]
	c.waitFor(settleTimeout, func() (bool, string) {
		_, err := c.releaseWithToken(tn, id, all, "app/a", netip.Addr{})
		return err == nil, "the team's token: " + errString(err)
	})
	if _, err := c.releaseWithToken(tn, id, all, "app/b", netip.Addr{}); KindOf(err) != KindDenied {
		t.Fatalf("a token beyond its operator's rules: %v (kind %s)", err, KindOf(err))
	}
	// Forged: minted with another key in the team's name.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forged := mintToken(t, id, other, token.Scope{Prefixes: []string{""}, Flags: token.Flags})
	if _, err := c.releaseWithToken(tn, id, forged, "app/a", netip.Addr{}); KindOf(err) != KindUnauthenticated {
		t.Fatalf("a forged token: %v (kind %s)", err, KindOf(err))
	}
	// The admin's token presented as the team's, and as nobody's.
	admins := mintToken(t, c.opID, c.opKey, token.Scope{Prefixes: []string{""}, Flags: token.Flags})
	if _, err := c.releaseWithToken(tn, id, admins, "app/b", netip.Addr{}); KindOf(err) != KindUnauthenticated {
		t.Fatalf("the admin's token under the team's name: %v (kind %s)", err, KindOf(err))
	}
	if _, err := c.releaseWithToken(tn, "nobody", admins, "app/b", netip.Addr{}); KindOf(err) != KindUnauthenticated {
		t.Fatalf("a token of no operator: %v (kind %s)", err, KindOf(err))
	}
}

// bindRaw binds tok to payload and seals it with the library alone, as
// token.Bind does but without its checks: a widened token too.
func bindRaw(t testing.TB, tok, payload []byte) []byte {
	t.Helper()
	b, err := biscuit.Unmarshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	d := token.RequestDigest(payload)
	blk, err := parser.FromStringBlockWithParams("bound({d}); check if request({d});", parser.ParametersMap{"d": biscuit.Bytes(d)})
	if err != nil {
		t.Fatal(err)
	}
	bb := b.CreateBlock()
	if err := bb.AddBlock(blk); err != nil {
		t.Fatal(err)
	}
	if b, err = b.Append(rand.Reader, bb.Build()); err != nil {
		t.Fatal(err)
	}
	if b, err = b.Seal(rand.Reader); err != nil {
		t.Fatal(err)
	}
	out, err := b.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// widen appends a block of facts like the authority's to tok, as a holder
// of the token can with the library.
func widen(t *testing.T, tok []byte, facts string) []byte {
	t.Helper()
	b, err := biscuit.Unmarshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := parser.FromStringBlock(facts)
	if err != nil {
		t.Fatal(err)
	}
	bb := b.CreateBlock()
	if err := bb.AddBlock(blk); err != nil {
		t.Fatal(err)
	}
	w, err := b.Append(rand.Reader, bb.Build())
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// TestTokenRevokeIsHonouredByEveryNode: revoking a restricted token's id
// refuses it on every node, and leaves the token it was restricted from;
// revoking that one's refuses both. A request bound before the revoke and
// sent again after it is refused.
func TestTokenRevokeIsHonouredByEveryNode(t *testing.T) {
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("app/a", secret)
	minted := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"app/a"}, Flags: []string{token.FlagDecrypt}})
	narrow := restrict(t, minted, token.Restriction{ExpiresAt: time.Now().Add(30 * time.Minute)})
	info, err := token.Inspect(narrow)
	if err != nil {
		t.Fatal(err)
	}
	early := c.tokenRelease(c.opID, narrow, "app/a") // bound now, sent after the revoke
	for _, tn := range c.nodes {
		if _, err := c.releaseWithToken(tn, c.opID, narrow, "app/a", netip.Addr{}); err != nil {
			t.Fatalf("%s before the revoke: %v", tn.id(), err)
		}
	}
	revoke := func(id string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		follower := c.anyRunning(c.leader())
		if _, err := follower.n.Submit(ctx, c.sign(&fsm.Command{Type: fsm.TypeRevokeToken, RevokeToken: &fsm.RevokedToken{ID: id}})); err != nil {
			t.Fatal(err)
		}
	}
	revoke(info.RevocationIDs[1])
	for _, tn := range c.nodes {
		if _, err := c.releaseWithToken(tn, c.opID, narrow, "app/a", netip.Addr{}); KindOf(err) != KindTokenRevoked {
			t.Errorf("%s: a revoked token: %v (kind %s), want %s", tn.id(), err, KindOf(err), KindTokenRevoked)
		}
		if got, err := c.releaseWithToken(tn, c.opID, minted, "app/a", netip.Addr{}); err != nil || !bytes.Equal(got, secret) {
			t.Errorf("%s: the token it was restricted from: %v", tn.id(), err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := c.nodes[2].n.Release(ctx, early); KindOf(err) != KindTokenRevoked {
		t.Errorf("a request bound before the revoke: %v (kind %s), want %s", err, KindOf(err), KindTokenRevoked)
	}
	revoke(info.RevocationIDs[0])
	for _, tn := range c.nodes {
		if _, err := c.releaseWithToken(tn, c.opID, minted, "app/a", netip.Addr{}); KindOf(err) != KindTokenRevoked {
			t.Errorf("%s: the revoked minted token: %v (kind %s)", tn.id(), err, KindOf(err))
		}
	}
}

// TestTokenExpiredRefused: a token restricted to a life that has passed
// is refused.
func TestTokenExpiredRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createSecret("app/a", randomBytes(t, 32))
	minted := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"app/a"}, Flags: token.Flags})
	expired := restrict(t, minted, token.Restriction{ExpiresAt: time.Now().Add(-time.Minute)})
	if _, err := c.releaseWithToken(c.nodes[0], c.opID, expired, "app/a", netip.Addr{}); KindOf(err) != KindTokenExpired {
		t.Fatalf("an expired token: %v (kind %s)", err, KindOf(err))
	}
}

// TestLyingCoordinatorRelaysTokenForAnotherKey: a compromised node holds a
// client's bound request for app/a and asks an honest holder for a partial
// of app/b with the same token, or of app/a sealed to its own ephemeral
// key, or sends the request again: the holder refuses each.
func TestLyingCoordinatorRelaysTokenForAnotherKey(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createSecret("app/a", randomBytes(t, 32))
	c.createSecret("app/b", randomBytes(t, 32))
	victim := c.nodes[1]
	c.waitHasKey(victim, "app/b")
	minted := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"app/a"}, Flags: []string{token.FlagDecrypt}})
	wide := mintToken(t, c.opID, c.opKey, token.Scope{Prefixes: []string{"app/"}, Flags: []string{token.FlagDecrypt}})
	reqFor := func(sg *fsm.Signed, name string) *partialRequest {
		k := storedKey(t, c.leader(), name)
		var epoch uint64
		c.leader().n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
		return &partialRequest{Request: sg, Version: k.Version, Epoch: epoch}
	}
	ask := func(pr *partialRequest) error {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_, err := victim.n.answerSealedPartial(ctx, pr)
		return err
	}
	for _, tok := range [][]byte{minted, wide} {
		honest := c.tokenRelease(c.opID, tok, "app/a")
		// Another key: the payload changes, the token is bound to the old one.
		var cmd fsm.Command
		if err := json.Unmarshal(honest.Payload, &cmd); err != nil {
			t.Fatal(err)
		}
		cmd.Release.Key = "app/b"
		other, _ := json.Marshal(&cmd)
		if err := ask(reqFor(&fsm.Signed{Signer: honest.Signer, Payload: other, Token: honest.Token}, "app/b")); KindOf(err) != KindUnauthenticated {
			t.Errorf("a token relayed for another key: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
		}
		// Its own ephemeral key, for the same key.
		cmd.Release.Key, cmd.Release.Ephemeral = "app/a", randomBytes(t, 32)
		own, _ := json.Marshal(&cmd)
		if err := ask(reqFor(&fsm.Signed{Signer: honest.Signer, Payload: own, Token: honest.Token}, "app/a")); KindOf(err) != KindUnauthenticated {
			t.Errorf("a token relayed with the coordinator's ephemeral key: %v (kind %s)", err, KindOf(err))
		}
		// The honest request, answered once, not twice.
		if err := ask(reqFor(honest, "app/a")); err != nil {
			t.Fatalf("the honest request: %v", err)
		}
		if err := ask(reqFor(honest, "app/a")); KindOf(err) != KindUnauthenticated {
			t.Errorf("the honest request replayed: %v (kind %s)", err, KindOf(err))
		}
	}
}

// TestTokenTTLBoundsAgree: the state keeps a revocation for as long as a
// token can live.
func TestTokenTTLBoundsAgree(t *testing.T) {
	if fsm.MaxTokenTTL != token.MaxTTL {
		t.Fatalf("fsm keeps revocations %v, tokens live up to %v", fsm.MaxTokenTTL, token.MaxTTL)
	}
}

// TestAuditNamesTheTokenChain: the coordinator's and the holders' records
// of a release a token allowed name the token's revocation ids, and the
// root operator's grant.
func TestAuditNamesTheTokenChain(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createSecret("app/a", randomBytes(t, 32))
	minted := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"app/a"}, Flags: []string{token.FlagDecrypt}})
	narrow := restrict(t, minted, token.Restriction{Flags: []string{token.FlagDecrypt}})
	sg := c.tokenRelease(c.opID, narrow, "app/a")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := c.nodes[0].n.Release(ctx, sg); err != nil {
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
		t.Errorf("%d records of the release, want at least 3", records)
	}
}

// TestTokenUsesBoundedOnEveryNode: a token restricted to 2 uses releases
// twice, through any nodes, and then through none; a coordinator that
// asks a holder without recording the use is refused.
func TestTokenUsesBoundedOnEveryNode(t *testing.T) {
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("app/a", secret)
	minted := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"app/a"}, Flags: []string{token.FlagDecrypt}})
	twice := restrict(t, minted, token.Restriction{MaxUses: 2})
	for i, tn := range c.nodes[:2] {
		if got, err := c.releaseWithToken(tn, c.opID, twice, "app/a", netip.Addr{}); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("use %d through %s: %v", i+1, tn.id(), err)
		}
	}
	for _, tn := range c.nodes {
		if _, err := c.releaseWithToken(tn, c.opID, twice, "app/a", netip.Addr{}); KindOf(err) != KindTokenUsedUp {
			t.Errorf("%s: a third use: %v (kind %s), want %s", tn.id(), err, KindOf(err), KindTokenUsedUp)
		}
	}
	// A lying coordinator asks a holder directly, recording nothing.
	fresh := restrict(t, minted, token.Restriction{MaxUses: 5})
	victim := c.nodes[1]
	k := storedKey(t, victim, "app/a")
	var epoch uint64
	victim.n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := victim.n.answerSealedPartial(ctx, &partialRequest{Request: c.tokenRelease(c.opID, fresh, "app/a"), Version: k.Version, Epoch: epoch})
	if KindOf(err) != KindConflict {
		t.Fatalf("a use not recorded: %v (kind %s), want %s", err, KindOf(err), KindConflict)
	}
	// The token it was restricted from is not bounded.
	if _, err := c.releaseWithToken(c.nodes[2], c.opID, minted, "app/a", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
}

// TestForgedBoundedTokenWritesNothing: a token with a bound on uses, not
// signed by its operator, sent by anyone to the token routes, costs no
// log write.
func TestForgedBoundedTokenWritesNothing(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createSecret("app/a", randomBytes(t, 32))
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forged := restrict(t, mintToken(t, c.opID, other, token.Scope{Keys: []string{"app/a"}, Flags: token.Flags}), token.Restriction{MaxUses: 3})
	tn := c.nodes[0]
	var before uint64
	tn.n.fsm.Read(func(s *fsm.State) { before = s.Applied })
	sg := c.tokenRelease(c.opID, forged, "app/a")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := tn.n.Sign(ctx, sg); KindOf(err) != KindUnauthenticated {
		t.Fatalf("a forged bounded token: %v (kind %s)", err, KindOf(err))
	}
	if _, err := tn.n.Release(ctx, sg); KindOf(err) != KindUnauthenticated {
		t.Fatalf("a forged bounded token: %v (kind %s)", err, KindOf(err))
	}
	tn.n.fsm.Read(func(s *fsm.State) {
		if len(s.TokenUses) != 0 {
			t.Fatalf("uses recorded for a forged token: %+v (applied %d -> %d)", s.TokenUses, before, s.Applied)
		}
	})
}
