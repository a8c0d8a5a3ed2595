package fsm_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// rsaThresholdCmd deals a threshold RSA key to holders (node IDs in
// order), t of them needed; the sealed shares are placeholders: the state
// machine only checks their shape.
func rsaThresholdCmd(t testing.TB, name string, public []byte, threshold int, holders ...string) *fsm.Command {
	rk := &fsm.RSAThresholdKey{Threshold: threshold}
	for i, id := range holders {
		rk.Shares = append(rk.Shares, fsm.RSAShare{NodeID: id, Index: uint32(i + 1), R: point(byte(i + 1)), Sealed: sealed(4)})
	}
	return &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
		Name: name, Type: fsm.KeyTypeRSAThreshold, Public: public,
		Access: &fsm.Access{Gateways: []string{fsm.GatewayTLV}}, RSA: rk}}
}

func rsaPublic(t testing.TB, bits int) []byte {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return mustDER(t)(x509.MarshalPKIXPublicKey(&k.PublicKey))
}

func TestCreateRSAThresholdKey(t *testing.T) {
	pub := rsaPublic(t, 2048)
	one := func(change func(*fsm.CreateKey)) *fsm.Command {
		c := rsaThresholdCmd(t, "tls/rsa", pub, 1, node(1).ID)
		change(c.CreateKey)
		return c
	}
	runTransition(t, []transitionCase{
		{name: "dealt to the only holder", setup: ready, by: admin, cmd: one(func(*fsm.CreateKey) {}),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if res.Key.RSA() == nil || res.Key.RSA().Shares[0].Sealed != nil || res.Key.RSA().Shares[0].R != nil {
					t.Errorf("the result must show the key without its sealed shares: %+v", res.Key.RSA())
				}
				if k := h.state().Keys["tls/rsa"]; k.RSA() == nil || k.RSA().Shares[0].Sealed == nil {
					t.Errorf("the state lost the sealed share")
				}
			}},
		{name: "dealt to three holders, 2 needed", setup: threeHolders, by: admin,
			cmd: rsaThresholdCmd(t, "tls/rsa", pub, 2, node(1).ID, node(2).ID, node(3).ID)},
		{name: "no shares", setup: ready, by: admin, code: fsm.CodeInvalid, cmd: one(func(c *fsm.CreateKey) { c.RSA = nil })},
		{name: "a share for another node", setup: ready, by: admin, code: fsm.CodeConflict,
			cmd: one(func(c *fsm.CreateKey) { c.RSA.Shares[0].NodeID = node(2).ID })},
		{name: "a share at another index", setup: ready, by: admin, code: fsm.CodeConflict,
			cmd: one(func(c *fsm.CreateKey) { c.RSA.Shares[0].Index = 2 })},
		{name: "another threshold", setup: ready, by: admin, code: fsm.CodeConflict,
			cmd: one(func(c *fsm.CreateKey) { c.RSA.Threshold = 2 })},
		{name: "fewer shares than holders", setup: threeHolders, by: admin, code: fsm.CodeConflict,
			cmd: rsaThresholdCmd(t, "tls/rsa", pub, 2, node(1).ID, node(2).ID)},
		{name: "a 1024-bit key", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: one(func(c *fsm.CreateKey) { c.Public = rsaPublic(t, 1024) })},
		{name: "an ecdsa public key", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: one(func(c *fsm.CreateKey) { c.Public = publicKeys(t)[fsm.KeyTypeECDSA] })},
		{name: "with sealed material", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: one(func(c *fsm.CreateKey) { c.R, c.Sealed = point(1), sealed(1) })},
		{name: "with an assemble ttl", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: one(func(c *fsm.CreateKey) { c.AssembleTTL = time.Second })},
		{name: "a share without its R", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: one(func(c *fsm.CreateKey) { c.RSA.Shares[0].R = nil })},
		{name: "rsa shares on an assembled rsa key", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: one(func(c *fsm.CreateKey) { c.Type = fsm.KeyTypeRSA; c.R, c.Sealed = point(1), sealed(1) })},
	})
}

// TestAuthorizeRSAShare: only a member node, for a gateway the key names,
// asks a holder for its share of a threshold RSA key, with an input; a
// threshold key is never released, and another key gives no rsa share.
// Op sign (an operator's or a gateway node's) carries a message and a
// known padding, never an input.
func TestAuthorizeRSAShare(t *testing.T) {
	pub := rsaPublic(t, 2048)
	share := func(key string, input []byte) *fsm.Command {
		c := releaseCmd(key, fsm.OpRSAShare)
		c.Release.Gateway, c.Release.Client, c.Release.Input, c.Release.Ephemeral = fsm.GatewayTLV, "203.0.113.9", input, nil
		return c
	}
	in := bytes.Repeat([]byte{5}, 256)
	// sign is op sign: the message, the padding, and an input a signing
	// request must not carry (each holder pads the message itself).
	sign := func(key, padding string, input []byte) *fsm.Command {
		c := releaseCmd(key, fsm.OpSign)
		c.Release.Message, c.Release.Padding, c.Release.Input, c.Release.Ephemeral = []byte("to sign"), padding, input, nil
		return c
	}
	setup := func(h *harness) {
		ready(h)
		h.must(admin, rsaThresholdCmd(t, "tls/rsa", pub, 1, node(1).ID))
		h.must(admin, rsaThresholdCmd(t, "tls/revoked", pub, 1, node(1).ID))
		h.must(admin, revokeKeyCmd("tls/revoked"))
		h.must(admin, with(rsaThresholdCmd(t, "tls/kxd-only", pub, 1, node(1).ID), func(c *fsm.Command) {
			c.CreateKey.Access = &fsm.Access{Gateways: []string{fsm.GatewayKxd}}
		}))
		h.must(admin, with(assembledKeyCmd("tls/assembled", fsm.KeyTypeRSA, pub), func(c *fsm.Command) {
			c.CreateKey.Access = &fsm.Access{Gateways: []string{fsm.GatewayTLV}}
		}))
	}
	cases := []struct {
		name string
		by   principal
		cmd  *fsm.Command
		code fsm.Code
	}{
		{"a node for its keyless gateway", node(1), share("tls/rsa", in), ""},
		{"without an input", node(1), share("tls/rsa", nil), fsm.CodeInvalid},
		{"a revoked key", node(1), share("tls/revoked", in), fsm.CodeDenied},
		{"a key not opened to the gateway", node(1), share("tls/kxd-only", in), fsm.CodeDenied},
		{"an operator", admin, with(releaseCmd("tls/rsa", fsm.OpRSAShare), func(c *fsm.Command) { c.Release.Input = in }), fsm.CodeInvalid},
		{"a threshold key released", node(1), with(share("tls/rsa", nil), func(c *fsm.Command) { c.Release.Op = fsm.OpGet }), fsm.CodeInvalid},
		{"a threshold key released to an admin", admin, releaseCmd("tls/rsa", fsm.OpGet), fsm.CodeInvalid},
		{"an rsa share of an assembled key", node(1), share("tls/assembled", in), fsm.CodeInvalid},
		{"an operator's signature, PKCS #1 v1.5 by default", admin, sign("tls/rsa", "", nil), ""},
		{"an operator's signature, PSS", admin, sign("tls/rsa", fsm.PaddingPSS, nil), ""},
		{"a node's signature for its keyless gateway", node(1), with(sign("tls/rsa", fsm.PaddingPKCS1v15, nil), func(c *fsm.Command) {
			c.Release.Gateway, c.Release.Client = fsm.GatewayTLV, "203.0.113.9"
		}), ""},
		{"a signature with an unknown padding", admin, sign("tls/rsa", "oaep", nil), fsm.CodeInvalid},
		{"a signature that names its input", admin, sign("tls/rsa", "", in), fsm.CodeInvalid},
		{"a signature with an assembled key", admin, sign("tls/assembled", "", nil), fsm.CodeInvalid},
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
}

// TestRSAThresholdKeyNeedsReimportWhenMembersChange: Shoup's shares cannot
// be reshared, so a round that changes the holders marks the key, and
// key show says why.
func TestRSAThresholdKeyNeedsReimportWhenMembersChange(t *testing.T) {
	pub := rsaPublic(t, 2048)
	h := newHarness(t)
	threeHolders(h)
	h.must(admin, rsaThresholdCmd(t, "tls/rsa", pub, 2, node(1).ID, node(2).ID, node(3).ID))
	if r := h.state().Keys["tls/rsa"].RSA().Reimport; r != "" {
		t.Fatalf("a fresh key needs re-import: %q", r)
	}
	h.must(admin, removeNodeCmd(node(3).ID))
	h.dealAll()
	k := h.state().Keys["tls/rsa"]
	if !strings.Contains(k.RSA().Reimport, node(3).ID) {
		t.Fatalf("after node 3 left, the key must need re-import naming it; reimport = %q", k.RSA().Reimport)
	}
	if !strings.Contains(k.Metadata().RSA().Reimport, "import it again") {
		t.Errorf("key show (metadata) must say so: %+v", k.Metadata().RSA())
	}
	// Re-import: destroy, then the new deal to the current holders.
	h.must(admin, destroyKeyCmd("tls/rsa"))
	if k := h.state().Keys["tls/rsa"]; k.RSA() != nil {
		t.Fatalf("a destroyed key keeps its deal in the state (and so in snapshots): %+v", k.RSA())
	}
	h.must(admin, rsaThresholdCmd(t, "tls/rsa", pub, 2, node(1).ID, node(2).ID))
	if r := h.state().Keys["tls/rsa"].RSA().Reimport; r != "" {
		t.Errorf("the re-imported key still needs re-import: %q", r)
	}
}
