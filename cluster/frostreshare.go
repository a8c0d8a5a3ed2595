package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// FROST keys and transit versions follow membership
// (fsm/frostreshare.go, fsm/sharings.go), by one path, each sharing named
// by its reference (fsm.SharingRef): a holder deals its share of each
// sharing a round reshares with its deal of the cluster
// key, on the same curve and with the same encryption, bound to the key;
// a member opens and checks its sub-shares as soon as a deal is logged
// (and complains against a bad one), combines its new share of each key
// with its cluster share, and keeps it in the share store beside it, by
// frostStoreID: promoted and erased with the epoch's share, and erased
// when the key is destroyed.

// CheckFROSTDeal checks a holder's resharing of its share of a FROST key:
// to the round's members at its threshold, C_0 the dealer's public share
// under the key's commitments.
func (dealChecker) CheckFROSTDeal(r *fsm.Reshare, key *fsm.FROSTKey, dealer uint32, b []byte) error {
	d, err := decodeDeal(b)
	if err != nil {
		return err
	}
	if d.Dealer != dealer {
		return fmt.Errorf("deal names dealer %d, signed by %d", d.Dealer, dealer)
	}
	return shamir.VerifyReshareDeal(d, &shamir.PublicPoly{Commits: key.Commits}, r.Threshold, memberIndexes(r))
}

// CombineFROST computes a FROST key's new commitments from its holders'
// deals, and checks that the public key is the key's.
func (dealChecker) CombineFROST(r *fsm.Reshare, key *fsm.FROSTKey, raw [][]byte) ([][]byte, error) {
	if len(raw) < key.Threshold {
		return nil, fmt.Errorf("%d deals, %d needed", len(raw), key.Threshold)
	}
	deals := make([]*shamir.Deal, len(raw))
	for i, b := range raw {
		d, err := decodeDeal(b)
		if err != nil {
			return nil, err
		}
		deals[i] = d
	}
	_, poly, err := shamir.CombineReshare(deals, nil, 0)
	if err != nil {
		return nil, err
	}
	if !shamir.SamePublicKey(poly, &shamir.PublicPoly{Commits: key.Commits}) {
		return nil, errors.New("the combined public key is not the key's")
	}
	return poly.Commits, nil
}

// CheckFROSTComplaint upholds member's complaint against dealer's deal of
// the FROST key name when its proof shows the sub-share bad.
func (dealChecker) CheckFROSTComplaint(clusterID string, r *fsm.Reshare, m *fsm.Member, dealer uint32, name string, deal, proof []byte) error {
	d, err := decodeDeal(deal)
	if err != nil {
		return err
	}
	c, err := decodeComplaintProof(proof)
	if err != nil {
		return err
	}
	if c.Dealer != dealer || c.Recipient != m.Index {
		return fmt.Errorf("the proof is of dealer %d's sub-share to %d, not %d's to %d", c.Dealer, c.Recipient, dealer, m.Index)
	}
	return shamir.VerifyDealComplaint(d, m.EncKey, c, frostDealContext(clusterID, r.Round, name))
}

// frostDealContext binds a FROST key's deal in a round to the key.
func frostDealContext(clusterID string, round uint64, name string) []byte {
	return append(dealContext(clusterID, round), "\x00frost\x00"+name...)
}

// frostStoreID names a FROST key's share in the share store: its name
// and public key, so that a key made again under the same name never
// finds the old one's share.
func frostStoreID(name string, fk *fsm.FROSTKey) string {
	if len(fk.Commits) == 0 {
		return name
	}
	return name + "/" + hex.EncodeToString(fk.Commits[0])
}

// dealFROST deals this node's share of each FROST key the round reshares
// that it holds a share of, to the round's members.
func (n *Node) dealFROST(v roundView) ([]fsm.FROSTDeal, error) {
	r := v.round
	var out []fsm.FROSTDeal
	for _, e := range r.Frost {
		k, ok := v.frost[e.Key]
		if !ok || !bytes.Equal(k.fk.Commits[0], e.Public) || !holdsFROST(k.fk, n.id.NodeID, v.me.Index) {
			continue
		}
		sh, err := n.sharingShare(e.Key, k.fk, k.sealCtx)
		if err != nil {
			return nil, fmt.Errorf("%s key %q: %w", fsm.KeyTypeFROST, e.Key, err)
		}
		d, err := shamir.NewReshareDeal(rand.Reader, sh, r.Threshold, recipients(r), frostDealContext(v.clusterID, r.Round, e.Key))
		sh.Erase()
		if err != nil {
			return nil, fmt.Errorf("%s key %q: %w", fsm.KeyTypeFROST, e.Key, err)
		}
		if h := testHooks.Load(); h != nil && h.tamperFROST != nil {
			h.tamperFROST(n.id.NodeID, e.Key, d)
		}
		b, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		out = append(out, fsm.FROSTDeal{Key: e.Key, Deal: b})
	}
	return out, nil
}

// holdsFROST reports whether the key has a share for node id at index.
func holdsFROST(fk *fsm.FROSTKey, id string, index uint32) bool {
	return slices.ContainsFunc(fk.Shares, func(sh fsm.FROSTShare) bool { return sh.NodeID == id && sh.Index == index })
}

// checkFROSTDeals opens this member's sub-shares of a dealer's FROST
// deals in round r, and complains against the first that is bad (bad is
// then true).
func (n *Node) checkFROSTDeals(ctx context.Context, clusterID string, r *fsm.Reshare, rec fsm.Deal, me *fsm.Member, encPriv []byte) (bad bool, err error) {
	for _, fd := range rec.Frost {
		if r.FROSTRoundOf(fd.Key) == nil {
			continue
		}
		d, err := decodeDeal(fd.Deal)
		if err != nil {
			return false, err
		}
		fctx := frostDealContext(clusterID, r.Round, fd.Key)
		sub, err := shamir.OpenDeal(d, me.Index, encPriv, fctx)
		if err == nil {
			clear(sub)
			continue
		}
		if !errors.Is(err, shamir.ErrDecrypt) && !errors.Is(err, shamir.ErrBadShare) {
			return false, err
		}
		n.log.Warn("complaining against a deal of an "+fsm.KeyTypeFROST+" key", "round", r.Round, "dealer", d.Dealer, "key", fd.Key, "err", err)
		c, err := shamir.NewDealComplaint(rand.Reader, d, me.Index, encPriv, fctx)
		if err != nil {
			return true, err
		}
		return true, n.submitComplaint(ctx, r.Round, d.Dealer, fd.Key, c)
	}
	return false, nil
}

// combineFROST opens this member's sub-shares of every FROST key the
// qualified round r reshares, combines its new share of each and checks
// it against the commitments the state fixed for the key.
func combineFROST(clusterID string, r *fsm.Reshare, me *fsm.Member, encPriv []byte, es *epochShare) error {
	for _, e := range r.Frost {
		if e.Commits == nil {
			continue
		}
		dealers, raw := r.FROSTDealsOf(e.Key)
		fctx := frostDealContext(clusterID, r.Round, e.Key)
		deals := make([]*shamir.Deal, len(raw))
		opened := map[uint32][]byte{}
		var err error
		for i, b := range raw {
			if deals[i], err = decodeDeal(b); err != nil {
				break
			}
			var sub []byte
			if sub, err = shamir.OpenDeal(deals[i], me.Index, encPriv, fctx); err != nil {
				err = fmt.Errorf("opening the deal of %s key %q of %d: %w", fsm.KeyTypeFROST, e.Key, dealers[i], err)
				break
			}
			opened[dealers[i]] = sub
		}
		var sh *shamir.Share
		var poly *shamir.PublicPoly
		if err == nil {
			sh, poly, err = shamir.CombineReshare(deals, opened, me.Index)
		}
		for _, b := range opened {
			clear(b)
		}
		if err == nil && !slices.EqualFunc(poly.Commits, e.Commits, bytes.Equal) {
			sh.Erase()
			err = errors.New("combined commitments differ from the state's")
		}
		if err != nil {
			return fmt.Errorf("%s key %q: %w", fsm.KeyTypeFROST, e.Key, err)
		}
		if es.Frost == nil {
			es.Frost = map[string]*shamir.Share{}
		}
		es.Frost[frostStoreID(e.Key, &fsm.FROSTKey{Commits: e.Commits})] = sh
	}
	return nil
}

// destroyedFROST are the store IDs of the FROST shares the store holds
// whose keys the view no longer has (destroyed).
func (n *Node) destroyedFROST(v roundView) []string {
	var gone []string
	for _, id := range n.shares.frostIDs() {
		live := false
		for ref, k := range v.frost {
			live = live || frostStoreID(ref, k.fk) == id
		}
		if !live {
			gone = append(gone, id)
		}
	}
	return gone
}
