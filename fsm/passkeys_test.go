package fsm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// authenticator is a software WebAuthn authenticator: what a phone's
// passkey does, made by hand from the specification, so that every field
// an attacker controls can be bent.
type authenticator struct {
	id     string // credential ID, base64url
	alg    int
	signer crypto.Signer
	count  uint32
}

const (
	testRPID   = "keys.example"
	testOrigin = "https://keys.example:8443"
)

func newES256(t testing.TB, id string) *authenticator {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &authenticator{id: base64.RawURLEncoding.EncodeToString([]byte(id)), alg: fsm.AlgES256, signer: k}
}

func newEdDSA(id string) *authenticator {
	return &authenticator{id: base64.RawURLEncoding.EncodeToString([]byte(id)), alg: fsm.AlgEdDSA, signer: seededKey(77)}
}

// passkey is the registration of a for operator p.
func (a *authenticator) passkey(p principal) *fsm.Passkey {
	spki, err := x509.MarshalPKIXPublicKey(a.signer.Public())
	if err != nil {
		panic(err)
	}
	return &fsm.Passkey{ID: a.id, Operator: p.ID, Name: "phone", Algorithm: a.alg, PublicKey: spki, RPID: testRPID, Origins: []string{testOrigin}}
}

// assertion options: what a browser and authenticator put in.
type assertOpts struct {
	typ, origin, rpID string
	flags             byte
	challenge         []byte // default: the payload's
	count             *uint32
}

// assert signs payload as the authenticator would for a console at
// testOrigin, after a touch and a PIN (UP and UV).
func (a *authenticator) assert(payload []byte, o assertOpts) *fsm.Assertion {
	if o.typ == "" {
		o.typ = "webauthn.get"
	}
	if o.origin == "" {
		o.origin = testOrigin
	}
	if o.rpID == "" {
		o.rpID = testRPID
	}
	if o.flags == 0 {
		o.flags = 0x05
	}
	if o.challenge == nil {
		o.challenge = fsm.CommandChallenge(payload)
	}
	cd, _ := json.Marshal(map[string]any{"type": o.typ, "challenge": base64.RawURLEncoding.EncodeToString(o.challenge), "origin": o.origin, "crossOrigin": false})
	a.count++
	count := a.count
	if o.count != nil {
		count = *o.count
	}
	rp := sha256.Sum256([]byte(o.rpID))
	ad := append(rp[:], o.flags)
	ad = binary.BigEndian.AppendUint32(ad, count)
	h := sha256.Sum256(cd)
	msg := append(bytes.Clone(ad), h[:]...)
	var sig []byte
	var err error
	if a.alg == fsm.AlgES256 {
		d := sha256.Sum256(msg)
		sig, err = a.signer.Sign(rand.Reader, d[:], crypto.SHA256)
	} else {
		sig, err = a.signer.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	if err != nil {
		panic(err)
	}
	return &fsm.Assertion{Credential: a.id, AuthenticatorData: ad, ClientDataJSON: cd, Signature: sig}
}

// passkeyEntry is c signed by p's passkey a, the assertion bent by o.
func (h *harness) passkeyEntry(p principal, a *authenticator, c *fsm.Command, o assertOpts) []byte {
	h.t.Helper()
	payload, err := json.Marshal(h.prepare(c))
	if err != nil {
		h.t.Fatal(err)
	}
	return encode(h.t, &fsm.Signed{Signer: p.ID, Payload: payload, WebAuthn: a.assert(payload, o)})
}

func addPasskeyCmd(pk *fsm.Passkey) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeAddPasskey, AddPasskey: pk}
}

func denyCmd(machine, key string, until time.Time) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeDeny, Deny: &fsm.Denial{Machine: machine, Key: key, Until: until.UnixNano()}}
}

var (
	phone = newES256(&testing.T{}, "phone-1")
	yubi  = newEdDSA("yubikey-1")
)

// withPasskeys: machines, the admin's passkey phone (ES256), bob's
// passkey yubi (EdDSA) and bob's rule to approve luks/*.
func withPasskeys(h *harness) {
	machines(h)
	h.must(admin, addPasskeyCmd(phone.passkey(admin)))
	h.must(admin, addPasskeyCmd(yubi.passkey(op)))
	h.must(admin, putRuleCmd("ap", op.ID, "luks/*", fsm.OpApprove))
}

func TestPasskeyRegistration(t *testing.T) {
	with := func(f func(pk *fsm.Passkey)) *fsm.Command {
		pk := phone.passkey(op)
		f(pk)
		return addPasskeyCmd(pk)
	}
	soon := t0.Add(time.Hour)
	runTransition(t, []transitionCase{
		{name: "add a passkey", setup: ready, by: admin, cmd: addPasskeyCmd(phone.passkey(op))},
		{name: "add an Ed25519 passkey", setup: ready, by: admin, cmd: addPasskeyCmd(yubi.passkey(op))},
		{name: "add a passkey by a non-admin", setup: ready, by: op, cmd: addPasskeyCmd(phone.passkey(op)), code: fsm.CodeDenied},
		{name: "add a passkey twice", setup: then(ready, doing(admin, addPasskeyCmd(phone.passkey(op)))), by: admin, cmd: addPasskeyCmd(phone.passkey(admin)), code: fsm.CodeExists},
		{name: "a passkey of no operator", setup: ready, by: admin, cmd: addPasskeyCmd(phone.passkey(stranger)), code: fsm.CodeNotFound},
		{name: "a passkey whose algorithm is not its key's", setup: ready, by: admin, cmd: with(func(pk *fsm.Passkey) { pk.Algorithm = fsm.AlgEdDSA }), code: fsm.CodeInvalid},
		{name: "a passkey with an RSA algorithm", setup: ready, by: admin, cmd: with(func(pk *fsm.Passkey) { pk.Algorithm = -257 }), code: fsm.CodeInvalid},
		{name: "a passkey with no key", setup: ready, by: admin, cmd: with(func(pk *fsm.Passkey) { pk.PublicKey = []byte{1, 2} }), code: fsm.CodeInvalid},
		{name: "a passkey for a plain http origin", setup: ready, by: admin, cmd: with(func(pk *fsm.Passkey) { pk.Origins = []string{"http://keys.example"} }), code: fsm.CodeInvalid},
		{name: "a passkey for no origin", setup: ready, by: admin, cmd: with(func(pk *fsm.Passkey) { pk.Origins = nil }), code: fsm.CodeInvalid},
		{name: "a passkey with an RP ID that is a URL", setup: ready, by: admin, cmd: with(func(pk *fsm.Passkey) { pk.RPID = "https://keys.example" }), code: fsm.CodeInvalid},
		{name: "a passkey with an ID that is not base64url", setup: ready, by: admin, cmd: with(func(pk *fsm.Passkey) { pk.ID = "a+b/" }), code: fsm.CodeInvalid},
		{name: "remove a passkey", setup: withPasskeys, by: admin, cmd: &fsm.Command{Type: fsm.TypeRemovePasskey, RemovePasskey: yubi.id}},
		{name: "remove an unknown passkey", setup: withPasskeys, by: admin, cmd: &fsm.Command{Type: fsm.TypeRemovePasskey, RemovePasskey: "bm9wZQ"}, code: fsm.CodeNotFound},
		{name: "removing an operator removes its passkeys", setup: withPasskeys, by: admin, cmd: removeOperatorCmd(op.ID),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if h.state().Passkeys[yubi.id] != nil {
					t.Error("bob's passkey outlived bob")
				}
				if res := h.apply(h.passkeyEntry(op, yubi, approveCmd(laptop.ID, "luks/a", 1, time.Time{}), assertOpts{})); res.Error == nil {
					t.Error("a removed operator's passkey approved a machine")
				}
			}},
		{name: "deny a machine", setup: then(withPasskeys, doing(admin, approveCmd(laptop.ID, "", 2, time.Time{}))), by: admin, cmd: denyCmd(laptop.ID, "", soon),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if len(s.Approvals) != 0 {
					t.Errorf("a denial left approvals %v", s.Approvals)
				}
				var err *fsm.Error
				h.f.Read(func(s *fsm.State) { _, _, err = s.AuthorizeRelease(machineRequest(laptop, "luks/a", h.nonce(), 0), t0) })
				if err == nil || err.Code != fsm.CodeDenied {
					t.Fatalf("a denied machine's release: %v, want %q", err, fsm.CodeDenied)
				}
				h.must(admin, approveCmd(laptop.ID, "", 1, time.Time{}))
				h.f.Read(func(s *fsm.State) { _, _, err = s.AuthorizeRelease(machineRequest(laptop, "luks/a", h.nonce(), 0), t0) })
				if err == nil || err.Code != fsm.CodePending {
					t.Errorf("after an approval lifted the denial: %v, want %q (the coordinator spends the use)", err, fsm.CodePending)
				}
			}},
		{name: "deny by an operator without the approve rule", setup: machines, by: op, cmd: denyCmd(laptop.ID, "luks/a", soon), code: fsm.CodeDenied},
		{name: "deny for ever", setup: machines, by: admin, cmd: denyCmd(laptop.ID, "", t0.Add(fsm.MaxApprovalTime+time.Hour)), code: fsm.CodeInvalid},
	})
}

// TestPasskeyAssertionAttacks: a passkey signs approvals and denials, and
// every replica refuses an assertion that is forged, for another command,
// from another origin or relying party, made without user verification,
// replayed with an old counter, or by a passkey for what it may not sign.
func TestPasskeyAssertionAttacks(t *testing.T) {
	approve := approveCmd(laptop.ID, "luks/a", 1, time.Time{})
	zero := uint32(0)
	entry := func(p principal, a *authenticator, c *fsm.Command, o assertOpts) func(h *harness) []byte {
		return func(h *harness) []byte { return h.passkeyEntry(p, a, c, o) }
	}
	runTransition(t, []transitionCase{
		{name: "an admin's ES256 passkey approves", setup: withPasskeys, entry: entry(admin, phone, approve, assertOpts{}),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if a := s.Approvals[laptop.ID+"\x00luks/a"]; a == nil || a.By != admin.ID || a.Uses != 1 {
					t.Errorf("approval %+v, want one use by the admin", a)
				}
				if s.Passkeys[phone.id].SignCount != phone.count {
					t.Errorf("sign count %d, want %d", s.Passkeys[phone.id].SignCount, phone.count)
				}
			}},
		{name: "an operator's EdDSA passkey approves", setup: withPasskeys, entry: entry(op, yubi, approve, assertOpts{})},
		{name: "a passkey denies", setup: withPasskeys, entry: entry(op, yubi, denyCmd(laptop.ID, "luks/a", t0.Add(time.Hour)), assertOpts{})},
		{name: "a forged assertion", setup: withPasskeys, code: fsm.CodeBadSignature, entry: func(h *harness) []byte {
			var sg fsm.Signed
			json.Unmarshal(h.passkeyEntry(admin, phone, approve, assertOpts{}), &sg)
			sg.WebAuthn.Signature = newES256(t, "other").assert(sg.Payload, assertOpts{}).Signature
			return encode(t, &sg)
		}},
		{name: "an assertion for another command", setup: withPasskeys, code: fsm.CodeBadSignature, entry: func(h *harness) []byte {
			var other, sg fsm.Signed
			json.Unmarshal(h.passkeyEntry(admin, phone, approveCmd(server.ID, "luks/a", 1, time.Time{}), assertOpts{}), &other)
			json.Unmarshal(h.passkeyEntry(admin, phone, approveCmd(laptop.ID, "", 100, time.Time{}), assertOpts{}), &sg)
			sg.WebAuthn = other.WebAuthn
			return encode(t, &sg)
		}},
		{name: "an assertion over a challenge the node chose", setup: withPasskeys, code: fsm.CodeBadSignature,
			entry: entry(admin, phone, approve, assertOpts{challenge: bytes.Repeat([]byte{1}, 32)})},
		{name: "an assertion from another origin", setup: withPasskeys, code: fsm.CodeBadSignature,
			entry: entry(admin, phone, approve, assertOpts{origin: "https://evil.example"})},
		{name: "an assertion for another relying party", setup: withPasskeys, code: fsm.CodeBadSignature,
			entry: entry(admin, phone, approve, assertOpts{rpID: "evil.example"})},
		{name: "an assertion without user verification", setup: withPasskeys, code: fsm.CodeBadSignature,
			entry: entry(admin, phone, approve, assertOpts{flags: 0x01})},
		{name: "an assertion without user presence", setup: withPasskeys, code: fsm.CodeBadSignature,
			entry: entry(admin, phone, approve, assertOpts{flags: 0x04})},
		{name: "a registration's client data", setup: withPasskeys, code: fsm.CodeBadSignature,
			entry: entry(admin, phone, approve, assertOpts{typ: "webauthn.create"})},
		{name: "a counter that did not grow", setup: then(withPasskeys, func(h *harness) {
			if res := h.apply(h.passkeyEntry(admin, phone, approveCmd(server.ID, "luks/a", 1, time.Time{}), assertOpts{})); res.Error != nil {
				t.Fatal(res.Error)
			}
		}), code: fsm.CodeReplay, entry: entry(admin, phone, approve, assertOpts{count: &zero})},
		{name: "a passkey signing as another operator", setup: withPasskeys, code: fsm.CodeBadSignature, entry: entry(op, phone, approve, assertOpts{})},
		{name: "a passkey signing what only an Ed25519 key may", setup: withPasskeys, code: fsm.CodeDenied,
			entry: entry(admin, phone, addOperatorCmd(operatorSpec(admin2, "eve", true)), assertOpts{})},
		{name: "a passkey approving beyond its operator's rules", setup: withPasskeys, code: fsm.CodeDenied,
			entry: entry(op, yubi, approveCmd(laptop.ID, "", 1, time.Time{}), assertOpts{})},
		{name: "a sign-in in the log", setup: withPasskeys, code: fsm.CodeInvalid,
			entry: entry(admin, phone, &fsm.Command{Type: fsm.TypeSignIn, SignIn: &fsm.SignIn{Origin: testOrigin}}, assertOpts{})},
		{name: "an assertion and an Ed25519 signature", setup: withPasskeys, code: fsm.CodeInvalid, entry: func(h *harness) []byte {
			var sg fsm.Signed
			json.Unmarshal(h.passkeyEntry(admin, phone, approve, assertOpts{}), &sg)
			sg.Signature = signBytes(admin, sg.Payload)
			return encode(t, &sg)
		}},
	})
}

// TestVerifyPasskeySignIn: a console's check of a sign-in.
func TestVerifyPasskeySignIn(t *testing.T) {
	h := newHarness(t)
	withPasskeys(h)
	signIn := func(c *fsm.Command, o assertOpts) *fsm.Signed {
		var sg fsm.Signed
		json.Unmarshal(h.passkeyEntry(admin, phone, c, o), &sg)
		return &sg
	}
	in := &fsm.Command{Type: fsm.TypeSignIn, SignIn: &fsm.SignIn{Origin: testOrigin}}
	var o *fsm.Operator
	var err *fsm.Error
	h.f.Read(func(s *fsm.State) { o, _, err = s.VerifyPasskey(signIn(in, assertOpts{}), h.at) })
	if err != nil || o.ID != admin.ID {
		t.Fatalf("sign-in: %v, %v", o, err)
	}
	h.f.Read(func(s *fsm.State) {
		_, _, err = s.VerifyPasskey(signIn(in, assertOpts{origin: "https://evil.example"}), h.at)
	})
	if err == nil {
		t.Error("a sign-in from another origin was taken")
	}
	h.f.Read(func(s *fsm.State) { _, _, err = s.VerifyPasskey(signIn(in, assertOpts{}), h.at.Add(time.Hour)) })
	if err == nil || err.Code != fsm.CodeClockSkew {
		t.Errorf("a stale sign-in: %v, want %q", err, fsm.CodeClockSkew)
	}
}

// FuzzVerifyAssertion: an assertion's client data, authenticator data
// and signature come from the network (a browser, through a console that
// may lie). Any bytes must be refused with a code, never panic, and never
// verify unless they are the genuine assertion's.
func FuzzVerifyAssertion(f *testing.F) {
	a := newES256(f, "fuzz")
	pk := a.passkey(admin)
	payload := []byte(`{"type":"approve"}`)
	good := a.assert(payload, assertOpts{})
	f.Add(good.ClientDataJSON, good.AuthenticatorData, good.Signature)
	f.Add([]byte(`{"type":"webauthn.get","challenge":"","origin":""}`), make([]byte, 37), []byte{0x30, 0})
	f.Add([]byte(`[]`), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, cd, ad, sig []byte) {
		_, err := fsm.VerifyAssertion(pk, payload, &fsm.Assertion{Credential: a.id, ClientDataJSON: cd, AuthenticatorData: ad, Signature: sig})
		if err != nil && err.Code == "" {
			t.Fatalf("refusal without a code: %v", err)
		}
		if err == nil && !(bytes.Equal(cd, good.ClientDataJSON) && bytes.Equal(ad[:37], good.AuthenticatorData)) {
			t.Fatalf("bytes that are not the genuine assertion verified: %q %x", cd, ad)
		}
	})
}
