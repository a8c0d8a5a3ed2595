package fsm

import (
	"fmt"
	"slices"
)

// Tang keys follow membership (docs/resharing.md, "Tang keys").
//
// Every resharing round that is not fresh also reshares every Tang key the
// round's dealers can deal: each dealer that holds a share of one deals it,
// with its deal of the cluster key, to the round's members at the round's
// threshold, sub-shares encrypted to the members' per-round encryption
// keys. The state checks each Tang deal against the key's public share of
// that dealer (the TangChecker), the round qualifies once every Tang key
// has its threshold of deals too, and the round's completion replaces
// each key's shares with the members' new public shares: the material is
// in the nodes' share stores, erased with the old epoch's shares. Keys
// whose shares are still sealed to their holders' identity keys (as
// created) are migrated by the round; the completion then takes a
// checkpoint, after which every node erases the older log entries that
// carry the sealed shares (as after a destroy).

// TangChecker checks the Tang deals of resharing rounds. The state
// machine's DealChecker implements it to reshare Tang keys; without it,
// rounds leave Tang keys as they are. Like CheckDeal it must be
// deterministic.
type TangChecker interface {
	// CheckTangDeal verifies dealer's resharing of its share of key in
	// round r: to exactly the round's members, at the round's threshold,
	// its constant term committing to publicShare (the dealer's s_i*G).
	CheckTangDeal(r *Reshare, key *TangKey, dealer uint32, publicShare, deal []byte) error
	// CombineTang returns the members' new public shares of key, by share
	// index, from the deals of at least key.Threshold of its holders.
	CombineTang(r *Reshare, key *TangKey, deals [][]byte) (map[uint32][]byte, error)
	// CheckTangComplaint is CheckComplaint for member's complaint against
	// dealer's deal of key.
	CheckTangComplaint(clusterID string, r *Reshare, m *Member, dealer uint32, key *TangKey, deal, proof []byte) error
}

// TangDeal is a dealer's resharing of its share of one Tang key, carried
// with its deal of the cluster key. Deal's encoding belongs to the
// TangChecker.
type TangDeal struct {
	Key  string `json:"key"` // the Tang key's name
	Deal []byte `json:"deal"`
}

// TangRound is a Tang key a round reshares.
type TangRound struct {
	Key string `json:"key"`
	Kid string `json:"kid"`
	// Shares are the members' new public shares, set when the round
	// qualifies; they become the key's shares when it completes.
	Shares []TangShare `json:"shares,omitempty"`
}

// TangDealsOf returns the deals of the round's Tang key name, in the
// order of the round's deals, with their dealers: the deals every member
// combines its new share of the key from.
func (r *Reshare) TangDealsOf(name string) (dealers []uint32, deals [][]byte) {
	for _, d := range r.Deals {
		for _, td := range d.Tang {
			if td.Key == name {
				dealers = append(dealers, d.Dealer)
				deals = append(deals, td.Deal)
			}
		}
	}
	return dealers, deals
}

// TangRoundOf returns the round's entry for the Tang key name, or nil.
func (r *Reshare) TangRoundOf(name string) *TangRound {
	for i := range r.Tang {
		if r.Tang[i].Key == name {
			return &r.Tang[i]
		}
	}
	return nil
}

// tangShareOf returns the key's share of the dealer with share index
// dealer, or nil: a share at that index dealt to the node that has it now.
func (s *State) tangShareOf(tk *TangKey, dealer uint32) *TangShare {
	n := s.NodeByIndex(dealer)
	if n == nil {
		return nil
	}
	for i := range tk.Shares {
		if sh := &tk.Shares[i]; sh.Index == dealer && sh.NodeID == n.ID {
			return sh
		}
	}
	return nil
}

// tangKey returns the live Tang key of a round's entry, or nil.
func (s *State) tangKey(e *TangRound) *TangKey {
	k := s.Keys[e.Key]
	if k == nil || k.State == KeyDestroyed || k.Tang() == nil || k.Tang().Kid != e.Kid {
		return nil
	}
	return k.Tang()
}

// tangDealers counts the dealers of r that may still deal and hold a
// share of tk.
func (s *State) tangDealers(r *Reshare, tk *TangKey) int {
	n := 0
	for _, d := range r.Dealers {
		if !slices.Contains(r.Disqualified, d) && s.tangShareOf(tk, d) != nil {
			n++
		}
	}
	return n
}

// sealed reports whether any share of the key is still sealed in the
// state (to its holder's identity key, as created).
func (tk *TangKey) sealed() bool {
	return slices.ContainsFunc(tk.Shares, func(sh TangShare) bool { return len(sh.Sealed) > 0 })
}

// listTangKeys sets the Tang keys a new round reshares: every live one
// whose holders among the round's dealers can deal it. Without a
// TangChecker, none.
func (t *transition) listTangKeys(r *Reshare) {
	if _, ok := t.fsm.checker.(TangChecker); !ok || r.Fresh {
		return
	}
	s := t.s
	for _, k := range s.TangKeys() {
		if s.tangDealers(r, k.Tang()) >= k.Tang().Threshold {
			r.Tang = append(r.Tang, TangRound{Key: k.Name, Kid: k.Tang().Kid})
		}
	}
}

// recountTang drops from the round the Tang keys too few qualified
// dealers remain to deal, after a disqualification. A key still sealed
// to identity keys stays as it is, unreshared; one whose shares are only
// in the nodes' stores would be lost with the epoch, so the round is
// aborted instead.
func (t *transition) recountTang(r *Reshare) {
	s := t.s
	keep := r.Tang[:0:0]
	for _, e := range r.Tang {
		tk := s.tangKey(&e)
		if tk == nil {
			continue
		}
		if s.tangDealers(r, tk) >= tk.Threshold {
			keep = append(keep, e)
			continue
		}
		if !tk.sealed() && r.Aborted == "" {
			r.Aborted = fmt.Sprintf("too few qualified holders of tang key %q remain to deal it (%d needed)", e.Key, tk.Threshold)
		}
	}
	r.Tang = keep
}

// checkTangDeals checks the Tang deals of dealer's deal in round r: one
// for each of the round's Tang keys the dealer holds a share of, and no
// other.
func (t *transition) checkTangDeals(r *Reshare, dealer uint32, deals []TangDeal) *Error {
	s := t.s
	tc, ok := t.fsm.checker.(TangChecker)
	if !ok || len(r.Tang) == 0 {
		if len(deals) > 0 {
			return errorf(CodeInvalid, "round %d reshares no tang key", r.Round)
		}
		return nil
	}
	seen := map[string]bool{}
	for _, td := range deals {
		e := r.TangRoundOf(td.Key)
		if e == nil {
			return errorf(CodeInvalid, "round %d does not reshare tang key %q", r.Round, td.Key)
		}
		if seen[td.Key] {
			return errorf(CodeInvalid, "two deals of tang key %q from %d", td.Key, dealer)
		}
		seen[td.Key] = true
		tk := s.tangKey(e)
		var sh *TangShare
		if tk != nil {
			sh = s.tangShareOf(tk, dealer)
		}
		if sh == nil {
			return errorf(CodeInvalid, "dealer %d holds no share of tang key %q", dealer, td.Key)
		}
		if err := tc.CheckTangDeal(r, tk, dealer, sh.PublicShare, td.Deal); err != nil {
			return errorf(CodeInvalid, "deal of tang key %q from %d: %v", td.Key, dealer, err)
		}
	}
	for _, e := range r.Tang {
		if tk := s.tangKey(&e); tk != nil && !seen[e.Key] && s.tangShareOf(tk, dealer) != nil {
			return errorf(CodeInvalid, "dealer %d holds a share of tang key %q and did not deal it", dealer, e.Key)
		}
	}
	return nil
}

// qualify fixes the round's new commitments, each Tang key's new public
// shares and each FROST key's new commitments, once the round has the
// deals it needs: Needed deals, and for every Tang and FROST key its
// threshold of deals. It leaves a round that waits for deals unchanged.
func (t *transition) qualify(r *Reshare) *Error {
	s := t.s
	if r.Aborted != "" || len(r.Deals) < r.Needed {
		return nil
	}
	for _, e := range r.Tang {
		if tk := s.tangKey(&e); tk != nil {
			if dealers, _ := r.TangDealsOf(e.Key); len(dealers) < tk.Threshold {
				return nil
			}
		}
	}
	if t.frostWaits(r) {
		return nil
	}
	poly, err := t.fsm.checker.CombinePublic(r)
	if err != nil {
		return errorf(CodeInvalid, "combining round %d: %v", r.Round, err)
	}
	tang := slices.Clone(r.Tang)
	if len(tang) > 0 {
		tc := t.fsm.checker.(TangChecker) // listTangKeys lists none without it
		for i := range tang {
			e := &tang[i]
			tk := s.tangKey(e)
			if tk == nil {
				continue
			}
			_, deals := r.TangDealsOf(e.Key)
			pub, err := tc.CombineTang(r, tk, deals)
			if err != nil {
				return errorf(CodeInvalid, "combining tang key %q in round %d: %v", e.Key, r.Round, err)
			}
			e.Shares = make([]TangShare, 0, len(r.Members))
			for _, m := range r.Members {
				if len(pub[m.Index]) == 0 {
					return errorf(CodeInvalid, "combining tang key %q in round %d: no public share for %d", e.Key, r.Round, m.Index)
				}
				e.Shares = append(e.Shares, TangShare{NodeID: m.NodeID, Index: m.Index, PublicShare: pub[m.Index]})
			}
		}
	}
	frost, ferr := t.qualifyFROST(r)
	if ferr != nil {
		return ferr
	}
	r.Poly, r.Tang, r.Frost = poly, tang, frost
	return nil
}

// completeTang gives each Tang key the round reshared its new holders'
// public shares and the round's threshold; its sealed shares are gone
// from the state. If any were, a checkpoint is taken at this entry, and
// every node erases the older entries from its disk (checkpoint.go).
func (t *transition) completeTang(r *Reshare) {
	s := t.s
	migrated := false
	for _, e := range r.Tang {
		k := s.Keys[e.Key]
		if s.tangKey(&e) == nil || e.Shares == nil {
			continue
		}
		migrated = migrated || k.Tang().sealed()
		tk := *k.Tang()
		tk.Shares, tk.Threshold = slices.Clone(e.Shares), r.Threshold
		k = t.editKey(e.Key)
		d := k.Detail()
		d.Tang = &tk
		k.SetDetail(d)
		t.keyChanged(e.Key)
	}
	if migrated {
		s.Destroyed = t.index
	}
}

// tangComplaint checks member m's complaint against dealer's deal of the
// Tang key name in round r.
func (t *transition) tangComplaint(r *Reshare, m *Member, dealer uint32, name string, proof []byte) *Error {
	tc, ok := t.fsm.checker.(TangChecker)
	if !ok {
		return errorf(CodeInvalid, "this state machine cannot check complaints against tang deals")
	}
	e := r.TangRoundOf(name)
	var tk *TangKey
	if e != nil {
		tk = t.s.tangKey(e)
	}
	if tk == nil {
		return errorf(CodeNotFound, "round %d reshares no tang key %q", r.Round, name)
	}
	var deal []byte
	for _, d := range r.Deals {
		if d.Dealer == dealer {
			for _, td := range d.Tang {
				if td.Key == name {
					deal = td.Deal
				}
			}
		}
	}
	if deal == nil {
		return errorf(CodeNotFound, "round %d has no deal of tang key %q from %d", r.Round, name, dealer)
	}
	if err := tc.CheckTangComplaint(t.s.ClusterID, r, m, dealer, tk, deal, proof); err != nil {
		return errorf(CodeInvalid, "complaint of %s against dealer %d's deal of tang key %q in round %d refused: %v", t.signer, dealer, name, r.Round, err)
	}
	return nil
}
