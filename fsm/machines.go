package fsm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"
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
// named by its nonce: the holders then authorize that request.
type UseApproval struct {
	Machine string `json:"machine"`
	Key     string `json:"key"`
	Nonce   []byte `json:"nonce"`
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
	return nil
}

// recordSession lists a machine's waiting release. Only a member node
// records one, for a machine whose request it has authorized but for the
// approval.
func (t *transition) recordSession(in *Session) *Error {
	if in == nil {
		return errorf(CodeInvalid, "record_session needs a session")
	}
	m := t.s.Machines[in.Machine]
	if m == nil || m.State != MachineActive {
		return errorf(CodeNotFound, "machine %q is not an active machine", in.Machine)
	}
	if len(in.Addr) > 64 || (in.Key != "" && checkKeyName(in.Key) != nil) {
		return errorf(CodeInvalid, "a session needs a valid key name (or none, for a submitted key) and an address of at most 64 bytes")
	}
	s := t.s.Sessions[in.Machine]
	if s == nil {
		s = &Session{Machine: m.ID, Name: m.Name, PublicKey: m.PublicKey, FirstAt: t.now}
		t.s.Sessions[in.Machine] = s
	}
	s.Key, s.Addr, s.LastAt = in.Key, in.Addr, t.now
	s.Attempts++
	return nil
}

// useApproval spends one use of an approval on a request's nonce.
func (t *transition) useApproval(u *UseApproval) *Error {
	if u == nil || len(u.Nonce) < minNonceLen {
		return errorf(CodeInvalid, "use_approval needs a machine, a key and the request's nonce")
	}
	m := t.s.Machines[u.Machine]
	if m == nil || m.State != MachineActive {
		return errorf(CodeNotFound, "machine %q is not an active machine", u.Machine)
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
}

// SubmittedKey is a passphrase an operator submitted for a waiting
// machine (klefki's SubmitKey), sealed to the machine's Ed25519 key by the
// operator's client: no node can read it. It is delivered once: the node
// that hands it to the machine removes it through the log.
type SubmittedKey struct {
	Machine string `json:"machine"`
	Sealed  []byte `json:"sealed"`
	By      string `json:"by"` // the operator, as the submitting node authenticated it
	At      int64  `json:"at"`
}

// Delivered removes a submitted key that a node handed to its machine.
type Delivered struct {
	Machine string `json:"machine"`
	SHA256  []byte `json:"sha256"` // of the sealed key delivered
}

// maxSubmittedLen bounds a submitted sealed passphrase.
const maxSubmittedLen = 64 << 10

// submitKey stores a sealed passphrase for a machine. Nodes sign it for
// the operator their gRPC gateway authenticated: the passphrase is sealed
// to the machine, so a node that lies can only make the machine try a
// wrong passphrase, which it could do by refusing to answer.
func (t *transition) submitKey(k *SubmittedKey) *Error {
	if k == nil || len(k.Sealed) == 0 || len(k.Sealed) > maxSubmittedLen {
		return errorf(CodeInvalid, "submit_key needs a machine and a sealed key of 1 to %d bytes", maxSubmittedLen)
	}
	m := t.s.Machines[k.Machine]
	if m == nil || m.State != MachineActive {
		return errorf(CodeNotFound, "machine %q is not an active machine", k.Machine)
	}
	if t.s.Operators[k.By] == nil {
		return errorf(CodeNotFound, "operator %q does not exist", k.By)
	}
	c := *k
	c.At = t.now
	t.s.Submitted[k.Machine] = &c
	delete(t.s.Sessions, k.Machine)
	return nil
}

func (t *transition) delivered(d *Delivered) *Error {
	if d == nil {
		return errorf(CodeInvalid, "delivered needs a machine and a hash")
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
	return nil
}
