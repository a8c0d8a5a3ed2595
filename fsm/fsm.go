package fsm

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"sync"
	"time"
)

// MaxClockSkew bounds how far a command's IssuedAt may be from the time the
// leader appended it (for log entries) or from a holder's clock (for
// release requests). Nonces are remembered for twice this long.
const MaxClockSkew = 5 * time.Minute

// Limits on what a command may carry.
const (
	MaxNameLen    = 200
	MaxSealedSize = 64 << 10
	minNonceLen   = 16
	pointLen      = 32
	// transitProofLen is a transit ciphertext's proof (shamir.TransitProofSize).
	transitProofLen = 64
	pruneEvery      = int64(time.Minute)
)

var (
	namePattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// DealChecker does the public checks of resharing deals. The fsm calls it
// from Apply, so it must be deterministic.
type DealChecker interface {
	// CheckDeal verifies a deal from dealer for the round: it shares to
	// exactly the round's members with the round's threshold and, unless
	// the round is fresh, its constant term commits to the dealer's public
	// share under oldPoly.
	CheckDeal(r *Reshare, oldPoly [][]byte, dealer uint32, deal []byte) error
	// CombinePublic computes the new public commitments from the round's
	// qualified deals.
	CombinePublic(r *Reshare) ([][]byte, error)
}

// Result is what Apply returns for one entry.
type Result struct {
	Index uint64 `json:"index"`
	Error *Error `json:"error,omitempty"`
	Key   *Key   `json:"key,omitempty"` // the key a key command wrote, without material
	// Items are a create_keys command's outcomes, one per key in its
	// order: each key created or refused as a create_key of it would be.
	Items []ItemResult `json:"items,omitempty"`
}

// ItemResult is the outcome of one key of a create_keys command.
type ItemResult struct {
	Error *Error `json:"error,omitempty"`
	Key   *Key   `json:"key,omitempty"` // without material
}

// FSM holds the state and applies entries to it. Apply is called from one
// goroutine; Read may be called from any.
type FSM struct {
	checker DealChecker

	// CheckpointEvery is how often, in log indexes, the state is
	// checkpointed for certification (checkpoint.go); 0 means
	// DefaultCheckpointEvery. It is part of the state machine's definition:
	// set it before the first Apply, to the same value on every replica.
	CheckpointEvery uint64
	// CheckpointBytes is how often, in bytes of the entries applied, the
	// state is checkpointed too; 0 means DefaultCheckpointBytes. Like
	// CheckpointEvery it is part of the state machine's definition.
	CheckpointBytes uint64

	// TokenWrites verifies the capability token of a log entry that a
	// token authorizes in place of a signature (tokens.go: revoke_key and
	// destroy_key); nil refuses every such entry. Like CheckpointEvery it
	// is part of the state machine's definition: set it before the first
	// Apply, the same on every replica, and deterministic.
	TokenWrites WriteTokenCheck

	mu    sync.RWMutex
	state *State
	ck    checkpoints // certified checkpoint and entries since (checkpoint.go)
	// changes counts the entries applied and states restored, under mu:
	// Hash computes the state's hash once per change, not once per call,
	// from digest, which Apply keeps (statehash.go).
	changes uint64
	digest  stateDigest
	hashMu  sync.Mutex
	hashed  struct {
		changes uint64
		sum     [32]byte
		ok      bool
	}
}

// New returns an empty state machine.
func New(checker DealChecker) *FSM {
	return &FSM{checker: checker, state: emptyState()}
}

func emptyState() *State {
	return &State{
		Nodes:     map[string]*Node{},
		Operators: map[string]*Operator{},
		Rules:     map[string]*Rule{},
		Keys:      map[string]*Key{},
		Nonces:    map[string]int64{},
		Machines:  map[string]*Machine{},
		Approvals: map[string]*Approval{},
		Sessions:  map[string]*Session{},
		Granted:   map[string]int64{},
		Submitted: map[string]*SubmittedKey{},
		tang:      map[string]struct{}{},
		shared:    map[string]struct{}{},
		names:     newNameIndex(),
		expiries:  newNonceIndex(),
		ids:       map[string]string{},
	}
}

// Read calls fn with the state under a read lock. fn must not change the
// state; after Read returns, the caller may keep the slices fn read, but
// no map of the state nor any pointer into it (see State).
func (f *FSM) Read(fn func(*State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// Apply applies one log entry. A refused entry leaves the state as it was,
// apart from the applied index and the chain hash (chain.go).
func (f *FSM) Apply(index uint64, at time.Time, data []byte) *Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.afterApply(index, at, data) // runs before the unlock
	f.changes++
	s := f.state
	s.Applied = index
	s.Chain = chainLink(s.Chain, index, at.UnixNano(), data)
	res := &Result{Index: index}
	var sg Signed
	if err := json.Unmarshal(data, &sg); err != nil {
		res.Error = errorf(CodeInvalid, "entry is not a signed command: %v", err)
		return res
	}
	// An entry is judged at the leader's time for it, never before the
	// state machine's clock: a leader that sets an entry's time before one
	// already applied cannot make an old command fresh again once its nonce
	// is forgotten.
	now := max(at.UnixNano(), s.LastTime)
	cmd, pk, count, grant, err := f.verify(&sg, now)
	if err != nil {
		res.Error = err
		return res
	}
	if grant != nil {
		if err := s.checkWriteUses(grant.Bounds, cmd.Nonce); err != nil {
			res.Error = err
			return res
		}
	}
	var founding [sha256.Size]byte
	if cmd.Type == TypeInit {
		founding = sha256.Sum256(sg.Payload)
		if f.ck.foundPin != nil && !bytes.Equal(founding[:], f.ck.foundPin) {
			res.Error = errorf(CodeState, "this is not the founding entry this node pinned: a history that starts from it is another cluster's, or forged")
			return res
		}
	}
	t := transition{fsm: f, s: s, index: index, now: now, signer: sg.Signer, cmd: cmd}
	if err := t.apply(); err != nil {
		res.Error, res.Items = err, t.items
		return res
	}
	res.Items = t.items
	if grant != nil {
		t.recordWriteUses(grant.Bounds, cmd.Nonce)
	}
	if cmd.Type == TypeInit {
		f.ck.founding = founding[:]
	}
	if pk != nil {
		pk.SignCount = count
	}
	// The clock moves only with an operator's command that took effect,
	// so it never runs more than MaxClockSkew past a time an operator
	// signed: neither a junk entry nor a node's command (one compromised
	// node, stamped by a compromised leader) can push it ahead and make
	// every later operator command fail as clock_skew. Old nonces are
	// forgotten only then, so a refused entry changes nothing but the
	// applied index, and a node's command cannot expire operators' nonces.
	// A token's write (grant) is its holder's, not its operator's: it
	// does not move the clock either.
	if !nodeSigned(cmd.Type) && grant == nil {
		s.LastTime = now
		f.prune(now)
	}
	// The nonce is spent only by a command that took effect, so a refused
	// command may be corrected and sent again.
	nk := nonceKey(sg.Signer, cmd.Nonce)
	was, had := s.spendNonce(nk, cmd.IssuedAt+2*int64(MaxClockSkew))
	f.digest.markNonce(nk, was, had)
	if t.key != nil {
		f.digest.markKey(t.key.Name)
		s.indexKey(t.key.Name)
	}
	res.Key = t.key
	return res
}

func nonceKey(signer string, nonce []byte) string {
	return signer + "/" + hex.EncodeToString(nonce)
}

func (f *FSM) prune(now int64) {
	s := f.state
	if now-s.LastPrune < pruneEvery {
		return
	}
	s.LastPrune = now
	s.pruneNonces(now, func(nk string, exp int64) { f.digest.markNonce(nk, exp, true) })
	s.pruneMachines(now)
	s.pruneJoinTokens(now)
	s.pruneRevokedTokens(now)
}

// verify decodes the command and checks its signature, its time and its
// nonce. The signer is looked up as the command's type requires. A
// command signed by a passkey (sg.WebAuthn) returns the passkey and the
// authenticator's counter, which Apply stores once the command took
// effect.
//
// An entry that carries a capability token in place of a signature
// (sg.Token) is verified with its token (verifyTokenWrite), and returns
// what the token says; its nonce is the token operator's, as for the
// operator's own signed command.
func (f *FSM) verify(sg *Signed, now int64) (*Command, *Passkey, uint32, *TokenGrant, *Error) {
	var cmd Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		return nil, nil, 0, nil, errorf(CodeInvalid, "command payload: %v", err)
	}
	if cmd.Type != TypeInit && !f.state.Initialized() {
		return nil, nil, 0, nil, errorf(CodeState, "the cluster is not initialized")
	}
	if err := checkFresh(&cmd, now); err != nil {
		return nil, nil, 0, nil, err
	}
	if _, seen := f.state.Nonces[nonceKey(sg.Signer, cmd.Nonce)]; seen {
		return nil, nil, 0, nil, errorf(CodeReplay, "nonce already used by %s", sg.Signer)
	}
	if cmd.Type == TypeSignIn {
		return nil, nil, 0, nil, errorf(CodeInvalid, "a sign-in is never logged")
	}
	if len(sg.Token) != 0 {
		g, err := f.verifyTokenWrite(sg, &cmd, now)
		if err != nil {
			return nil, nil, 0, nil, err
		}
		return &cmd, nil, 0, g, nil
	}
	if sg.WebAuthn != nil {
		pk, count, err := f.state.passkeySigned(sg, &cmd)
		if err != nil {
			return nil, nil, 0, nil, err
		}
		return &cmd, pk, count, nil, nil
	}
	key, err := f.signerKey(sg.Signer, &cmd)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	if !verifySeen(key, sg.Payload, sg.Signature, false) { // a restore's replay verified most ahead (sigPrefetch)
		return nil, nil, 0, nil, errorf(CodeBadSignature, "signature of %s does not verify", sg.Signer)
	}
	return &cmd, nil, 0, nil, nil
}

func machineID(m *Machine) string {
	if m == nil {
		return ""
	}
	return m.ID
}

func checkFresh(cmd *Command, now int64) *Error {
	if len(cmd.Nonce) < minNonceLen {
		return errorf(CodeInvalid, "nonce must be at least %d bytes", minNonceLen)
	}
	if d := time.Duration(now - cmd.IssuedAt); d > MaxClockSkew || d < -MaxClockSkew {
		return errorf(CodeClockSkew, "command issued %v from the cluster's time, more than %v: check the signer's clock", d.Round(time.Second), MaxClockSkew)
	}
	return nil
}

// nodeSigned tells the command types a member node signs; an operator
// signs every other type (init: the operator it founds the cluster with).
func nodeSigned(typ string) bool {
	switch typ {
	case TypeDeal, TypeReshareAck, TypeSetEncKey, TypeComplaint, TypeRecordSession, TypeUseApproval, TypeDelivered, TypeAttest, TypeAutoJoin, TypeRemoveDeadNode, TypePromoteNode, TypeRecoveryDeal, TypeTokenUse:
		return true
	}
	return false
}

func (f *FSM) signerKey(signer string, cmd *Command) ([]byte, *Error) {
	s := f.state
	switch {
	case cmd.Type == TypeInit:
		if cmd.Init == nil || cmd.Init.Operator == nil {
			return nil, errorf(CodeInvalid, "init needs an operator")
		}
		if signer != cmd.Init.Operator.ID {
			return nil, errorf(CodeBadSignature, "init must be signed by the operator it names")
		}
		return cmd.Init.Operator.PublicKey, nil
	case nodeSigned(cmd.Type):
		n := s.Nodes[signer]
		if n == nil {
			return nil, errorf(CodeBadSignature, "unknown node %q", signer)
		}
		return n.SignKey, nil
	default:
		o := s.Operators[signer]
		if o == nil {
			return nil, errorf(CodeBadSignature, "unknown operator %q", signer)
		}
		return o.PublicKey, nil
	}
}

// VerifyRelease checks what a release request needs before anything else,
// with this state alone: a release payload, a time within MaxClockSkew of
// now, and the signature of the key this state holds for its signer (a
// member node for a gateway's release, else a machine or an operator). A
// node runs it on its applied state before it spends a read index on the
// request, so an unknown signer or a bad signature costs the cluster
// nothing; AuthorizeRelease runs it again at the read. A signer this state
// does not know is refused with CodeBadSignature.
func (s *State) VerifyRelease(sg *Signed, now time.Time) (*Command, *Error) {
	if sg == nil {
		return nil, errorf(CodeInvalid, "no signed request")
	}
	if len(sg.Token) != 0 {
		return nil, errorf(CodeInvalid, "a request with a capability token is verified with its token, not as signed")
	}
	cmd, err := DecodeCommand(sg.Payload)
	if err != nil {
		return nil, errorf(CodeInvalid, "request payload: %v", err)
	}
	if cmd.Type != TypeRelease || cmd.Release == nil {
		return nil, errorf(CodeInvalid, "not a release request")
	}
	if err := checkFresh(cmd, now.UnixNano()); err != nil {
		return nil, err
	}
	var signKey []byte
	gateway := cmd.Release.Gateway != ""
	switch m := s.Machines[sg.Signer]; {
	case gateway:
		if n := s.Nodes[sg.Signer]; n != nil && !n.Leaving {
			signKey = n.SignKey
		}
	case m != nil:
		signKey = m.PublicKey
	default:
		if o := s.Operators[sg.Signer]; o != nil {
			signKey = o.PublicKey
		}
	}
	if len(signKey) != ed25519.PublicKeySize {
		what := "operator or machine"
		if gateway {
			what = "member node"
		}
		return nil, errorf(CodeBadSignature, "unknown %s %q", what, sg.Signer)
	}
	if !verifyMemo(signKey, sg.Payload, sg.Signature) {
		return nil, errorf(CodeBadSignature, "signature of %s does not verify", sg.Signer)
	}
	return cmd, nil
}

// AuthorizeRelease checks a release request as a share holder must before
// it answers: the signature of a known operator, a time within
// MaxClockSkew of now, a rule that allows the operation on the key, and the
// key active and unexpired at now. A request signed by a member node for a
// legacy gateway is allowed instead by the key's Access naming that
// gateway: the node authorized its client itself. An operator's or a
// machine's request carries an ephemeral key that holders seal their
// partials to, so the node that relays them never sees the material; a
// gateway node's carries none (that node is the client and combines), nor
// does a signing request (OpSign: a quorum signs, or, for an assembled
// ECDSA key, the coordinating node the key is released to).
// Replayed nonces are the holder's to refuse (requests never enter the
// log): the command it returns carries the nonce, so the holder need not
// decode the payload again.
func (s *State) AuthorizeRelease(sg *Signed, now time.Time) (*Command, *Key, *Error) {
	cmd, err := s.VerifyRelease(sg, now)
	if err != nil {
		return nil, nil, err
	}
	k, err := s.authorizeVerified(sg, cmd, now)
	if err != nil {
		return nil, nil, err
	}
	return cmd, k, nil
}

// authorizeVerified is AuthorizeRelease after its signer is verified:
// by its signature, or by its capability token (sg.Signer is then the
// token's root operator).
func (s *State) authorizeVerified(sg *Signed, cmd *Command, now time.Time) (*Key, *Error) {
	req := cmd.Release
	gateway := req.Gateway != ""
	machine := s.Machines[sg.Signer]
	switch req.Op {
	case OpGet:
	case OpCAS:
		if gateway || req.ReplaceKey == nil || req.ReplaceKey.Name != req.Key {
			return nil, errorf(CodeInvalid, "a cas release must carry the swap for the same key")
		}
	case OpExchange:
		// A Tang key's (a gateway node's) or an x25519 key's (an
		// operator's): checked below, with the key's type.
	case OpRSAShare:
		if !gateway || len(req.Input) == 0 {
			return nil, errorf(CodeInvalid, "an rsa share is asked by a gateway node with an input")
		}
	case OpSign:
	case OpDecrypt, OpDerive:
	case OpExport:
	case OpEncrypt, OpMAC, OpVerify: // a symmetric assembled key's: below
	default:
		return nil, errorf(CodeInvalid, "unknown release operation %q", req.Op)
	}
	if err := checkSealMode(req); err != nil {
		return nil, err
	}
	k := s.ResolveKey(req.Key)
	if k == nil {
		return nil, errorf(CodeNotFound, "key %q does not exist", req.Key)
	}
	// The checks below and every holder's context use the name; the
	// signed payload keeps what the signer wrote.
	req.Key = k.Name
	if req.Op == OpExport {
		if !s.Allowed(sg.Signer, OpExport, req.Key) {
			return nil, errorf(CodeDenied, "%s may not %s key %q", sg.Signer, req.Op, req.Key)
		}
		if err := TransitExportable(k); err != nil {
			return nil, err
		}
		if err := authorizeExport(req); err != nil {
			return nil, err
		}
	} else if err := checkOp(k, req.Op); err != nil {
		return nil, err
	}
	if req.Op == OpSign {
		if err := s.authorizeSign(req, k); err != nil {
			return nil, err
		}
	}
	if req.Op == OpExchange && k.Type == KeyTypeTang && (!gateway || len(req.Point) != p256PointLen) {
		return nil, errorf(CodeInvalid, "a tang exchange is asked by a gateway node with a %d-byte point", p256PointLen)
	}
	symmetric := SymmetricAssembled(k.Type) && symmetricOp(req.Op)
	if symmetric {
		if err := authorizeSymmetric(req); err != nil {
			return nil, err
		}
	} else if req.Op == OpDecrypt || req.Op == OpDerive || req.Op == OpExchange && k.Type == KeyTypeX25519 {
		if err := authorizeDecrypt(req, k); err != nil {
			return nil, err
		}
	}
	switch {
	case gateway:
		if len(req.Ephemeral) != 0 {
			return nil, errorf(CodeInvalid, "a gateway node's request carries no ephemeral key: the node is the client and combines")
		}
		if !k.Access().Allows(req.Gateway) {
			return nil, errorf(CodeDenied, "key %q is not served by the %s gateway", req.Key, req.Gateway)
		}
	case machine != nil:
		if err := authorizeMachine(machine, req, k); err != nil {
			return nil, err
		}
	case !s.Allowed(sg.Signer, req.Op, req.Key):
		return nil, errorf(CodeDenied, "%s may not %s key %q", sg.Signer, req.Op, req.Key)
	case req.Op != OpSign && !symmetric && len(req.Ephemeral) != 32:
		return nil, errorf(CodeInvalid, "an operator's release needs a 32-byte ephemeral key: holders seal their partials to it, and the operator's client combines")
	}
	if k.State != KeyActive {
		return nil, errorf(CodeDenied, "key %q is %s", req.Key, k.State)
	}
	if k.Expired(now) {
		return nil, errorf(CodeDenied, "key %q expired at %s", req.Key, time.Unix(0, k.ExpiresAt).UTC().Format(time.RFC3339))
	}
	if d := s.denied(machineID(machine), req.Key, now.UnixNano()); machine != nil && machine.Approval && d != nil {
		return nil, errorf(CodeDenied, "operator %s denied machine %s's release of key %q", d.By, machine.ID, req.Key)
	}
	if machine != nil && machine.Approval && !s.approved(machine.ID, req.Key, cmd.Nonce, now.UnixNano()) {
		return nil, errorf(CodePending, "machine %s needs an operator's approval for key %q", machine.ID, req.Key)
	}
	return k, nil
}

// SealShare is ReleaseRequest.Seal for partials sealed with the holder's
// share, without proofs.
const SealShare = "share"

// checkSealMode refuses a seal mode it does not know, and share mode on
// a release that is not a blind get or cas (the ones whose partials the
// client combines into a key's ciphertext).
func checkSealMode(req *ReleaseRequest) *Error {
	switch req.Seal {
	case "":
		return nil
	case SealShare:
		if req.Op != OpGet && req.Op != OpCAS || len(req.Ephemeral) != 32 {
			return errorf(CodeInvalid, "seal %q is for a blind get or cas release, with a 32-byte ephemeral key", SealShare)
		}
		return nil
	default:
		return errorf(CodeInvalid, "unknown seal mode %q: leave it empty (partials with proofs) or set %q", req.Seal, SealShare)
	}
}

// authorizeMachine checks what a machine's release must be: from an active
// machine, for a secret it may fetch, with an ephemeral key.
func authorizeMachine(m *Machine, req *ReleaseRequest, k *Key) *Error {
	switch {
	case m.State != MachineActive:
		return errorf(CodeDenied, "machine %s (%s) is revoked", m.ID, m.Name)
	case req.Op != OpGet || k.Type != KeyTypeSecret:
		return errorf(CodeInvalid, "a machine only gets secrets")
	case len(req.Ephemeral) != 32:
		return errorf(CodeInvalid, "a machine's release needs a 32-byte ephemeral key")
	case !m.MayFetch(req.Key):
		return errorf(CodeDenied, "machine %s (%s) may not fetch key %q", m.ID, m.Name, req.Key)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func sortedNodes(m map[string]*Node) []*Node {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b *Node) int { return cmp.Compare(a.Index, b.Index) })
	return out
}
