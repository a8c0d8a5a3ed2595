package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkVerify is a holder's check of a restricted, bound token.
func BenchmarkVerify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tok, err := Mint("op1", priv, Scope{Prefixes: []string{"app/"}, Flags: Flags, ExpiresAt: t0.Add(time.Hour)}, t0)
	if err != nil {
		b.Fatal(err)
	}
	tok, _ = Restrict(tok, Restriction{Flags: []string{FlagDecrypt}, Keys: []string{"app/a"}, Network: netip.MustParsePrefix("10.0.0.0/8")})
	payload := []byte(`{"type":"release"}`)
	bound, _ := Bind(tok, payload)
	req := Request{Operator: "op1", Flag: FlagDecrypt, Key: "app/a", Payload: payload, Now: t0, Caller: netip.MustParseAddr("10.1.2.3")}
	for b.Loop() {
		if _, err := Verify(bound, pub, req, noRevocations); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUnmemoized is BenchmarkVerify with the memo emptied
// before each check: a token's first verification on a node.
func BenchmarkVerifyUnmemoized(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tok, err := Mint("op1", priv, Scope{Prefixes: []string{"app/"}, Flags: Flags, ExpiresAt: t0.Add(time.Hour)}, t0)
	if err != nil {
		b.Fatal(err)
	}
	tok, _ = Restrict(tok, Restriction{Flags: []string{FlagDecrypt}, Keys: []string{"app/a"}, Network: netip.MustParsePrefix("10.0.0.0/8")})
	payload := []byte(`{"type":"release"}`)
	bound, _ := Bind(tok, payload)
	req := Request{Operator: "op1", Flag: FlagDecrypt, Key: "app/a", Payload: payload, Now: t0, Caller: netip.MustParseAddr("10.1.2.3")}
	saved := verified
	defer func() { verified = saved }()
	for b.Loop() {
		verified = newMemo(memoEntries, memoBytes)
		if _, err := Verify(bound, pub, req, noRevocations); err != nil {
			b.Fatal(err)
		}
	}
}
