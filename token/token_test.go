package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/biscuit-auth/biscuit-go/v2"
	"github.com/biscuit-auth/biscuit-go/v2/parser"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

type fixture struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
	tok  []byte
}

func newFixture(t *testing.T, scope Scope) *fixture {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	if scope.ExpiresAt.IsZero() {
		scope.ExpiresAt = t0.Add(time.Hour)
	}
	tok, err := Mint("op1", priv, scope, t0)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{pub, priv, tok}
}

func noRevocations(string) bool { return false }

// use binds tok to a payload and verifies it for flag on key at now.
func (f *fixture) use(t *testing.T, tok []byte, flag, key string, now time.Time, caller netip.Addr) error {
	t.Helper()
	payload := []byte(`{"type":"release","key":"` + key + `","op":"` + flag + `"}`)
	bound, err := Bind(tok, payload)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(bound, f.pub, Request{Operator: "op1", Flag: flag, Key: key, Payload: payload, Now: now, Caller: caller}, noRevocations)
	return err
}

func TestTokenHonouredExactlyPerFlagsAndKeys(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Prefixes: []string{"app/"}, Flags: []string{FlagDecrypt, FlagSign}})
	for _, c := range []struct {
		flag, key string
		ok        bool
	}{
		{FlagDecrypt, "db", true}, {FlagSign, "app/x", true}, {FlagDecrypt, "app/y/z", true},
		{FlagEncrypt, "db", false}, {FlagDecrypt, "dbx", false}, {FlagSign, "other", false}, {FlagDecrypt, "ap", false},
	} {
		err := f.use(t, f.tok, c.flag, c.key, t0, netip.Addr{})
		if (err == nil) != c.ok {
			t.Errorf("%s on %s: %v, want allowed=%v", c.flag, c.key, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrDenied) {
			t.Errorf("%s on %s: %v, want ErrDenied", c.flag, c.key, err)
		}
	}
}

func TestExpiredTokenRefused(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags, ExpiresAt: t0.Add(time.Minute)})
	if err := f.use(t, f.tok, FlagDecrypt, "db", t0.Add(2*time.Minute), netip.Addr{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	// A restriction shortens its life.
	r, err := Restrict(f.tok, Restriction{ExpiresAt: t0.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.use(t, r, FlagDecrypt, "db", t0.Add(5*time.Second), netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := f.use(t, r, FlagDecrypt, "db", t0.Add(30*time.Second), netip.Addr{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("restricted life: %v", err)
	}
}

func TestRestrictedOfflineNarrowsOnly(t *testing.T) {
	f := newFixture(t, Scope{Prefixes: []string{""}, Flags: Flags})
	r, err := Restrict(f.tok, Restriction{Flags: []string{FlagVerify, FlagSign}, Prefixes: []string{"team/"}})
	if err != nil {
		t.Fatal(err)
	}
	// Restrict again: a later block cannot widen an earlier one.
	r2, err := Restrict(r, Restriction{Flags: []string{FlagSign, FlagDecrypt}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tok       []byte
		flag, key string
		ok        bool
	}{
		{r, FlagSign, "team/a", true}, {r, FlagDecrypt, "team/a", false}, {r, FlagSign, "other", false},
		{r2, FlagSign, "team/a", true}, {r2, FlagDecrypt, "team/a", false}, {r2, FlagVerify, "team/a", false},
	} {
		if err := f.use(t, c.tok, c.flag, c.key, t0, netip.Addr{}); (err == nil) != c.ok {
			t.Errorf("%s on %s: %v, want allowed=%v", c.flag, c.key, err, c.ok)
		}
	}
}

// appendRaw appends a block of Datalog to tok with the library alone, and
// seals it bound to payload if payload is not nil: what a holder of the
// token can do without this package's checks.
func appendRaw(t *testing.T, tok []byte, src string, payload []byte) []byte {
	t.Helper()
	b, err := biscuit.Unmarshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := parser.FromStringBlock(src)
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
	if payload != nil {
		d := RequestDigest(payload)
		bind, err := parser.FromStringBlockWithParams("bound({d}); check if request({d});", parser.ParametersMap{"d": biscuit.Bytes(d)})
		if err != nil {
			t.Fatal(err)
		}
		bb := b.CreateBlock()
		bb.AddBlock(bind)
		if b, err = b.Append(rand.Reader, bb.Build()); err != nil {
			t.Fatal(err)
		}
		if b, err = b.Seal(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A holder of a token appends a block that states new rights (facts like
// the authority's), binds and seals it with the library: refused as
// widened, and neither this package's Restrict nor Bind work on it.
func TestWidenedTokenRefused(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Flags: []string{FlagVerify}})
	payload := []byte("p")
	for _, facts := range []string{`flag("decrypt");`, `key("other");`, `key_prefix("");`, `operator("op2");`, `expires(2099-01-01T00:00:00Z);`} {
		widened := appendRaw(t, f.tok, facts, payload)
		_, err := Verify(widened, f.pub, Request{Operator: "op1", Flag: FlagDecrypt, Key: "other", Payload: payload, Now: t0}, noRevocations)
		if !errors.Is(err, ErrWidened) {
			t.Errorf("widened with %s: %v", facts, err)
		}
		if _, err := Restrict(appendRaw(t, f.tok, facts, nil), Restriction{Flags: []string{FlagVerify}}); !errors.Is(err, ErrWidened) {
			t.Errorf("restricting a token widened with %s: %v", facts, err)
		}
	}
	// Facts of other names in a later block are a block's own business,
	// and grant nothing.
	other := appendRaw(t, f.tok, `right("decrypt"); operation("decrypt"); resource("other");`, payload)
	if _, err := Verify(other, f.pub, Request{Operator: "op1", Flag: FlagDecrypt, Key: "other", Payload: payload, Now: t0}, noRevocations); !errors.Is(err, ErrDenied) {
		t.Errorf("a block's own facts: %v", err)
	}
	if err := f.use(t, f.tok, FlagVerify, "db", t0, netip.Addr{}); err != nil {
		t.Errorf("what the authority grants: %v", err)
	}
}

func TestForgedTokenRefused(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags})
	other := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags}) // another root, same operator name
	payload := []byte("p")
	bound, err := Bind(other.tok, payload)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(bound, f.pub, Request{Operator: "op1", Flag: FlagDecrypt, Key: "db", Payload: payload, Now: t0}, noRevocations)
	if !errors.Is(err, ErrForged) {
		t.Fatalf("token of another root: %v", err)
	}
	// The right root, but the authority names another operator.
	_, err = Verify(bound, other.pub, Request{Operator: "op2", Flag: FlagDecrypt, Key: "db", Payload: payload, Now: t0}, noRevocations)
	if !errors.Is(err, ErrDenied) {
		t.Fatalf("token minted for op1 used as op2's: %v", err)
	}
}

// A node that relays a bound token tries it for another request (another
// key, or its own ephemeral key), or restricts it further: refused.
func TestBoundTokenNotReusable(t *testing.T) {
	f := newFixture(t, Scope{Prefixes: []string{""}, Flags: Flags})
	payload := []byte(`{"key":"a"}`)
	bound, err := Bind(f.tok, payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(bound, f.pub, Request{Operator: "op1", Flag: FlagDecrypt, Key: "b", Payload: []byte(`{"key":"b"}`), Now: t0}, noRevocations); !errors.Is(err, ErrUnbound) {
		t.Fatalf("bound token for another payload: %v", err)
	}
	if _, err := Restrict(bound, Restriction{Flags: []string{FlagSign}}); err == nil {
		t.Fatal("a sealed token was restricted")
	}
	if _, err := Bind(bound, []byte("other")); err == nil {
		t.Fatal("a sealed token was bound again")
	}
	// An unbound token is refused: the relaying node could use it.
	if _, err := Verify(f.tok, f.pub, Request{Operator: "op1", Flag: FlagDecrypt, Key: "a", Payload: payload, Now: t0}, noRevocations); !errors.Is(err, ErrUnbound) {
		t.Fatalf("unbound token: %v", err)
	}
}

func TestRevokedTokenRefused(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags})
	r, err := Restrict(f.tok, Restriction{Flags: []string{FlagDecrypt}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(f.tok)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("x")
	bound, _ := Bind(r, payload)
	req := Request{Operator: "op1", Flag: FlagDecrypt, Key: "db", Payload: payload, Now: t0}
	// Revoking the minted token's id revokes what was restricted from it.
	revoked := func(id string) bool { return id == info.RevocationIDs[0] }
	if _, err := Verify(bound, f.pub, req, revoked); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: %v", err)
	}
	v, err := Verify(bound, f.pub, req, noRevocations)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.RevocationIDs) != 3 || v.RevocationIDs[0] != info.RevocationIDs[0] {
		t.Fatalf("chain %v", v.RevocationIDs)
	}
}

func TestNetworkRestriction(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags})
	r4, err := Restrict(f.tok, Restriction{Network: netip.MustParsePrefix("10.1.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	r6, err := Restrict(f.tok, Restriction{Network: netip.MustParsePrefix("fd00:1::/32")})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tok    []byte
		caller string
		ok     bool
	}{
		{r4, "10.1.2.3", true}, {r4, "10.2.0.1", false}, {r4, "", false}, {r4, "::ffff:10.1.0.9", true},
		{r6, "fd00:1::5", true}, {r6, "fd00:2::5", false}, {r6, "10.1.2.3", false},
	} {
		var a netip.Addr
		if c.caller != "" {
			a = netip.MustParseAddr(c.caller)
		}
		if err := f.use(t, c.tok, FlagDecrypt, "db", t0, a); (err == nil) != c.ok {
			t.Errorf("caller %q: %v, want allowed=%v", c.caller, err, c.ok)
		}
	}
	if _, err := Restrict(f.tok, Restriction{Network: netip.MustParsePrefix("fd00::/31")}); err == nil {
		t.Error("an IPv6 prefix of 31 bits was accepted")
	}
}

func TestMintAndFlagsRefuseBadInput(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	for name, s := range map[string]Scope{
		"no flags": {Keys: []string{"a"}, ExpiresAt: t0.Add(time.Hour)},
		"bad flag": {Keys: []string{"a"}, Flags: []string{"fly"}, ExpiresAt: t0.Add(time.Hour)},
		"no keys":  {Flags: Flags, ExpiresAt: t0.Add(time.Hour)},
		"expired":  {Keys: []string{"a"}, Flags: Flags, ExpiresAt: t0},
		"too long": {Keys: []string{"a"}, Flags: Flags, ExpiresAt: t0.Add(MaxTTL + time.Hour)},
	} {
		if _, err := Mint("op1", priv, s, t0); err == nil {
			t.Errorf("%s: minted", name)
		}
	}
	got, err := ParseFlags("READONLY,sign")
	if err != nil || strings.Join(got, ",") != "getinfo,hash,list,sign,verify" {
		t.Fatalf("ParseFlags: %v %v", got, err)
	}
	if all, _ := ParseFlags("ALL"); len(all) != len(Flags) {
		t.Fatalf("ALL is %v", all)
	}
}

// A token whose own Datalog would explode (a rule joining facts, a check
// joining predicates) is refused before any evaluation.
func TestEvaluationBounded(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags})
	for _, src := range []string{
		`a(0); a(1); a(2); a(3); a(4); a(5); a(6); a(7); p($w, $x, $y, $z) <- a($w), a($x), a($y), a($z); check if p(9, 9, 9, 9);`,
		`a(0); a(1); a(2); a(3); check if a($w), a($x), a($y), a($z), $w + $x + $y + $z == 99;`,
	} {
		b, _ := biscuit.Unmarshal(f.tok)
		blk, err := parser.FromStringBlock(src)
		if err != nil {
			t.Fatal(err)
		}
		bb := b.CreateBlock()
		bb.AddBlock(blk)
		big, err := b.Append(rand.Reader, bb.Build())
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := big.Serialize()
		payload := []byte("p")
		bound, err := Bind(tok, payload)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("bound an exploding token: %v", err)
		}
		_ = bound
		_, err = Verify(tok, f.pub, Request{Operator: "op1", Flag: FlagDecrypt, Key: "db", Payload: payload, Now: t0}, noRevocations)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("exploding token: %v", err)
		}
	}
}

// A bound on uses is read from the block that set it; the authority
// cannot set one, and a bound out of range is refused.
func TestUseBounds(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags})
	r, err := Restrict(f.tok, Restriction{MaxUses: 3})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Restrict(r, Restriction{Flags: []string{FlagDecrypt}, MaxUses: 5})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := Inspect(r2)
	payload := []byte("p")
	bound, _ := Bind(r2, payload)
	v, err := Verify(bound, f.pub, Request{Operator: "op1", Flag: FlagDecrypt, Key: "db", Payload: payload, Now: t0}, noRevocations)
	if err != nil {
		t.Fatal(err)
	}
	want := []UseBound{{ID: info.RevocationIDs[1], Max: 3}, {ID: info.RevocationIDs[2], Max: 5}}
	if len(v.UseBounds) != 2 || v.UseBounds[0] != want[0] || v.UseBounds[1] != want[1] {
		t.Fatalf("bounds %+v, want %+v", v.UseBounds, want)
	}
	for _, n := range []int{-1, MaxUses + 1} {
		if _, err := Restrict(f.tok, Restriction{MaxUses: n}); err == nil {
			t.Errorf("a bound of %d uses was accepted", n)
		}
	}
	for _, src := range []string{`max_uses(0);`, `max_uses("3");`, `max_uses(1, 2);`} {
		if _, err := UseBounds(appendRaw(t, f.tok, src, nil)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", src, err)
		}
	}
}
