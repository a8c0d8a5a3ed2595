package fsm

import (
	"bytes"
	"fmt"
	"slices"
)

// FROST keys follow membership (docs/signing.md, "Keys follow
// membership"), and so do transit keys' versions: both are sharings
// (sharings.go), and every step below takes a sharing by its reference
// (FROSTRound.Key, FROSTDeal.Key: SharingRef), whatever its kind.
//
// Every resharing round that is not fresh also reshares every FROST key
// dealt in the current epoch whose holders among the round's dealers
// reach its threshold, exactly as it reshares Tang keys (tangreshare.go):
// each dealer that holds a share deals it, with its deal of the cluster
// key, to the round's members at the round's threshold (edwards25519
// Feldman commitments whose constant term must be the dealer's public
// share under the key's commitments, sub-shares encrypted to the members'
// rotating encryption keys). The round qualifies once every FROST key has
// its threshold of deals too; the state then fixes the key's new
// commitments (the same public key), and the completion makes them the
// key's, dealt in the new epoch to the new holders, whose shares are in
// their share stores, erased with the epoch. Shares still sealed to
// identity keys (as created) are migrated; the completion then takes a
// checkpoint, after which every node erases the older log entries that
// carry them (as for a Tang key).
//
// A FROST key the round cannot reshare (dealt before an earlier change,
// or with too few of its holders dealing) keeps its epoch: it then needs
// to be imported again (FROSTStale).

// FROSTChecker checks the FROST deals of resharing rounds. The state
// machine's DealChecker implements it to reshare FROST keys; without it,
// rounds leave FROST keys as they are (and they need re-import). Like
// CheckDeal it must be deterministic.
type FROSTChecker interface {
	// CheckFROSTDeal verifies dealer's resharing of its share of key in
	// round r: to exactly the round's members, at the round's threshold,
	// its constant term the dealer's public share under key.Commits.
	CheckFROSTDeal(r *Reshare, key *FROSTKey, dealer uint32, deal []byte) error
	// CombineFROST returns the key's new commitments from the deals of at
	// least key.Threshold of its holders; their constant term is the
	// key's public key.
	CombineFROST(r *Reshare, key *FROSTKey, deals [][]byte) ([][]byte, error)
	// CheckFROSTComplaint is CheckComplaint for member's complaint
	// against dealer's deal of the FROST key name.
	CheckFROSTComplaint(clusterID string, r *Reshare, m *Member, dealer uint32, name string, deal, proof []byte) error
}

// FROSTDeal is a dealer's resharing of its share of one FROST key,
// carried with its deal of the cluster key. Deal's encoding belongs to
// the FROSTChecker.
type FROSTDeal struct {
	Key  string `json:"key"` // the FROST key's name
	Deal []byte `json:"deal"`
}

// FROSTRound is a FROST key a round reshares.
type FROSTRound struct {
	Key    string `json:"key"`
	Public []byte `json:"public"` // the key's constant commitment: which key it is
	// Commits are the key's new commitments, set when the round
	// qualifies; they become the key's when it completes.
	Commits [][]byte `json:"commits,omitempty"`
}

// FROSTDealsOf returns the deals of the round's FROST key name, in the
// order of the round's deals, with their dealers: the deals every member
// combines its new share of the key from.
func (r *Reshare) FROSTDealsOf(name string) (dealers []uint32, deals [][]byte) {
	for _, d := range r.Deals {
		for _, fd := range d.Frost {
			if fd.Key == name {
				dealers = append(dealers, d.Dealer)
				deals = append(deals, fd.Deal)
			}
		}
	}
	return dealers, deals
}

// FROSTRoundOf returns the round's entry for the FROST key name, or nil.
func (r *Reshare) FROSTRoundOf(name string) *FROSTRound {
	for i := range r.Frost {
		if r.Frost[i].Key == name {
			return &r.Frost[i]
		}
	}
	return nil
}

// frostShareOf returns the key's share of the dealer with share index
// dealer, or nil: a share at that index dealt to the node that has it now.
func (s *State) frostShareOf(fk *FROSTKey, dealer uint32) *FROSTShare {
	n := s.NodeByIndex(dealer)
	if n == nil {
		return nil
	}
	for i := range fk.Shares {
		if sh := &fk.Shares[i]; sh.Index == dealer && sh.NodeID == n.ID {
			return sh
		}
	}
	return nil
}

// frostKey returns the live sharing of a round's entry (an ed25519-frost
// key's, a transit version's: sharings.go), or nil.
func (s *State) frostKey(e *FROSTRound) *FROSTKey {
	_, fk := s.SharingOf(e.Key)
	if fk == nil || len(fk.Commits) == 0 || !bytes.Equal(fk.Commits[0], e.Public) {
		return nil
	}
	return fk
}

// frostDealers counts the dealers of r that may still deal and hold a
// share of fk.
func (s *State) frostDealers(r *Reshare, fk *FROSTKey) int {
	n := 0
	for _, d := range r.Dealers {
		if !slices.Contains(r.Disqualified, d) && s.frostShareOf(fk, d) != nil {
			n++
		}
	}
	return n
}

// sealed reports whether any share of the key is still sealed in the
// state (to its holder's identity key, as created).
func (fk *FROSTKey) sealed() bool {
	return slices.ContainsFunc(fk.Shares, func(sh FROSTShare) bool { return len(sh.Sealed) > 0 })
}

// listFROSTKeys sets the FROST keys a new round reshares: every live one
// dealt in the current epoch whose holders among the round's dealers can
// deal it. Without a FROSTChecker, none.
func (t *transition) listFROSTKeys(r *Reshare) {
	if _, ok := t.fsm.checker.(FROSTChecker); !ok || r.Fresh {
		return
	}
	s := t.s
	for _, sh := range s.Sharings() {
		fk := sh.Sharing
		if fk.Epoch != s.Epoch || len(fk.Commits) == 0 {
			continue
		}
		if s.frostDealers(r, fk) >= fk.Threshold {
			r.Frost = append(r.Frost, FROSTRound{Key: sh.Ref, Public: fk.Commits[0]})
		}
	}
}

// recountFROST drops from the round the FROST keys too few qualified
// dealers remain to deal, after a disqualification. A key still sealed
// to identity keys stays as it is (it will need re-import); one whose
// shares are only in the nodes' stores would be lost with the epoch, so
// the round is aborted instead.
func (t *transition) recountFROST(r *Reshare) {
	s := t.s
	keep := r.Frost[:0:0]
	for _, e := range r.Frost {
		fk := s.frostKey(&e)
		if fk == nil {
			continue
		}
		if s.frostDealers(r, fk) >= fk.Threshold {
			keep = append(keep, e)
			continue
		}
		if !fk.sealed() && r.Aborted == "" {
			r.Aborted = fmt.Sprintf("too few qualified holders of %s key %q remain to deal it (%d needed)", KeyTypeFROST, e.Key, fk.Threshold)
		}
	}
	r.Frost = keep
}

// checkFROSTDeals checks the FROST deals of dealer's deal in round r: one
// for each of the round's FROST keys the dealer holds a share of, and no
// other.
func (t *transition) checkFROSTDeals(r *Reshare, dealer uint32, deals []FROSTDeal) *Error {
	s := t.s
	fc, ok := t.fsm.checker.(FROSTChecker)
	if !ok || len(r.Frost) == 0 {
		if len(deals) > 0 {
			return errorf(CodeInvalid, "round %d reshares no %s key", r.Round, KeyTypeFROST)
		}
		return nil
	}
	seen := map[string]bool{}
	for _, fd := range deals {
		e := r.FROSTRoundOf(fd.Key)
		if e == nil {
			return errorf(CodeInvalid, "round %d does not reshare %s key %q", r.Round, KeyTypeFROST, fd.Key)
		}
		if seen[fd.Key] {
			return errorf(CodeInvalid, "two deals of %s key %q from %d", KeyTypeFROST, fd.Key, dealer)
		}
		seen[fd.Key] = true
		fk := s.frostKey(e)
		if fk == nil || s.frostShareOf(fk, dealer) == nil {
			return errorf(CodeInvalid, "dealer %d holds no share of %s key %q", dealer, KeyTypeFROST, fd.Key)
		}
		if err := fc.CheckFROSTDeal(r, fk, dealer, fd.Deal); err != nil {
			return errorf(CodeInvalid, "deal of %s key %q from %d: %v", KeyTypeFROST, fd.Key, dealer, err)
		}
	}
	for _, e := range r.Frost {
		if fk := s.frostKey(&e); fk != nil && !seen[e.Key] && s.frostShareOf(fk, dealer) != nil {
			return errorf(CodeInvalid, "dealer %d holds a share of %s key %q and did not deal it", dealer, KeyTypeFROST, e.Key)
		}
	}
	return nil
}

// frostWaits reports whether a FROST key of the round lacks its
// threshold of deals.
func (t *transition) frostWaits(r *Reshare) bool {
	for _, e := range r.Frost {
		if fk := t.s.frostKey(&e); fk != nil {
			if dealers, _ := r.FROSTDealsOf(e.Key); len(dealers) < fk.Threshold {
				return true
			}
		}
	}
	return false
}

// qualifyFROST returns the round's FROST entries with their new
// commitments, combined from the deals.
func (t *transition) qualifyFROST(r *Reshare) ([]FROSTRound, *Error) {
	if len(r.Frost) == 0 {
		return r.Frost, nil
	}
	fc := t.fsm.checker.(FROSTChecker) // listFROSTKeys lists none without it
	out := slices.Clone(r.Frost)
	for i := range out {
		e := &out[i]
		fk := t.s.frostKey(e)
		if fk == nil {
			continue
		}
		_, deals := r.FROSTDealsOf(e.Key)
		commits, err := fc.CombineFROST(r, fk, deals)
		if err != nil {
			return nil, errorf(CodeInvalid, "combining %s key %q in round %d: %v", KeyTypeFROST, e.Key, r.Round, err)
		}
		if len(commits) != r.Threshold || !bytes.Equal(commits[0], e.Public) {
			return nil, errorf(CodeInvalid, "combining %s key %q in round %d: the public key changed", KeyTypeFROST, e.Key, r.Round)
		}
		e.Commits = commits
	}
	return out, nil
}

// completeFROST gives each FROST key the round reshared its new
// commitments, threshold and holders, in the new epoch; its sealed shares
// are gone from the state. If any were, a checkpoint is taken at this
// entry and every node erases the older entries from its disk.
func (t *transition) completeFROST(r *Reshare) {
	s := t.s
	migrated := false
	for _, e := range r.Frost {
		old := s.frostKey(&e)
		if old == nil || e.Commits == nil {
			continue
		}
		migrated = migrated || old.sealed()
		fk := &FROSTKey{Threshold: r.Threshold, Epoch: s.Epoch, Commits: slices.Clone(e.Commits)}
		for _, m := range r.Members {
			fk.Shares = append(fk.Shares, FROSTShare{NodeID: m.NodeID, Index: m.Index})
		}
		t.setSharing(e.Key, fk)
	}
	if migrated {
		s.Destroyed = t.index
	}
}

// frostComplaint checks member m's complaint against dealer's deal of
// the FROST key name in round r.
func (t *transition) frostComplaint(r *Reshare, m *Member, dealer uint32, name string, proof []byte) *Error {
	fc, ok := t.fsm.checker.(FROSTChecker)
	if !ok {
		return errorf(CodeInvalid, "this state machine cannot check complaints against %s deals", KeyTypeFROST)
	}
	var deal []byte
	for _, d := range r.Deals {
		if d.Dealer == dealer {
			for _, fd := range d.Frost {
				if fd.Key == name {
					deal = fd.Deal
				}
			}
		}
	}
	if deal == nil {
		return errorf(CodeNotFound, "round %d has no deal of %s key %q from %d", r.Round, KeyTypeFROST, name, dealer)
	}
	if err := fc.CheckFROSTComplaint(t.s.ClusterID, r, m, dealer, name, deal, proof); err != nil {
		return errorf(CodeInvalid, "complaint of %s against dealer %d's deal of %s key %q in round %d refused: %v", t.signer, dealer, KeyTypeFROST, name, r.Round, err)
	}
	return nil
}
