package fsm

import (
	"reflect"
	"strings"
	"time"

	"github.com/google/btree"

	"github.com/keyquorum/keyquorum/vocab"
)

// Key types.
const (
	KeyTypeSecret = "secret" // an opaque secret released by threshold decryption
)

// Key states.
const (
	KeyActive    = "active"
	KeyRevoked   = "revoked"
	KeyDestroyed = "destroyed"
)

// Operations a rule can grant. Admin operators may do all of them, and
// manage nodes, operators and rules.
const (
	OpRead    = "read"    // list and show metadata
	OpGet     = "get"     // release the material
	OpCreate  = "create"  // create a key
	OpCAS     = "cas"     // compare-and-swap the material
	OpRevoke  = "revoke"  // revoke a key
	OpDestroy = "destroy" // erase a key's material
	// OpExchange multiplies a client's point by a key, by quorum: a Tang
	// key's, asked only by nodes for their Tang gateway, or an x25519
	// key's (transit.go), asked by an operator, whom a rule for exchange
	// allows.
	OpExchange = "exchange"
	OpApprove  = "approve" // approve a machine's release of a key
)

var allOps = []string{OpRead, OpGet, OpCreate, OpCAS, OpRevoke, OpDestroy, OpApprove, OpSign, OpDecrypt, OpDerive, OpExchange, OpRotate, OpExport, OpEncrypt, OpMAC, OpVerify}

// State is everything the cluster replicates. Maps are keyed by ID or name.
// Callers outside the package read it through FSM.Read and change nothing.
// Once Read returns they may keep the slices they read, and nothing else:
// a transition never writes into a slice of the state but puts a new one
// in its place, while it changes maps and the structs they point to in
// place (package doc, "Reading the state"). Code that changes the state
// keeps this: clone a slice before writing into it.
type State struct {
	Applied uint64 `json:"applied"` // index of the last applied entry
	// Chain is the chain hash over every entry applied (chain.go): equal
	// on two replicas at the same Applied unless their histories differ.
	Chain     []byte `json:"chain,omitempty"`
	ClusterID string `json:"cluster_id,omitempty"`
	CACert    []byte `json:"ca_cert,omitempty"`
	// InitialNodes members must be in before the DKG starts.
	InitialNodes int                  `json:"initial_nodes"`
	Epoch        uint64               `json:"epoch"`     // the cluster key's sharing; 0 until the first DKG completes
	Threshold    int                  `json:"threshold"` // t of the current epoch
	Poly         [][]byte             `json:"poly"`      // public commitments of the current epoch; Poly[0] is the cluster public key
	NextIndex    uint32               `json:"next_index"`
	Nodes        map[string]*Node     `json:"nodes"`
	Operators    map[string]*Operator `json:"operators"`
	Rules        map[string]*Rule     `json:"rules"`
	Keys         map[string]*Key      `json:"keys"`
	Reshare      *Reshare             `json:"reshare,omitempty"`
	// LastRound is the round that made the current epoch, with its deals:
	// a member that did not acknowledge it (it was down or slow) opens its
	// new share from them when it is back, or complains against a deal.
	LastRound *Reshare                 `json:"last_round,omitempty"`
	Nonces    map[string]int64         `json:"nonces"` // signer/nonce -> expiry, Unix nanoseconds
	Machines  map[string]*Machine      `json:"machines"`
	Approvals map[string]*Approval     `json:"approvals"` // machine NUL key ("" = any) -> approval
	Sessions  map[string]*Session      `json:"sessions"`  // machine -> its waiting release
	Granted   map[string]int64         `json:"granted"`   // machine/nonce of an approved request -> expiry
	Submitted map[string]*SubmittedKey `json:"submitted"` // machine -> passphrase waiting for delivery
	LastPrune int64                    `json:"last_prune"`
	LastTime  int64                    `json:"last_time"` // latest entry time applied, Unix nanoseconds
	// Checkpoint is the last checkpoint t holders certified; Pending are
	// the checkpoints being attested, oldest first (checkpoint.go).
	Checkpoint *Checkpoint   `json:"checkpoint,omitempty"`
	Pending    []*Checkpoint `json:"pending_checkpoints,omitempty"`
	// JoinTokens are the join tokens not yet expired, spent or not, by ID
	// (jointokens.go); nil until the first is created.
	JoinTokens map[string]*JoinToken `json:"join_tokens,omitempty"`
	// RevokedTokens are the capability tokens' revocation ids revoked in
	// the last MaxTokenTTL (tokens.go); nil until the first.
	RevokedTokens map[string]*RevokedToken `json:"revoked_tokens,omitempty"`
	// TokenUses are the recorded uses of tokens with a bound, by the
	// bound's revocation id (tokens.go); nil until the first.
	TokenUses map[string]*TokenUses `json:"token_uses,omitempty"`
	// Passkeys are the operators' WebAuthn credentials by ID, Denials the
	// machines an operator denied, by machine NUL key (passkeys.go); nil
	// until the first.
	Passkeys map[string]*Passkey `json:"passkeys,omitempty"`
	Denials  map[string]*Denial  `json:"denials,omitempty"`
	// Destroyed is the index of the last destroy_key that took effect, or
	// of the last round completion that migrated Tang shares sealed to
	// identity keys (tangreshare.go): a checkpoint is taken there, and
	// once one at or after it is certified every node erases the entries
	// before it from its disk (checkpoint.go).
	Destroyed uint64 `json:"destroyed,omitempty"`
	// Autopilot is set while an admin has the autopilot on
	// (autopilot.go).
	Autopilot *Autopilot `json:"autopilot,omitempty"`
	// Recovery is the recovery kit, when the founding admin asked for one
	// (recovery.go).
	Recovery *RecoveryKit `json:"recovery,omitempty"`

	// tang indexes the live Tang keys (TangKeys) by name: Apply keeps it,
	// a decode rebuilds it, and it is not encoded. Nil in a State made
	// another way, which TangKeys then scans.
	tang map[string]struct{}
	// names orders the keys by name (KeysAfter), kept and rebuilt like
	// tang; keys are never deleted from the state, only destroyed. It
	// holds the same *Key as Keys, and a key is never changed in place
	// once it is in the state (editKey puts a changed copy in its place),
	// so a clone of it (O(1), copy-on-write) is the keys as they were: a
	// checkpoint keeps one instead of an encoding (checkpoint.go).
	names *btree.BTreeG[*Key]
	// expiries indexes Nonces by expiry (nonces.go), kept by spendNonce
	// and pruneNonces and rebuilt when it is not in step: a checkpoint
	// keeps a clone of it, as of names.
	expiries *btree.BTreeG[nonceEntry]
	// nonceRepairs counts the times expiries was found out of step and
	// rebuilt: never, but after a change to Nonces that went around
	// spendNonce and pruneNonces (the fsm tests' harness checks).
	nonceRepairs int
	// ids maps key IDs to names (keyids.go), kept and rebuilt like tang.
	ids map[string]string
	// shared indexes the keys with a live sharing (Sharings: ed25519-frost
	// and transit keys not destroyed) by name, kept and rebuilt like tang:
	// every node's resharing loop asks for the sharings after every
	// applied entry, which a sort of every key made O(n log n).
	shared map[string]struct{}
}

// KeysAfter calls fn with each key whose name sorts after `after`, in
// name order, until fn returns false: a page of keys costs O(log n) to
// find, not a sort of every key.
func (s *State) KeysAfter(after string, fn func(*Key) bool) {
	if s.names == nil {
		for _, name := range sortedKeys(s.Keys) {
			if name > after && !fn(s.Keys[name]) {
				return
			}
		}
		return
	}
	s.names.AscendGreaterOrEqual(&Key{Name: after}, func(k *Key) bool {
		return k.Name == after || fn(k)
	})
}

func newNameIndex() *btree.BTreeG[*Key] {
	return btree.NewG(32, func(a, b *Key) bool { return a.Name < b.Name })
}

// TangKeys are the Tang keys not destroyed, by name, found without going
// through every key.
func (s *State) TangKeys() []*Key {
	if s.tang == nil {
		return scanTangKeys(s)
	}
	out := make([]*Key, 0, len(s.tang))
	for _, name := range sortedKeys(s.tang) {
		out = append(out, s.Keys[name])
	}
	return out
}

func scanTangKeys(s *State) []*Key {
	var out []*Key
	for _, name := range sortedKeys(s.Keys) {
		if k := s.Keys[name]; k.Tang() != nil && k.State != KeyDestroyed {
			out = append(out, k)
		}
	}
	return out
}

// indexKey updates the indexes for the key name, which an entry wrote.
func (s *State) indexKey(name string) {
	s.indexTang(name)
	s.indexShared(name)
	s.indexID(name)
	if k := s.Keys[name]; s.names != nil && k != nil {
		s.names.ReplaceOrInsert(k)
	}
}

// reindex builds the indexes from every key and nonce.
func (s *State) reindex() {
	s.names = newNameIndex()
	for _, k := range s.Keys {
		s.names.ReplaceOrInsert(k)
	}
	s.reindexNonces()
	s.reindexRest()
}

// reindexRest builds the indexes other than names from every key.
func (s *State) reindexRest() {
	ids := make(map[string]string, len(s.Keys))
	for name, k := range s.Keys {
		indexKeyID(ids, name, k)
	}
	s.reindexRestWithIDs(ids)
}

// reindexRestWithIDs is reindexRest with the ID index built already (a
// restore builds it on another goroutine).
func (s *State) reindexRestWithIDs(ids map[string]string) {
	s.ids = ids
	s.tang, s.shared = map[string]struct{}{}, map[string]struct{}{}
	for name := range s.Keys {
		s.indexTang(name)
		s.indexShared(name)
	}
}

// indexTang updates the Tang index for the key name.
func (s *State) indexTang(name string) {
	if s.tang == nil {
		return
	}
	if k := s.Keys[name]; k != nil && k.Tang() != nil && k.State != KeyDestroyed {
		s.tang[name] = struct{}{}
	} else {
		delete(s.tang, name)
	}
}

// Node is a member of the cluster.
type Node struct {
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	APIAddr    string `json:"api_addr"`
	GossipAddr string `json:"gossip_addr"`
	SignKey    []byte `json:"sign_key"` // Ed25519 public key
	EncKey     []byte `json:"enc_key"`  // edwards25519 key that deals are encrypted to
	Index      uint32 `json:"index"`    // share index, fixed for the node's life in the cluster
	Holder     bool   `json:"holder"`   // holds a share of the current epoch
	Leaving    bool   `json:"leaving"`  // removed; stays until the resharing without it completes
	// Pending is a node admitted once the cluster had its key, until its
	// promotion (promote_node, autopilot.go): it is in no resharing round
	// and holds no share until then.
	Pending bool `json:"pending,omitempty"`
}

// Operator is a person or tool that signs commands.
type Operator struct {
	ID        string `json:"id"` // PrincipalID(PublicKey)
	Name      string `json:"name"`
	PublicKey []byte `json:"public_key"`
	Admin     bool   `json:"admin"`
}

// Rule grants a principal operations on a key, or on every key whose name
// starts with a prefix when Key ends in "*".
type Rule struct {
	ID        string   `json:"id"`
	Principal string   `json:"principal"`
	Key       string   `json:"key"`
	Ops       []string `json:"ops"`
}

// Key is a key's metadata and sealed material.
type Key struct {
	// ID never changes and never names another key (keyids.go).
	ID        string `json:"id,omitempty"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	Version   uint64 `json:"version"`
	State     string `json:"state"`
	CreatedAt int64  `json:"created_at"` // Unix nanoseconds, the leader's append time
	UpdatedAt int64  `json:"updated_at"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
	R         []byte `json:"r,omitempty"`
	Sealed    []byte `json:"sealed,omitempty"`
	// KeyDetail holds the fields only some keys have; nil when the key
	// has none of them (read them with Detail, change them with SetDetail).
	*KeyDetail
}

// KeyDetail is the part of a Key that only some types of key use. A
// plain secret key has none of it, and the state may hold hundreds of
// thousands of those: behind one pointer these fields cost such a key 8
// bytes instead of 72 (docs/scale.md, "A smaller key struct (session
// 12)"). Embedded in Key, its fields encode as Key's own, in the same
// place and order, so a key's JSON is the same as when they were Key's
// fields.
//
// A key in the state is never changed in place, and a copy of a key
// shares its KeyDetail: so it is read through Detail, which gives a copy,
// and set only with SetDetail, which gives the key a KeyDetail of its own.
type KeyDetail struct {
	// Public, AssembleTTL, Access and Tang are as in CreateKey.
	Public      []byte        `json:"public,omitempty"`
	AssembleTTL time.Duration `json:"assemble_ttl,omitempty"`
	Access      *Access       `json:"access,omitempty"`
	Tang        *TangKey      `json:"tang,omitempty"`
	// RSA is a threshold RSA key's deal (rsathreshold.go).
	RSA   *RSAThresholdKey `json:"rsa_threshold,omitempty"`
	Frost *FROSTKey        `json:"frost,omitempty"`
	// Transit is a transit key's versions (transit.go).
	Transit *TransitKey `json:"transit,omitempty"`
}

// Detail is a copy of the key's KeyDetail, the zero KeyDetail when it has
// none. Being a copy, it cannot be used to change the key: SetDetail does.
func (k *Key) Detail() KeyDetail {
	if k.KeyDetail == nil {
		return KeyDetail{}
	}
	return *k.KeyDetail
}

// The methods below read one KeyDetail field each, nil-safe. Named as
// the fields, they shadow them: k.Tang, which would read through a nil
// KeyDetail, does not compile, and k.Tang() reads it.

// Public is the key's KeyDetail.Public.
func (k *Key) Public() []byte { return k.Detail().Public }

// AssembleTTL is the key's KeyDetail.AssembleTTL.
func (k *Key) AssembleTTL() time.Duration { return k.Detail().AssembleTTL }

// Access is the key's KeyDetail.Access.
func (k *Key) Access() *Access { return k.Detail().Access }

// Tang is the key's KeyDetail.Tang.
func (k *Key) Tang() *TangKey { return k.Detail().Tang }

// RSA is the key's KeyDetail.RSA.
func (k *Key) RSA() *RSAThresholdKey { return k.Detail().RSA }

// Frost is the key's KeyDetail.Frost.
func (k *Key) Frost() *FROSTKey { return k.Detail().Frost }

// Transit is the key's KeyDetail.Transit.
func (k *Key) Transit() *TransitKey { return k.Detail().Transit }

// SetDetail sets the key's KeyDetail to d, in a KeyDetail of the key's
// own (never the one it shares with the key it was copied from), or to
// nil when d is the zero KeyDetail.
func (k *Key) SetDetail(d KeyDetail) {
	if reflect.ValueOf(d).IsZero() {
		k.KeyDetail = nil
		return
	}
	k.KeyDetail = &d
}

// Reshare is a resharing round in progress: the current holders deal the
// cluster secret to Members; the first DKG is a Fresh round, where every
// member deals a random secret.
type Reshare struct {
	Round     uint64   `json:"round"` // index of the entry that started it
	Fresh     bool     `json:"fresh"`
	Threshold int      `json:"threshold"`
	Members   []Member `json:"members"`
	Dealers   []uint32 `json:"dealers"` // who may deal: the current holders, or every member of a fresh round
	Needed    int      `json:"needed"`  // deals that qualify the round
	Deals     []Deal   `json:"deals"`   // checked deals, in log order
	Poly      [][]byte `json:"poly,omitempty"`
	Acks      []string `json:"acks"` // members that hold their new share; Threshold of them complete the round
	// Disqualified are dealers of the round a member's complaint proved
	// to have dealt it a bad sub-share (reshare.go); their deals are out
	// of the round and they may not deal again in it, nor in a round that
	// replaces it in the same epoch.
	Disqualified []uint32 `json:"disqualified,omitempty"`
	// Aborted says why the round cannot complete (too few qualified
	// dealers remain); the current epoch serves on, and an admin's
	// restart_reshare or the next membership change starts a new round.
	Aborted string `json:"aborted,omitempty"`
	// Tang are the Tang keys the round reshares (tangreshare.go).
	Tang []TangRound `json:"tang,omitempty"`
	// Frost are the FROST keys the round reshares (frostreshare.go).
	Frost []FROSTRound `json:"frost,omitempty"`
}

// Member is a node that receives a share in a resharing round.
type Member struct {
	NodeID string `json:"node_id"`
	Index  uint32 `json:"index"`
	EncKey []byte `json:"enc_key"`
}

// Deal is one accepted deal of a round.
type Deal struct {
	Dealer uint32      `json:"dealer"`
	Deal   []byte      `json:"deal"`
	Tang   []TangDeal  `json:"tang,omitempty"`  // its deals of the round's Tang keys
	Frost  []FROSTDeal `json:"frost,omitempty"` // its deals of the round's FROST keys
}

// Qualified reports whether the round has its deals and its new
// commitments.
func (r *Reshare) Qualified() bool { return r.Poly != nil }

// Member returns the round's member with the node ID, or nil.
func (r *Reshare) Member(nodeID string) *Member {
	for i := range r.Members {
		if r.Members[i].NodeID == nodeID {
			return &r.Members[i]
		}
	}
	return nil
}

// HasDealt reports whether dealer's deal is in the round.
func (r *Reshare) HasDealt(dealer uint32) bool {
	for _, d := range r.Deals {
		if d.Dealer == dealer {
			return true
		}
	}
	return false
}

// DealOf returns the deal of dealer in the round, or nil.
func (r *Reshare) DealOf(dealer uint32) []byte {
	for _, d := range r.Deals {
		if d.Dealer == dealer {
			return d.Deal
		}
	}
	return nil
}

// MayDeal reports whether dealer is one of the round's dealers and was not
// disqualified.
func (r *Reshare) MayDeal(dealer uint32) bool {
	return contains32(r.Dealers, dealer) && !contains32(r.Disqualified, dealer)
}

func contains32(list []uint32, x uint32) bool {
	for _, v := range list {
		if v == x {
			return true
		}
	}
	return false
}

// HasAcked reports whether the node acknowledged the round.
func (r *Reshare) HasAcked(nodeID string) bool {
	for _, a := range r.Acks {
		if a == nodeID {
			return true
		}
	}
	return false
}

// PrincipalID names an operator or machine by its Ed25519 public key: the
// hex of the first 16 bytes of its SHA-256 (vocab.PrincipalID).
func PrincipalID(publicKey []byte) string { return vocab.PrincipalID(publicKey) }

// Initialized reports whether the cluster has been founded.
func (s *State) Initialized() bool { return s.ClusterID != "" }

// PublicKey is the cluster public key, or nil before the first DKG.
func (s *State) PublicKey() []byte {
	if len(s.Poly) == 0 {
		return nil
	}
	return s.Poly[0]
}

// Holders are the nodes holding a share of the current epoch.
func (s *State) Holders() []*Node {
	var out []*Node
	for _, id := range sortedKeys(s.Nodes) {
		if n := s.Nodes[id]; n.Holder {
			out = append(out, n)
		}
	}
	return out
}

// NodeByIndex finds the node with a share index.
func (s *State) NodeByIndex(index uint32) *Node {
	for _, n := range s.Nodes {
		if n.Index == index {
			return n
		}
	}
	return nil
}

// Allowed reports whether a principal may do op on the key named name.
func (s *State) Allowed(principal, op, name string) bool {
	if o := s.Operators[principal]; o != nil && o.Admin {
		return true
	}
	for _, r := range s.Rules {
		if r.Principal == principal && r.matches(name) && contains(r.Ops, op) {
			return true
		}
	}
	return false
}

// Grant is what allows a principal to do op on the key named name:
// "admin" for an admin operator, "rule:ID" for the first rule (by ID)
// that does, or "" if nothing does. The audit log records it.
func (s *State) Grant(principal, op, name string) string {
	if o := s.Operators[principal]; o != nil && o.Admin {
		return "admin"
	}
	for _, id := range sortedKeys(s.Rules) {
		if r := s.Rules[id]; r.Principal == principal && r.matches(name) && contains(r.Ops, op) {
			return "rule:" + r.ID
		}
	}
	return ""
}

// ReleaseBasis is what allowed a release AuthorizeRelease accepted: the
// gateway's access ("access:GATEWAY"), the machine ("machine:ID"), or
// the operator's Grant.
func (s *State) ReleaseBasis(signer string, req *ReleaseRequest) string {
	switch {
	case req.Gateway != "":
		return "access:" + req.Gateway
	case s.Machines[signer] != nil:
		return "machine:" + signer
	}
	return s.Grant(signer, req.Op, req.Key)
}

func (r *Rule) matches(name string) bool {
	if prefix, ok := strings.CutSuffix(r.Key, "*"); ok {
		return strings.HasPrefix(name, prefix)
	}
	return r.Key == name
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
