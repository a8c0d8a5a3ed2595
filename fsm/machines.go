package fsm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/keyquorum/keyquorum/vocab"
)

// Machines are hosts that fetch keys at boot with their own Ed25519 key
// (keyagent). A machine's release request is signed by that key and
// carries an ephemeral public key: every holder seals its partial to it,
// so the node that coordinates never sees the key (client-side combine).
// A machine registered with Approval needs an operator's approval for each
// release (one use) or for a time window: klefki's flow, in which a
// machine waits at boot while an operator approves it.

// Machine states.
const (
	MachineActive  = "active"
	MachineRevoked = "revoked"
)

// Limits on machines and approvals.
const (
	maxMachineKeys  = 64
	MaxApprovalUses = 100
	MaxApprovalTime = 30 * 24 * time.Hour
	// SessionTTL is how long a pending session is listed after the
	// machine's last attempt.
	SessionTTL = 24 * time.Hour
)

// Machine is a registered host.
type Machine struct {
	ID        string `json:"id"` // PrincipalID(PublicKey)
	Name      string `json:"name"`
	PublicKey []byte `json:"public_key"`
	// Keys are the key names, or prefixes ending in "*", the machine may
	// fetch.
	Keys     []string `json:"keys"`
	Approval bool     `json:"approval"` // every release needs an operator's approval
	State    string   `json:"state"`
	AddedAt  int64    `json:"added_at"`
}

// Approval lets a machine fetch a key (every key it may fetch when Key is
// empty) Uses more times, or until Until (Unix nanoseconds), or both.
type Approval struct {
	Machine string `json:"machine"`
	Key     string `json:"key,omitempty"`
	Uses    int    `json:"uses,omitempty"`
	Until   int64  `json:"until,omitempty"`
	By      string `json:"by,omitempty"` // the approving operator, set when applied
}

// Session is a machine's release that waits for an approval, recorded by
// the node it asked so that every node can list it.
type Session struct {
	Machine   string `json:"machine"`
	Name      string `json:"name"`
	PublicKey []byte `json:"public_key"`
	Key       string `json:"key"`
	Addr      string `json:"addr"` // the address the machine asked from
	FirstAt   int64  `json:"first_at"`
	LastAt    int64  `json:"last_at"`
	Attempts  int    `json:"attempts"`
}

// UseApproval spends one use of an approval on one release request,
// named by its nonce: the holders then authorize that request. A node
// logs it, but the authority is the machine's: Request is the release
// request the machine signed, and Machine, Key and Nonce must be its.
type UseApproval struct {
	Machine string  `json:"machine"`
	Key     string  `json:"key"`
	Nonce   []byte  `json:"nonce"`
	Request *Signed `json:"request"`
}

// RecordSession lists a machine's waiting request. A node logs it with
// the request the machine signed: its release waiting for an approval
// (keyagent), or its GetKey waiting for a submitted key (klefki). Exactly
// one is set. Addr is the address the node saw the request come from.
type RecordSession struct {
	Addr    string         `json:"addr"`
	Release *Signed        `json:"release,omitempty"`
	GetKey  *GetKeyRequest `json:"get_key,omitempty"`
}

// GetKeyRequest is a machine's GetKey of klefki's flow as the machine
// signed it (see GetKeySigningInput), relayed into the log by the node it
// asked.
type GetKeyRequest struct {
	Machine   string `json:"machine"` // the machine's ID (PrincipalID)
	Nonce     []byte `json:"nonce"`
	SignedAt  int64  `json:"signed_at"` // Unix nanoseconds, by the machine's clock
	Ephemeral []byte `json:"ephemeral,omitempty"`
	Signature []byte `json:"signature"`
}

// KlefkiIDPrefix starts a machine's ID as klefki's wire spells it.
const KlefkiIDPrefix = vocab.KlefkiIDPrefix

// KlefkiID is the ID of a machine with an Ed25519 public key as klefki
// spells it: "SHA256:" and the standard base64 of the key's SHA-256
// (vocab.KlefkiMachineID). Users are shown PrincipalID.
func KlefkiID(publicKey []byte) string { return vocab.KlefkiMachineID(publicKey) }

// getKeyDomain separates a machine's GetKey signature from any other use
// of the machine's Ed25519 key.
const getKeyDomain = vocab.LabelMachineGetKey + "\x00"

// GetKeySigningInput is what a machine signs with its Ed25519 key for a
// GetKey request: the domain string and a zero byte, then klefkiID, nonce
// and ephemeralPublicKey each as a 4-byte big-endian length and the bytes,
// then signedAt (Unix nanoseconds) as 8 bytes big-endian. The lengths make
// the encoding unambiguous; the ephemeral key is signed so that no node on
// the way can substitute its own and read the combined key.
func GetKeySigningInput(klefkiID string, nonce []byte, signedAt int64, ephemeralPublicKey []byte) []byte {
	b := make([]byte, 0, len(getKeyDomain)+12+len(klefkiID)+len(nonce)+len(ephemeralPublicKey)+8)
	b = append(b, getKeyDomain...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(klefkiID)))
	b = append(b, klefkiID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(nonce)))
	b = append(b, nonce...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ephemeralPublicKey)))
	b = append(b, ephemeralPublicKey...)
	return binary.BigEndian.AppendUint64(b, uint64(signedAt))
}

// MachineByKlefkiID is the machine whose klefki ID (KlefkiID) is id, or
// nil.
func (s *State) MachineByKlefkiID(id string) *Machine {
	for _, m := range s.Machines {
		if KlefkiID(m.PublicKey) == id {
			return m
		}
	}
	return nil
}

// VerifyGetKey checks a machine's GetKey with this state alone, as the node
// that receives it must before it spends a read index on it: signed by a
// machine this state knows (CodeBadSignature otherwise, like a signature
// that does not verify), active, and signed within MaxClockSkew of now.
func (s *State) VerifyGetKey(r *GetKeyRequest, now time.Time) (*Machine, *Error) {
	if r == nil {
		return nil, errorf(CodeInvalid, "the machine's signed GetKey is required")
	}
	m := s.Machines[r.Machine]
	if m == nil {
		return nil, errorf(CodeBadSignature, "unknown machine %q", r.Machine)
	}
	if !ed25519.Verify(m.PublicKey, GetKeySigningInput(KlefkiID(m.PublicKey), r.Nonce, r.SignedAt, r.Ephemeral), r.Signature) {
		return nil, errorf(CodeBadSignature, "the GetKey signature of machine %s does not verify", m.ID)
	}
	if m.State != MachineActive {
		return nil, errorf(CodeDenied, "machine %s (%s) is revoked", m.ID, m.Name)
	}
	if len(r.Nonce) < minNonceLen {
		return nil, errorf(CodeInvalid, "the machine's nonce must be at least %d bytes", minNonceLen)
	}
	if d := time.Duration(now.UnixNano() - r.SignedAt); d > MaxClockSkew || d < -MaxClockSkew {
		return nil, errorf(CodeClockSkew, "the request was signed %v from this node's time, more than %v: check the machine's clock", d.Round(time.Second), MaxClockSkew)
	}
	return m, nil
}

// machineGetKey checks a GetKey a node relayed: from an active machine,
// signed by it, and signed within MaxClockSkew of now.
func (s *State) machineGetKey(r *GetKeyRequest, now int64) (*Machine, *Error) {
	if r == nil {
		return nil, errorf(CodeInvalid, "the machine's signed GetKey is required")
	}
	m := s.Machines[r.Machine]
	if m == nil || m.State != MachineActive {
		return nil, errorf(CodeNotFound, "machine %q is not an active machine", r.Machine)
	}
	if len(r.Nonce) < minNonceLen {
		return nil, errorf(CodeInvalid, "the machine's nonce must be at least %d bytes", minNonceLen)
	}
	if !ed25519.Verify(m.PublicKey, GetKeySigningInput(KlefkiID(m.PublicKey), r.Nonce, r.SignedAt, r.Ephemeral), r.Signature) {
		return nil, errorf(CodeBadSignature, "the GetKey signature of machine %s does not verify", m.ID)
	}
	if d := time.Duration(now - r.SignedAt); d > MaxClockSkew || d < -MaxClockSkew {
		return nil, errorf(CodeClockSkew, "the machine's GetKey was signed %v from the cluster's time, more than %v", d.Round(time.Second), MaxClockSkew)
	}
	return m, nil
}

// machineRelease checks a machine's release request a node relayed: from
// an active machine, signed by it, a get with an ephemeral key, issued
// within MaxClockSkew of now.
func (s *State) machineRelease(sg *Signed, now int64) (*Machine, *Command, *Error) {
	if sg == nil {
		return nil, nil, errorf(CodeInvalid, "the machine's signed release request is required")
	}
	m := s.Machines[sg.Signer]
	if m == nil || m.State != MachineActive {
		return nil, nil, errorf(CodeNotFound, "machine %q is not an active machine", sg.Signer)
	}
	if !ed25519.Verify(m.PublicKey, SigningInput(sg.Payload), sg.Signature) {
		return nil, nil, errorf(CodeBadSignature, "the release request of machine %s does not verify", m.ID)
	}
	var cmd Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		return nil, nil, errorf(CodeInvalid, "the machine's request: %v", err)
	}
	if cmd.Type != TypeRelease || cmd.Release == nil || cmd.Release.Op != OpGet || len(cmd.Release.Ephemeral) == 0 {
		return nil, nil, errorf(CodeInvalid, "the machine's request is not a release with an ephemeral key")
	}
	if err := checkFresh(&cmd, now); err != nil {
		return nil, nil, err
	}
	return m, &cmd, nil
}

func approvalKey(machine, key string) string { return machine + "\x00" + key }

func grantKey(machine string, nonce []byte) string {
	return machine + "/" + hex.EncodeToString(nonce)
}

// MayFetch reports whether the machine may fetch the key.
func (m *Machine) MayFetch(name string) bool {
	return slices.ContainsFunc(m.Keys, func(pattern string) bool {
		return (&Rule{Key: pattern}).matches(name)
	})
}

// approved reports whether a time-window approval covers the machine and
// key at now, or the request's nonce was granted a use.
func (s *State) approved(machine, key string, nonce []byte, now int64) bool {
	if _, ok := s.Granted[grantKey(machine, nonce)]; ok {
		return true
	}
	for _, k := range []string{key, ""} {
		if a := s.Approvals[approvalKey(machine, k)]; a != nil && a.Until > now {
			return true
		}
	}
	return false
}

// UsableApproval reports whether an approval with a use left covers the
// machine and key: the coordinator then spends it (UseApproval).
func (s *State) UsableApproval(machine, key string) bool {
	for _, k := range []string{key, ""} {
		if a := s.Approvals[approvalKey(machine, k)]; a != nil && a.Uses > 0 {
			return true
		}
	}
	return false
}

func (t *transition) addMachine(m *Machine) *Error {
	if m == nil || len(m.PublicKey) != ed25519.PublicKeySize {
		return errorf(CodeInvalid, "a machine needs a %d-byte Ed25519 public key", ed25519.PublicKeySize)
	}
	if m.ID != PrincipalID(m.PublicKey) {
		return errorf(CodeInvalid, "machine ID %q is not the ID of its public key (%s)", m.ID, PrincipalID(m.PublicKey))
	}
	if m.Name == "" || len(m.Name) > MaxNameLen {
		return errorf(CodeInvalid, "a machine needs a name of 1 to %d bytes", MaxNameLen)
	}
	if len(m.Keys) == 0 || len(m.Keys) > maxMachineKeys {
		return errorf(CodeInvalid, "a machine needs 1 to %d keys or prefixes it may fetch", maxMachineKeys)
	}
	for _, k := range m.Keys {
		if err := checkRuleKey(k); err != nil {
			return err
		}
	}
	if old := t.s.Machines[m.ID]; old != nil && old.State == MachineActive {
		return errorf(CodeExists, "machine %s (%s) is registered", m.ID, old.Name)
	}
	if _, op := t.s.Operators[m.ID]; op {
		return errorf(CodeExists, "%s is an operator's key", m.ID)
	}
	c := *m
	c.Keys, c.State, c.AddedAt = slices.Clone(m.Keys), MachineActive, t.now
	t.s.Machines[m.ID] = &c
	return nil
}

func (t *transition) revokeMachine(id string) *Error {
	m := t.s.Machines[id]
	if m == nil {
		return errorf(CodeNotFound, "machine %q is not registered", id)
	}
	if m.State == MachineRevoked {
		return errorf(CodeState, "machine %q is already revoked", id)
	}
	m.State = MachineRevoked
	delete(t.s.Submitted, id)
	for k, a := range t.s.Approvals {
		if a.Machine == id {
			delete(t.s.Approvals, k)
		}
	}
	delete(t.s.Sessions, id)
	return nil
}

func (t *transition) approve(a *Approval) *Error {
	if a == nil {
		return errorf(CodeInvalid, "approve needs an approval")
	}
	m := t.s.Machines[a.Machine]
	if m == nil {
		return errorf(CodeNotFound, "machine %q is not registered", a.Machine)
	}
	if m.State != MachineActive {
		return errorf(CodeState, "machine %q is revoked", a.Machine)
	}
	if a.Key != "" && !m.MayFetch(a.Key) {
		return errorf(CodeInvalid, "machine %q may not fetch key %q: approving it would change nothing", a.Machine, a.Key)
	}
	if a.Uses < 0 || a.Uses > MaxApprovalUses {
		return errorf(CodeInvalid, "uses must be 0 to %d", MaxApprovalUses)
	}
	if a.Until != 0 && (a.Until <= t.now || a.Until > t.now+int64(MaxApprovalTime)) {
		return errorf(CodeInvalid, "an approval window must end within %v from now", MaxApprovalTime)
	}
	if a.Uses == 0 && a.Until == 0 {
		return errorf(CodeInvalid, "an approval needs uses or a time window")
	}
	o := t.s.Operators[t.signer]
	if o == nil || !(o.Admin || a.Key != "" && t.s.Allowed(t.signer, OpApprove, a.Key)) {
		return errorf(CodeDenied, "%s may not approve machine %q for key %q", t.signer, a.Machine, a.Key)
	}
	c := *a
	c.By = t.signer
	t.s.Approvals[approvalKey(a.Machine, a.Key)] = &c
	t.s.liftDenials(a.Machine, a.Key)
	return nil
}

// recordSession lists a machine's waiting request. A member node logs
// it, with the request the machine signed: a node cannot list a machine
// that did not ask.
func (t *transition) recordSession(in *RecordSession) *Error {
	if in == nil || (in.Release == nil) == (in.GetKey == nil) {
		return errorf(CodeInvalid, "record_session needs the machine's signed release or GetKey, one of them")
	}
	if len(in.Addr) > 64 {
		return errorf(CodeInvalid, "a session's address must be at most 64 bytes")
	}
	var m *Machine
	var key string
	var err *Error
	if in.Release != nil {
		var cmd *Command
		if m, cmd, err = t.s.machineRelease(in.Release, t.now); err != nil {
			return err
		}
		key = cmd.Release.Key
		if CheckKeyName(key) != nil {
			return errorf(CodeInvalid, "the machine's release names no valid key")
		}
	} else if m, err = t.s.machineGetKey(in.GetKey, t.now); err != nil {
		return err
	}
	s := t.s.Sessions[m.ID]
	if s == nil {
		s = &Session{Machine: m.ID, Name: m.Name, PublicKey: m.PublicKey, FirstAt: t.now}
		t.s.Sessions[m.ID] = s
	}
	s.Key, s.Addr, s.LastAt = key, in.Addr, t.now
	s.Attempts++
	return nil
}

// useApproval spends one use of an approval on the release request the
// machine signed, which the entry carries: a node can spend a use only on
// a request the machine made, once.
func (t *transition) useApproval(u *UseApproval) *Error {
	if u == nil || len(u.Nonce) < minNonceLen {
		return errorf(CodeInvalid, "use_approval needs a machine, a key and the request's nonce")
	}
	m, req, err := t.s.machineRelease(u.Request, t.now)
	if err != nil {
		return err
	}
	if m.ID != u.Machine || req.Release.Key != u.Key || !bytes.Equal(req.Nonce, u.Nonce) {
		return errorf(CodeInvalid, "use_approval names machine %q, key %q and a nonce that are not those of the request it carries", u.Machine, u.Key)
	}
	if !m.MayFetch(u.Key) {
		return errorf(CodeDenied, "machine %s (%s) may not fetch key %q", m.ID, m.Name, u.Key)
	}
	g := grantKey(u.Machine, u.Nonce)
	if _, used := t.s.Granted[g]; used {
		return errorf(CodeReplay, "request %s was already granted", g)
	}
	for _, k := range []string{u.Key, ""} {
		a := t.s.Approvals[approvalKey(u.Machine, k)]
		if a == nil || a.Uses == 0 {
			continue
		}
		a.Uses--
		if a.Uses == 0 && a.Until <= t.now {
			delete(t.s.Approvals, approvalKey(u.Machine, k))
		}
		t.s.Granted[g] = t.now + 2*int64(MaxClockSkew)
		delete(t.s.Sessions, u.Machine)
		return nil
	}
	return errorf(CodeDenied, "no approval with a use left covers machine %q and key %q", u.Machine, u.Key)
}

// pruneMachines forgets grants whose requests can no longer be fresh,
// sessions not tried for SessionTTL, and approvals that are spent.
func (s *State) pruneMachines(now int64) {
	for g, expiry := range s.Granted {
		if expiry < now {
			delete(s.Granted, g)
		}
	}
	for id, ss := range s.Sessions {
		if ss.LastAt+int64(SessionTTL) < now {
			delete(s.Sessions, id)
		}
	}
	for k, a := range s.Approvals {
		if a.Uses == 0 && a.Until <= now {
			delete(s.Approvals, k)
		}
	}
	for k, d := range s.Denials {
		if d.Until <= now {
			delete(s.Denials, k)
		}
	}
}

// SubmittedKey is a passphrase an operator submitted for a waiting
// machine (klefki's SubmitKey), sealed to the machine's Ed25519 key by the
// operator's client: no node can read it. The operator signs the
// submit_key command. It is delivered once: the node that hands it to the
// machine removes it through the log, with the machine's GetKey.
type SubmittedKey struct {
	Machine string `json:"machine"`
	Sealed  []byte `json:"sealed"`
	By      string `json:"by"` // the operator who signed it, set when applied
	At      int64  `json:"at"`
}

// Delivered removes a submitted key that a node handed to its machine.
// Request is the machine's GetKey it was handed to.
type Delivered struct {
	Machine string         `json:"machine"`
	SHA256  []byte         `json:"sha256"` // of the sealed key delivered
	Request *GetKeyRequest `json:"request"`
}

// maxSubmittedLen bounds a submitted sealed passphrase.
const maxSubmittedLen = 64 << 10

// submitKey stores a sealed passphrase for a machine, submitted by the
// operator who signed the command.
func (t *transition) submitKey(k *SubmittedKey) *Error {
	if k == nil || len(k.Sealed) == 0 || len(k.Sealed) > maxSubmittedLen {
		return errorf(CodeInvalid, "submit_key needs a machine and a sealed key of 1 to %d bytes", maxSubmittedLen)
	}
	if k.By != "" && k.By != t.signer {
		return errorf(CodeDenied, "a submit_key signed by %s cannot name %q as its submitter", t.signer, k.By)
	}
	m := t.s.Machines[k.Machine]
	if m == nil || m.State != MachineActive {
		return errorf(CodeNotFound, "machine %q is not an active machine", k.Machine)
	}
	c := *k
	c.By, c.At = t.signer, t.now
	t.s.Submitted[k.Machine] = &c
	delete(t.s.Sessions, k.Machine)
	return nil
}

// delivered removes a submitted key, for a GetKey the machine signed that
// no delivery used before: a node cannot discard a passphrase the machine
// did not ask for.
func (t *transition) delivered(d *Delivered) *Error {
	if d == nil {
		return errorf(CodeInvalid, "delivered needs a machine, a hash and the machine's GetKey")
	}
	m, err := t.s.machineGetKey(d.Request, t.now)
	if err != nil {
		return err
	}
	if m.ID != d.Machine {
		return errorf(CodeInvalid, "delivered names machine %q but carries the GetKey of %s", d.Machine, m.ID)
	}
	nk := nonceKey(m.ID, d.Request.Nonce)
	if _, used := t.s.Nonces[nk]; used {
		return errorf(CodeReplay, "machine %s's GetKey was already delivered to", m.ID)
	}
	k := t.s.Submitted[d.Machine]
	if k == nil {
		return errorf(CodeNotFound, "no key was submitted for machine %q", d.Machine)
	}
	sum := sha256.Sum256(k.Sealed)
	if !bytes.Equal(sum[:], d.SHA256) {
		return errorf(CodeConflict, "the key submitted for machine %q changed since it was delivered", d.Machine)
	}
	delete(t.s.Submitted, d.Machine)
	// Machines never sign log entries, so their nonces share the map
	// without meeting a signer's.
	was, had := t.s.spendNonce(nk, max(t.now, d.Request.SignedAt)+2*int64(MaxClockSkew))
	t.fsm.digest.markNonce(nk, was, had)
	return nil
}
