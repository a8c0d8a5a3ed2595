package fsm

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// TestVerifyMemoRemembersOnlyWhatVerified: a triple that verified is
// accepted again; changing any of the key, the payload or the signature is
// checked afresh and refused; a refused triple stays refused.
func TestVerifyMemoRemembersOnlyWhatVerified(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	payload := []byte(`{"type":"release","nonce":"memo-test"}`)
	sig := ed25519.Sign(priv, SigningInput(payload))
	for range 2 {
		if !verifyMemo(pub, payload, sig) {
			t.Fatal("a good signature does not verify")
		}
	}
	bad := append([]byte(nil), sig...)
	bad[0] ^= 1
	for range 2 {
		if verifyMemo(pub, payload, bad) {
			t.Fatal("a changed signature verifies")
		}
	}
	if verifyMemo(other, payload, sig) {
		t.Fatal("the signature verifies under another key")
	}
	if verifyMemo(pub, append(payload, ' '), sig) {
		t.Fatal("the signature verifies for another payload")
	}
	if verifyMemo(pub[:31], payload, sig) {
		t.Fatal("a short key verifies")
	}
}
