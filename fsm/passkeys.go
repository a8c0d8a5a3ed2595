package fsm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Passkeys are operators' WebAuthn credentials (a phone's or a security
// key's), registered by an admin's signed add_passkey. A passkey signs as
// its operator, and only the commands PasskeyTypes lists: approving or
// denying a machine, and signing in to the console. What it signs is a
// WebAuthn assertion whose challenge is CommandChallenge(payload), the
// SHA-256 of the same signing input an Ed25519 signature covers; so an
// assertion is bound to one command, its nonce and its time.
//
// Every replica verifies an assertion itself when it applies the entry
// (VerifyAssertion, from the WebAuthn Level 2 specification, section
// 7.2): the client data's type, challenge and origin, the relying party
// ID's hash, the user-present and user-verified flags, the signature over
// authenticatorData || SHA-256(clientDataJSON) by the registered key, and
// a sign counter that must grow when the authenticator keeps one. It is
// done here with the standard library rather than a WebAuthn library:
// the check is small, it must be pure and deterministic like the rest of
// the state machine (no clock, no session store, no metadata service),
// and the key is registered as a SubjectPublicKeyInfo, which the browser
// gives (getPublicKey()), so no CBOR or COSE parser reads untrusted input
// here.

// COSE algorithm identifiers of the passkeys a cluster takes.
const (
	AlgES256 = -7 // ECDSA on P-256 with SHA-256
	AlgEdDSA = -8 // Ed25519
)

// PasskeyTypes are the command types a passkey may sign. TypeSignIn is
// never logged: a node checks it to open a console session
// (State.VerifyPasskey).
var PasskeyTypes = []string{TypeApprove, TypeDeny, TypeSignIn}

// Limits on a passkey's registration.
const (
	maxCredentialID = 1024 // bytes, as WebAuthn allows
	maxOrigins      = 16
	maxOriginLen    = 256
	maxClientData   = 4096
	maxAuthData     = 4096
)

// Passkey is an operator's registered WebAuthn credential.
type Passkey struct {
	// ID is the credential ID, base64url without padding, as the browser
	// spells rawId.
	ID       string `json:"id"`
	Operator string `json:"operator"` // the operator it signs as
	Name     string `json:"name"`
	// Algorithm is AlgES256 or AlgEdDSA; PublicKey its SubjectPublicKeyInfo
	// (DER).
	Algorithm int    `json:"algorithm"`
	PublicKey []byte `json:"public_key"`
	// RPID is the relying party ID the credential is scoped to (a host
	// name every console origin shares), Origins the console origins an
	// assertion may come from ("https://host:port").
	RPID      string   `json:"rp_id"`
	Origins   []string `json:"origins"`
	SignCount uint32   `json:"sign_count"` // the last counter seen; 0 if the authenticator keeps none
	AddedAt   int64    `json:"added_at"`
}

// Assertion is a WebAuthn assertion (AuthenticatorAssertionResponse) that
// signs a command in place of an Ed25519 signature.
type Assertion struct {
	Credential        string `json:"credential"` // the passkey's ID
	AuthenticatorData []byte `json:"authenticator_data"`
	ClientDataJSON    []byte `json:"client_data_json"`
	Signature         []byte `json:"signature"` // ASN.1 ECDSA or raw Ed25519
}

// Denial refuses a machine's releases of a key (every key when Key is
// empty) until Until, Unix nanoseconds: the machine's waiting session is
// dropped and its keyagent stops with "denied". An approval lifts it.
type Denial struct {
	Machine string `json:"machine"`
	Key     string `json:"key,omitempty"`
	Until   int64  `json:"until"`
	By      string `json:"by,omitempty"` // the denying operator, set when applied
}

// SignIn is the command a console asks a passkey to sign to open a
// session: Origin is the console it signs in to.
type SignIn struct {
	Origin string `json:"origin"`
}

// CommandChallenge is the WebAuthn challenge for a command's payload: the
// SHA-256 of its signing input.
func CommandChallenge(payload []byte) []byte {
	h := sha256.Sum256(SigningInput(payload))
	return h[:]
}

// clientData is the part of WebAuthn's CollectedClientData checked here.
type clientData struct {
	Type        string `json:"type"`
	Challenge   string `json:"challenge"`
	Origin      string `json:"origin"`
	CrossOrigin bool   `json:"crossOrigin"`
}

// Authenticator data flags.
const (
	flagUP = 0x01 // user present
	flagUV = 0x04 // user verified
)

// VerifyAssertion checks a as pk's signature of payload and returns the
// authenticator's sign counter. It checks nothing of the state: that pk
// is registered, or that the counter grew, is the caller's.
func VerifyAssertion(pk *Passkey, payload []byte, a *Assertion) (uint32, *Error) {
	if len(a.ClientDataJSON) > maxClientData || len(a.AuthenticatorData) > maxAuthData {
		return 0, errorf(CodeInvalid, "the assertion's client data or authenticator data is too long")
	}
	var cd clientData
	if err := json.Unmarshal(a.ClientDataJSON, &cd); err != nil {
		return 0, errorf(CodeBadSignature, "the assertion's client data is not JSON: %v", err)
	}
	if cd.Type != "webauthn.get" {
		return 0, errorf(CodeBadSignature, "the assertion's client data has type %q, not webauthn.get", cd.Type)
	}
	if cd.Challenge != base64.RawURLEncoding.EncodeToString(CommandChallenge(payload)) {
		return 0, errorf(CodeBadSignature, "the assertion of passkey %s is for another command", pk.Name)
	}
	if cd.CrossOrigin || !slices.Contains(pk.Origins, cd.Origin) {
		return 0, errorf(CodeBadSignature, "the assertion of passkey %s comes from origin %q, which the passkey is not registered for", pk.Name, cd.Origin)
	}
	ad := a.AuthenticatorData
	if len(ad) < 37 {
		return 0, errorf(CodeBadSignature, "the assertion's authenticator data is %d bytes, fewer than 37", len(ad))
	}
	rp := sha256.Sum256([]byte(pk.RPID))
	if !bytes.Equal(ad[:32], rp[:]) {
		return 0, errorf(CodeBadSignature, "the assertion is for another relying party than %q", pk.RPID)
	}
	if ad[32]&flagUP == 0 || ad[32]&flagUV == 0 {
		return 0, errorf(CodeBadSignature, "the authenticator did not verify the user (the assertion lacks the user-present or user-verified flag)")
	}
	cdHash := sha256.Sum256(a.ClientDataJSON)
	signed := append(slices.Clip(ad), cdHash[:]...)
	pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
	if err != nil {
		return 0, errorf(CodeInvalid, "passkey %s has an unreadable public key", pk.Name)
	}
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(signed)
		ok = pk.Algorithm == AlgES256 && ecdsa.VerifyASN1(k, h[:], a.Signature)
	case ed25519.PublicKey:
		ok = pk.Algorithm == AlgEdDSA && ed25519.Verify(k, signed, a.Signature)
	}
	if !ok {
		return 0, errorf(CodeBadSignature, "the assertion's signature does not verify with passkey %s", pk.Name)
	}
	return binary.BigEndian.Uint32(ad[33:37]), nil
}

// passkeySigned checks sg, which carries an assertion instead of an
// Ed25519 signature, against the state: a registered passkey of sg's
// signer, a type a passkey may sign, the assertion, and a sign counter
// that grew. It returns the passkey and its new counter, which the caller
// stores once the command took effect.
func (s *State) passkeySigned(sg *Signed, cmd *Command) (*Passkey, uint32, *Error) {
	a := sg.WebAuthn
	pk := s.Passkeys[a.Credential]
	if pk == nil || pk.Operator != sg.Signer || s.Operators[sg.Signer] == nil {
		return nil, 0, errorf(CodeBadSignature, "%s has no passkey %q", sg.Signer, a.Credential)
	}
	if len(sg.Signature) != 0 {
		return nil, 0, errorf(CodeInvalid, "a command carries an Ed25519 signature or an assertion, not both")
	}
	if !slices.Contains(PasskeyTypes, cmd.Type) {
		return nil, 0, errorf(CodeDenied, "a passkey may sign %s, not %q", strings.Join(PasskeyTypes, ", "), cmd.Type)
	}
	count, err := VerifyAssertion(pk, sg.Payload, a)
	if err != nil {
		return nil, 0, err
	}
	if (count != 0 || pk.SignCount != 0) && count <= pk.SignCount {
		return nil, 0, errorf(CodeReplay, "passkey %s's counter is %d, not above %d: the authenticator may be cloned", pk.Name, count, pk.SignCount)
	}
	return pk, count, nil
}

// VerifyPasskey checks a passkey-signed command with this state alone, as
// a console does for a sign-in before it opens a session: fresh at now,
// and passkeySigned. It returns the operator and the command.
func (s *State) VerifyPasskey(sg *Signed, now time.Time) (*Operator, *Command, *Error) {
	if sg == nil || sg.WebAuthn == nil {
		return nil, nil, errorf(CodeInvalid, "no passkey assertion")
	}
	var cmd Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		return nil, nil, errorf(CodeInvalid, "command payload: %v", err)
	}
	if err := checkFresh(&cmd, now.UnixNano()); err != nil {
		return nil, nil, err
	}
	if _, _, err := s.passkeySigned(sg, &cmd); err != nil {
		return nil, nil, err
	}
	return s.Operators[sg.Signer], &cmd, nil
}

func (t *transition) addPasskey(in *Passkey) *Error {
	if in == nil {
		return errorf(CodeInvalid, "add_passkey needs a passkey")
	}
	raw, err := base64.RawURLEncoding.DecodeString(in.ID)
	if err != nil || len(raw) == 0 || len(raw) > maxCredentialID {
		return errorf(CodeInvalid, "a passkey's ID must be its credential ID, 1 to %d bytes in base64url without padding", maxCredentialID)
	}
	if t.s.Operators[in.Operator] == nil {
		return errorf(CodeNotFound, "operator %q does not exist", in.Operator)
	}
	if in.Name == "" || len(in.Name) > MaxNameLen {
		return errorf(CodeInvalid, "a passkey needs a name of 1 to %d bytes", MaxNameLen)
	}
	pub, perr := x509.ParsePKIXPublicKey(in.PublicKey)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if in.Algorithm != AlgES256 || k.Curve != elliptic.P256() {
			return errorf(CodeInvalid, "an ECDSA passkey must be ES256 (%d) on P-256", AlgES256)
		}
	case ed25519.PublicKey:
		if in.Algorithm != AlgEdDSA {
			return errorf(CodeInvalid, "an Ed25519 passkey must be EdDSA (%d)", AlgEdDSA)
		}
	default:
		if perr != nil {
			return errorf(CodeInvalid, "a passkey's public key must be a SubjectPublicKeyInfo: %v", perr)
		}
		return errorf(CodeInvalid, "a passkey's key must be ES256 or EdDSA")
	}
	if in.RPID == "" || len(in.RPID) > 253 || strings.ContainsAny(in.RPID, "/: ") {
		return errorf(CodeInvalid, "a passkey's relying party ID must be a host name, got %q", in.RPID)
	}
	if len(in.Origins) == 0 || len(in.Origins) > maxOrigins {
		return errorf(CodeInvalid, "a passkey needs 1 to %d console origins", maxOrigins)
	}
	for _, o := range in.Origins {
		if !strings.HasPrefix(o, "https://") || len(o) > maxOriginLen || strings.ContainsAny(o[len("https://"):], "/ ") {
			return errorf(CodeInvalid, "a console origin must be https://host[:port], got %q", o)
		}
	}
	if t.s.Passkeys[in.ID] != nil {
		return errorf(CodeExists, "passkey %q is registered", in.ID)
	}
	c := *in
	c.Origins, c.PublicKey, c.SignCount, c.AddedAt = slices.Clone(in.Origins), slices.Clone(in.PublicKey), 0, t.now
	if t.s.Passkeys == nil {
		t.s.Passkeys = map[string]*Passkey{}
	}
	t.s.Passkeys[c.ID] = &c
	return nil
}

func (t *transition) removePasskey(id string) *Error {
	if t.s.Passkeys[id] == nil {
		return errorf(CodeNotFound, "passkey %q is not registered", id)
	}
	delete(t.s.Passkeys, id)
	return nil
}

// deny refuses a machine's releases until d.Until and drops its waiting
// session and its approvals of the key. Who may approve may deny.
func (t *transition) deny(d *Denial) *Error {
	if d == nil {
		return errorf(CodeInvalid, "deny needs a denial")
	}
	m := t.s.Machines[d.Machine]
	if m == nil {
		return errorf(CodeNotFound, "machine %q is not registered", d.Machine)
	}
	if d.Until <= t.now || d.Until > t.now+int64(MaxApprovalTime) {
		return errorf(CodeInvalid, "a denial must end within %v from now", MaxApprovalTime)
	}
	o := t.s.Operators[t.signer]
	if o == nil || !(o.Admin || d.Key != "" && t.s.Allowed(t.signer, OpApprove, d.Key)) {
		return errorf(CodeDenied, "%s may not deny machine %q for key %q", t.signer, d.Machine, d.Key)
	}
	c := *d
	c.By = t.signer
	if t.s.Denials == nil {
		t.s.Denials = map[string]*Denial{}
	}
	t.s.Denials[approvalKey(d.Machine, d.Key)] = &c
	delete(t.s.Approvals, approvalKey(d.Machine, d.Key))
	if d.Key == "" {
		for k, a := range t.s.Approvals {
			if a.Machine == d.Machine {
				delete(t.s.Approvals, k)
			}
		}
	}
	delete(t.s.Sessions, d.Machine)
	return nil
}

// denied is the denial that covers the machine and key at now, or nil.
func (s *State) denied(machine, key string, now int64) *Denial {
	for _, k := range []string{key, ""} {
		if d := s.Denials[approvalKey(machine, k)]; d != nil && d.Until > now {
			return d
		}
	}
	return nil
}

// liftDenials drops the denials an approval of machine and key overrides.
func (s *State) liftDenials(machine, key string) {
	for k, d := range s.Denials {
		if d.Machine == machine && (key == "" || d.Key == key || d.Key == "") {
			delete(s.Denials, k)
		}
	}
}

// CheckPasskeyOrigins says what is wrong, if anything, with the console
// origins a passkey scoped to rpID is registered for: each must be
// https://host[:port] whose host is rpID or a name under it, since a
// browser makes no assertion for rpID at any other origin (WebAuthn Level
// 2, section 5.1.4.1). keyctl passkey add and the console check it before
// an admin signs; replicas check the form only (addPasskey), as they did
// before, so that nodes of two versions apply the same log alike.
func CheckPasskeyOrigins(rpID string, origins []string) error {
	if len(origins) == 0 || len(origins) > maxOrigins {
		return fmt.Errorf("a passkey needs 1 to %d console origins", maxOrigins)
	}
	for _, o := range origins {
		rest, ok := strings.CutPrefix(o, "https://")
		if !ok || len(o) > maxOriginLen || rest == "" || strings.ContainsAny(rest, "/ ?#@") {
			return fmt.Errorf("console origin %q: want https://host[:port], nothing after it", o)
		}
		host := rest
		if h, port, err := net.SplitHostPort(rest); err == nil {
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
				return fmt.Errorf("console origin %q: the port must be a number from 1 to 65535", o)
			}
			host = h
		}
		host = strings.ToLower(host)
		if host != rpID && !strings.HasSuffix(host, "."+rpID) {
			return fmt.Errorf("console origin %q is not at %s or a name under it: the passkey, made for relying party %s, cannot sign there", o, rpID, rpID)
		}
	}
	return nil
}
