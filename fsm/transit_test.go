package fsm_test

import (
	"bytes"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// transitSharing deals a version to node-1, the only holder of ready's
// epoch (1), threshold 1; b tells versions apart.
func transitSharing(b byte) *fsm.FROSTKey {
	return &fsm.FROSTKey{Threshold: 1, Epoch: 1, Commits: [][]byte{point(b)},
		Shares: []fsm.FROSTShare{{NodeID: node(1).ID, Index: 1, Sealed: bytes.Repeat([]byte{b}, 80)}}}
}

func transitKeyCmd(name string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: name, Type: fsm.KeyTypeTransit,
		Transit: &fsm.TransitKey{Cipher: "aes256-gcm96", Versions: []fsm.TransitVersion{{Sharing: transitSharing(0x51)}}}}}
}

func rotateCmd(name string, b byte) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRotateKey, RotateKey: &fsm.RotateKey{Name: name, Sharing: transitSharing(b)}}
}

func configureCmd(name string, min uint64) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeConfigureKey, ConfigureKey: &fsm.ConfigureKey{Name: name, MinDecryptionVersion: min}}
}

func decryptCmd(key string, points ...fsm.TransitPoint) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: key, Op: fsm.OpDecrypt, Ephemeral: operatorEph, Points: points}}
}

// withTransit: ready, a transit key enc/a at versions 1 and 2, and op
// may read, decrypt and rotate enc/*.
func withTransit(h *harness) {
	ready(h)
	h.must(admin, transitKeyCmd("enc/a"))
	h.must(admin, rotateCmd("enc/a", 0x52))
	h.must(admin, putRuleCmd("op-enc", op.ID, "enc/*", fsm.OpRead, fsm.OpDecrypt, fsm.OpRotate))
}

func TestTransitKeys(t *testing.T) {
	transit := func(change func(*fsm.CreateKey)) *fsm.Command {
		c := transitKeyCmd("enc/a")
		change(c.CreateKey)
		return c
	}
	runTransition(t, []transitionCase{
		{name: "a transit key", setup: ready, by: admin, cmd: transitKeyCmd("enc/a"),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				tk := res.Key.Transit()
				if tk == nil || len(tk.Versions) != 1 || tk.Versions[0].Version != 1 || tk.MinDecryptionVersion != 1 || tk.Versions[0].Sharing.Shares[0].Sealed != nil {
					t.Errorf("the result must show version 1 without its sealed share: %+v", tk)
				}
				if k := h.state().Keys["enc/a"]; k.Transit().Versions[0].Sharing.Shares[0].Sealed == nil {
					t.Error("the state lost the sealed share")
				}
			}},
		{name: "an unknown cipher", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: transit(func(c *fsm.CreateKey) { c.Transit.Cipher = "aes128-cbc" })},
		{name: "a version numbered by the client", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: transit(func(c *fsm.CreateKey) { c.Transit.Versions[0].Version = 7 })},
		{name: "two versions at once", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: transit(func(c *fsm.CreateKey) { c.Transit.Versions = append(c.Transit.Versions, c.Transit.Versions[0]) })},
		{name: "with sealed material", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: transit(func(c *fsm.CreateKey) { c.R, c.Sealed = point(1), sealed(1) })},
		{name: "dealt at an old epoch", setup: ready, by: admin, code: fsm.CodeConflict,
			cmd: transit(func(c *fsm.CreateKey) { c.Transit.Versions[0].Sharing.Epoch = 0 })},
		{name: "transit versions on a secret", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(createKeyCmd("k"), func(c *fsm.Command) { c.CreateKey.Transit = transitKeyCmd("x").CreateKey.Transit })},

		{name: "a rotation", setup: withTransit, by: op, cmd: rotateCmd("enc/a", 0x53),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if res.Key.Version != 3 || res.Key.Transit().Latest().Version != 3 || !bytes.Equal(res.Key.Transit().Latest().Sharing.Commits[0], point(0x53)) {
					t.Errorf("after a rotation: %+v", res.Key.Transit())
				}
			}},
		{name: "a rotation by the key's ID", setup: withTransit, by: op,
			cmdAt: func(h *harness) *fsm.Command { return rotateCmd(h.state().Keys["enc/a"].ID, 0x53) }},
		{name: "a rotation without the rule", setup: withReader, by: reader, code: fsm.CodeDenied, cmd: rotateCmd("enc/a", 0x53)},
		{name: "a rotation of a secret", setup: then(withTransit, doing(admin, createKeyCmd("enc/s"))), by: admin, code: fsm.CodeInvalid, cmd: rotateCmd("enc/s", 0x53)},
		{name: "a rotation of a revoked key", setup: then(withTransit, doing(admin, revokeKeyCmd("enc/a"))), by: admin, code: fsm.CodeState, cmd: rotateCmd("enc/a", 0x53)},
		{name: "a rotation dealt at another threshold", setup: withTransit, by: admin, code: fsm.CodeConflict,
			cmd: with(rotateCmd("enc/a", 0x53), func(c *fsm.Command) { c.RotateKey.Sharing.Threshold = 2 })},

		{name: "min_decryption_version", setup: withTransit, by: op, cmd: configureCmd("enc/a", 2),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if res.Key.Transit().MinDecryptionVersion != 2 {
					t.Errorf("min_decryption_version %d", res.Key.Transit().MinDecryptionVersion)
				}
			}},
		{name: "min_decryption_version past the latest", setup: withTransit, by: op, code: fsm.CodeInvalid, cmd: configureCmd("enc/a", 3)},
		{name: "min_decryption_version 0", setup: withTransit, by: op, code: fsm.CodeInvalid, cmd: configureCmd("enc/a", 0)},
	})
}

// withReader: withTransit, and reader may only read enc/*.
func withReader(h *harness) {
	withTransit(h)
	h.must(admin, addOperatorCmd(operatorSpec(reader, "dave", false)))
	h.must(admin, putRuleCmd("dave-enc", reader.ID, "enc/*", fsm.OpRead))
}

func TestAuthorizeDecrypt(t *testing.T) {
	pt := func(v uint64) fsm.TransitPoint {
		return fsm.TransitPoint{Version: v, Point: point(9), Proof: make([]byte, 64)}
	}
	many := make([]fsm.TransitPoint, fsm.MaxTransitBatch+1)
	for i := range many {
		many[i] = pt(1)
	}
	cases := []struct {
		name  string
		setup func(h *harness)
		by    principal
		cmd   *fsm.Command
		code  fsm.Code
	}{
		{"a batch", withReader, op, decryptCmd("enc/a", pt(1), pt(2)), ""},
		{"by who may only read", withReader, reader, decryptCmd("enc/a", pt(1)), fsm.CodeDenied},
		{"no points", withReader, op, decryptCmd("enc/a"), fsm.CodeInvalid},
		{"too many points", withReader, op, decryptCmd("enc/a", many...), fsm.CodeInvalid},
		{"a short point", withReader, op, decryptCmd("enc/a", fsm.TransitPoint{Version: 1, Point: make([]byte, 31)}), fsm.CodeInvalid},
		{"a point without a proof (the format before it)", withReader, op, decryptCmd("enc/a", fsm.TransitPoint{Version: 1, Point: point(9)}), fsm.CodeInvalid},
		{"a short proof", withReader, op, decryptCmd("enc/a", fsm.TransitPoint{Version: 1, Point: point(9), Proof: make([]byte, 63)}), fsm.CodeInvalid},
		{"a context", withReader, op, decryptCmd("enc/a", fsm.TransitPoint{Version: 1, Point: point(9), Proof: make([]byte, 64), Context: []byte("c")}), ""},
		{"a long context", withReader, op, decryptCmd("enc/a", fsm.TransitPoint{Version: 1, Point: point(9), Proof: make([]byte, 64),
			Context: make([]byte, fsm.MaxDeriveContext+1)}), fsm.CodeInvalid},
		{"without an ephemeral key", withReader, op, with(decryptCmd("enc/a", pt(1)), withoutEphemeral), fsm.CodeInvalid},
		{"a secret", then(withReader, doing(admin, createKeyCmd("enc/s"))), admin, decryptCmd("enc/s", pt(1)), fsm.CodeInvalid},
		{"a revoked key", then(withReader, doing(admin, revokeKeyCmd("enc/a"))), op, decryptCmd("enc/a", pt(1)), fsm.CodeDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			_, _, err := authorize(h, h.signed(tc.by, tc.cmd), t0)
			if codeOfErr(err) != tc.code {
				t.Fatalf("got %v, want code %q", err, tc.code)
			}
		})
	}
	// Each point's version is the holder's to check, one by one.
	h := newHarness(t)
	withReader(h)
	h.must(op, configureCmd("enc/a", 2))
	s := h.state()
	k := s.Keys["enc/a"]
	for v, want := range map[uint64]fsm.Code{1: fsm.CodeDenied, 2: "", 3: fsm.CodeNotFound} {
		if _, err := fsm.TransitVersionFor(k, v, s.Epoch); codeOfErr(err) != want {
			t.Errorf("version %d: %v, want %q", v, err, want)
		}
	}
	// A version dealt to an earlier epoch's holders, not reshared.
	if _, err := fsm.TransitVersionFor(k, 2, s.Epoch+1); codeOfErr(err) != fsm.CodeConflict {
		t.Errorf("a version of an earlier epoch: %v, want conflict", err)
	}
}

func deriveCmd(key string, items ...fsm.TransitDerivation) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: key, Op: fsm.OpDerive, Ephemeral: operatorEph, Derive: items}}
}

// TestAuthorizeDerive: a derivation (op derive) is its own operation: a
// rule that grants decrypt does not grant it; its items are 1 to
// MaxTransitBatch contexts of at most MaxDeriveContext bytes, a derived
// key's each non-empty, and nothing else.
func TestAuthorizeDerive(t *testing.T) {
	d := func(ctx string) fsm.TransitDerivation { return fsm.TransitDerivation{Version: 1, Context: []byte(ctx)} }
	many := make([]fsm.TransitDerivation, fsm.MaxTransitBatch+1)
	for i := range many {
		many[i] = d("c")
	}
	withDeriver := func(h *harness) {
		withReader(h)
		h.must(admin, putRuleCmd("dave-derive", reader.ID, "enc/*", fsm.OpDerive))
		derived := transitKeyCmd("enc/d")
		derived.CreateKey.Transit.Derived = true
		h.must(admin, derived)
	}
	cases := []struct {
		name string
		by   principal
		cmd  *fsm.Command
		code fsm.Code
	}{
		{"by a rule for derive", reader, deriveCmd("enc/a", d("tenant-1"), d(""), fsm.TransitDerivation{Version: 2}), ""},
		{"by admin", admin, deriveCmd("enc/a", d("tenant-1")), ""},
		{"by a rule for decrypt only", op, deriveCmd("enc/a", d("tenant-1")), fsm.CodeDenied},
		{"no items", reader, deriveCmd("enc/a"), fsm.CodeInvalid},
		{"too many items", reader, deriveCmd("enc/a", many...), fsm.CodeInvalid},
		{"a long context", reader, deriveCmd("enc/a", d(string(make([]byte, fsm.MaxDeriveContext+1)))), fsm.CodeInvalid},
		{"with ciphertext points", reader, with(deriveCmd("enc/a", d("c")), func(c *fsm.Command) {
			c.Release.Points = []fsm.TransitPoint{{Version: 1, Point: point(9)}}
		}), fsm.CodeInvalid},
		{"a derived key with a context", reader, deriveCmd("enc/d", d("tenant-1")), ""},
		{"a derived key without a context", reader, deriveCmd("enc/d", d("")), fsm.CodeInvalid},
		{"without an ephemeral key", reader, with(deriveCmd("enc/a", d("c")), withoutEphemeral), fsm.CodeInvalid},
		{"a secret", admin, deriveCmd("enc/s", d("c")), fsm.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			then(withDeriver, doing(admin, createKeyCmd("enc/s")))(h)
			_, _, err := authorize(h, h.signed(tc.by, tc.cmd), t0)
			if codeOfErr(err) != tc.code {
				t.Fatalf("got %v, want code %q", err, tc.code)
			}
		})
	}
}

func x25519KeyCmd(name string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: name, Type: fsm.KeyTypeX25519,
		Transit: &fsm.TransitKey{Versions: []fsm.TransitVersion{{Sharing: transitSharing(0x61)}}}}}
}

func exchangeCmd(key string, us ...fsm.TransitPoint) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: key, Op: fsm.OpExchange, Ephemeral: operatorEph, Points: us}}
}

// TestX25519Keys: an x25519 key is a transit key's sharing without a
// cipher, a context or an export, and rotates as a transit key does.
func TestX25519Keys(t *testing.T) {
	x := func(change func(*fsm.TransitKey)) *fsm.Command {
		c := x25519KeyCmd("dh/a")
		change(c.CreateKey.Transit)
		return c
	}
	runTransition(t, []transitionCase{
		{name: "an x25519 key", setup: ready, by: admin, cmd: x25519KeyCmd("dh/a"),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if res.Key.Type != fsm.KeyTypeX25519 || res.Key.Transit() == nil || res.Key.Transit().Latest().Version != 1 {
					t.Errorf("the x25519 key: %+v", res.Key)
				}
			}},
		{name: "with a cipher", setup: ready, by: admin, code: fsm.CodeInvalid, cmd: x(func(tk *fsm.TransitKey) { tk.Cipher = "aes256-gcm96" })},
		{name: "derived", setup: ready, by: admin, code: fsm.CodeInvalid, cmd: x(func(tk *fsm.TransitKey) { tk.Derived = true })},
		{name: "exportable", setup: ready, by: admin, code: fsm.CodeInvalid, cmd: x(func(tk *fsm.TransitKey) { tk.Exportable = true })},
		{name: "without a sharing", setup: ready, by: admin, code: fsm.CodeInvalid, cmd: x(func(tk *fsm.TransitKey) { tk.Versions[0].Sharing = nil })},
		{name: "a rotation", setup: then(ready, doing(admin, x25519KeyCmd("dh/a"))), by: admin, cmd: rotateCmd("dh/a", 0x62),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if res.Key.Transit().Latest().Version != 2 {
					t.Errorf("after a rotation: %+v", res.Key.Transit())
				}
			}},
	})
}

// TestAuthorizeExchange: an x25519 key answers exchange (op exchange)
// and nothing else, a transit key everything but exchange; exchange is
// its own rule (decrypt does not grant it); its items are 1 to
// MaxTransitBatch 32-byte u, from an operator with an ephemeral key,
// never a gateway node.
func TestAuthorizeExchange(t *testing.T) {
	u := fsm.TransitPoint{Version: 1, Point: point(9)}
	many := make([]fsm.TransitPoint, fsm.MaxTransitBatch+1)
	for i := range many {
		many[i] = u
	}
	setup := func(h *harness) {
		withReader(h)
		h.must(admin, x25519KeyCmd("enc/x"))
		h.must(admin, putRuleCmd("dave-exchange", reader.ID, "enc/*", fsm.OpExchange))
	}
	cases := []struct {
		name string
		by   principal
		cmd  *fsm.Command
		code fsm.Code
	}{
		{"by a rule for exchange", reader, exchangeCmd("enc/x", u, u), ""},
		{"by admin", admin, exchangeCmd("enc/x", u), ""},
		{"by a rule for decrypt only", op, exchangeCmd("enc/x", u), fsm.CodeDenied},
		{"a decryption with an x25519 key", admin, decryptCmd("enc/x", u), fsm.CodeInvalid},
		{"a derivation with an x25519 key", admin, deriveCmd("enc/x", fsm.TransitDerivation{Version: 1, Context: []byte("c")}), fsm.CodeInvalid},
		{"a signature with an x25519 key", admin, signCmd("enc/x", []byte("m")), fsm.CodeInvalid},
		{"an exchange with a transit key", admin, exchangeCmd("enc/a", u), fsm.CodeInvalid},
		{"no items", reader, exchangeCmd("enc/x"), fsm.CodeInvalid},
		{"too many items", reader, exchangeCmd("enc/x", many...), fsm.CodeInvalid},
		{"a short u", reader, exchangeCmd("enc/x", fsm.TransitPoint{Version: 1, Point: make([]byte, 31)}), fsm.CodeInvalid},
		{"with derivations", reader, with(exchangeCmd("enc/x", u), func(c *fsm.Command) {
			c.Release.Derive = []fsm.TransitDerivation{{Version: 1}}
		}), fsm.CodeInvalid},
		{"without an ephemeral key", reader, with(exchangeCmd("enc/x", u), withoutEphemeral), fsm.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			setup(h)
			_, _, err := authorize(h, h.signed(tc.by, tc.cmd), t0)
			if codeOfErr(err) != tc.code {
				t.Fatalf("got %v, want code %q", err, tc.code)
			}
		})
	}
}
