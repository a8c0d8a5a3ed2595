package fsm_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

var (
	reader  = operatorPrincipal(5) // a non-admin who may only read db/*
	getter  = operatorPrincipal(6) // a non-admin who may only get db/*
	swapper = operatorPrincipal(7) // a non-admin who may only cas db/*
)

// releaseCmd is an operator's release: with the ephemeral key its
// client combines with.
func releaseCmd(key, op string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: key, Op: op, Ephemeral: operatorEph}}
}

var operatorEph = bytes.Repeat([]byte{7}, 32)

func withoutEphemeral(c *fsm.Command) { c.Release.Ephemeral = nil }

// sealMode sets c's seal mode.
func sealMode(c *fsm.Command, mode string) *fsm.Command {
	c.Release.Seal = mode
	return c
}

func casRelease(key string, swap *fsm.ReplaceKey) *fsm.Command {
	c := releaseCmd(key, fsm.OpCAS)
	c.Release.ReplaceKey = swap
	return c
}

// releaseState: keys in every state; on db/*, op may get and cas, and
// reader, getter and swapper may do one operation each.
func releaseState(h *harness) {
	ready(h)
	h.must(admin, putRuleCmd("op-db", op.ID, "db/*", fsm.OpGet, fsm.OpCAS))
	for _, o := range []struct {
		p      principal
		name   string
		opName string
	}{{reader, "dave", fsm.OpRead}, {getter, "erin", fsm.OpGet}, {swapper, "frank", fsm.OpCAS}} {
		h.must(admin, addOperatorCmd(operatorSpec(o.p, o.name, false)))
		h.must(admin, putRuleCmd(o.name+"-db", o.p.ID, "db/*", o.opName))
	}
	for _, name := range []string{"db/x", "web/x", "db/revoked", "db/destroyed"} {
		h.must(admin, createKeyCmd(name))
	}
	h.must(admin, revokeKeyCmd("db/revoked"))
	h.must(admin, destroyKeyCmd("db/destroyed"))
	h.must(admin, with(createKeyCmd("db/expiring"), func(c *fsm.Command) {
		c.CreateKey.ExpiresAt = t0.Add(time.Hour).UnixNano()
	}))
}

// authorize asks the state, as a share holder whose clock reads now would.
func authorize(h *harness, sg *fsm.Signed, now time.Time) (*fsm.ReleaseRequest, *fsm.Key, *fsm.Error) {
	var (
		req *fsm.ReleaseRequest
		k   *fsm.Key
		err *fsm.Error
	)
	h.f.Read(func(s *fsm.State) {
		var cmd *fsm.Command
		cmd, k, err = s.AuthorizeRelease(sg, now)
		if cmd != nil {
			req = cmd.Release
		}
	})
	return req, k, err
}

func TestAuthorizeRelease(t *testing.T) {
	swap := func(name string) *fsm.ReplaceKey { return replaceKeyCmd(name, 1).ReplaceKey }
	cases := []struct {
		name  string
		setup func(h *harness) // on top of releaseState
		by    principal
		cmd   *fsm.Command
		sg    func(h *harness) *fsm.Signed // instead of by and cmd
		at    time.Duration                // the holder's clock, from t0; the request is issued then
		code  fsm.Code
	}{
		{name: "an admin gets any key", by: admin, cmd: releaseCmd("web/x", fsm.OpGet)},
		{name: "an operator gets a key under its prefix", by: op, cmd: releaseCmd("db/x", fsm.OpGet)},
		{name: "a key before it expires", by: op, cmd: releaseCmd("db/expiring", fsm.OpGet), at: 59 * time.Minute},
		{name: "a cas release for the same key", by: op, cmd: casRelease("db/x", swap("db/x"))},

		{name: "an operator outside its prefix", by: op, cmd: releaseCmd("web/x", fsm.OpGet), code: fsm.CodeDenied},
		{name: "an operator whose rule was deleted", setup: doing(admin, deleteRuleCmd("op-db")),
			by: op, cmd: releaseCmd("db/x", fsm.OpGet), code: fsm.CodeDenied},
		{name: "an operation the rule does not grant", by: reader, cmd: releaseCmd("db/x", fsm.OpGet), code: fsm.CodeDenied},
		{name: "a cas the rule does not grant", by: reader, cmd: casRelease("db/x", swap("db/x")), code: fsm.CodeDenied},
		{name: "a get, by who may only get", by: getter, cmd: releaseCmd("db/x", fsm.OpGet)},
		{name: "a cas, by who may only get", by: getter, cmd: casRelease("db/x", swap("db/x")), code: fsm.CodeDenied},
		{name: "a cas, by who may only cas", by: swapper, cmd: casRelease("db/x", swap("db/x"))},
		{name: "a get, by who may only cas", by: swapper, cmd: releaseCmd("db/x", fsm.OpGet), code: fsm.CodeDenied},
		{name: "a revoked key", by: op, cmd: releaseCmd("db/revoked", fsm.OpGet), code: fsm.CodeDenied},
		{name: "a revoked key, to an admin", by: admin, cmd: releaseCmd("db/revoked", fsm.OpGet), code: fsm.CodeDenied},
		{name: "a destroyed key", by: admin, cmd: releaseCmd("db/destroyed", fsm.OpGet), code: fsm.CodeDenied},
		{name: "an expired key", by: op, cmd: releaseCmd("db/expiring", fsm.OpGet), at: 61 * time.Minute, code: fsm.CodeDenied},
		{name: "an expired key, to an admin", by: admin, cmd: releaseCmd("db/expiring", fsm.OpGet), at: time.Hour, code: fsm.CodeDenied},
		{name: "a cas of a revoked key", by: admin, cmd: casRelease("db/revoked", swap("db/revoked")), code: fsm.CodeDenied},
		{name: "an unknown key", by: admin, cmd: releaseCmd("db/missing", fsm.OpGet), code: fsm.CodeNotFound},
		// The coordinator relays what holders seal to the operator's key:
		// a partial in the clear is given only for a gateway's request.
		{name: "an operator's get without an ephemeral key", by: op, cmd: with(releaseCmd("db/x", fsm.OpGet), withoutEphemeral), code: fsm.CodeInvalid},
		{name: "an admin's get without an ephemeral key", by: admin, cmd: with(releaseCmd("web/x", fsm.OpGet), withoutEphemeral), code: fsm.CodeInvalid},
		{name: "a cas release without an ephemeral key", by: op, cmd: with(casRelease("db/x", swap("db/x")), withoutEphemeral), code: fsm.CodeInvalid},
		{name: "an ephemeral key that is not 32 bytes", by: op, cmd: with(releaseCmd("db/x", fsm.OpGet), func(c *fsm.Command) { c.Release.Ephemeral = make([]byte, 31) }), code: fsm.CodeInvalid},
		// The seal mode is the client's, signed: share mode only where
		// the client combines a key's ciphertext, and no mode it does not
		// know (the cases below).
		{name: "a get in share mode", by: op, cmd: sealMode(releaseCmd("db/x", fsm.OpGet), fsm.SealShare)},
		{name: "a cas in share mode", by: op, cmd: sealMode(casRelease("db/x", swap("db/x")), fsm.SealShare)},
		{name: "an unknown seal mode", by: op, cmd: sealMode(releaseCmd("db/x", fsm.OpGet), "none"), code: fsm.CodeInvalid},
		{name: "share mode spelled otherwise", by: op, cmd: sealMode(releaseCmd("db/x", fsm.OpGet), "Share"), code: fsm.CodeInvalid},
		{name: "share mode without an ephemeral key", by: op, cmd: with(sealMode(releaseCmd("db/x", fsm.OpGet), fsm.SealShare), withoutEphemeral), code: fsm.CodeInvalid},
		{name: "share mode on a gateway's request", by: node(1), code: fsm.CodeInvalid, cmd: &fsm.Command{Type: fsm.TypeRelease,
			Release: &fsm.ReleaseRequest{Key: "db/x", Op: fsm.OpGet, Gateway: "tlv", Seal: fsm.SealShare}}},
		{name: "signed with another key", sg: func(h *harness) *fsm.Signed {
			return h.signed(principal{ID: admin.ID, Key: op.Key}, releaseCmd("db/x", fsm.OpGet))
		}, code: fsm.CodeBadSignature},
		{name: "unsigned", sg: func(h *harness) *fsm.Signed {
			sg := h.signed(admin, releaseCmd("db/x", fsm.OpGet))
			sg.Signature = nil
			return sg
		}, code: fsm.CodeBadSignature},
		{name: "key changed after signing", sg: func(h *harness) *fsm.Signed {
			sg := h.signed(op, releaseCmd("db/x", fsm.OpGet))
			sg.Payload = bytes.Replace(sg.Payload, []byte(`"db/x"`), []byte(`"db/y"`), 1)
			return sg
		}, code: fsm.CodeBadSignature},
		{name: "an unknown signer", by: stranger, cmd: releaseCmd("db/x", fsm.OpGet), code: fsm.CodeBadSignature},
		{name: "a node", by: node(1), cmd: releaseCmd("db/x", fsm.OpGet), code: fsm.CodeBadSignature},
		{name: "issued too long ago", by: admin, cmd: issued(releaseCmd("db/x", fsm.OpGet), -fsm.MaxClockSkew-time.Second),
			code: fsm.CodeClockSkew},
		{name: "issued too far ahead", by: admin, cmd: issued(releaseCmd("db/x", fsm.OpGet), fsm.MaxClockSkew+time.Second),
			code: fsm.CodeClockSkew},
		{name: "a short nonce", by: admin, cmd: with(releaseCmd("db/x", fsm.OpGet), func(c *fsm.Command) { c.Nonce = []byte("0123456789") }),
			code: fsm.CodeInvalid},
		{name: "a cas without its swap", by: admin, cmd: releaseCmd("db/x", fsm.OpCAS), code: fsm.CodeInvalid},
		{name: "a cas with the swap of another key", by: admin, cmd: casRelease("db/x", swap("web/x")), code: fsm.CodeInvalid},
		{name: "an operation that is not a release", by: admin, cmd: releaseCmd("db/x", fsm.OpDestroy), code: fsm.CodeInvalid},
		{name: "no operation", by: admin, cmd: releaseCmd("db/x", ""), code: fsm.CodeInvalid},
		{name: "a log command", by: admin, cmd: createKeyCmd("db/x"), code: fsm.CodeInvalid},
		{name: "a log command carrying a release", by: admin, code: fsm.CodeInvalid,
			cmd: with(createKeyCmd("db/x"), func(c *fsm.Command) { c.Release = releaseCmd("db/x", fsm.OpGet).Release })},
		{name: "a release without a body", by: admin, cmd: &fsm.Command{Type: fsm.TypeRelease}, code: fsm.CodeInvalid},
		{name: "a payload that is not JSON", sg: func(h *harness) *fsm.Signed {
			return &fsm.Signed{Signer: admin.ID, Payload: []byte("get db/x"), Signature: signBytes(admin, []byte("get db/x"))}
		}, code: fsm.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			releaseState(h)
			if tc.setup != nil {
				tc.setup(h)
			}
			before := h.snapshot()
			h.at = t0.Add(tc.at)
			var sg *fsm.Signed
			if tc.sg != nil {
				sg = tc.sg(h)
			} else {
				sg = h.signed(tc.by, tc.cmd)
			}
			req, k, err := authorize(h, sg, h.at)
			if !bytes.Equal(h.snapshot(), before) {
				t.Errorf("AuthorizeRelease changed the state")
			}
			if tc.code != "" {
				if err == nil || err.Code != tc.code {
					t.Fatalf("got %v, want %q", err, tc.code)
				}
				if req != nil || k != nil {
					t.Errorf("a refusal returned request %+v and key %+v", req, k)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			want := tc.cmd.Release
			if req == nil || req.Key != want.Key || req.Op != want.Op || (want.ReplaceKey != nil) != (req.ReplaceKey != nil) {
				t.Errorf("request %+v, want %+v", req, want)
			}
			if k == nil || k.Name != want.Key || k.State != fsm.KeyActive || k.Version != 1 || !bytes.Equal(k.Sealed, sealed(1)) {
				t.Errorf("key %+v, want the active %q with its material", k, want.Key)
			}
		})
	}
}

// TestRevokeStopsReleases: once a revoke is applied, a release that starts
// afterwards is refused, even one signed before it.
func TestRevokeStopsReleases(t *testing.T) {
	h := newHarness(t)
	releaseState(h)
	early := h.signed(op, releaseCmd("db/x", fsm.OpGet))
	if _, _, err := authorize(h, early, t0); err != nil {
		t.Fatalf("before the revoke: %v", err)
	}
	h.must(admin, revokeKeyCmd("db/x"))
	for _, sg := range []*fsm.Signed{early, h.signed(op, releaseCmd("db/x", fsm.OpGet)), h.signed(admin, releaseCmd("db/x", fsm.OpGet))} {
		if _, _, err := authorize(h, sg, t0.Add(time.Second)); err == nil || err.Code != fsm.CodeDenied {
			t.Errorf("after the revoke: %v, want %q", err, fsm.CodeDenied)
		}
	}
}
