package fsm

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// transition applies one verified command. Every method checks all its
// preconditions before it changes anything, so a refusal leaves the state
// untouched.
type transition struct {
	fsm    *FSM
	s      *State
	index  uint64
	now    int64
	signer string
	cmd    *Command
	key    *Key         // set by key commands, for the Result
	items  []ItemResult // set by create_keys, for the Result
	// floorThreshold, when set, is the least threshold a round this
	// command starts may have (the autopilot's removals keep t).
	floorThreshold int
}

func (t *transition) apply() *Error {
	c := t.cmd
	if c.Type != TypeInit && !t.s.Initialized() {
		return errorf(CodeState, "the cluster is not initialized")
	}
	switch c.Type {
	case TypeInit:
		return t.init(c.Init)
	case TypeAddNode:
		return t.admin(func() *Error { return t.addNode(c.AddNode) })
	case TypeRemoveNode:
		return t.admin(func() *Error { return t.removeNode(c.RemoveNode) })
	case TypeAddOperator:
		return t.admin(func() *Error { return t.addOperator(c.AddOperator) })
	case TypeRemoveOperator:
		return t.admin(func() *Error { return t.removeOperator(c.RemoveOperator) })
	case TypePutRule:
		return t.admin(func() *Error { return t.putRule(c.PutRule) })
	case TypeDeleteRule:
		return t.admin(func() *Error { return t.deleteRule(c.DeleteRule) })
	case TypeCreateKey:
		return t.createKey(c.CreateKey, KeyID(t.s.ClusterID, t.index, 0, t.signer, t.cmd.Nonce))
	case TypeCreateKeys:
		return t.createKeys(c.CreateKeys)
	case TypeReplaceKey:
		return t.replaceKey(c.ReplaceKey)
	case TypeRotateKey:
		return t.rotateKey(c.RotateKey)
	case TypeConfigureKey:
		return t.configureKey(c.ConfigureKey)
	case TypeRevokeKey:
		return t.setKeyState(c.RevokeKey, OpRevoke)
	case TypeDestroyKey:
		return t.setKeyState(c.DestroyKey, OpDestroy)
	case TypeDeal:
		return t.deal(c.Deal)
	case TypeReshareAck:
		return t.reshareAck(c.ReshareAck)
	case TypeSetEncKey:
		return t.setEncKey(c.SetEncKey)
	case TypeComplaint:
		return t.complaint(c.Complaint)
	case TypeRestartReshare:
		return t.admin(func() *Error { return t.restartReshare(c.RestartReshare) })
	case TypeSetAccess:
		return t.admin(func() *Error { return t.setAccess(c.SetAccess) })
	case TypeAddMachine:
		return t.admin(func() *Error { return t.addMachine(c.AddMachine) })
	case TypeRevokeMachine:
		return t.admin(func() *Error { return t.revokeMachine(c.RevokeMachine) })
	case TypeApprove:
		return t.approve(c.Approve)
	case TypeDeny:
		return t.deny(c.Deny)
	case TypeAddPasskey:
		return t.admin(func() *Error { return t.addPasskey(c.AddPasskey) })
	case TypeRemovePasskey:
		return t.admin(func() *Error { return t.removePasskey(c.RemovePasskey) })
	case TypeRecordSession:
		return t.recordSession(c.RecordSession)
	case TypeUseApproval:
		return t.useApproval(c.UseApproval)
	case TypeSubmitKey:
		return t.submitKey(c.SubmitKey)
	case TypeDelivered:
		return t.delivered(c.Delivered)
	case TypeAttest:
		return t.attest(c.Attest)
	case TypeCreateJoinToken:
		return t.admin(func() *Error { return t.createJoinToken(c.CreateJoinToken) })
	case TypeRevokeJoinToken:
		return t.admin(func() *Error { return t.revokeJoinToken(c.RevokeJoinToken) })
	case TypeJoinNode:
		return t.admin(func() *Error { return t.joinNode(c.JoinNode) })
	case TypeAutoJoin:
		return t.autoJoin(c.AutoJoin)
	case TypeSetAutopilot:
		return t.admin(func() *Error { return t.setAutopilot(c.SetAutopilot) })
	case TypeRemoveDeadNode:
		return t.removeDeadNode(c.RemoveDeadNode)
	case TypePromoteNode:
		return t.promoteNode(c.PromoteNode)
	case TypeRecoveryDeal:
		return t.recoveryDeal(c.RecoveryDeal)
	case TypeRebuild:
		return t.admin(func() *Error { return t.rebuild(c.Rebuild) })
	case TypeRevokeToken:
		return t.revokeToken(c.RevokeToken)
	case TypeTokenUse:
		return t.tokenUse(c.TokenUse)
	default:
		return errorf(CodeInvalid, "unknown command type %q", c.Type)
	}
}

func (t *transition) admin(fn func() *Error) *Error {
	if o := t.s.Operators[t.signer]; o == nil || !o.Admin {
		return errorf(CodeDenied, "%s is not an admin operator", t.signer)
	}
	return fn()
}

func (t *transition) init(in *Init) *Error {
	if t.s.Initialized() {
		return errorf(CodeState, "the cluster is already initialized")
	}
	if in.ClusterID == "" || len(in.CACert) == 0 || in.Node == nil {
		return errorf(CodeInvalid, "init needs a cluster ID, a CA certificate and a node")
	}
	if in.InitialNodes < 1 || in.InitialNodes > MaxNodes {
		return errorf(CodeInvalid, "the initial cluster size must be 1 to %d nodes, got %d", MaxNodes, in.InitialNodes)
	}
	op := *in.Operator
	if err := checkOperator(&op); err != nil {
		return err
	}
	n := *in.Node
	if err := checkNode(&n); err != nil {
		return err
	}
	if in.Recovery != nil {
		if _, ok := t.fsm.checker.(RecoveryChecker); !ok {
			return errorf(CodeInvalid, "this state machine cannot check recovery deals")
		}
		if err := checkRecoveryRequest(in.Recovery); err != nil {
			return err
		}
	}
	op.Admin = true
	s := t.s
	s.ClusterID = in.ClusterID
	s.CACert = in.CACert
	s.InitialNodes = in.InitialNodes
	s.Operators[op.ID] = &op
	n.Index, n.Holder, n.Leaving, n.Pending = 1, false, false, false
	s.NextIndex = 2
	s.Nodes[n.ID] = &n
	if in.Recovery != nil {
		s.Recovery = newRecoveryKit(in.Recovery)
	}
	t.startRound(true)
	return nil
}

func checkOperator(o *Operator) *Error {
	if len(o.PublicKey) != ed25519.PublicKeySize {
		return errorf(CodeInvalid, "operator public key must be %d bytes", ed25519.PublicKeySize)
	}
	if o.ID != PrincipalID(o.PublicKey) {
		return errorf(CodeInvalid, "operator ID %q does not match its public key", o.ID)
	}
	if o.Name == "" || len(o.Name) > MaxNameLen {
		return errorf(CodeInvalid, "operator name must be 1 to %d characters", MaxNameLen)
	}
	return nil
}

func checkNode(n *Node) *Error {
	switch {
	case !nodeIDPattern.MatchString(n.ID) || len(n.ID) > 64 || strings.Contains(n.ID, ".."):
		return errorf(CodeInvalid, "node ID %q must be 1 to 64 letters, digits, '.', '_' or '-', start with a letter or digit, and not contain '..'", n.ID)
	case n.RaftAddr == "" || n.APIAddr == "" || n.GossipAddr == "":
		return errorf(CodeInvalid, "node %q needs raft, API and gossip addresses", n.ID)
	case len(n.SignKey) != ed25519.PublicKeySize:
		return errorf(CodeInvalid, "node %q signing key must be %d bytes", n.ID, ed25519.PublicKeySize)
	case len(n.EncKey) != pointLen:
		return errorf(CodeInvalid, "node %q encryption key must be %d bytes", n.ID, pointLen)
	}
	return nil
}

func (t *transition) addNode(in *Node) *Error {
	if in == nil {
		return errorf(CodeInvalid, "add_node needs a node")
	}
	n := *in
	if err := checkNode(&n); err != nil {
		return err
	}
	s := t.s
	if s.Nodes[n.ID] != nil {
		return errorf(CodeExists, "node %q is already a member", n.ID)
	}
	for _, m := range sortedNodes(s.Nodes) {
		if m.RaftAddr == n.RaftAddr || m.APIAddr == n.APIAddr || m.GossipAddr == n.GossipAddr {
			return errorf(CodeExists, "node %q already uses an address of %q", m.ID, n.ID)
		}
	}
	staying := 0
	for _, m := range s.Nodes {
		if !m.Leaving {
			staying++
		}
	}
	if staying >= MaxNodes {
		return errorf(CodeState, "the cluster has %d members, the most it can have", staying)
	}
	n.Index, n.Holder, n.Leaving = s.NextIndex, false, false
	s.NextIndex++
	s.Nodes[n.ID] = &n
	if s.Epoch > 0 {
		// The key exists: the node waits for its promotion (autopilot.go)
		// before a round gives it a share.
		n.Pending = true
		return nil
	}
	n.Pending = false
	t.startRound(true)
	return nil
}

func (t *transition) removeNode(id string) *Error {
	s := t.s
	n := s.Nodes[id]
	if n == nil {
		return errorf(CodeNotFound, "node %q is not a member", id)
	}
	if n.Leaving {
		return errorf(CodeState, "node %q is already leaving", id)
	}
	staying := 0
	for _, m := range s.Nodes {
		if !m.Leaving && !m.Pending && m.ID != id {
			staying++
		}
	}
	if staying == 0 {
		return errorf(CodeState, "node %q is the last member (a member waiting for its promotion does not count)", id)
	}
	if n.Pending {
		// In no round and holding no share: nothing to reshare away.
		delete(s.Nodes, id)
		return nil
	}
	n.Leaving = true
	t.startRound(s.Epoch == 0)
	return nil
}

// startRound begins a resharing round to every node that is not leaving
// nor waiting for its promotion, replacing any round in progress. A fresh round is the DKG: the cluster
// has no key yet, so every member deals a random secret; it starts only
// once the cluster has its initial number of members. Dealers that a
// complaint disqualified in the round it replaces stay disqualified.
func (t *transition) startRound(fresh bool) {
	s := t.s
	prev := s.Reshare
	r := &Reshare{Round: t.index, Fresh: fresh}
	for _, n := range sortedNodes(s.Nodes) {
		if !n.Leaving && !n.Pending {
			r.Members = append(r.Members, Member{NodeID: n.ID, Index: n.Index, EncKey: n.EncKey})
		}
	}
	if fresh && len(r.Members) < s.InitialNodes {
		s.Reshare = nil
		return
	}
	r.Threshold = max(DefaultThreshold(len(r.Members)), min(t.floorThreshold, len(r.Members)))
	if fresh {
		for _, m := range r.Members {
			r.Dealers = append(r.Dealers, m.Index)
		}
		r.Needed = len(r.Members)
	} else {
		for _, n := range s.Holders() {
			r.Dealers = append(r.Dealers, n.Index)
		}
		slices.Sort(r.Dealers)
		r.Needed = s.Threshold
	}
	if prev != nil && prev.Fresh == fresh {
		for _, d := range prev.Disqualified {
			if slices.Contains(r.Dealers, d) {
				r.Disqualified = append(r.Disqualified, d)
			}
		}
		r.recount()
	}
	t.listTangKeys(r)
	t.listFROSTKeys(r)
	s.Reshare = r
}

// DefaultThreshold is floor(n/2)+1: a majority of n holders.
func DefaultThreshold(n int) int { return n/2 + 1 }

func (t *transition) deal(d *DealCommand) *Error {
	s := t.s
	r := s.Reshare
	if d == nil {
		return errorf(CodeInvalid, "deal command is empty")
	}
	if r == nil || r.Round != d.Round {
		return errorf(CodeState, "no resharing round %d in progress", d.Round)
	}
	if r.Aborted != "" {
		return errorf(CodeState, "resharing round %d was aborted: %s", r.Round, r.Aborted)
	}
	n := s.Nodes[t.signer]
	if n.Index != d.Dealer || !slices.Contains(r.Dealers, d.Dealer) {
		return errorf(CodeDenied, "node %q may not deal as %d in round %d", t.signer, d.Dealer, r.Round)
	}
	if slices.Contains(r.Disqualified, d.Dealer) {
		return errorf(CodeDenied, "dealer %d was disqualified in round %d by a complaint", d.Dealer, r.Round)
	}
	if r.HasDealt(d.Dealer) {
		return errorf(CodeExists, "dealer %d already dealt in round %d", d.Dealer, r.Round)
	}
	if r.Qualified() {
		return errorf(CodeState, "round %d already has its deals", r.Round)
	}
	if err := t.fsm.checker.CheckDeal(r, s.Poly, d.Dealer, d.Deal); err != nil {
		return errorf(CodeInvalid, "deal from %d: %v", d.Dealer, err)
	}
	if err := t.checkTangDeals(r, d.Dealer, d.Tang); err != nil {
		return err
	}
	if err := t.checkFROSTDeals(r, d.Dealer, d.Frost); err != nil {
		return err
	}
	before := r.Deals
	r.Deals = append(slices.Clip(r.Deals), Deal{Dealer: d.Dealer, Deal: d.Deal, Tang: d.Tang, Frost: d.Frost})
	if err := t.qualify(r); err != nil {
		// The deals each passed their checks, so this is a fault of ours;
		// refuse the last deal rather than qualify a round that cannot work.
		r.Deals = before
		return err
	}
	return nil
}

// reshareAck records that a member holds its share of the round's new
// sharing. Acknowledgements of Threshold members complete the round: a
// member that is down or slow does not hold it. A member that acknowledges
// the last completed round late (it opened its share from the deals
// state.LastRound keeps) is recorded there.
func (t *transition) reshareAck(a *ReshareAck) *Error {
	s := t.s
	r := s.Reshare
	if a == nil {
		return errorf(CodeInvalid, "reshare_ack command is empty")
	}
	if lr := s.LastRound; (r == nil || r.Round != a.Round) && lr != nil && lr.Round == a.Round {
		if lr.Member(t.signer) == nil {
			return errorf(CodeDenied, "node %q is not a member of round %d", t.signer, lr.Round)
		}
		if lr.HasAcked(t.signer) {
			return errorf(CodeExists, "node %q already acknowledged round %d", t.signer, lr.Round)
		}
		lr.Acks = append(slices.Clip(lr.Acks), t.signer)
		return nil
	}
	if r == nil || r.Round != a.Round || !r.Qualified() {
		return errorf(CodeState, "no qualified resharing round %d", a.Round)
	}
	if r.Member(t.signer) == nil {
		return errorf(CodeDenied, "node %q is not a member of round %d", t.signer, r.Round)
	}
	if r.HasAcked(t.signer) {
		return errorf(CodeExists, "node %q already acknowledged round %d", t.signer, r.Round)
	}
	// A replica with the cluster key pinned (cluster/pin.go: a restarted
	// node, sent its log again from index 1) takes no first key
	// generation that makes another key.
	if pin := t.fsm.ck.pin; s.Epoch == 0 && pin != nil && len(r.Acks)+1 >= r.Threshold && (len(r.Poly) == 0 || !bytes.Equal(r.Poly[0], pin)) {
		return errorf(CodeState, "this key generation makes another cluster key than the one this node pinned")
	}
	r.Acks = append(r.Acks, t.signer)
	if len(r.Acks) >= r.Threshold {
		t.completeRound()
	}
	return nil
}

// completeRound makes the round's sharing the current epoch. Nodes that
// were leaving are dropped; the others erase their old shares when they
// see the new epoch. Every member is a holder: one that has not
// acknowledged yet opens its share from the round's deals, kept as
// LastRound.
func (t *transition) completeRound() {
	s := t.s
	r := s.Reshare
	s.Epoch++
	s.Threshold = r.Threshold
	s.Poly = r.Poly
	t.completeTang(r)
	t.completeFROST(r)
	for id, n := range s.Nodes {
		if n.Leaving {
			delete(s.Nodes, id)
			continue
		}
		n.Holder = r.Member(id) != nil
	}
	t.markRSAReimport()
	s.Reshare = nil
	s.LastRound = r
}

// setEncKey replaces the key the node's next deals are encrypted to. A
// node rotates it after every round it received deals in, and erases the
// old private key, so the deals that stay in its Raft log cannot give back
// shares it has erased. Rounds in progress keep the key they started with.
func (t *transition) setEncKey(key []byte) *Error {
	if len(key) != pointLen {
		return errorf(CodeInvalid, "encryption key must be %d bytes", pointLen)
	}
	t.s.Nodes[t.signer].EncKey = key
	return nil
}

func (t *transition) addOperator(o *Operator) *Error {
	if o == nil {
		return errorf(CodeInvalid, "add_operator needs an operator")
	}
	op := *o
	if err := checkOperator(&op); err != nil {
		return err
	}
	if t.s.Operators[op.ID] != nil {
		return errorf(CodeExists, "operator %s exists", op.ID)
	}
	t.s.Operators[op.ID] = &op
	return nil
}

func (t *transition) removeOperator(id string) *Error {
	s := t.s
	o := s.Operators[id]
	if o == nil {
		return errorf(CodeNotFound, "operator %q does not exist", id)
	}
	if o.Admin {
		admins := 0
		for _, x := range s.Operators {
			if x.Admin {
				admins++
			}
		}
		if admins == 1 {
			return errorf(CodeState, "operator %q is the last admin", id)
		}
	}
	delete(s.Operators, id)
	maps.DeleteFunc(s.Passkeys, func(_ string, pk *Passkey) bool { return pk.Operator == id })
	return nil
}

func (t *transition) putRule(in *Rule) *Error {
	if in == nil {
		return errorf(CodeInvalid, "put_rule needs a rule")
	}
	r := *in
	r.Ops = slices.Clone(r.Ops)
	if r.ID == "" || len(r.ID) > MaxNameLen {
		return errorf(CodeInvalid, "rule ID must be 1 to %d characters", MaxNameLen)
	}
	if t.s.Operators[r.Principal] == nil {
		return errorf(CodeNotFound, "principal %q does not exist", r.Principal)
	}
	if err := checkRuleKey(r.Key); err != nil {
		return err
	}
	if len(r.Ops) == 0 {
		return errorf(CodeInvalid, "rule %q grants no operation", r.ID)
	}
	for _, op := range r.Ops {
		if !slices.Contains(allOps, op) {
			return errorf(CodeInvalid, "unknown operation %q (known: %s)", op, strings.Join(allOps, ", "))
		}
	}
	t.s.Rules[r.ID] = &r
	return nil
}

func checkRuleKey(key string) *Error {
	pattern, _ := strings.CutSuffix(key, "*")
	if pattern != "" && !namePattern.MatchString(pattern) {
		return errorf(CodeInvalid, "rule key %q is not a key name or prefix*", key)
	}
	return nil
}

func (t *transition) deleteRule(id string) *Error {
	if t.s.Rules[id] == nil {
		return errorf(CodeNotFound, "rule %q does not exist", id)
	}
	delete(t.s.Rules, id)
	return nil
}

// CheckKeyName is the one rule for key names, which gateways also apply
// to names in their paths: 1 to MaxNameLen letters, digits, '.', '_', '-'
// or '/', starting with a letter or digit, with no ".." and no empty or "."
// segment (a name is a path for kxd and Tang clients).
func CheckKeyName(name string) *Error {
	bad := len(name) == 0 || len(name) > MaxNameLen || !namePattern.MatchString(name) || strings.Contains(name, "..")
	for seg := range strings.SplitSeq(name, "/") {
		bad = bad || seg == "" || seg == "."
	}
	if bad {
		return errorf(CodeInvalid, "key name %q must be 1 to %d letters, digits, '.', '_', '-' or '/', start with a letter or digit, and have no '..' and no empty or '.' segment", name, MaxNameLen)
	}
	return nil
}

func checkSealed(r, sealed []byte) *Error {
	if len(r) != pointLen {
		return errorf(CodeInvalid, "sealed material needs a %d-byte point", pointLen)
	}
	if len(sealed) == 0 || len(sealed) > MaxSealedSize {
		return errorf(CodeInvalid, "sealed material must be 1 to %d bytes", MaxSealedSize)
	}
	return nil
}

// createKey creates the key c with the ID id (KeyID).
func (t *transition) createKey(c *CreateKey, id string) *Error {
	if c == nil {
		return errorf(CodeInvalid, "create_key needs a key")
	}
	if err := CheckKeyName(c.Name); err != nil {
		return err
	}
	if err := checkAccess(c.Access); err != nil {
		return err
	}
	if c.ExpiresAt != 0 && c.ExpiresAt <= t.now {
		return errorf(CodeInvalid, "key %q would expire before it is created", c.Name)
	}
	if !t.s.Allowed(t.signer, OpCreate, c.Name) {
		return errorf(CodeDenied, "%s may not create key %q", t.signer, c.Name)
	}
	if t.s.Epoch == 0 {
		return errorf(CodeState, "the cluster key does not exist yet")
	}
	if (c.Type == KeyTypeTang || c.Type == KeyTypeFROST || c.Type == KeyTypeTransit || c.Type == KeyTypeX25519) && t.s.Reshare != nil {
		// A round reshares the Tang keys it started with: one dealt now to
		// the holders the round replaces would be left behind.
		return errorf(CodeConflict, "resharing round %d is in progress: create the %s key when it is done", t.s.Reshare.Round, c.Type)
	}
	if err := t.s.checkKeyMaterial(c); err != nil {
		return err
	}
	if c.Tang != nil && t.s.TangKeyByKid(c.Tang.Kid) != nil {
		return errorf(CodeExists, "a tang key with kid %q exists", c.Tang.Kid)
	}
	version := uint64(1)
	if old := t.s.Keys[c.Name]; old != nil {
		if old.State != KeyDestroyed {
			return errorf(CodeExists, "key %q exists", c.Name)
		}
		version = old.Version + 1
	}
	if t.s.ResolveKey(id) != nil {
		return errorf(CodeExists, "key ID %s is in use: sign the create again", id)
	}
	k := &Key{ID: id, Name: c.Name, Type: c.Type, Version: version, State: KeyActive,
		CreatedAt: t.now, UpdatedAt: t.now, ExpiresAt: c.ExpiresAt, R: c.R, Sealed: c.Sealed}
	d := KeyDetail{Public: c.Public, AssembleTTL: c.AssembleTTL, Access: c.Access, Tang: c.Tang, RSA: c.RSA, Frost: c.Frost}
	if c.Transit != nil {
		tk := *c.Transit
		tk.Versions = []TransitVersion{{Version: version, CreatedAt: t.now, Sharing: c.Transit.Versions[0].Sharing,
			Imported: c.Transit.Versions[0].Imported}}
		tk.MinDecryptionVersion = version
		d.Transit = &tk
	}
	k.SetDetail(d)
	t.s.Keys[c.Name] = k
	t.key = k.Metadata()
	return nil
}

// createKeys creates each key as createKey would, in order, and records
// each one's outcome: one entry for many keys (a bulk load), each checked
// as alone, so one refused key leaves the others created. The entry takes
// effect if any key is created; if none is, it is refused with the first
// key's error (and the outcomes).
func (t *transition) createKeys(cs []*CreateKey) *Error {
	if len(cs) == 0 || len(cs) > MaxCreateKeys {
		return errorf(CodeInvalid, "create_keys needs 1 to %d keys, not %d", MaxCreateKeys, len(cs))
	}
	t.items = make([]ItemResult, len(cs))
	var first *Error
	created := 0
	ids := keyIDs(t.s.ClusterID, t.index, len(cs), t.signer, t.cmd.Nonce)
	for i, c := range cs {
		t.key = nil
		if err := t.createKey(c, ids[i]); err != nil {
			t.items[i].Error = err
			if first == nil {
				first = err
			}
			continue
		}
		t.items[i].Key = t.key
		t.keyChanged(c.Name)
		created++
	}
	t.key = nil
	if created == 0 {
		return &Error{Code: first.Code, Message: fmt.Sprintf("none of the %d keys was created; the first: %s", len(cs), first.Message)}
	}
	return nil
}

func (t *transition) replaceKey(c *ReplaceKey) *Error {
	if c == nil {
		return errorf(CodeInvalid, "replace_key needs a key")
	}
	if err := checkSealed(c.R, c.Sealed); err != nil {
		return err
	}
	c.Name = t.s.KeyName(c.Name)
	k := t.s.Keys[c.Name]
	if k == nil {
		return errorf(CodeNotFound, "key %q does not exist", c.Name)
	}
	if !t.s.Allowed(t.signer, OpCAS, c.Name) {
		return errorf(CodeDenied, "%s may not cas key %q", t.signer, c.Name)
	}
	if k.State != KeyActive {
		return errorf(CodeState, "key %q is %s", c.Name, k.State)
	}
	if k.Type != KeyTypeSecret {
		return errorf(CodeInvalid, "key %q is a %s key: only secrets are swapped", c.Name, k.Type)
	}
	if k.Version != c.ExpectVersion {
		return errorf(CodeConflict, "key %q is at version %d, not %d", c.Name, k.Version, c.ExpectVersion)
	}
	k = t.editKey(c.Name)
	k.Version++
	k.R, k.Sealed, k.UpdatedAt = c.R, c.Sealed, t.now
	t.key = k.Metadata()
	return nil
}

// editKey puts a copy of the key name in its place in the state and
// returns it, for the caller to change once the entry is sure to take
// effect: a key in the state is never changed in place, so the keys a
// checkpoint cloned (State.names) stay as they were. Apply marks the
// entry's t.key as changed; a transition that changes other keys calls
// keyChanged for each.
func (t *transition) editKey(name string) *Key {
	c := *t.s.Keys[name]
	t.s.Keys[name] = &c
	return &c
}

// keyChanged tells the state hash (statehash.go) and the indexes that the
// key name changed, for a transition that changes keys other than its
// t.key.
func (t *transition) keyChanged(name string) {
	t.fsm.digest.markKey(name)
	t.s.indexKey(name)
}

func (t *transition) setKeyState(ref, op string) *Error {
	name := t.s.KeyName(ref)
	k := t.s.Keys[name]
	if k == nil {
		return errorf(CodeNotFound, "key %q does not exist", name)
	}
	if !t.s.Allowed(t.signer, op, name) {
		return errorf(CodeDenied, "%s may not %s key %q", t.signer, op, name)
	}
	switch {
	case k.State == KeyDestroyed:
		return errorf(CodeState, "key %q is destroyed", name)
	case op == OpRevoke && k.State == KeyRevoked:
		return errorf(CodeState, "key %q is already revoked", name)
	}
	k = t.editKey(name)
	if op == OpRevoke {
		k.State = KeyRevoked
	} else {
		k.State, k.R, k.Sealed = KeyDestroyed, nil, nil
		d := k.Detail()
		d.Tang, d.RSA, d.Frost, d.Transit = nil, nil, nil, nil
		k.SetDetail(d)
		t.s.Destroyed = t.index // a checkpoint is taken here (checkpoint.go)
	}
	k.UpdatedAt = t.now
	t.key = k.Metadata()
	return nil
}

// Expired says whether the key's ExpiresAt has passed at now: the one
// rule every holder (authorizeVerified) and every encrypting client
// (api.TransitEncrypt) applies.
func (k *Key) Expired(now time.Time) bool {
	return k.ExpiresAt != 0 && now.UnixNano() >= k.ExpiresAt
}

// Metadata is a copy of the key without its sealed material (a Tang key
// keeps its advertisement and public shares). It shares only slices with
// the state, so a caller of FSM.Read may keep it (see State).
func (k *Key) Metadata() *Key {
	c := *k
	c.R, c.Sealed = nil, nil
	if k.KeyDetail == nil {
		return &c
	}
	d := *k.KeyDetail
	if d.Access != nil {
		a := *d.Access
		d.Access = &a
	}
	if d.Tang != nil {
		tk := *d.Tang
		tk.Shares = make([]TangShare, len(d.Tang.Shares))
		for i, sh := range d.Tang.Shares {
			sh.Sealed = nil
			tk.Shares[i] = sh
		}
		d.Tang = &tk
	}
	if d.RSA != nil {
		rk := *d.RSA
		rk.Shares = make([]RSAShare, len(d.RSA.Shares))
		for i, sh := range d.RSA.Shares {
			sh.R, sh.Sealed = nil, nil
			rk.Shares[i] = sh
		}
		d.RSA = &rk
	}
	if d.Frost != nil {
		d.Frost = d.Frost.metadata()
	}
	if d.Transit != nil {
		d.Transit = d.Transit.metadata()
	}
	c.SetDetail(d)
	return &c
}
