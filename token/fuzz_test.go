package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"
)

// FuzzVerify feeds a holder's token check arbitrary bytes: it must never
// panic, and refuse what is not a token bound to the request.
func FuzzVerify(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tok, err := Mint("op1", priv, Scope{Prefixes: []string{""}, Flags: Flags, ExpiresAt: t0.Add(time.Hour)}, t0)
	if err != nil {
		f.Fatal(err)
	}
	r, _ := Restrict(tok, Restriction{Flags: []string{FlagSign}})
	bound, _ := Bind(r, []byte("p"))
	f.Add(tok)
	f.Add(r)
	f.Add(bound)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Verify(data, pub, Request{Operator: "op1", Flag: FlagSign, Key: "k", Payload: []byte("p"), Now: t0}, noRevocations)
		if err == nil && len(v.RevocationIDs) == 0 {
			t.Fatal("accepted without a chain")
		}
		Inspect(data)
		Restrict(data, Restriction{Flags: []string{FlagSign}})
	})
}
