package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Resharing through the log. The state machine starts a round whenever
// the member set changes (the first round, at init, is the DKG); every
// node runs driveResharing, which plays its parts:
//
//  1. a dealer of the round (a holder of the current epoch, or any member
//     of a fresh round) proposes a deal: its share (or a random secret)
//     split t'-of-n' to the round's members, each sub-share encrypted to
//     the member's encryption key, with public commitments;
//  2. the state machine checks each deal publicly and, with enough, fixes
//     the round's new commitments;
//  3. each member opens its sub-shares, checks them against the deals'
//     commitments, combines its new share, stores it, and acknowledges;
//  4. when t' members have acknowledged, the new sharing is the epoch:
//     holders erase their old shares, and leaving nodes are dropped;
//  5. a member checks each deal as it is logged, and complains when its
//     sub-share does not open or does not match the commitments: an upheld
//     complaint disqualifies the dealer (fsm/reshare.go);
//  6. a member that missed the round (down or slow) opens its new share
//     from the round's deals, which the state keeps as LastRound, when it
//     is back, with the encryption key the round dealt to, which it keeps
//     until then; or complains against one of them.
//
// docs/resharing.md describes the design.

// reshareHooks let tests stage attacks on resharing; nil in production.
type reshareHooks struct {
	// gate is asked before a node deals in a round: false makes it wait.
	gate func(nodeID string, r *fsm.Reshare) bool
	// tamper changes a node's deal before it is proposed: a cheating dealer.
	tamper func(nodeID string, d *shamir.Deal)
	// tamperTang changes a node's deal of a Tang key before it is proposed.
	tamperTang func(nodeID, key string, d *shamir.P256Deal)
	// tamperFROST changes a node's deal of a FROST key before it is
	// proposed.
	tamperFROST func(nodeID, key string, d *shamir.Deal)
}

var testHooks atomic.Pointer[reshareHooks]

func gateOpen(nodeID string, r *fsm.Reshare) bool {
	h := testHooks.Load()
	return h == nil || h.gate == nil || h.gate(nodeID, r)
}

// dealChecker gives the state machine shamir's public deal checks.
type dealChecker struct{}

func decodeDeal(b []byte) (*shamir.Deal, error) {
	var d shamir.Deal
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decoding deal: %w", err)
	}
	return &d, nil
}

func memberIndexes(r *fsm.Reshare) []uint32 {
	out := make([]uint32, len(r.Members))
	for i, m := range r.Members {
		out[i] = m.Index
	}
	return out
}

func (dealChecker) CheckDeal(r *fsm.Reshare, oldPoly [][]byte, dealer uint32, b []byte) error {
	d, err := decodeDeal(b)
	if err != nil {
		return err
	}
	if d.Dealer != dealer {
		return fmt.Errorf("deal names dealer %d, signed by %d", d.Dealer, dealer)
	}
	if r.Fresh {
		return shamir.VerifyFreshDeal(d, r.Threshold, memberIndexes(r))
	}
	return shamir.VerifyReshareDeal(d, &shamir.PublicPoly{Commits: oldPoly}, r.Threshold, memberIndexes(r))
}

func (dealChecker) CombinePublic(r *fsm.Reshare) ([][]byte, error) {
	deals, err := roundDeals(r)
	if err != nil {
		return nil, err
	}
	var poly *shamir.PublicPoly
	if r.Fresh {
		_, poly, err = shamir.CombineFresh(deals, nil, 0)
	} else {
		_, poly, err = shamir.CombineReshare(deals, nil, 0)
	}
	if err != nil {
		return nil, err
	}
	return poly.Commits, nil
}

// CheckComplaint upholds member's complaint against dealer's deal when
// its proof shows the sub-share bad (shamir.VerifyDealComplaint).
func (dealChecker) CheckComplaint(clusterID string, r *fsm.Reshare, m *fsm.Member, dealer uint32, deal, proof []byte) error {
	d, err := decodeDeal(deal)
	if err != nil {
		return err
	}
	var c shamir.DealComplaint
	dec := json.NewDecoder(bytes.NewReader(proof))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return fmt.Errorf("decoding the complaint's proof: %w", err)
	}
	if c.Dealer != dealer || c.Recipient != m.Index {
		return fmt.Errorf("the proof is of dealer %d's sub-share to %d, not %d's to %d", c.Dealer, c.Recipient, dealer, m.Index)
	}
	return shamir.VerifyDealComplaint(d, m.EncKey, &c, dealContext(clusterID, r.Round))
}

func decodeP256Deal(b []byte) (*shamir.P256Deal, error) {
	var d shamir.P256Deal
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decoding tang deal: %w", err)
	}
	return &d, nil
}

// CheckTangDeal checks a holder's resharing of its share of a Tang key
// against its public share (shamir.VerifyP256ReshareDeal).
func (dealChecker) CheckTangDeal(r *fsm.Reshare, key *fsm.TangKey, dealer uint32, publicShare, b []byte) error {
	d, err := decodeP256Deal(b)
	if err != nil {
		return err
	}
	if d.Dealer != dealer {
		return fmt.Errorf("tang deal names dealer %d, signed by %d", d.Dealer, dealer)
	}
	return shamir.VerifyP256ReshareDeal(d, publicShare, r.Threshold, memberIndexes(r))
}

// CombineTang computes the members' new public shares of a Tang key from
// its holders' deals.
func (dealChecker) CombineTang(r *fsm.Reshare, key *fsm.TangKey, raw [][]byte) (map[uint32][]byte, error) {
	deals := make([]*shamir.P256Deal, len(raw))
	for i, b := range raw {
		d, err := decodeP256Deal(b)
		if err != nil {
			return nil, err
		}
		deals[i] = d
	}
	_, commits, err := shamir.CombineP256Reshare(deals, nil, 0)
	if err != nil {
		return nil, err
	}
	out := map[uint32][]byte{}
	for _, m := range r.Members {
		if out[m.Index], err = shamir.P256PublicShareAt(commits, m.Index); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CheckTangComplaint upholds member's complaint against dealer's deal of
// a Tang key when its proof shows the sub-share bad.
func (dealChecker) CheckTangComplaint(clusterID string, r *fsm.Reshare, m *fsm.Member, dealer uint32, key *fsm.TangKey, deal, proof []byte) error {
	d, err := decodeP256Deal(deal)
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
	return shamir.VerifyP256DealComplaint(d, m.EncKey, c, tangDealContext(clusterID, r.Round, key.Kid))
}

func decodeComplaintProof(proof []byte) (*shamir.DealComplaint, error) {
	var c shamir.DealComplaint
	dec := json.NewDecoder(bytes.NewReader(proof))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decoding the complaint's proof: %w", err)
	}
	return &c, nil
}

// tangDealContext binds a Tang key's deal in a round to the key.
func tangDealContext(clusterID string, round uint64, kid string) []byte {
	return append(dealContext(clusterID, round), "\x00tang\x00"+kid...)
}

func roundDeals(r *fsm.Reshare) ([]*shamir.Deal, error) {
	deals := make([]*shamir.Deal, len(r.Deals))
	for i, rec := range r.Deals {
		d, err := decodeDeal(rec.Deal)
		if err != nil {
			return nil, err
		}
		deals[i] = d
	}
	return deals, nil
}

// dealContext binds a deal's encrypted sub-shares to the cluster and round.
func dealContext(clusterID string, round uint64) []byte {
	b := []byte("keyquorum/deal/v1\x00" + clusterID + "\x00")
	return binary.BigEndian.AppendUint64(b, round)
}

// roundView is what one step of resharing needs of the state, copied out
// under the read lock.
type roundView struct {
	clusterID string
	epoch     uint64
	poly      [][]byte
	me        *fsm.Node
	round     *fsm.Reshare
	last      *fsm.Reshare // the round that made the epoch
	// tang are the live Tang keys, by name.
	tang map[string]*fsm.TangKey
	// frost are the live sharings (FROST keys, transit versions), by
	// reference (fsm.SharingRef), with their sealed shares.
	frost map[string]roundSharing
}

// roundSharing is a sharing a round may reshare, and the context its
// shares are sealed to their holders' identity keys with.
type roundSharing struct {
	name    string
	fk      *fsm.FROSTKey
	sealCtx []byte
}

// sharingSealContext is the context a client sealed sharing sh's shares
// with (api.FROSTShareContext, api.TransitShareContext).
func sharingSealContext(clusterID string, sh fsm.Sharing) []byte {
	if sh.Key.Transit() != nil {
		return api.TransitShareContext(clusterID, sh.Key.Name, sh.Sharing.Epoch, sh.Sharing.Commits[0])
	}
	return api.FROSTShareContext(clusterID, sh.Key.Name, sh.Sharing.Epoch)
}

func (n *Node) viewRound() roundView {
	var v roundView
	n.fsm.Read(func(s *fsm.State) {
		v = roundView{clusterID: s.ClusterID, epoch: s.Epoch, poly: s.Poly}
		if me := s.Nodes[n.id.NodeID]; me != nil {
			c := *me
			v.me = &c
		}
		v.round, v.last = cloneRound(s.Reshare), cloneRound(s.LastRound)
		v.tang = map[string]*fsm.TangKey{}
		for _, k := range s.TangKeys() {
			tk := *k.Tang()
			tk.Shares = slices.Clone(k.Tang().Shares)
			v.tang[k.Name] = &tk
		}
		v.frost = map[string]roundSharing{}
		for _, sh := range s.Sharings() {
			if len(sh.Sharing.Commits) == 0 {
				continue
			}
			fk := *sh.Sharing
			fk.Shares, fk.Commits = slices.Clone(sh.Sharing.Shares), slices.Clone(sh.Sharing.Commits)
			v.frost[sh.Ref] = roundSharing{name: sh.Key.Name, fk: &fk, sealCtx: sharingSealContext(s.ClusterID, sh)}
		}
	})
	return v
}

func cloneRound(r *fsm.Reshare) *fsm.Reshare {
	if r == nil {
		return nil
	}
	b, _ := json.Marshal(r)
	var c fsm.Reshare
	json.Unmarshal(b, &c)
	return &c
}

func (n *Node) driveResharing(ctx context.Context, rt *runtime) {
	// tried reports whether a step was attempted recently, so a proposal in
	// flight is not sent twice.
	lastTry := map[string]time.Time{}
	tried := func(round uint64, what string) bool {
		key := fmt.Sprint(round, what)
		if at, ok := lastTry[key]; ok && time.Since(at) < 3*time.Second {
			return true
		}
		maps.DeleteFunc(lastTry, func(_ string, at time.Time) bool { return time.Since(at) > time.Minute })
		lastTry[key] = time.Now()
		return false
	}
	checked := map[dealKey]bool{} // deals whose sub-share to this node opened
	for {
		_, changed := n.watch()
		v := n.viewRound()
		maps.DeleteFunc(checked, func(k dealKey, _ bool) bool { return v.round == nil || k.round != v.round.Round })
		if n.reshareWork(v) || len(n.dealsToCheck(v, checked)) > 0 {
			// Act only on a state that is current: a node replaying its log
			// after a restart sees old rounds and old epochs.
			if v, err := n.currentRound(ctx); err != nil {
				n.log.Debug("resharing waits for a read index", "err", err)
			} else {
				if err := n.settleShares(v); err != nil {
					n.log.Error("settling shares", "err", err)
				}
				if err := n.settleEncKeys(ctx, v, tried); err != nil {
					n.log.Warn("rotating the encryption key", "err", err)
				}
				if n.mayRecover(v) && !tried(v.last.Round, "recover") {
					if err := n.recoverShare(ctx, v); err != nil {
						n.logStep("recovering the share of the last round", v.last.Round, err)
					}
				}
				if _, _, kit, _ := n.mayDealRecovery(); kit != nil && !tried(v.epoch, "recovery kit") {
					if err := n.dealRecovery(ctx); err != nil {
						n.logStep("dealing the recovery kit", v.epoch, err)
					}
				}
				if r := v.round; r != nil && v.me != nil {
					for _, d := range n.dealsToCheck(v, checked) {
						if !tried(r.Round, fmt.Sprint("complain", d.Dealer)) {
							if err := n.checkDeal(ctx, v, r, d, checked); err != nil {
								n.logStep("checking a deal", r.Round, err)
							}
						}
					}
					if n.mayDeal(v) && gateOpen(n.id.NodeID, r) && !tried(r.Round, "deal") {
						if err := n.deal(ctx, v); err != nil {
							n.logStep("dealing", r.Round, err)
						}
					}
					if n.mayAck(v) && !tried(r.Round, "ack") {
						if err := n.acknowledge(ctx, v); err != nil {
							n.logStep("acknowledging", r.Round, err)
						}
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

// logStep logs a failed resharing step: a conflict (another dealer was
// faster, the round was replaced) is routine, anything else a warning.
func (n *Node) logStep(step string, round uint64, err error) {
	level := slog.LevelWarn
	if KindOf(err) == KindConflict {
		level = slog.LevelDebug
	}
	n.log.Log(context.Background(), level, step, "round", round, "err", err)
}

// currentRound views the state at a read index.
func (n *Node) currentRound(ctx context.Context) (roundView, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	idx, err := n.readIndex(ctx)
	if err != nil {
		return roundView{}, err
	}
	if err := n.waitApplied(ctx, idx); err != nil {
		return roundView{}, err
	}
	return n.viewRound(), nil
}

func (n *Node) mayDeal(v roundView) bool {
	r := v.round
	return r != nil && v.me != nil && r.Aborted == "" && r.MayDeal(v.me.Index) && !r.HasDealt(v.me.Index) && !r.Qualified()
}

func (n *Node) mayAck(v roundView) bool {
	r := v.round
	return r != nil && r.Aborted == "" && r.Qualified() && r.Member(n.id.NodeID) != nil && !r.HasAcked(n.id.NodeID)
}

// mayRecover reports whether this node is a holder of the epoch without
// its share, which the last round dealt it while it was away.
func (n *Node) mayRecover(v roundView) bool {
	r := v.last
	if r == nil || v.me == nil || !v.me.Holder || r.Member(n.id.NodeID) == nil {
		return false
	}
	// A node that acknowledged the round recovers too when the share it
	// combined did not match the epoch (settleShares dropped it).
	cur, pend := n.shares.snapshot()
	return (cur == nil || cur.Epoch < v.epoch) && (pend == nil || pend.Epoch != v.epoch)
}

// dealKey names a deal of a round.
type dealKey struct {
	round  uint64
	dealer uint32
}

// dealsToCheck are the deals of the round in progress this node has not
// opened yet: it checks each as it is logged, to complain early.
func (n *Node) dealsToCheck(v roundView, checked map[dealKey]bool) []fsm.Deal {
	r := v.round
	if r == nil || r.Aborted != "" || r.Member(n.id.NodeID) == nil {
		return nil
	}
	var out []fsm.Deal
	for _, d := range r.Deals {
		if !checked[dealKey{r.Round, d.Dealer}] {
			out = append(out, d)
		}
	}
	return out
}

// checkDeal opens this node's sub-share of a deal of round r; if it is bad
// the node complains.
func (n *Node) checkDeal(ctx context.Context, v roundView, r *fsm.Reshare, rec fsm.Deal, checked map[dealKey]bool) error {
	me := r.Member(n.id.NodeID)
	d, err := decodeDeal(rec.Deal)
	if err != nil {
		return err
	}
	encPriv := n.encKey(me.EncKey)
	if encPriv == nil {
		return fmt.Errorf("round %d encrypted to key %x, which this node no longer has", r.Round, me.EncKey)
	}
	defer clear(encPriv)
	dctx := dealContext(v.clusterID, r.Round)
	sub, err := shamir.OpenDeal(d, me.Index, encPriv, dctx)
	if err == nil {
		clear(sub)
		bad, err := n.checkTangDeals(ctx, v.clusterID, r, rec, me, encPriv)
		if err != nil || bad {
			return err
		}
		if bad, err := n.checkFROSTDeals(ctx, v.clusterID, r, rec, me, encPriv); err != nil || bad {
			return err
		}
		checked[dealKey{r.Round, d.Dealer}] = true
		return nil
	}
	if !errors.Is(err, shamir.ErrDecrypt) && !errors.Is(err, shamir.ErrBadShare) {
		return err
	}
	n.log.Warn("complaining against a deal", "round", r.Round, "dealer", d.Dealer, "err", err)
	return n.complain(ctx, r.Round, d, me.Index, encPriv, dctx)
}

// checkTangDeals opens this member's sub-shares of a dealer's Tang deals
// in round r, and complains against the first that is bad (bad is then
// true).
func (n *Node) checkTangDeals(ctx context.Context, clusterID string, r *fsm.Reshare, rec fsm.Deal, me *fsm.Member, encPriv []byte) (bad bool, err error) {
	for _, td := range rec.Tang {
		e := r.TangRoundOf(td.Key)
		if e == nil {
			continue
		}
		d, err := decodeP256Deal(td.Deal)
		if err != nil {
			return false, err
		}
		tctx := tangDealContext(clusterID, r.Round, e.Kid)
		sub, err := shamir.OpenP256Deal(d, me.Index, encPriv, tctx)
		if err == nil {
			clear(sub)
			continue
		}
		if !errors.Is(err, shamir.ErrDecrypt) && !errors.Is(err, shamir.ErrBadShare) {
			return false, err
		}
		n.log.Warn("complaining against a deal of a tang key", "round", r.Round, "dealer", d.Dealer, "key", td.Key, "err", err)
		c, err := shamir.NewP256DealComplaint(rand.Reader, d, me.Index, encPriv, tctx)
		if err != nil {
			return true, err
		}
		return true, n.submitComplaint(ctx, r.Round, d.Dealer, td.Key, c)
	}
	return false, nil
}

func (n *Node) complain(ctx context.Context, round uint64, d *shamir.Deal, index uint32, encPriv, dctx []byte) error {
	c, err := shamir.NewDealComplaint(rand.Reader, d, index, encPriv, dctx)
	if err != nil {
		return err
	}
	return n.submitComplaint(ctx, round, d.Dealer, "", c)
}

// submitComplaint logs a complaint against dealer's deal of the cluster
// key (key == "") or of the Tang key named key.
func (n *Node) submitComplaint(ctx context.Context, round uint64, dealer uint32, key string, c *shamir.DealComplaint) error {
	proof, err := json.Marshal(c)
	if err != nil {
		return err
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeComplaint, Complaint: &fsm.Complaint{Round: round, Dealer: dealer, Proof: proof, Key: key}})
	if err != nil {
		return err
	}
	_, err = n.submit(ctx, sg)
	return err
}

// recoverShare opens this node's share of the epoch from the deals of the
// round that made it, which it missed, stores it and acknowledges the
// round late; or complains against a deal whose sub-share is bad.
func (n *Node) recoverShare(ctx context.Context, v roundView) error {
	r := v.last
	me := r.Member(n.id.NodeID)
	encPriv := n.encKey(me.EncKey)
	if encPriv == nil {
		return fmt.Errorf("round %d encrypted to key %x, which this node no longer has", r.Round, me.EncKey)
	}
	defer clear(encPriv)
	dctx := dealContext(v.clusterID, r.Round)
	deals, err := roundDeals(r)
	if err != nil {
		return err
	}
	for i, d := range deals {
		sub, err := shamir.OpenDeal(d, me.Index, encPriv, dctx)
		if err == nil {
			clear(sub)
			if v.round == nil || v.round.Member(n.id.NodeID) == nil {
				if bad, err := n.checkTangDeals(ctx, v.clusterID, r, r.Deals[i], me, encPriv); err != nil || bad {
					return err
				}
				if bad, err := n.checkFROSTDeals(ctx, v.clusterID, r, r.Deals[i], me, encPriv); err != nil || bad {
					return err
				}
			}
			continue
		}
		if !errors.Is(err, shamir.ErrDecrypt) && !errors.Is(err, shamir.ErrBadShare) {
			return err
		}
		if v.round != nil && v.round.Member(n.id.NodeID) != nil {
			return fmt.Errorf("dealer %d's sub-share is bad (%w): round %d in progress will give a share", d.Dealer, err, v.round.Round)
		}
		n.log.Warn("complaining against a deal of the last round", "round", r.Round, "dealer", d.Dealer, "err", err)
		return n.complain(ctx, r.Round, d, me.Index, encPriv, dctx)
	}
	sh, err := n.combineInto(v, r, v.epoch)
	if err != nil {
		return err
	}
	if err := n.shares.setCurrent(sh); err != nil {
		return err
	}
	n.log.Info("recovered the share of the round it missed", "round", r.Round, "epoch", v.epoch)
	if r.HasAcked(n.id.NodeID) {
		return nil
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeReshareAck, ReshareAck: &fsm.ReshareAck{Round: r.Round}})
	if err != nil {
		return err
	}
	_, err = n.submit(ctx, sg)
	return err
}

// reshareWork reports whether the view asks anything of this node.
func (n *Node) reshareWork(v roundView) bool {
	cur, pend := n.shares.snapshot()
	if _, _, kit, _ := n.mayDealRecovery(); kit != nil {
		return true
	}
	return n.mayDeal(v) || n.mayAck(v) || n.mayRecover(v) || n.encKeyWork(v, cur) || len(n.destroyedTang(v)) > 0 || len(n.destroyedFROST(v)) > 0 ||
		(cur != nil && cur.Epoch < v.epoch) ||
		(pend != nil && pend.Epoch <= v.epoch)
}

// settleShares makes the stored shares agree with a current view of the
// state: the share computed in a round becomes current when the round's
// epoch is the state's (and checks out against its commitments); a share
// of an older epoch is erased; a share computed in a round that was
// replaced or passed is erased.
func (n *Node) settleShares(v roundView) error {
	holder := v.me != nil && v.me.Holder
	cur, pend := n.shares.snapshot()
	if pend != nil && pend.Epoch == v.epoch && holder && (cur == nil || cur.Epoch < v.epoch) {
		if err := (&shamir.PublicPoly{Commits: v.poly}).VerifyShare(pend.Share); err != nil {
			// Combined from a deal set a complaint changed after this node
			// combined (and maybe acknowledged): the round's logged deals
			// give the right share (recoverShare), so drop this one.
			n.log.Warn("the share combined in the round does not match the epoch it made: recovering it from the round's deals",
				"round", pend.Round, "epoch", v.epoch, "err", err)
			return n.shares.erasePending()
		}
		n.log.Info("new key epoch", "epoch", v.epoch, "round", pend.Round)
		if err := n.shares.promote(); err != nil {
			return err
		}
		cur, pend = n.shares.snapshot()
	}
	if cur != nil && cur.Epoch < v.epoch {
		n.log.Info("erasing share of old epoch", "epoch", cur.Epoch, "now", v.epoch)
		if err := n.shares.eraseCurrent(); err != nil {
			return err
		}
	}
	if pend != nil && (pend.Epoch <= v.epoch || (v.round != nil && v.round.Round > pend.Round)) {
		n.log.Info("erasing share of a replaced round", "round", pend.Round)
		if err := n.shares.erasePending(); err != nil {
			return err
		}
	}
	if gone := n.destroyedTang(v); len(gone) > 0 {
		n.log.Info("erasing shares of destroyed tang keys", "count", len(gone))
		if err := n.shares.eraseTang(gone); err != nil {
			return err
		}
	}
	if gone := n.destroyedFROST(v); len(gone) > 0 {
		n.log.Info("erasing shares of destroyed "+fsm.KeyTypeFROST+" keys", "count", len(gone))
		return n.shares.eraseFROST(gone)
	}
	return nil
}

// destroyedTang are the kids of the Tang shares the store holds whose
// keys the view no longer has (destroyed).
func (n *Node) destroyedTang(v roundView) []string {
	var gone []string
	for _, kid := range n.shares.tangKids() {
		live := false
		for _, tk := range v.tang {
			live = live || tk.Kid == kid
		}
		if !live {
			gone = append(gone, kid)
		}
	}
	return gone
}

func recipients(r *fsm.Reshare) []shamir.Recipient {
	out := make([]shamir.Recipient, len(r.Members))
	for i, m := range r.Members {
		out[i] = shamir.Recipient{Index: m.Index, EncPub: m.EncKey}
	}
	return out
}

func (n *Node) deal(ctx context.Context, v roundView) error {
	r := v.round
	dctx := dealContext(v.clusterID, r.Round)
	var d *shamir.Deal
	var err error
	if r.Fresh {
		d, err = shamir.NewFreshDeal(rand.Reader, v.me.Index, r.Threshold, recipients(r), dctx)
	} else {
		share := n.shares.current(v.epoch)
		if share == nil {
			return fmt.Errorf("no share of epoch %d to deal", v.epoch)
		}
		defer share.Erase()
		d, err = shamir.NewReshareDeal(rand.Reader, share, r.Threshold, recipients(r), dctx)
	}
	if err != nil {
		return err
	}
	if h := testHooks.Load(); h != nil && h.tamper != nil {
		h.tamper(n.id.NodeID, d)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	tang, err := n.dealTang(v)
	if err != nil {
		return err
	}
	frost, err := n.dealFROST(v)
	if err != nil {
		return err
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeDeal, Deal: &fsm.DealCommand{Round: r.Round, Dealer: v.me.Index, Deal: b, Tang: tang, Frost: frost}})
	if err != nil {
		return err
	}
	_, err = n.submit(ctx, sg)
	return err
}

// dealTang deals this node's share of each Tang key the round reshares
// that it holds a share of, to the round's members.
func (n *Node) dealTang(v roundView) ([]fsm.TangDeal, error) {
	r := v.round
	var out []fsm.TangDeal
	for _, e := range r.Tang {
		tk := v.tang[e.Key]
		if tk == nil || tk.Kid != e.Kid {
			continue
		}
		mine := holderTangShare(tk, n.id.NodeID, v.me.Index)
		if mine == nil {
			continue
		}
		sh, err := n.tangShare(v.clusterID, v.epoch, tk, mine)
		if err != nil {
			return nil, fmt.Errorf("tang key %q: %w", e.Key, err)
		}
		d, err := shamir.NewP256ReshareDeal(rand.Reader, sh, r.Threshold, recipients(r), tangDealContext(v.clusterID, r.Round, tk.Kid))
		sh.Erase()
		if err != nil {
			return nil, fmt.Errorf("tang key %q: %w", e.Key, err)
		}
		if h := testHooks.Load(); h != nil && h.tamperTang != nil {
			h.tamperTang(n.id.NodeID, e.Key, d)
		}
		b, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		out = append(out, fsm.TangDeal{Key: e.Key, Deal: b})
	}
	return out, nil
}

// holderTangShare is the Tang key's share of node id at index, or nil.
func holderTangShare(tk *fsm.TangKey, id string, index uint32) *fsm.TangShare {
	for i := range tk.Shares {
		if sh := &tk.Shares[i]; sh.NodeID == id && sh.Index == index {
			return sh
		}
	}
	return nil
}

// tangShare is this node's share mine of the Tang key tk in epoch: from
// the share store, or, for a key whose shares are still sealed to the
// holders' identity keys (as created, until a round reshares it), opened
// from the state with the identity key. It is checked against its public
// share.
func (n *Node) tangShare(clusterID string, epoch uint64, tk *fsm.TangKey, mine *fsm.TangShare) (*shamir.P256Share, error) {
	var sh *shamir.P256Share
	if len(mine.Sealed) > 0 {
		encPriv, err := shamir.EncryptionKeyFromEd25519(n.id.SignKey)
		if err != nil {
			return nil, fmt.Errorf("identity key: %w", err)
		}
		sh, err = shamir.OpenP256Share(encPriv, mine.Sealed, mine.Index, TangShareContext(clusterID, tk.Kid))
		clear(encPriv)
		if err != nil {
			return nil, err
		}
	} else if sh = n.shares.tang(epoch, tk.Kid); sh == nil {
		return nil, fmt.Errorf("no share of epoch %d in the share store", epoch)
	}
	if err := shamir.CheckP256Share(sh, mine.PublicShare); err != nil {
		sh.Erase()
		return nil, err
	}
	return sh, nil
}

func (n *Node) acknowledge(ctx context.Context, v roundView) error {
	r := v.round
	_, pend := n.shares.snapshot()
	if pend == nil || pend.Round != r.Round || (&shamir.PublicPoly{Commits: r.Poly}).VerifyShare(pend.Share) != nil {
		// None yet, or one of deals a complaint has disqualified since.
		sh, err := n.combineInto(v, r, v.epoch+1)
		if err != nil {
			return err
		}
		if err := n.shares.setPending(sh); err != nil {
			return err
		}
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeReshareAck, ReshareAck: &fsm.ReshareAck{Round: r.Round}})
	if err != nil {
		return err
	}
	_, err = n.submit(ctx, sg)
	return err
}

// combineInto opens this node's sub-shares of a qualified round, combines
// its new share of epoch and checks it against the round's commitments.
func (n *Node) combineInto(v roundView, r *fsm.Reshare, epoch uint64) (*epochShare, error) {
	me := r.Member(n.id.NodeID)
	deals, err := roundDeals(r)
	if err != nil {
		return nil, err
	}
	encPriv := n.encKey(me.EncKey)
	if encPriv == nil {
		return nil, fmt.Errorf("round %d encrypted to key %x, which this node no longer has", r.Round, me.EncKey)
	}
	defer clear(encPriv)
	dctx := dealContext(v.clusterID, r.Round)
	opened := map[uint32][]byte{}
	defer func() {
		for _, b := range opened {
			clear(b)
		}
	}()
	for _, d := range deals {
		sub, err := shamir.OpenDeal(d, me.Index, encPriv, dctx)
		if err != nil {
			return nil, fmt.Errorf("opening deal of %d: %w", d.Dealer, err)
		}
		opened[d.Dealer] = sub
	}
	var share *shamir.Share
	var poly *shamir.PublicPoly
	if r.Fresh {
		share, poly, err = shamir.CombineFresh(deals, opened, me.Index)
	} else {
		share, poly, err = shamir.CombineReshare(deals, opened, me.Index)
	}
	if err != nil {
		return nil, err
	}
	if !slices.EqualFunc(poly.Commits, r.Poly, bytes.Equal) {
		share.Erase()
		return nil, fmt.Errorf("round %d: combined commitments differ from the state's", r.Round)
	}
	if err := poly.VerifyShare(share); err != nil {
		share.Erase()
		return nil, err
	}
	es := &epochShare{Epoch: epoch, Round: r.Round, Share: share, EncKey: me.EncKey}
	if err := combineTang(v.clusterID, r, me, encPriv, es); err != nil {
		es.erase()
		return nil, err
	}
	if err := combineFROST(v.clusterID, r, me, encPriv, es); err != nil {
		es.erase()
		return nil, err
	}
	return es, nil
}

// combineTang opens this member's sub-shares of every Tang key the
// qualified round r reshares, combines its new share of each and checks it
// against the public share the state fixed for it.
func combineTang(clusterID string, r *fsm.Reshare, me *fsm.Member, encPriv []byte, es *epochShare) error {
	for _, e := range r.Tang {
		var want []byte
		for _, sh := range e.Shares {
			if sh.NodeID == me.NodeID && sh.Index == me.Index {
				want = sh.PublicShare
			}
		}
		if want == nil {
			continue
		}
		dealers, raw := r.TangDealsOf(e.Key)
		tctx := tangDealContext(clusterID, r.Round, e.Kid)
		deals := make([]*shamir.P256Deal, len(raw))
		opened := map[uint32][]byte{}
		var err error
		for i, b := range raw {
			if deals[i], err = decodeP256Deal(b); err != nil {
				break
			}
			var sub []byte
			if sub, err = shamir.OpenP256Deal(deals[i], me.Index, encPriv, tctx); err != nil {
				err = fmt.Errorf("opening the deal of tang key %q of %d: %w", e.Key, dealers[i], err)
				break
			}
			opened[dealers[i]] = sub
		}
		var sh *shamir.P256Share
		if err == nil {
			sh, _, err = shamir.CombineP256Reshare(deals, opened, me.Index)
		}
		for _, b := range opened {
			clear(b)
		}
		if err == nil {
			if err = shamir.CheckP256Share(sh, want); err != nil {
				sh.Erase()
			}
		}
		if err != nil {
			return fmt.Errorf("tang key %q: %w", e.Key, err)
		}
		if es.Tang == nil {
			es.Tang = map[string]*shamir.P256Share{}
		}
		es.Tang[e.Kid] = sh
	}
	return nil
}

// encKey returns the private encryption key for a public one, or nil.
func (n *Node) encKey(pub []byte) []byte {
	n.idMu.Lock()
	defer n.idMu.Unlock()
	return bytes.Clone(n.id.Keyring[hex.EncodeToString(pub)])
}

// encKeyWork reports whether the node's encryption keys need attention:
// the key its current share's deals came to is still the one the state
// lists (rotate), the state does not list the newest key yet (announce),
// or the keyring holds keys nothing needs (erase).
func (n *Node) encKeyWork(v roundView, cur *epochShare) bool {
	if v.me == nil {
		return false
	}
	n.idMu.Lock()
	defer n.idMu.Unlock()
	newest := n.id.EncPub
	return cur != nil && bytes.Equal(cur.EncKey, v.me.EncKey) && bytes.Equal(newest, v.me.EncKey) ||
		!bytes.Equal(newest, v.me.EncKey) ||
		len(n.id.Keyring) > len(n.neededEncKeys(v))
}

// neededEncKeys are the public keys (hex) whose private keys the node
// must keep: the newest, the one the state lists, and the one of a round
// in progress it receives deals in. Called with idMu held.
func (n *Node) neededEncKeys(v roundView) map[string]bool {
	keep := map[string]bool{hex.EncodeToString(n.id.EncPub): true}
	if v.me != nil {
		keep[hex.EncodeToString(v.me.EncKey)] = true
	}
	if v.round != nil {
		if m := v.round.Member(n.id.NodeID); m != nil {
			keep[hex.EncodeToString(m.EncKey)] = true
		}
	}
	// The key the last round dealt to, until the node holds its share of
	// the epoch that round made (it missed the round).
	if r := v.last; r != nil {
		if m := r.Member(n.id.NodeID); m != nil {
			if cur, _ := n.shares.snapshot(); cur == nil || cur.Epoch < v.epoch {
				keep[hex.EncodeToString(m.EncKey)] = true
			}
		}
	}
	return keep
}

// settleEncKeys rotates, announces and erases encryption keys as
// encKeyWork describes, on a current view of the state.
func (n *Node) settleEncKeys(ctx context.Context, v roundView, tried func(uint64, string) bool) error {
	if v.me == nil {
		return nil
	}
	cur, _ := n.shares.snapshot()
	n.idMu.Lock()
	rotate := cur != nil && bytes.Equal(cur.EncKey, v.me.EncKey) && bytes.Equal(n.id.EncPub, v.me.EncKey)
	if rotate {
		priv, pub, err := shamir.GenerateEncryptionKey(rand.Reader)
		if err != nil {
			n.idMu.Unlock()
			return err
		}
		n.id.Keyring[hex.EncodeToString(pub)] = priv
		n.id.EncPub = pub
	}
	keep := n.neededEncKeys(v)
	erased := 0
	for k, priv := range n.id.Keyring {
		if !keep[k] {
			clear(priv)
			delete(n.id.Keyring, k)
			erased++
		}
	}
	newest := bytes.Clone(n.id.EncPub)
	var err error
	if rotate || erased > 0 {
		err = writeJSON(filepath.Join(n.cfg.DataDir, identityFile), n.id)
	}
	n.idMu.Unlock()
	if err != nil {
		return err
	}
	if erased > 0 {
		n.log.Info("erased old encryption keys", "count", erased)
	}
	if bytes.Equal(newest, v.me.EncKey) || tried(v.epoch, "enc-key") {
		return nil
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeSetEncKey, SetEncKey: newest})
	if err != nil {
		return err
	}
	_, err = n.submit(ctx, sg)
	return err
}
