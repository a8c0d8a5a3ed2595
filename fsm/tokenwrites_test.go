package fsm_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/biscuit-auth/biscuit-go/v2"
	"github.com/biscuit-auth/biscuit-go/v2/parser"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/token"
)

// writeCheck is cluster.WriteTokenCheck (cluster imports fsm, so it is
// restated here): package token at the entry's time, with no time limit.
func writeCheck(root ed25519.PublicKey, sg *fsm.Signed, op, key string, now time.Time, revoked func(string) bool) (*fsm.TokenGrant, *fsm.Error) {
	v, err := token.Verify(sg.Token, root, token.Request{Operator: sg.Signer, Flag: op, Key: key, Payload: sg.Payload, Now: now, Replicated: true}, revoked)
	if err != nil {
		code := fsm.CodeTokenLacksCapability
		switch {
		case errors.Is(err, token.ErrForged), errors.Is(err, token.ErrUnbound):
			code = fsm.CodeBadSignature
		case errors.Is(err, token.ErrExpired):
			code = fsm.CodeTokenExpired
		case errors.Is(err, token.ErrRevoked):
			code = fsm.CodeTokenRevoked
		case errors.Is(err, token.ErrWidened):
			code = fsm.CodeTokenWidened
		case errors.Is(err, token.ErrMalformed):
			code = fsm.CodeInvalid
		}
		return nil, &fsm.Error{Code: code, Message: err.Error()}
	}
	g := &fsm.TokenGrant{Chain: v.RevocationIDs}
	for _, b := range v.UseBounds {
		g.Bounds = append(g.Bounds, fsm.TokenBound{ID: b.ID, Max: b.Max})
	}
	return g, nil
}

// tokenWriteState is releaseState with op allowed to revoke and destroy
// db/*, and a state machine that takes token writes.
func tokenWriteState(h *harness) {
	h.f.TokenWrites = writeCheck
	releaseState(h)
	h.must(admin, putRuleCmd("op-write", op.ID, "db/*", fsm.OpRevoke, fsm.OpDestroy))
	h.must(admin, createKeyCmd("db/y"))
}

func mint(t *testing.T, p principal, scope token.Scope, now time.Time) []byte {
	t.Helper()
	if scope.ExpiresAt.IsZero() {
		scope.ExpiresAt = now.Add(24 * time.Hour)
	}
	tok, err := token.Mint(p.ID, p.Key, scope, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenEntry is the entry of c with tok, bound to its payload, in place
// of p's signature.
func tokenEntry(h *harness, p principal, c *fsm.Command, tok []byte) *fsm.Signed {
	h.t.Helper()
	sg := h.signed(p, c)
	sg.Signature = nil
	bound, err := token.Bind(tok, sg.Payload)
	if err != nil {
		h.t.Fatal(err)
	}
	sg.Token = bound
	return sg
}

// widen appends a block that states an authority fact, then binds the
// token to payload and seals it, as token.Bind would were it not refused.
func widen(t *testing.T, tok []byte, facts string, payload []byte) []byte {
	t.Helper()
	b, err := biscuit.Unmarshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{facts, "bound({d}); check if request({d});"} {
		blk, err := parser.FromStringBlockWithParams(src, parser.ParametersMap{"d": biscuit.Bytes(token.RequestDigest(payload))})
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

var writeFlags = []string{token.FlagRevoke, token.FlagDestroy}

// TestTokenWrites: a revoke_key or destroy_key entry that carries its
// operator's token in place of a signature takes effect only if the whole
// chain allows it at the entry's time and the operator's rules do; every
// attack is refused, and a replica that replays the log reaches the same
// state.
func TestTokenWrites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry func(t *testing.T, h *harness) []byte
		code  fsm.Code
		check func(t *testing.T, h *harness)
	}{
		{name: "revoke with the flag", entry: func(t *testing.T, h *harness) []byte {
			return encode(t, tokenEntry(h, op, revokeKeyCmd("db/x"), mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at)))
		}, check: keyIs("db/x", fsm.KeyRevoked)},
		{name: "destroy with the flag, restricted offline", entry: func(t *testing.T, h *harness) []byte {
			tok, err := token.Restrict(mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: token.Flags}, h.at), token.Restriction{Flags: []string{token.FlagDestroy}, Keys: []string{"db/x"}})
			if err != nil {
				t.Fatal(err)
			}
			return encode(t, tokenEntry(h, op, destroyKeyCmd("db/x"), tok))
		}, check: keyIs("db/x", fsm.KeyDestroyed)},
		{name: "no revoke flag", code: fsm.CodeTokenLacksCapability, entry: func(t *testing.T, h *harness) []byte {
			return encode(t, tokenEntry(h, op, revokeKeyCmd("db/x"), mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: []string{token.FlagDestroy, token.FlagDecrypt}}, h.at)))
		}},
		{name: "restricted away from destroy", code: fsm.CodeTokenLacksCapability, entry: func(t *testing.T, h *harness) []byte {
			tok, err := token.Restrict(mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at), token.Restriction{Flags: []string{token.FlagRevoke}})
			if err != nil {
				t.Fatal(err)
			}
			return encode(t, tokenEntry(h, op, destroyKeyCmd("db/x"), tok))
		}},
		{name: "another key", code: fsm.CodeTokenLacksCapability, entry: func(t *testing.T, h *harness) []byte {
			return encode(t, tokenEntry(h, op, revokeKeyCmd("db/x"), mint(t, op, token.Scope{Keys: []string{"db/y"}, Flags: writeFlags}, h.at)))
		}},
		{name: "expired at the entry's time", code: fsm.CodeTokenExpired, entry: func(t *testing.T, h *harness) []byte {
			tok := mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags, ExpiresAt: h.at.Add(time.Hour)}, h.at)
			h.at = h.at.Add(2 * time.Hour)
			return encode(t, tokenEntry(h, op, revokeKeyCmd("db/x"), tok))
		}},
		{name: "revoked", code: fsm.CodeTokenRevoked, entry: func(t *testing.T, h *harness) []byte {
			tok := mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at)
			info, err := token.Inspect(tok)
			if err != nil {
				t.Fatal(err)
			}
			h.must(getter, revokeTokenCmd(info.RevocationIDs[0])) // any operator revokes
			return encode(t, tokenEntry(h, op, revokeKeyCmd("db/x"), tok))
		}},
		{name: "widened", code: fsm.CodeTokenWidened, entry: func(t *testing.T, h *harness) []byte {
			sg := h.signed(op, revokeKeyCmd("db/x"))
			sg.Signature = nil
			sg.Token = widen(t, mint(t, op, token.Scope{Keys: []string{"db/y"}, Flags: writeFlags}, h.at), `key("db/x");`, sg.Payload)
			return encode(t, sg)
		}},
		{name: "bound to another request", code: fsm.CodeBadSignature, entry: func(t *testing.T, h *harness) []byte {
			tok := mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at)
			other := tokenEntry(h, op, revokeKeyCmd("db/y"), tok)
			sg := h.signed(op, revokeKeyCmd("db/x"))
			sg.Signature, sg.Token = nil, other.Token
			return encode(t, sg)
		}},
		{name: "not bound", code: fsm.CodeBadSignature, entry: func(t *testing.T, h *harness) []byte {
			sg := h.signed(op, revokeKeyCmd("db/x"))
			sg.Signature, sg.Token = nil, mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at)
			return encode(t, sg)
		}},
		{name: "the operator's rules do not allow it", code: fsm.CodeDenied, entry: func(t *testing.T, h *harness) []byte {
			return encode(t, tokenEntry(h, getter, revokeKeyCmd("db/x"), mint(t, getter, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at)))
		}},
		{name: "another operator's root", code: fsm.CodeBadSignature, entry: func(t *testing.T, h *harness) []byte {
			sg := tokenEntry(h, op, revokeKeyCmd("db/x"), mint(t, getter, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at))
			return encode(t, sg)
		}},
		{name: "an unknown root", code: fsm.CodeBadSignature, entry: func(t *testing.T, h *harness) []byte {
			stranger := operatorPrincipal(77)
			return encode(t, tokenEntry(h, stranger, revokeKeyCmd("db/x"), mint(t, stranger, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at)))
		}},
		{name: "a token and a signature", code: fsm.CodeInvalid, entry: func(t *testing.T, h *harness) []byte {
			sg := tokenEntry(h, op, revokeKeyCmd("db/x"), mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at))
			sg.Signature = signBytes(op, sg.Payload)
			return encode(t, sg)
		}},
		{name: "a command that takes no token", code: fsm.CodeInvalid, entry: func(t *testing.T, h *harness) []byte {
			return encode(t, tokenEntry(h, admin, putRuleCmd("x", op.ID, "web/*", fsm.OpDestroy), mint(t, admin, token.Scope{Prefixes: []string{""}, Flags: token.Flags}, h.at)))
		}},
		{name: "restricted to a network", code: fsm.CodeTokenLacksCapability, entry: func(t *testing.T, h *harness) []byte {
			tok, err := token.Restrict(mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at), token.Restriction{Network: netip.MustParsePrefix("10.0.0.0/8")})
			if err != nil {
				t.Fatal(err)
			}
			return encode(t, tokenEntry(h, op, revokeKeyCmd("db/x"), tok))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tokenWriteState(h)
			res := h.apply(tc.entry(t, h))
			if got := codeOf(res); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, res.Error, tc.code)
			}
			if tc.check != nil {
				tc.check(t, h)
			}
			if tc.code != "" && h.state().Keys["db/x"].State != fsm.KeyActive {
				t.Fatal("a refused token write changed the key")
			}
			sameOnReplica(t, h)
		})
	}
}

func keyIs(name, state string) func(t *testing.T, h *harness) {
	return func(t *testing.T, h *harness) {
		t.Helper()
		if k := h.state().Keys[name]; k == nil || k.State != state {
			t.Fatalf("key %s is %+v, want %s", name, k, state)
		}
	}
}

// sameOnReplica replays h's log on another replica, with token writes,
// and compares every result and the state's hash.
func sameOnReplica(t *testing.T, h *harness) {
	t.Helper()
	f := fsm.New(&fakeChecker{})
	f.TokenWrites = writeCheck
	g := newHarness(t)
	g.f.TokenWrites = writeCheck
	for _, e := range h.log {
		a, b := f.Apply(e.index, e.at, e.data), g.f.Apply(e.index, e.at, e.data)
		if codeOf(a) != codeOf(b) {
			t.Fatalf("entry %d: replicas disagree: %q and %q", e.index, codeOf(a), codeOf(b))
		}
	}
	want, _ := h.f.Hash()
	if got, _ := f.Hash(); got != want {
		t.Fatal("a replica that replayed the log has another state")
	}
}

// A token write is the operator's command for its nonce: the same entry
// again is a replay, on every replica.
func TestTokenWriteReplayed(t *testing.T) {
	h := newHarness(t)
	tokenWriteState(h)
	entry := encode(t, tokenEntry(h, op, revokeKeyCmd("db/x"), mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at)))
	if res := h.apply(entry); res.Error != nil {
		t.Fatal(res.Error)
	}
	// Were the nonce not spent, the replay would be refused only as the
	// key already revoked (and a destroy's replay would not be refused).
	h.at = h.at.Add(time.Minute)
	if res := h.apply(entry); codeOf(res) != fsm.CodeReplay {
		t.Fatalf("replayed: %q (%v)", codeOf(res), res.Error)
	}
	sameOnReplica(t, h)
}

// A token write does not move the state machine's clock: it is its
// holder's, not its operator's.
func TestTokenWriteKeepsTheClock(t *testing.T) {
	h := newHarness(t)
	tokenWriteState(h)
	before := h.state().LastTime
	h.at = h.at.Add(time.Minute)
	if res := h.apply(encode(t, tokenEntry(h, op, revokeKeyCmd("db/x"), mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at)))); res.Error != nil {
		t.Fatal(res.Error)
	}
	if after := h.state().LastTime; after != before {
		t.Fatalf("LastTime moved from %d to %d", before, after)
	}
}

// A bound on uses counts the writes in Apply: the entry is its own record.
func TestTokenWriteUsesBounded(t *testing.T) {
	h := newHarness(t)
	tokenWriteState(h)
	tok, err := token.Restrict(mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at), token.Restriction{MaxUses: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res := h.apply(encode(t, tokenEntry(h, op, revokeKeyCmd("db/x"), tok))); res.Error != nil {
		t.Fatal(res.Error)
	}
	if res := h.apply(encode(t, tokenEntry(h, op, revokeKeyCmd("db/y"), tok))); codeOf(res) != fsm.CodeTokenUsedUp {
		t.Fatalf("second use: %q (%v)", codeOf(res), res.Error)
	}
	long := h.signed(op, with(revokeKeyCmd("db/y"), func(c *fsm.Command) { c.Nonce = make([]byte, 65) }))
	long.Signature = nil
	if long.Token, err = token.Bind(tok, long.Payload); err != nil {
		t.Fatal(err)
	}
	if res := h.apply(encode(t, long)); res.Error == nil {
		t.Fatal("a bounded token's write with a nonce too long to record took effect")
	}
	keyIs("db/y", fsm.KeyActive)(t, h)
	sameOnReplica(t, h)
}

// A state machine without a token check refuses every token write.
func TestTokenWriteNeedsTheCheck(t *testing.T) {
	h := newHarness(t)
	tokenWriteState(h)
	h.f.TokenWrites = nil
	sg := tokenEntry(h, op, revokeKeyCmd("db/x"), mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at))
	if res := h.apply(encode(t, sg)); codeOf(res) != fsm.CodeInvalid {
		t.Fatalf("%q (%v)", codeOf(res), res.Error)
	}
}

// A snapshot whose entries hold a token write restores to the same state:
// the restoring replica replays them with its own token check.
func TestTokenWriteRestoresFromSnapshot(t *testing.T) {
	h := newHarness(t)
	tokenWriteState(h)
	if res := h.apply(encode(t, tokenEntry(h, op, destroyKeyCmd("db/x"), mint(t, op, token.Scope{Prefixes: []string{"db/"}, Flags: writeFlags}, h.at)))); res.Error != nil {
		t.Fatal(res.Error)
	}
	snap := snapshotFor(t, h.f)
	f := fsm.New(&fakeChecker{})
	f.TokenWrites = writeCheck
	if _, err := f.RestoreSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if hashOf(t, f) != hashOf(t, h.f) {
		t.Fatal("the restored replica's state differs")
	}
	var st string
	f.Read(func(s *fsm.State) { st = s.Keys["db/x"].State })
	if st != fsm.KeyDestroyed {
		t.Fatalf("db/x is %s after the restore", st)
	}
}
