package cluster

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// Service is what every gateway adapts to its protocol. *Node implements
// it; gateways hold the interface, so a test can stand in a fake.
type Service interface {
	// Identity is the node's public identity, answered before it joins.
	Identity() Identity
	// Membership is the CA and node certificates, nil before joining.
	Membership() (caCert, nodeCert []byte)
	// Start joins an unjoined node to a cluster.
	Start(ctx context.Context, req *StartRequest) error
	// Status is this node's view of the cluster. It needs no quorum.
	Status(ctx context.Context) (*Status, error)
	// Submit commits an operator-signed command.
	Submit(ctx context.Context, cmd *fsm.Signed) (*fsm.Result, error)
	// Keys lists a page of the keys the principal may read, at a
	// linearizable read: up to limit keys (at most api.MaxKeysPage; 0:
	// that many) whose names sort after `after`, in name order, and the
	// name to ask the next page after ("" when no key is left).
	Keys(ctx context.Context, principal, after string, limit int) (keys []*fsm.Key, next string, err error)
	// Key shows one key's metadata, at a linearizable read.
	Key(ctx context.Context, principal, name string) (*fsm.Key, error)
	// Release relays a blind release for an operator's signed release
	// request (op get, or cas before a swap), which carries an ephemeral
	// key: the holders' partials sealed to it. The node never holds the
	// secret.
	Release(ctx context.Context, req *fsm.Signed) (*SealedRelease, error)
	// CompareAndSwap commits an operator's signed replace_key, whose
	// ExpectVersion the client read in the blind release it compared: the
	// swap happens only if the key is still at that version.
	CompareAndSwap(ctx context.Context, replace *fsm.Signed) (*fsm.Key, error)
	// Principal finds the operator an Ed25519 public key belongs to.
	// Gateways call AuthorizeOperator, which calls it.
	Principal(ctx context.Context, publicKey []byte) (*fsm.Operator, error)
}

var _ Service = (*Node)(nil)

// SignService makes signatures by quorum (frost.go): Sign takes an
// operator's signed signing request (op sign). *Node implements it;
// gateways that find it behind their Service serve signing.
type SignService interface {
	Sign(ctx context.Context, req *fsm.Signed) (*api.Signature, error)
}

var _ SignService = (*Node)(nil)

// SymmetricService answers the operations of the symmetric assembled keys
// (AES-CBC encrypt and decrypt, HMAC mac and verify: assembledsym.go) for
// an operator's signed request. *Node implements it.
type SymmetricService interface {
	Symmetric(ctx context.Context, req *fsm.Signed) (*api.Symmetric, error)
}

var _ SymmetricService = (*Node)(nil)

// LegacyService is what the legacy gateways (kxd, Tang, Keyless SSL) need
// besides Service: releases and exchanges the node signs for clients it
// authorized itself, and lookups in its applied state. *Node implements it.
type LegacyService interface {
	Service
	ReleaseFor(ctx context.Context, gateway, name, client string) ([]byte, *fsm.Key, error)
	Exchange(ctx context.Context, name string, point []byte, client string) ([]byte, error)
	// ThresholdRSA computes input^d mod n with an rsa-threshold key, by
	// quorum, for a client the gateway authorized (rsa.go).
	ThresholdRSA(ctx context.Context, gateway, name string, input []byte, client string) ([]byte, error)
	// SignFor signs msg by quorum with a key open to the gateway, for a
	// client the gateway admitted (frost.go).
	SignFor(ctx context.Context, gateway, name string, msg []byte, client string) (*api.Signature, error)
	LocalKey(name string) *fsm.Key
	LocalTangKey(kid string) *fsm.Key
	LocalKeys() ([]*fsm.Key, uint64)
	// LocalTangKeys is the metadata of the live Tang keys, found without
	// going through every key.
	LocalTangKeys() []*fsm.Key
	// WatchApplied is the applied index and a channel closed at the next
	// apply: a gateway that keeps keys in memory re-checks them then.
	WatchApplied() (uint64, <-chan struct{})
	// ReportHeld replaces the list of keys a gateway holds in memory,
	// which the node's status reports.
	ReportHeld(gateway string, held []HeldKey)
}

var _ LegacyService = (*Node)(nil)

// MachineService is the boot agent's flow (klefki's, signed end to end):
// machines unlock with client-side combine, and operators list the
// machines and the sessions waiting for an approval. *Node implements it.
type MachineService interface {
	MachineUnlock(ctx context.Context, sg *fsm.Signed, addr string, hold time.Duration) (out *MachineUnlock, held bool, err error)
	Machines(ctx context.Context) ([]*fsm.Machine, error)
	Sessions(ctx context.Context) ([]*fsm.Session, error)
	SubmitKey(ctx context.Context, cmd *fsm.Signed) error
	TakeSubmittedKey(ctx context.Context, req *fsm.GetKeyRequest, addr string) ([]byte, error)
	// LocalMachine finds a machine by its klefki ID in the node's applied
	// state, without a read index; nil if there is none.
	LocalMachine(klefkiID string) *fsm.Machine
}

var _ MachineService = (*Node)(nil)

// The status types live in package cluster/api, which clients decode
// them with.
type (
	Status       = api.Status
	MemberStatus = api.MemberStatus
	RoundStatus  = api.RoundStatus
	// SealedRelease is a blind release, which the client opens.
	SealedRelease = api.SealedRelease
)

type nodeStatus struct {
	ID        string `json:"id"`
	RaftState string `json:"raft_state"`
	Applied   uint64 `json:"applied"` // Raft's: entries merely queued for the state machine count
	// StateApplied is the index the state machine has applied (a new
	// member's promotion waits for it: promote.go).
	StateApplied uint64    `json:"state_applied"`
	StateHash    string    `json:"state_hash"`
	Epoch        uint64    `json:"epoch"`
	Members      []string  `json:"members"` // the nodes this node's state lists
	Held         []HeldKey `json:"held,omitempty"`
	Diverged     string    `json:"diverged,omitempty"`
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	rt, err := n.joined()
	if err != nil {
		writeRPC(w, nil, err)
		return
	}
	writeRPC(w, n.localStatus(rt), nil)
}

func (n *Node) localStatus(rt *runtime) nodeStatus {
	// The hash is of the state machine, whose own applied index can trail
	// Raft's by entries that never reach it (no-ops, configuration).
	ns := nodeStatus{ID: n.id.NodeID, RaftState: n.raftState().String(), Applied: n.appliedIndex(), Held: n.Held()}
	if h, err := n.fsm.Hash(); err == nil {
		ns.StateHash = hex.EncodeToString(h[:])
	}
	if d := n.cons.diverged.Load(); d != nil {
		ns.Diverged = d.String()
	}
	n.fsm.Read(func(s *fsm.State) {
		ns.StateApplied, ns.Epoch = s.Applied, s.Epoch
		for id := range s.Nodes {
			ns.Members = append(ns.Members, id)
		}
	})
	return ns
}

// Status gathers this node's state and asks every member for its Raft
// state and applied index, each within a second.
func (n *Node) Status(ctx context.Context) (*Status, error) {
	rt, err := n.joined()
	if err != nil {
		return nil, err
	}
	st := &Status{Node: n.id.NodeID, Applied: n.appliedIndex()}
	_, st.Leader = n.leader()
	n.fsm.Read(func(s *fsm.State) {
		st.ClusterID, st.Epoch, st.Threshold, st.PublicKey = s.ClusterID, s.Epoch, s.Threshold, s.PublicKey()
		st.InitialNodes = s.InitialNodes
		if s.Autopilot != nil {
			st.RemoveDeadAfter = s.Autopilot.RemoveDeadAfter
		}
		for _, node := range s.Nodes {
			if node.Holder {
				st.N++
			}
			st.Members = append(st.Members, MemberStatus{ID: node.ID, APIAddr: node.APIAddr, RaftAddr: node.RaftAddr,
				GossipAddr: node.GossipAddr, Index: node.Index, Holder: node.Holder, Leaving: node.Leaving, Pending: node.Pending, SignKey: node.SignKey})
		}
		st.Recovery = recoveryStatus(s)
		if r := s.Reshare; r != nil {
			rs := &RoundStatus{Round: r.Round, Fresh: r.Fresh, Threshold: r.Threshold, Deals: len(r.Deals), Needed: r.Needed, Acks: len(r.Acks),
				Disqualified: append([]uint32(nil), r.Disqualified...), Aborted: r.Aborted}
			for _, m := range r.Members {
				rs.Members = append(rs.Members, m.NodeID)
			}
			st.Resharing = rs
		}
	})
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Index < st.Members[j].Index })
	health := map[string]string{}
	for _, m := range rt.gossip.Members() {
		health[m.Name] = gossipState(m.State)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	done := make(chan struct{})
	for i := range st.Members {
		m := &st.Members[i]
		m.Health = health[m.ID]
		if m.Health == "" {
			m.Health = "unknown"
		}
		go func() {
			defer func() { done <- struct{}{} }()
			var ns nodeStatus
			if m.ID == n.id.NodeID {
				ns = n.localStatus(rt)
			} else if _, err := n.call(ctx, m.RaftAddr, statusPath, nil, &ns); err != nil {
				m.RaftState = "unreachable"
				return
			}
			m.RaftState, m.Applied, m.StateHash, m.Held, m.Diverged = ns.RaftState, ns.Applied, ns.StateHash, ns.Held, ns.Diverged
		}()
	}
	for range st.Members {
		<-done
	}
	st.FailureTolerance, st.QuorumTolerance = tolerances(st, n.servers())
	return st, nil
}

// tolerances are how many more holders and voters may fail, by what the
// answering node reached (Status). It sets each member's Voter.
func tolerances(st *Status, servers []raft.Server) (holders, voters int) {
	voter := map[string]bool{}
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voter[string(s.ID)] = true
		}
	}
	reachedHolders, reachedVoters := 0, 0
	for i := range st.Members {
		m := &st.Members[i]
		m.Voter = voter[m.ID]
		if m.RaftState == "unreachable" {
			continue
		}
		if m.Holder {
			reachedHolders++
		}
		if m.Voter {
			reachedVoters++
		}
	}
	return reachedHolders - st.Threshold, reachedVoters - (len(voter)/2 + 1)
}

func gossipState(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// Submit commits an operator-signed command.
func (n *Node) Submit(ctx context.Context, cmd *fsm.Signed) (res *fsm.Result, err error) {
	op, key := commandOf(cmd)
	defer func(start time.Time) {
		verdict := err
		if err == nil && res != nil && res.Error != nil {
			verdict = fromFSM(res.Error)
		}
		if err == nil { // the state machine decided
			n.decide(roleSubmit, cmd, "", verdict)
		}
		n.observe(ctx, op, key, start, verdict)
	}(time.Now())
	return n.submit(ctx, cmd)
}

// consistent runs fn on the state at a linearizable read index.
func (n *Node) consistent(ctx context.Context, fn func(*fsm.State)) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	idx, err := n.readIndex(ctx)
	if err != nil {
		return err
	}
	if err := n.waitApplied(ctx, idx); err != nil {
		return err
	}
	n.fsm.Read(fn)
	return nil
}

// Keys lists a page of the keys the principal may read (Service.Keys).
// Finding the page costs O(log n) in the number of keys; keys the
// principal may not read are passed over.
func (n *Node) Keys(ctx context.Context, principal, after string, limit int) ([]*fsm.Key, string, error) {
	if limit < 0 {
		return nil, "", Errorf(KindInvalid, "a page limit must not be negative")
	}
	if limit == 0 || limit > api.MaxKeysPage {
		limit = api.MaxKeysPage
	}
	var out []*fsm.Key
	next := ""
	start := time.Now()
	err := n.consistent(ctx, func(s *fsm.State) {
		s.KeysAfter(after, func(k *fsm.Key) bool {
			if !s.Allowed(principal, fsm.OpRead, k.Name) {
				return true
			}
			if len(out) == limit {
				next = out[len(out)-1].Name
				return false
			}
			out = append(out, s.KeyView(k))
			return true
		})
	})
	n.observe(ctx, opRead, "", start, err)
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Key shows one key. A key the principal may not read is reported as
// denied, not as missing, so operators can tell the two apart.
func (n *Node) Key(ctx context.Context, principal, name string) (_ *fsm.Key, err error) {
	defer func(start time.Time) { n.observe(ctx, opRead, name, start, err) }(time.Now())
	var k *fsm.Key
	var e error
	err = n.consistent(ctx, func(s *fsm.State) {
		key := s.ResolveKey(name)
		switch {
		case key == nil:
			e = Errorf(KindNotFound, "key %q does not exist", name)
		case !s.Allowed(principal, fsm.OpRead, key.Name):
			e = Errorf(KindDenied, "%s may not read key %q", principal, name)
		default:
			k = s.KeyView(key)
		}
	})
	if err != nil {
		return nil, err
	}
	return k, e
}

// Release relays an operator's blind release (op get, or op cas for the
// comparison of a compare-and-swap, which the client makes): every holder
// seals its partial to the request's ephemeral key, and this node passes
// them on with the ciphertext and the public polynomial.
func (n *Node) Release(ctx context.Context, req *fsm.Signed) (_ *SealedRelease, err error) {
	cmd := decodeCommand(req) // once, for the labels and what Release and unlock read before the checks
	op, key := labelsOf(cmd)
	defer func(start time.Time) { n.observe(ctx, op, key, start, err) }(time.Now())
	if cmd == nil || cmd.Release == nil || (cmd.Release.Op != fsm.OpGet && cmd.Release.Op != fsm.OpCAS) {
		return nil, Errorf(KindInvalid, "not a signed release request with op %q or %q", fsm.OpGet, fsm.OpCAS)
	}
	operator := false
	n.fsm.Read(func(s *fsm.State) { operator = s.Operators[req.Signer] != nil })
	if !operator {
		return nil, Errorf(KindUnauthenticated, "%q is not an operator: a machine unlocks through the machine API", req.Signer)
	}
	if len(cmd.Release.Ephemeral) == 0 {
		return nil, Errorf(KindInvalid, "a release request needs an ephemeral key: the holders seal their partials to it and the client combines (update the client)")
	}
	return n.unlock(ctx, req, cmd, "")
}

// CompareAndSwap commits keysrv's compare-and-swap of a secret, which the
// client compared in a blind release: the operator's signed replace_key,
// applied only if the key is still at the version it names (fsm's
// replace_key checks it, so the swap is linearizable).
func (n *Node) CompareAndSwap(ctx context.Context, replace *fsm.Signed) (*fsm.Key, error) {
	var cmd struct {
		Type string `json:"type"`
	}
	if replace == nil || json.Unmarshal(replace.Payload, &cmd) != nil || cmd.Type != fsm.TypeReplaceKey {
		return nil, Errorf(KindInvalid, "compare-and-swap takes a signed %s command", fsm.TypeReplaceKey)
	}
	res, err := n.submit(ctx, replace)
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// Principal finds the operator an Ed25519 public key belongs to, in this
// node's applied state. A key it does not know is refused without asking
// the leader (see checkLocally): one added a moment ago is known once this
// node applies what it knows is committed, which it waits for briefly
// (within ctx).
func (n *Node) Principal(ctx context.Context, publicKey []byte) (*fsm.Operator, error) {
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	id := fsm.PrincipalID(publicKey)
	var op *fsm.Operator
	ferr := n.checkLocally(ctx, func(s *fsm.State) *fsm.Error {
		o := s.Operators[id]
		if o == nil {
			return &fsm.Error{Code: fsm.CodeBadSignature, Message: "no operator has the key of this certificate (" + id + ")"}
		}
		c := *o
		op = &c
		return nil
	})
	if ferr != nil {
		return nil, fromFSM(ferr)
	}
	if op == nil { // an empty state (checkLocally) knows no operator yet
		return nil, Errorf(KindNoQuorum, "node %s has no state yet: it has not heard a leader since it started", n.id.NodeID)
	}
	return op, nil
}

// TransitService decrypts and derives by quorum for transit keys
// (transit.go): TransitDecrypt takes an operator's signed decryption
// request (op decrypt), TransitDerive a derivation request (op derive),
// TransitExport an export request (op export), TransitExchange an x25519
// key's exchange request (op exchange), and each relays t holders' sealed
// answers. *Node implements it;
// gateways that find it behind their Service serve transit.
type TransitService interface {
	TransitDecrypt(ctx context.Context, req *fsm.Signed) (*api.TransitDecryptReply, error)
	TransitDerive(ctx context.Context, req *fsm.Signed) (*api.TransitDecryptReply, error)
	// TransitExport relays an export request (op export): t holders'
	// shares of the version, sealed to the caller.
	TransitExport(ctx context.Context, req *fsm.Signed) (*api.TransitDecryptReply, error)
	// TransitExchange relays an x25519 key's exchange request.
	TransitExchange(ctx context.Context, req *fsm.Signed) (*api.TransitDecryptReply, error)
}

var _ TransitService = (*Node)(nil)
