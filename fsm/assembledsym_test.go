package fsm_test

import (
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

func symCmd(key, op string, msg, input []byte) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: key, Op: op, Message: msg, Input: input}}
}

func symKeyCmd(name, keyType string) *fsm.Command {
	return with(createKeyCmd(name), func(c *fsm.Command) {
		c.CreateKey.Type, c.CreateKey.AssembleTTL = keyType, time.Minute
	})
}

// TestAuthorizeAssembledSymmetric: an AES-CBC key answers encrypt and
// decrypt, an HMAC key mac and verify, each granted by its own rule, for
// an operator's request without an ephemeral key; neither is released
// (get), nor used by a legacy gateway, nor with an ephemeral key; such a
// key has no public key.
func TestAuthorizeAssembledSymmetric(t *testing.T) {
	setup := func(h *harness) {
		ready(h)
		h.must(admin, symKeyCmd("sym/cbc", fsm.KeyTypeAES128CBC))
		h.must(admin, with(symKeyCmd("sym/mac", fsm.KeyTypeHMACSHA512), func(c *fsm.Command) {
			c.CreateKey.Access = &fsm.Access{Gateways: []string{fsm.GatewayTLV}}
		}))
		h.must(admin, putRuleCmd("r1", op.ID, "sym/cbc", fsm.OpEncrypt, fsm.OpDecrypt))
		h.must(admin, putRuleCmd("r2", op.ID, "sym/mac", fsm.OpMAC, fsm.OpSign, fsm.OpGet, fsm.OpDecrypt))
	}
	m := []byte("m")
	gw := func(c *fsm.Command) { c.Release.Gateway, c.Release.Client = fsm.GatewayTLV, "203.0.113.9" }
	eph := func(c *fsm.Command) { c.Release.Ephemeral = operatorEph }
	cases := []struct {
		name string
		by   principal
		cmd  *fsm.Command
		code fsm.Code
	}{
		{"encrypt with the rule", op, symCmd("sym/cbc", fsm.OpEncrypt, m, nil), ""},
		{"decrypt with the rule", op, symCmd("sym/cbc", fsm.OpDecrypt, make([]byte, 32), nil), ""},
		{"mac with the rule", op, symCmd("sym/mac", fsm.OpMAC, m, nil), ""},
		{"verify without the rule", op, symCmd("sym/mac", fsm.OpVerify, m, make([]byte, 64)), fsm.CodeDenied},
		{"verify by an admin", admin, symCmd("sym/mac", fsm.OpVerify, m, make([]byte, 64)), ""},
		{"a CBC key does not mac", admin, symCmd("sym/cbc", fsm.OpMAC, m, nil), fsm.CodeInvalid},
		{"an HMAC key does not decrypt", op, symCmd("sym/mac", fsm.OpDecrypt, make([]byte, 32), nil), fsm.CodeInvalid},
		{"an HMAC key does not sign", op, signCmd("sym/mac", m), fsm.CodeInvalid},
		{"an HMAC key is not released", op, releaseCmd("sym/mac", fsm.OpGet), fsm.CodeInvalid},
		{"with an ephemeral key", admin, with(symCmd("sym/cbc", fsm.OpEncrypt, m, nil), eph), fsm.CodeInvalid},
		{"for a legacy gateway", node(1), with(symCmd("sym/mac", fsm.OpMAC, m, nil), gw), fsm.CodeInvalid},
		{"verify without a MAC", admin, symCmd("sym/mac", fsm.OpVerify, m, nil), fsm.CodeInvalid},
		{"decrypt without a ciphertext", admin, symCmd("sym/cbc", fsm.OpDecrypt, nil, nil), fsm.CodeInvalid},
		{"an input too long", admin, symCmd("sym/cbc", fsm.OpEncrypt, make([]byte, fsm.MaxSymmetricInput+1), nil), fsm.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			setup(h)
			_, _, err := authorize(h, h.signed(tc.by, tc.cmd), h.at)
			if got := codeOf(&fsm.Result{Error: err}); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, err, tc.code)
			}
		})
	}
	h := newHarness(t)
	ready(h)
	if res := h.do(admin, with(symKeyCmd("sym/pub", fsm.KeyTypeHMACSHA256), func(c *fsm.Command) { c.CreateKey.Public = []byte{1} })); res.Error == nil {
		t.Error("an HMAC key was created with a public key")
	}
}
