package cluster

import (
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

// testPasskey is a software WebAuthn authenticator (ES256) for a console
// at origin, relying party rpID.
type testPasskey struct {
	id, origin, rpID string
	key              *ecdsa.PrivateKey
	count            uint32
	flags            byte // authenticator data flags; 0 is UP and UV
}

func newTestPasskey(t *testing.T) *testPasskey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testPasskey{id: base64.RawURLEncoding.EncodeToString(randomBytes(t, 16)), origin: "https://localhost:8443", rpID: "localhost", key: k}
}

func (p *testPasskey) registration(operator string) *fsm.Passkey {
	spki, _ := x509.MarshalPKIXPublicKey(&p.key.PublicKey)
	return &fsm.Passkey{ID: p.id, Operator: operator, Name: "phone", Algorithm: fsm.AlgES256, PublicKey: spki, RPID: p.rpID, Origins: []string{p.origin}}
}

// sign is cmd signed by the passkey as signer: the assertion a browser
// returns for the command's challenge after the user's touch and PIN.
func (p *testPasskey) sign(t *testing.T, signer string, cmd *fsm.Command) *fsm.Signed {
	t.Helper()
	cmd.Nonce, cmd.IssuedAt = randomBytes(t, 16), time.Now().UnixNano()
	payload, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.get", "origin": p.origin,
		"challenge": base64.RawURLEncoding.EncodeToString(fsm.CommandChallenge(payload))})
	rp := sha256.Sum256([]byte(p.rpID))
	p.count++
	flags := p.flags
	if flags == 0 {
		flags = 0x05
	}
	ad := binary.BigEndian.AppendUint32(append(rp[:], flags), p.count)
	h := sha256.Sum256(cd)
	d := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, p.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return &fsm.Signed{Signer: signer, Payload: payload, WebAuthn: &fsm.Assertion{Credential: p.id, AuthenticatorData: ad, ClientDataJSON: cd, Signature: sig}}
}

// TestPasskeyApprovalsAreVerifiedByEveryHolder: a node running attacker
// code relays approvals to the log as a console would; a forged
// assertion, an assertion for another command, one from another origin
// and one without user verification are refused by every replica, which
// each verify the assertion themselves; the genuine one is applied by
// all. A sign-in
// assertion is good for one sign-in on the node, never twice.
func TestPasskeyApprovalsAreVerifiedByEveryHolder(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("luks/m1", randomBytes(t, 32))
	m1, m2 := c.addMachine("m1"), c.addMachine("m2")
	pk := newTestPasskey(t)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddPasskey, AddPasskey: pk.registration(c.opID)}); err != nil {
		t.Fatal(err)
	}
	evil := c.running()[1]
	approve := func(m *testMachine, uses int) *fsm.Command {
		return &fsm.Command{Type: fsm.TypeApprove, Approve: &fsm.Approval{Machine: m.id, Key: "luks/m1", Uses: uses}}
	}

	forged := pk.sign(t, c.opID, approve(m1, 100))
	forged.WebAuthn.Signature = newTestPasskey(t).sign(t, c.opID, approve(m1, 100)).WebAuthn.Signature
	other := pk.sign(t, c.opID, approve(m1, 100))
	other.WebAuthn = pk.sign(t, c.opID, approve(m2, 1)).WebAuthn
	elsewhere := *pk
	elsewhere.origin = "https://evil.example:8443"
	fromElsewhere := elsewhere.sign(t, c.opID, approve(m1, 100))
	unverified := elsewhere
	unverified.origin, unverified.flags = pk.origin, 0x01 // touched, no PIN or biometrics
	withoutUV := unverified.sign(t, c.opID, approve(m1, 100))
	pk.count = unverified.count
	for name, sg := range map[string]*fsm.Signed{"a forged assertion": forged, "an assertion for another command": other,
		"an assertion from another origin": fromElsewhere, "an assertion without user verification": withoutUV} {
		if _, err := evil.n.Submit(ctxOp(t), sg); KindOf(err) != KindUnauthenticated {
			t.Errorf("%s: %v, want %s", name, err, KindUnauthenticated)
		}
	}
	if _, err := evil.n.Submit(ctxOp(t), pk.sign(t, c.opID, approve(m1, 1))); err != nil {
		t.Fatalf("the genuine approval: %v", err)
	}
	want := applied(c.leader())
	for _, tn := range c.running() {
		c.waitFor(settleTimeout, func() (bool, string) { return applied(tn) >= want, tn.id() + " did not apply the approval" })
		if got := readMachineState(tn, m1.id); got.uses != 1 {
			t.Errorf("%s holds %d uses for m1, want the genuine approval's 1", tn.id(), got.uses)
		}
		if got := readMachineState(tn, m2.id); got.uses != 0 {
			t.Errorf("%s holds %d uses for m2, which nobody approved", tn.id(), got.uses)
		}
	}

	signIn := pk.sign(t, "", &fsm.Command{Type: fsm.TypeSignIn, SignIn: &fsm.SignIn{Origin: pk.origin}})
	if op, _, err := evil.n.SignIn(ctxOp(t), signIn); err != nil || op.ID != c.opID {
		t.Fatalf("sign-in: %v, %v", op, err)
	}
	if _, _, err := evil.n.SignIn(ctxOp(t), signIn); err == nil {
		t.Error("the same sign-in assertion was taken twice")
	}
}
