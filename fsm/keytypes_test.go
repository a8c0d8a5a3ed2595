package fsm_test

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

func mustDER(t testing.TB) func(der []byte, err error) []byte {
	return func(der []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
}

// publicKeys are PKIX DER public keys of every assembled type.
func publicKeys(t testing.TB) map[string][]byte {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		fsm.KeyTypeRSA:     mustDER(t)(x509.MarshalPKIXPublicKey(&rk.PublicKey)),
		fsm.KeyTypeECDSA:   mustDER(t)(x509.MarshalPKIXPublicKey(&ek.PublicKey)),
		fsm.KeyTypeEd25519: mustDER(t)(x509.MarshalPKIXPublicKey(seededKey(9).Public())),
	}
}

func p256Point(t testing.TB) []byte {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes()
}

func selfSignedDER(t testing.TB) []byte {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"},
		NotBefore: t0, NotAfter: t0.Add(time.Hour)}
	k := seededKey(8)
	return mustDER(t)(x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k))
}

func assembledKeyCmd(name, keyType string, public []byte) *fsm.Command {
	c := createKeyCmd(name)
	c.CreateKey.Type, c.CreateKey.Public = keyType, public
	return c
}

// tangKeyCmd deals a Tang key to node-1, the only holder of ready's epoch.
func tangKeyCmd(t testing.TB, name string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
		Name: name, Type: fsm.KeyTypeTang, Public: p256Point(t),
		Access: &fsm.Access{Gateways: []string{fsm.GatewayTang}},
		Tang: &fsm.TangKey{Adv: []byte(`{"payload":"e30"}`), Kid: "kid-" + name, Thp: "thp-" + name, Threshold: 1,
			Shares: []fsm.TangShare{{NodeID: node(1).ID, Index: 1, PublicShare: p256Point(t), Sealed: sealed(3)}}},
	}}
}

func TestCreateKeyTypes(t *testing.T) {
	pubs := publicKeys(t)
	tang := func(change func(*fsm.CreateKey)) *fsm.Command {
		c := tangKeyCmd(t, "tang/a")
		change(c.CreateKey)
		return c
	}
	runTransition(t, []transitionCase{
		{name: "an rsa key", setup: ready, by: admin, cmd: assembledKeyCmd("tls/rsa", fsm.KeyTypeRSA, pubs[fsm.KeyTypeRSA])},
		{name: "an ecdsa key kept for a minute", setup: ready, by: admin,
			cmd: with(assembledKeyCmd("tls/ec", fsm.KeyTypeECDSA, pubs[fsm.KeyTypeECDSA]), func(c *fsm.Command) { c.CreateKey.AssembleTTL = time.Minute }),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if res.Key.AssembleTTL() != time.Minute || res.Key.Type != fsm.KeyTypeECDSA || len(res.Key.Public()) == 0 {
					t.Errorf("key %+v", res.Key)
				}
			}},
		{name: "an ed25519 key", setup: ready, by: admin, cmd: assembledKeyCmd("tls/ed", fsm.KeyTypeEd25519, pubs[fsm.KeyTypeEd25519])},
		{name: "a tang key", setup: ready, by: admin, cmd: tangKeyCmd(t, "tang/a"),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if res.Key.Tang() == nil || res.Key.Tang().Shares[0].Sealed != nil {
					t.Errorf("the result must show the tang key without its sealed shares: %+v", res.Key.Tang())
				}
				if k := h.state().Keys["tang/a"]; k.Tang() == nil || k.Tang().Shares[0].Sealed == nil {
					t.Errorf("the state lost the sealed share")
				}
			}},
		{name: "a secret with kxd access", setup: ready, by: admin, cmd: with(createKeyCmd("host/disk"), func(c *fsm.Command) {
			c.CreateKey.Access = &fsm.Access{Gateways: []string{fsm.GatewayKxd}, ClientCerts: [][]byte{selfSignedDER(t)},
				Hosts: []string{"10.0.0.7", "boot.example"}, EmailTo: []string{"ops@example.com"}}
		})},

		{name: "an unknown type", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: assembledKeyCmd("k", "dsa", pubs[fsm.KeyTypeRSA])},
		{name: "an rsa key without its public key", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: assembledKeyCmd("k", fsm.KeyTypeRSA, nil)},
		{name: "an rsa key with an ecdsa public key", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: assembledKeyCmd("k", fsm.KeyTypeRSA, pubs[fsm.KeyTypeECDSA])},
		{name: "a public key that is not DER", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: assembledKeyCmd("k", fsm.KeyTypeEd25519, []byte("not a key"))},
		{name: "an assembled key without sealed material", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(assembledKeyCmd("k", fsm.KeyTypeECDSA, pubs[fsm.KeyTypeECDSA]), func(c *fsm.Command) { c.CreateKey.Sealed = nil })},
		{name: "a secret with a public key", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(createKeyCmd("k"), func(c *fsm.Command) { c.CreateKey.Public = pubs[fsm.KeyTypeRSA] })},
		{name: "a secret with an assemble ttl", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(createKeyCmd("k"), func(c *fsm.Command) { c.CreateKey.AssembleTTL = time.Second })},
		{name: "an assemble ttl over a day", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(assembledKeyCmd("k", fsm.KeyTypeECDSA, pubs[fsm.KeyTypeECDSA]), func(c *fsm.Command) { c.CreateKey.AssembleTTL = 25 * time.Hour })},
		{name: "a tang key named with an adv segment", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: tang(func(c *fsm.CreateKey) { c.Name = "disks/adv/x" })},
		{name: "a tang key with sealed material", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: tang(func(c *fsm.CreateKey) { c.R, c.Sealed = point(1), sealed(1) })},
		{name: "a tang key without shares", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: tang(func(c *fsm.CreateKey) { c.Tang = nil })},
		{name: "a tang key off the curve", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: tang(func(c *fsm.CreateKey) { c.Public[64] ^= 1 })},
		{name: "a tang key dealt to a node that holds no share", setup: ready, by: admin, code: fsm.CodeConflict,
			cmd: tang(func(c *fsm.CreateKey) { c.Tang.Shares[0].NodeID = node(2).ID })},
		{name: "a tang key dealt at another threshold", setup: ready, by: admin, code: fsm.CodeConflict,
			cmd: tang(func(c *fsm.CreateKey) { c.Tang.Threshold = 2 })},
		{name: "a tang key dealt to fewer than the holders", setup: twoHolders, by: admin, code: fsm.CodeConflict,
			cmd: tang(func(c *fsm.CreateKey) { c.Tang.Threshold = 2 })},
		{name: "a tang key whose kid is taken", setup: then(ready, doing(admin, tangKeyCmd(t, "tang/a"))), by: admin, code: fsm.CodeExists,
			cmd: with(tangKeyCmd(t, "tang/b"), func(c *fsm.Command) { c.CreateKey.Tang.Kid = "kid-tang/a" })},
		{name: "a tang share with a bad public share", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: tang(func(c *fsm.CreateKey) { c.Tang.Shares[0].PublicShare = point(1) })},
		{name: "a tang key without an advertisement", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: tang(func(c *fsm.CreateKey) { c.Tang.Adv = nil })},
		{name: "access to an unknown gateway", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(createKeyCmd("k"), func(c *fsm.Command) { c.CreateKey.Access = &fsm.Access{Gateways: []string{"ssh"}} })},
		{name: "access with a broken certificate", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(createKeyCmd("k"), func(c *fsm.Command) {
				c.CreateKey.Access = &fsm.Access{Gateways: []string{fsm.GatewayKxd}, ClientCerts: [][]byte{[]byte("junk")}}
			})},
		{name: "access with a bad network", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(createKeyCmd("k"), func(c *fsm.Command) {
				c.CreateKey.Access = &fsm.Access{Gateways: []string{fsm.GatewayTang}, Networks: []string{"10.0.0.0/33"}}
			})},
		{name: "access with a bad e-mail address", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(createKeyCmd("k"), func(c *fsm.Command) {
				c.CreateKey.Access = &fsm.Access{Gateways: []string{fsm.GatewayKxd}, EmailTo: []string{"ops"}}
			})},
	})
}

func TestSetAccess(t *testing.T) {
	setAccess := func(name string, a *fsm.Access) *fsm.Command {
		return &fsm.Command{Type: fsm.TypeSetAccess, SetAccess: &fsm.SetAccess{Name: name, Access: a}}
	}
	kxd := &fsm.Access{Gateways: []string{fsm.GatewayKxd}, Hosts: []string{}}
	runTransition(t, []transitionCase{
		{name: "an admin opens a key to kxd", setup: withKey, by: admin, cmd: setAccess("db/a", kxd),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				a := h.state().Keys["db/a"].Access()
				if !a.Allows(fsm.GatewayKxd) || a.Hosts == nil || len(a.Hosts) != 0 {
					t.Errorf("access %+v: want kxd with an empty, non-nil host list", a)
				}
			}},
		{name: "an admin closes it again", setup: then(withKey, doing(admin, setAccess("db/a", kxd))), by: admin, cmd: setAccess("db/a", nil)},
		{name: "a non-admin", setup: withKey, by: op, cmd: setAccess("db/a", kxd), code: fsm.CodeDenied},
		{name: "an unknown key", setup: withKey, by: admin, cmd: setAccess("db/b", kxd), code: fsm.CodeNotFound},
		{name: "a destroyed key", setup: then(withKey, doing(admin, destroyKeyCmd("db/a"))), by: admin, cmd: setAccess("db/a", kxd), code: fsm.CodeState},
		{name: "bad access", setup: withKey, by: admin, cmd: setAccess("db/a", &fsm.Access{Gateways: []string{"x"}}), code: fsm.CodeInvalid},
		{name: "no body", setup: withKey, by: admin, cmd: &fsm.Command{Type: fsm.TypeSetAccess}, code: fsm.CodeInvalid},
	})
}

// TestAuthorizeGatewayRelease: a member node may ask for a key on behalf
// of a legacy gateway's client only when the key's access names that
// gateway; a Tang key is only ever used by exchange.
func TestAuthorizeGatewayRelease(t *testing.T) {
	gw := func(key, op, gateway string, point []byte) *fsm.Command {
		c := releaseCmd(key, op)
		c.Release.Gateway, c.Release.Client, c.Release.Point = gateway, "203.0.113.9", point
		c.Release.Ephemeral = nil
		return c
	}
	pt := p256Point(t)
	setup := func(h *harness) {
		ready(h)
		h.must(admin, with(createKeyCmd("host/kxd"), func(c *fsm.Command) {
			c.CreateKey.Access = &fsm.Access{Gateways: []string{fsm.GatewayKxd}}
		}))
		h.must(admin, createKeyCmd("host/plain"))
		h.must(admin, tangKeyCmd(t, "tang/a"))
		h.admit(nodeSpec(2))
		h.admit(nodeSpec(3))
		h.must(admin, removeNodeCmd(node(3).ID))
	}
	cases := []struct {
		name string
		by   principal
		cmd  *fsm.Command
		code fsm.Code
	}{
		{"a node for kxd", node(1), gw("host/kxd", fsm.OpGet, fsm.GatewayKxd, nil), ""},
		{"a member that holds no share yet", node(2), gw("host/kxd", fsm.OpGet, fsm.GatewayKxd, nil), ""},
		{"a node for tang", node(1), gw("tang/a", fsm.OpExchange, fsm.GatewayTang, pt), ""},
		{"a node for kxd with an ephemeral key", node(1), with(gw("host/kxd", fsm.OpGet, fsm.GatewayKxd, nil), func(c *fsm.Command) {
			c.Release.Ephemeral = operatorEph
		}), fsm.CodeInvalid},
		{"a node for a gateway the key does not name", node(1), gw("host/kxd", fsm.OpGet, fsm.GatewayTLV, nil), fsm.CodeDenied},
		{"a node for a key without access", node(1), gw("host/plain", fsm.OpGet, fsm.GatewayKxd, nil), fsm.CodeDenied},
		{"a node without a gateway", node(1), releaseCmd("host/kxd", fsm.OpGet), fsm.CodeBadSignature},
		{"a leaving node", node(3), gw("host/kxd", fsm.OpGet, fsm.GatewayKxd, nil), fsm.CodeBadSignature},
		{"an operator claiming a gateway", admin, gw("host/kxd", fsm.OpGet, fsm.GatewayKxd, nil), fsm.CodeBadSignature},
		{"a tang key released", node(1), gw("tang/a", fsm.OpGet, fsm.GatewayTang, nil), fsm.CodeInvalid},
		{"a tang key released to an admin", admin, releaseCmd("tang/a", fsm.OpGet), fsm.CodeInvalid},
		{"an exchange with a secret", node(1), gw("host/kxd", fsm.OpExchange, fsm.GatewayKxd, pt), fsm.CodeInvalid},
		{"an exchange without a point", node(1), gw("tang/a", fsm.OpExchange, fsm.GatewayTang, nil), fsm.CodeInvalid},
		{"an exchange asked by an operator", admin, with(releaseCmd("tang/a", fsm.OpExchange), func(c *fsm.Command) { c.Release.Point = pt }), fsm.CodeInvalid},
		{"a cas by a gateway", node(1), with(gw("host/kxd", fsm.OpCAS, fsm.GatewayKxd, nil), func(c *fsm.Command) {
			c.Release.ReplaceKey = replaceKeyCmd("host/kxd", 1).ReplaceKey
		}), fsm.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			setup(h)
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

// TestReleaseBasis: what allowed a release, as the audit log records it.
func TestReleaseBasis(t *testing.T) {
	s := &fsm.State{
		Operators: map[string]*fsm.Operator{"admin": {ID: "admin", Admin: true}, "op": {ID: "op"}},
		Rules: map[string]*fsm.Rule{
			"b": {ID: "b", Principal: "op", Key: "app/*", Ops: []string{fsm.OpGet}},
			"a": {ID: "a", Principal: "op", Key: "app/x", Ops: []string{fsm.OpGet}},
		},
		Machines: map[string]*fsm.Machine{"m1": {ID: "m1"}},
	}
	for _, c := range []struct {
		signer string
		req    fsm.ReleaseRequest
		want   string
	}{
		{"admin", fsm.ReleaseRequest{Key: "any", Op: fsm.OpGet}, "admin"},
		{"op", fsm.ReleaseRequest{Key: "app/x", Op: fsm.OpGet}, "rule:a"}, // the first rule by ID
		{"op", fsm.ReleaseRequest{Key: "app/y", Op: fsm.OpGet}, "rule:b"},
		{"op", fsm.ReleaseRequest{Key: "other", Op: fsm.OpGet}, ""},
		{"node1", fsm.ReleaseRequest{Key: "k", Op: fsm.OpGet, Gateway: fsm.GatewayTang}, "access:" + fsm.GatewayTang},
		{"m1", fsm.ReleaseRequest{Key: "k", Op: fsm.OpGet}, "machine:m1"},
	} {
		if got := s.ReleaseBasis(c.signer, &c.req); got != c.want {
			t.Errorf("%s %+v: basis %q, want %q", c.signer, c.req, got, c.want)
		}
	}
}
