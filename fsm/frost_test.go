package fsm_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// frostKeyCmd deals an ed25519-frost key to node-1, the only holder of
// ready's epoch (1), threshold 1.
func frostKeyCmd(t testing.TB, name string) *fsm.Command {
	pub := seededKey(11).Public().(ed25519.PublicKey)
	der := mustDER(t)(x509.MarshalPKIXPublicKey(pub))
	return &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
		Name: name, Type: fsm.KeyTypeFROST, Public: der,
		Frost: &fsm.FROSTKey{Threshold: 1, Epoch: 1, Commits: [][]byte{pub},
			Shares: []fsm.FROSTShare{{NodeID: node(1).ID, Index: 1, Sealed: bytes.Repeat([]byte{5}, 80)}}},
	}}
}

func signCmd(key string, msg []byte) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: key, Op: fsm.OpSign, Message: msg}}
}

func TestCreateFROSTKey(t *testing.T) {
	frost := func(change func(*fsm.CreateKey)) *fsm.Command {
		c := frostKeyCmd(t, "sig/a")
		change(c.CreateKey)
		return c
	}
	runTransition(t, []transitionCase{
		{name: "an ed25519-frost key", setup: ready, by: admin, cmd: frostKeyCmd(t, "sig/a"),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if res.Key.Frost() == nil || res.Key.Frost().Shares[0].Sealed != nil {
					t.Errorf("the result must show the key without its sealed shares: %+v", res.Key.Frost())
				}
				if k := h.state().Keys["sig/a"]; k.Frost() == nil || k.Frost().Shares[0].Sealed == nil {
					t.Errorf("the state lost the sealed share")
				}
			}},
		{name: "with sealed material", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: frost(func(c *fsm.CreateKey) { c.R, c.Sealed = point(1), sealed(1) })},
		{name: "without shares", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: frost(func(c *fsm.CreateKey) { c.Frost = nil })},
		{name: "a constant commitment other than the public key", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: frost(func(c *fsm.CreateKey) { c.Frost.Commits[0] = point(3) })},
		{name: "dealt at an old epoch", setup: ready, by: admin, code: fsm.CodeConflict,
			cmd: frost(func(c *fsm.CreateKey) { c.Frost.Epoch = 0 })},
		{name: "dealt to a node that holds no share", setup: ready, by: admin, code: fsm.CodeConflict,
			cmd: frost(func(c *fsm.CreateKey) { c.Frost.Shares[0].NodeID = node(2).ID })},
		{name: "dealt at another threshold", setup: ready, by: admin, code: fsm.CodeConflict,
			cmd: frost(func(c *fsm.CreateKey) { c.Frost.Threshold = 2 })},
		{name: "a short sealed share", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: frost(func(c *fsm.CreateKey) { c.Frost.Shares[0].Sealed = sealed(1) })},
		{name: "frost shares on a secret", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(createKeyCmd("k"), func(c *fsm.Command) { c.CreateKey.Frost = frostKeyCmd(t, "x").CreateKey.Frost })},
	})
}

// TestAuthorizeSign: signing is its own operation, granted by rules, only
// with an ed25519-frost key that is active and dealt in the current epoch
// (after a membership change no round reshared, it must be imported again), and such a key is
// never released.
func TestAuthorizeSign(t *testing.T) {
	setup := func(h *harness) {
		ready(h)
		h.must(admin, frostKeyCmd(t, "sig/a"))
		h.must(admin, frostKeyCmd(t, "sig/revoked"))
		h.must(admin, revokeKeyCmd("sig/revoked"))
		h.must(admin, with(frostKeyCmd(t, "sig/tls"), func(c *fsm.Command) {
			c.CreateKey.Access = &fsm.Access{Gateways: []string{fsm.GatewayTLV}}
		}))
		h.must(admin, createKeyCmd("db/a"))
		h.must(admin, putRuleCmd("r1", op.ID, "sig/a", fsm.OpSign))
		h.must(admin, putRuleCmd("r2", op.ID, "db/a", fsm.OpGet))
	}
	msg := []byte("hello")
	gw := func(c *fsm.Command) { c.Release.Gateway, c.Release.Client = fsm.GatewayTLV, "203.0.113.9" }
	cases := []struct {
		name  string
		setup func(*harness)
		by    principal
		cmd   *fsm.Command
		code  fsm.Code
	}{
		{"an operator with a sign rule", setup, op, signCmd("sig/a", msg), ""},
		{"an admin", setup, admin, signCmd("sig/a", msg), ""},
		{"a node for the tlv gateway", setup, node(1), with(signCmd("sig/tls", msg), gw), ""},
		{"a node for a key the gateway is not open to", setup, node(1), with(signCmd("sig/a", msg), gw), fsm.CodeDenied},
		{"an operator without a sign rule", setup, op, signCmd("sig/tls", msg), fsm.CodeDenied},
		{"a get rule does not sign", setup, op, signCmd("db/a", msg), fsm.CodeInvalid},
		{"a revoked key", setup, admin, signCmd("sig/revoked", msg), fsm.CodeDenied},
		{"an empty message", setup, admin, signCmd("sig/a", nil), fsm.CodeInvalid},
		{"a message too long", setup, admin, signCmd("sig/a", make([]byte, fsm.MaxSignMessage+1)), fsm.CodeInvalid},
		{"with an ephemeral key", setup, admin, with(signCmd("sig/a", msg), func(c *fsm.Command) { c.Release.Ephemeral = operatorEph }), fsm.CodeInvalid},
		{"a frost key released", setup, admin, releaseCmd("sig/a", fsm.OpGet), fsm.CodeInvalid},
		{"a secret signed", setup, admin, signCmd("db/a", msg), fsm.CodeInvalid},
		{"after the members changed, by a state machine that cannot reshare it", then(setup, func(h *harness) {
			h.admit(nodeSpec(2))
			h.dealAll()
		}), admin, signCmd("sig/a", msg), fsm.CodeConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			_, k, err := authorize(h, h.signed(tc.by, tc.cmd), h.at)
			if got := codeOf(&fsm.Result{Error: err}); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, err, tc.code)
			}
			if err == nil && k.Name != tc.cmd.Release.Key {
				t.Errorf("authorized key %q, want %q", k.Name, tc.cmd.Release.Key)
			}
		})
	}
}
