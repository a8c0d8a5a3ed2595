package fsm_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// FuzzAuthorizeRelease: share holders parse release requests that come
// over the network with AuthorizeRelease. Arbitrary payloads, signed or
// not, must be refused with a code and never panic; a request is allowed
// only with a valid signature of a known operator.
func FuzzAuthorizeRelease(f *testing.F) {
	f.Add([]byte(`{"type":"release","release":{"key":"db/a","op":"get"}}`), true)
	f.Add([]byte(`{"type":"release","release":{"key":"db/a","op":"cas"}}`), true)
	f.Add([]byte(`{"type":"release","release":{"key":"enc/a","op":"decrypt","ephemeral":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","points":[{"version":1,"point":"CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="}],"exclude":[2]}}`), true)
	f.Add([]byte(`{"type":"release","release":{"key":"enc/a","op":"derive","ephemeral":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","derive":[{"version":1,"context":"dGVuYW50"}]}}`), true)
	f.Add([]byte(`{"type":"release","release":{"key":"enc/a","op":"export","ephemeral":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","version":1,"exclude":[3]}}`), true)
	f.Add([]byte(`{"type":"release","release":{"key":"db/a","op":"get","ephemeral":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","seal":"share"}}`), true)
	f.Add([]byte(`{"type":"release"}`), false)
	f.Add([]byte(`[]`), false)
	h := newHarness(f)
	h.must(admin, initCmd())
	h.dealAll()
	h.must(admin, createKeyCmd("db/a"))
	h.must(admin, transitKeyCmd("enc/a"))
	s := h.state()
	f.Fuzz(func(t *testing.T, payload []byte, sign bool) {
		sg := &fsm.Signed{Signer: admin.ID, Payload: payload, Signature: make([]byte, 64)}
		if sign {
			sg.Signature = ed25519.Sign(admin.Key, fsm.SigningInput(payload))
		}
		_, _, err := s.AuthorizeRelease(sg, t0)
		if err != nil && err.Code == "" {
			t.Fatalf("refusal without a code: %v", err)
		}
		if err == nil && !sign {
			t.Fatalf("an unsigned request was allowed: %q", payload)
		}
	})
}
