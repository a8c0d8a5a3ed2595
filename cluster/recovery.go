package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// The recovery kit (fsm/recovery.go, docs/disaster-recovery.md): each
// holder of the epoch deals its share to the recovery officers, and the
// officers, k of them, rebuild the cluster key's shares on new nodes from a
// backup when fewer than t nodes survive. This file has the three parts:
// the public checks the state machine makes of a holder's deal, a node's
// dealing, and the officers' side (open a kit share from a verified state,
// deal it to new nodes, and the new nodes' combine), which runs without a
// cluster.

// recoveryHooks let tests stage attacks on the kit; nil in production.
type recoveryHooks struct {
	// tamper changes a node's recovery deal before it is proposed.
	tamper func(nodeID string, d *shamir.Deal)
}

var recoveryTestHooks atomic.Pointer[recoveryHooks]

// RecoveryContext binds a holder's deal to the officers to the cluster and
// the epoch it reshares.
func RecoveryContext(clusterID string, epoch uint64) []byte {
	b := []byte("keyquorum/recovery-kit/v1\x00" + clusterID + "\x00")
	return binary.BigEndian.AppendUint64(b, epoch)
}

// RebuildContext binds the officers' deals to the new nodes to the cluster
// they rebuild.
func RebuildContext(clusterID string) []byte {
	return []byte("keyquorum/recovery-rebuild/v1\x00" + clusterID)
}

// CheckRecoveryDeal checks a holder's deal to the officers publicly: a
// resharing of its share under the epoch's commitments, k-of-m to the
// officers.
func (dealChecker) CheckRecoveryDeal(kit *fsm.RecoveryKit, epochPoly [][]byte, dealer uint32, b []byte) error {
	d, err := decodeDeal(b)
	if err != nil {
		return err
	}
	if d.Dealer != dealer {
		return fmt.Errorf("deal names dealer %d, signed by %d", d.Dealer, dealer)
	}
	return shamir.VerifyReshareDeal(d, &shamir.PublicPoly{Commits: epochPoly}, kit.Threshold, kit.OfficerIndexes())
}

// CombineRecovery is the kit's public polynomial over deals' dealers.
func (dealChecker) CombineRecovery(raw []fsm.Deal) ([][]byte, error) {
	p, err := kitPoly(raw)
	if err != nil {
		return nil, err
	}
	return p.Commits, nil
}

func kitPoly(raw []fsm.Deal) (*shamir.PublicPoly, error) {
	deals, err := decodeKitDeals(raw)
	if err != nil {
		return nil, err
	}
	_, p, err := shamir.CombineReshare(deals, nil, 0)
	return p, err
}

func decodeKitDeals(raw []fsm.Deal) ([]*shamir.Deal, error) {
	out := make([]*shamir.Deal, len(raw))
	for i, r := range raw {
		d, err := decodeDeal(r.Deal)
		if err != nil {
			return nil, fmt.Errorf("recovery deal of %d: %w", r.Dealer, err)
		}
		out[i] = d
	}
	return out, nil
}

// mayDealRecovery reports whether this node, a holder of the epoch, has
// its part of the kit to deal.
func (n *Node) mayDealRecovery() (clusterID string, epoch uint64, kit *fsm.RecoveryKit, me *fsm.Node) {
	n.fsm.Read(func(s *fsm.State) {
		m := s.Nodes[n.id.NodeID]
		if m == nil || !m.Holder || m.Leaving || !s.MayDealRecovery(m.Index) {
			return
		}
		c, k := *m, *s.Recovery
		k.Officers = slices.Clone(k.Officers)
		clusterID, epoch, kit, me = s.ClusterID, s.Epoch, &k, &c
	})
	return
}

// dealRecovery deals this node's share of the epoch to the kit's officers.
func (n *Node) dealRecovery(ctx context.Context) error {
	clusterID, epoch, kit, me := n.mayDealRecovery()
	if kit == nil {
		return nil
	}
	share := n.shares.current(epoch)
	if share == nil {
		return fmt.Errorf("no share of epoch %d to deal to the recovery officers", epoch)
	}
	defer share.Erase()
	rs := make([]shamir.Recipient, len(kit.Officers))
	for i, o := range kit.Officers {
		rs[i] = shamir.Recipient{Index: uint32(i + 1), EncPub: o.EncKey}
	}
	d, err := shamir.NewReshareDeal(rand.Reader, share, kit.Threshold, rs, RecoveryContext(clusterID, epoch))
	if err != nil {
		return err
	}
	if h := recoveryTestHooks.Load(); h != nil && h.tamper != nil {
		h.tamper(n.id.NodeID, d)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeRecoveryDeal, RecoveryDeal: &fsm.RecoveryDeal{Epoch: epoch, Dealer: me.Index, Deal: b}})
	if err != nil {
		return err
	}
	_, err = n.submit(ctx, sg)
	return err
}

func recoveryStatus(s *fsm.State) *api.RecoveryKitStatus {
	k := s.Recovery
	if k == nil {
		return nil
	}
	st := &api.RecoveryKitStatus{Officers: len(k.Officers), Threshold: k.Threshold, Epoch: k.Epoch, Dealt: len(k.Deals), Needed: k.Needed, Usable: k.Usable()}
	if st.Needed == 0 {
		st.Needed = s.Threshold
	}
	return st
}

// The officers' side.

// KitOpening is what an officer finds in a kit: its sub-share of each
// holder's deal that opened and checked out, and why each other did not.
type KitOpening struct {
	Officer uint32
	Sub     map[uint32][]byte // dealer -> the officer's sub-share
	Bad     map[uint32]error  // dealer -> why its sub-share is unusable
}

// Erase wipes the sub-shares.
func (o *KitOpening) Erase() {
	for _, b := range o.Sub {
		clear(b)
	}
}

// OpenRecoveryKit opens officer's sub-shares of the kit in a state (from a
// backup that VerifyBackup checked), with the officer's encryption key.
func OpenRecoveryKit(s *fsm.State, officer uint32, encPriv []byte) (*KitOpening, error) {
	k := s.Recovery
	switch {
	case k == nil:
		return nil, Errorf(KindNotFound, "the cluster has no recovery kit")
	case !k.Usable():
		return nil, Errorf(KindConflict, "the recovery kit was never usable: %d of %d holders dealt it", len(k.Deals), k.Needed)
	case officer < 1 || int(officer) > len(k.Officers):
		return nil, Errorf(KindInvalid, "officer %d: the kit has officers 1 to %d", officer, len(k.Officers))
	}
	pub, err := shamir.EncryptionPublicKey(encPriv)
	if err != nil {
		return nil, Errorf(KindInvalid, "the officer's key: %v", err)
	}
	if !bytes.Equal(pub, k.Officers[officer-1].EncKey) {
		return nil, Errorf(KindDenied, "this key is not officer %d's (%s)", officer, k.Officers[officer-1].Name)
	}
	o := &KitOpening{Officer: officer, Sub: map[uint32][]byte{}, Bad: map[uint32]error{}}
	ctx := RecoveryContext(s.ClusterID, k.Epoch)
	for _, r := range k.Deals {
		d, err := decodeDeal(r.Deal)
		if err == nil {
			var sub []byte
			if sub, err = shamir.OpenDeal(d, officer, encPriv, ctx); err == nil {
				o.Sub[r.Dealer] = sub
				continue
			}
		}
		o.Bad[r.Dealer] = err
	}
	return o, nil
}

// KitShare combines an officer's share over dealers (t of the kit's
// dealers, whose sub-shares opened for every officer taking part), checked
// against the kit's public polynomial over the same dealers, whose constant
// term must be the cluster key.
func KitShare(s *fsm.State, o *KitOpening, dealers []uint32) (*shamir.Share, *shamir.PublicPoly, error) {
	k := s.Recovery
	if k == nil || !k.Usable() {
		return nil, nil, Errorf(KindConflict, "the cluster has no usable recovery kit")
	}
	raw, err := kitDeals(k, dealers, s.Threshold)
	if err != nil {
		return nil, nil, err
	}
	deals, err := decodeKitDeals(raw)
	if err != nil {
		return nil, nil, err
	}
	mine := map[uint32][]byte{}
	for _, d := range dealers {
		sub, ok := o.Sub[d]
		if !ok {
			return nil, nil, Errorf(KindInvalid, "officer %d's sub-share from holder %d did not open: %v", o.Officer, d, o.Bad[d])
		}
		mine[d] = sub
	}
	sh, p, err := shamir.CombineReshare(deals, mine, o.Officer)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(p.PublicKey(), s.PublicKey()) {
		sh.Erase()
		return nil, nil, Errorf(KindInvalid, "the kit over holders %v does not share the cluster key", dealers)
	}
	return sh, p, nil
}

// kitDeals picks dealers' deals from the kit: exactly t distinct dealers
// that dealt it.
func kitDeals(k *fsm.RecoveryKit, dealers []uint32, t int) ([]fsm.Deal, error) {
	if len(dealers) != t {
		return nil, Errorf(KindInvalid, "a kit share combines exactly %d holders' deals, got %d", t, len(dealers))
	}
	var out []fsm.Deal
	for i, d := range dealers {
		if slices.Contains(dealers[:i], d) {
			return nil, Errorf(KindInvalid, "holder %d named twice", d)
		}
		r := k.DealOf(d)
		if r == nil {
			return nil, Errorf(KindNotFound, "holder %d did not deal the kit (dealers: %v)", d, kitDealers(k))
		}
		out = append(out, *r)
	}
	return out, nil
}

func kitDealers(k *fsm.RecoveryKit) []uint32 {
	out := make([]uint32, len(k.Deals))
	for i, d := range k.Deals {
		out[i] = d.Dealer
	}
	return out
}

// KitPoly is the kit's public polynomial over dealers.
func KitPoly(s *fsm.State, dealers []uint32) (*shamir.PublicPoly, error) {
	k := s.Recovery
	if k == nil || !k.Usable() {
		return nil, Errorf(KindConflict, "the cluster has no usable recovery kit")
	}
	raw, err := kitDeals(k, dealers, s.Threshold)
	if err != nil {
		return nil, err
	}
	return kitPoly(raw)
}

// RebuildRecipient is a new node that receives a share at the rebuild:
// its share index and encryption public key.
type RebuildRecipient = shamir.Recipient

// RebuildDeal is an officer's deal of its kit share to the new nodes,
// threshold t.
func RebuildDeal(clusterID string, kitShare *shamir.Share, t int, to []RebuildRecipient) (*shamir.Deal, error) {
	return shamir.NewReshareDeal(rand.Reader, kitShare, t, to, RebuildContext(clusterID))
}

// ErrTooFewOfficers is returned by CombineRebuild when fewer than k
// officers' deals check out.
var ErrTooFewOfficers = errors.New("too few recovery officers")

// CombineRebuild is a new node's share of the rebuilt cluster key: it
// checks every officer's deal against the kit's public polynomial (so a
// deal from anyone but an officer, or of another key, is refused), needs k
// that check out from distinct officers, opens its sub-share of each, and
// combines them. The share it returns is of the cluster key kit.PublicKey()
// and checks out against the returned polynomial (threshold t).
func CombineRebuild(clusterID string, kit *shamir.PublicPoly, deals []*shamir.Deal, t int, to []RebuildRecipient, me uint32, encPriv []byte) (*shamir.Share, *shamir.PublicPoly, error) {
	idx := make([]uint32, len(to))
	for i, r := range to {
		idx[i] = r.Index
	}
	var good []*shamir.Deal
	var refused []error
	for _, d := range deals {
		if d == nil || slices.ContainsFunc(good, func(g *shamir.Deal) bool { return g.Dealer == d.Dealer }) {
			continue
		}
		if err := shamir.VerifyReshareDeal(d, kit, t, idx); err != nil {
			refused = append(refused, err)
			continue
		}
		good = append(good, d)
	}
	k := kit.Threshold()
	if len(good) < k {
		return nil, nil, fmt.Errorf("%w: %d officers' deals check out against the kit, %d are needed (%v)", ErrTooFewOfficers, len(good), k, errors.Join(refused...))
	}
	good = good[:k]
	ctx := RebuildContext(clusterID)
	mine := map[uint32][]byte{}
	defer func() {
		for _, b := range mine {
			clear(b)
		}
	}()
	for _, d := range good {
		sub, err := shamir.OpenDeal(d, me, encPriv, ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("officer %d's deal to %d: %w", d.Dealer, me, err)
		}
		mine[d.Dealer] = sub
	}
	sh, p, err := shamir.CombineReshare(good, mine, me)
	if err != nil {
		return nil, nil, err
	}
	if !shamir.SamePublicKey(kit, p) {
		sh.Erase()
		return nil, nil, errors.New("the rebuilt sharing has another key than the kit's")
	}
	return sh, p, nil
}
