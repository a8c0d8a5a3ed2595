package fsm

import (
	"bytes"
	"slices"
)

// The recovery kit (docs/disaster-recovery.md, drill 2): a second sharing
// of the cluster key, k-of-m to recovery officers, for the day fewer than
// t nodes survive. Off by default.
//
//   - The founding command (Init.Recovery), signed by the first admin,
//     names the officers' encryption keys and k. Nothing else can ask for
//     a kit, so a kit the operators did not ask for never exists.
//   - Every holder of the current epoch deals its share to the officers
//     (recovery_deal, node-signed): a resharing deal with threshold k,
//     each sub-share encrypted to its officer. The state machine checks
//     each deal publicly (RecoveryChecker): its constant term commits to
//     the dealer's public share under the epoch's commitments, it has k
//     commitments and one sub-share per officer. Deals are kept in the
//     state, so that the kit travels in every backup.
//   - Once t holders have dealt, the kit is usable: any t of its deals
//     combine (Lagrange weights over their dealers) into a k-of-m sharing
//     of the cluster secret whose constant term is the cluster key, which
//     the state machine checks once and records (Poly, over the first t
//     dealers). Later holders' deals are still taken: a dealer that lied
//     in its encrypted sub-shares (which only the officer can see) is
//     left out at the rebuild, where the officers combine t deals whose
//     sub-shares opened for each of them.
//   - When the epoch moves on before t holders dealt, the deals of the old
//     epoch are dropped and the new epoch's holders deal anew. A usable
//     kit stays usable across epochs: it shares the same cluster secret.
//
// k-1 officers and t-1 nodes learn nothing of the cluster secret: the two
// sharings are independent polynomials with the same constant term.

// MaxRecoveryOfficers bounds a kit's officers.
const MaxRecoveryOfficers = 16

// RecoveryOfficer is a holder of a recovery share: a name for people and
// the edwards25519 key its sub-shares are encrypted to. Its share index is
// its position in the kit's Officers, from 1.
type RecoveryOfficer struct {
	Name   string `json:"name"`
	EncKey []byte `json:"enc_key"`
}

// RecoveryKitRequest is the founding admin's request for a kit.
type RecoveryKitRequest struct {
	Threshold int               `json:"threshold"` // k
	Officers  []RecoveryOfficer `json:"officers"`  // m
}

// RecoveryKit is the kit's state.
type RecoveryKit struct {
	Threshold int               `json:"threshold"`
	Officers  []RecoveryOfficer `json:"officers"`
	// Epoch is the epoch whose holders deal (or dealt) the kit.
	Epoch uint64 `json:"epoch"`
	// Deals are the holders' deals, in log order.
	Deals []Deal `json:"deals,omitempty"`
	// Poly is the kit's public polynomial over the first Threshold-of-the-
	// epoch dealers (Poly[0] is the cluster key); set once the kit is
	// usable.
	Poly [][]byte `json:"poly,omitempty"`
	// Needed is t of Epoch: how many deals make the kit usable.
	Needed int `json:"needed"`
}

// Usable reports whether enough holders dealt the kit.
func (k *RecoveryKit) Usable() bool { return k != nil && len(k.Poly) > 0 }

// DealOf returns dealer's deal, or nil.
func (k *RecoveryKit) DealOf(dealer uint32) *Deal {
	for i := range k.Deals {
		if k.Deals[i].Dealer == dealer {
			return &k.Deals[i]
		}
	}
	return nil
}

// OfficerIndexes are the officers' share indexes, 1 to m.
func (k *RecoveryKit) OfficerIndexes() []uint32 {
	out := make([]uint32, len(k.Officers))
	for i := range k.Officers {
		out[i] = uint32(i + 1)
	}
	return out
}

// RecoveryDeal is a holder's deal of its share to the kit's officers.
type RecoveryDeal struct {
	Epoch  uint64 `json:"epoch"`
	Dealer uint32 `json:"dealer"`
	Deal   []byte `json:"deal"`
}

// RecoveryChecker checks recovery deals; the state machine's DealChecker
// implements it. Without it, a kit cannot be asked for.
type RecoveryChecker interface {
	// CheckRecoveryDeal verifies dealer's deal for kit: a resharing of the
	// dealer's share under epochPoly to the kit's officers, threshold
	// kit.Threshold.
	CheckRecoveryDeal(kit *RecoveryKit, epochPoly [][]byte, dealer uint32, deal []byte) error
	// CombineRecovery computes the kit's public polynomial from deals (a
	// reshare's Lagrange combination over their dealers).
	CombineRecovery(deals []Deal) ([][]byte, error)
}

func checkRecoveryRequest(r *RecoveryKitRequest) *Error {
	m := len(r.Officers)
	switch {
	case m < 1 || m > MaxRecoveryOfficers:
		return errorf(CodeInvalid, "a recovery kit has 1 to %d officers, got %d", MaxRecoveryOfficers, m)
	case r.Threshold < 1 || r.Threshold > m:
		return errorf(CodeInvalid, "the recovery threshold must be 1 to %d (the officers), got %d", m, r.Threshold)
	}
	for i, o := range r.Officers {
		if o.Name == "" || len(o.Name) > MaxNameLen {
			return errorf(CodeInvalid, "recovery officer %d: name must be 1 to %d characters", i+1, MaxNameLen)
		}
		if len(o.EncKey) != pointLen {
			return errorf(CodeInvalid, "recovery officer %q: encryption key must be %d bytes", o.Name, pointLen)
		}
		for _, p := range r.Officers[:i] {
			if p.Name == o.Name || bytes.Equal(p.EncKey, o.EncKey) {
				return errorf(CodeInvalid, "recovery officer %q is named twice, or shares %q's key", o.Name, p.Name)
			}
		}
	}
	return nil
}

// newRecoveryKit is the kit an Init asks for, before any deal.
func newRecoveryKit(r *RecoveryKitRequest) *RecoveryKit {
	k := &RecoveryKit{Threshold: r.Threshold, Officers: make([]RecoveryOfficer, len(r.Officers))}
	for i, o := range r.Officers {
		k.Officers[i] = RecoveryOfficer{Name: o.Name, EncKey: bytes.Clone(o.EncKey)}
	}
	return k
}

// MayDealRecovery reports whether the holder with share index idx should
// deal the kit now: a kit is asked for, the cluster key exists, and idx
// has not dealt at this epoch.
func (s *State) MayDealRecovery(idx uint32) bool {
	k := s.Recovery
	if k == nil || s.Epoch == 0 {
		return false
	}
	if k.Epoch != s.Epoch {
		return !k.Usable()
	}
	return k.DealOf(idx) == nil
}

func (t *transition) recoveryDeal(d *RecoveryDeal) *Error {
	s := t.s
	if d == nil {
		return errorf(CodeInvalid, "recovery_deal command is empty")
	}
	rc, ok := t.fsm.checker.(RecoveryChecker)
	if !ok {
		return errorf(CodeInvalid, "this state machine cannot check recovery deals")
	}
	k := s.Recovery
	n := s.Nodes[t.signer]
	switch {
	case k == nil:
		return errorf(CodeState, "the cluster has no recovery kit")
	case s.Epoch == 0:
		return errorf(CodeState, "the cluster key does not exist yet")
	case d.Epoch != s.Epoch:
		return errorf(CodeConflict, "recovery deal of epoch %d, the epoch is %d", d.Epoch, s.Epoch)
	case n == nil || !n.Holder || n.Leaving:
		return errorf(CodeDenied, "%s does not hold a share of epoch %d", t.signer, s.Epoch)
	case n.Index != d.Dealer:
		return errorf(CodeDenied, "%s has share index %d, not %d", t.signer, n.Index, d.Dealer)
	case k.Epoch != s.Epoch && k.Usable():
		return errorf(CodeExists, "the recovery kit was dealt at epoch %d", k.Epoch)
	case k.Epoch == s.Epoch && k.DealOf(d.Dealer) != nil:
		return errorf(CodeExists, "holder %d already dealt the recovery kit", d.Dealer)
	}
	if err := rc.CheckRecoveryDeal(k, s.Poly, d.Dealer, d.Deal); err != nil {
		return errorf(CodeInvalid, "recovery deal of %s refused: %v", t.signer, err)
	}
	nk := *k
	if nk.Epoch != s.Epoch {
		nk.Epoch, nk.Deals, nk.Poly = s.Epoch, nil, nil
	}
	nk.Needed = s.Threshold
	nk.Deals = append(slices.Clip(nk.Deals), Deal{Dealer: d.Dealer, Deal: bytes.Clone(d.Deal)})
	if !nk.Usable() && len(nk.Deals) >= nk.Needed {
		poly, err := rc.CombineRecovery(nk.Deals[:nk.Needed])
		if err != nil {
			return errorf(CodeInvalid, "combining the recovery kit: %v", err)
		}
		if len(poly) == 0 || len(s.Poly) == 0 || !bytes.Equal(poly[0], s.Poly[0]) {
			return errorf(CodeInvalid, "the recovery kit's deals do not share the cluster key")
		}
		nk.Poly = poly
	}
	s.Recovery = &nk
	return nil
}

// Rebuild replaces every member after fewer than t survived: the new
// nodes, with their share indexes, and the recovery officers' deals of
// their kit shares to them (docs/disaster-recovery.md). The rebuilt
// sharing is the next epoch, of the same cluster key: every secret sealed
// to it opens again. Keys with sharings of their own (Tang, FROST,
// threshold RSA) are destroyed: their shares were the lost nodes'. An admin signs
// it; it is written offline into each new node's copy of a backup, after
// the backup's last entry, and every replica checks it as it replays it.
type Rebuild struct {
	// Holders are the t holders whose kit deals the officers combined
	// their kit shares over.
	Holders []uint32 `json:"holders"`
	// Threshold is t of the rebuilt sharing.
	Threshold int     `json:"threshold"`
	Nodes     []*Node `json:"nodes"`
	// Deals are the officers' deals (at least the kit's threshold, from
	// distinct officers) to Nodes, each a resharing of the officer's kit
	// share; their encoding belongs to the RebuildChecker.
	Deals [][]byte `json:"deals"`
}

// RebuildChecker checks a rebuild's officer deals; the state machine's
// DealChecker implements it.
type RebuildChecker interface {
	// CheckRebuild verifies the officers' deals against the kit's public
	// polynomial over holders (at least kit.Threshold from distinct
	// officers, each to exactly the indexes, threshold t) and returns the
	// rebuilt sharing's public polynomial, whose constant term is the
	// kit's.
	CheckRebuild(kit *RecoveryKit, holders []uint32, deals [][]byte, t int, indexes []uint32) ([][]byte, error)
}

func (t *transition) rebuild(r *Rebuild) *Error {
	s := t.s
	if r == nil {
		return errorf(CodeInvalid, "rebuild command is empty")
	}
	rc, ok := t.fsm.checker.(RebuildChecker)
	if !ok {
		return errorf(CodeInvalid, "this state machine cannot check a rebuild")
	}
	if !s.Recovery.Usable() {
		return errorf(CodeState, "the cluster has no usable recovery kit: nothing can rebuild its key")
	}
	n := len(r.Nodes)
	switch {
	case n < 1 || n > MaxNodes:
		return errorf(CodeInvalid, "a rebuild names 1 to %d nodes, got %d", MaxNodes, n)
	case r.Threshold < DefaultThreshold(n) || r.Threshold > n:
		return errorf(CodeInvalid, "the rebuilt threshold must be %d to %d for %d nodes, got %d", DefaultThreshold(n), n, n, r.Threshold)
	}
	nodes := map[string]*Node{}
	indexes := make([]uint32, n)
	var next uint32
	for i, in := range r.Nodes {
		if in == nil {
			return errorf(CodeInvalid, "rebuild node %d is empty", i+1)
		}
		nd := *in
		if err := checkNode(&nd); err != nil {
			return err
		}
		if nd.Index == 0 || slices.Contains(indexes[:i], nd.Index) {
			return errorf(CodeInvalid, "node %q: share index %d is 0 or taken", nd.ID, nd.Index)
		}
		for _, m := range nodes {
			if m.ID == nd.ID || m.RaftAddr == nd.RaftAddr || m.APIAddr == nd.APIAddr || m.GossipAddr == nd.GossipAddr {
				return errorf(CodeInvalid, "nodes %q and %q share an ID or an address", m.ID, nd.ID)
			}
		}
		nd.Holder, nd.Leaving, nd.Pending = true, false, false
		nodes[nd.ID] = &nd
		indexes[i] = nd.Index
		next = max(next, nd.Index+1)
	}
	poly, err := rc.CheckRebuild(s.Recovery, r.Holders, r.Deals, r.Threshold, indexes)
	if err != nil {
		return errorf(CodeInvalid, "rebuild refused: %v", err)
	}
	if len(poly) == 0 || len(s.Poly) == 0 || !bytes.Equal(poly[0], s.Poly[0]) {
		return errorf(CodeInvalid, "rebuild refused: the officers' deals do not share the cluster key")
	}
	// The kit shares the cluster key only: a Tang, FROST, transit or
	// threshold RSA key was shared among (or sealed to) the lost nodes alone, and is
	// gone with them. Destroyed here, it says so, and no round waits for
	// its deals.
	for name, k := range s.Keys { // each key's change is its own: the order does not matter
		if d := k.Detail(); k.State == KeyDestroyed || d.Tang == nil && d.Frost == nil && d.RSA == nil && d.Transit == nil {
			continue
		}
		k = t.editKey(name)
		k.State, k.R, k.Sealed = KeyDestroyed, nil, nil
		d := k.Detail()
		d.Tang, d.RSA, d.Frost, d.Transit = nil, nil, nil, nil
		k.SetDetail(d)
		k.UpdatedAt = t.now
		t.keyChanged(name)
		s.Destroyed = t.index
	}
	s.Nodes = nodes
	s.NextIndex = max(s.NextIndex, next)
	s.Epoch++
	s.Threshold = r.Threshold
	s.Poly = poly
	s.Reshare, s.LastRound = nil, nil
	return nil
}
