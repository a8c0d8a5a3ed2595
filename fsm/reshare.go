package fsm

import (
	"fmt"
	"slices"
)

// Complaints and restarts of resharing rounds (docs/resharing.md).
//
// A dealer's sub-share to one member is encrypted to that member, so only
// the member can see that it is bad. It says so with a complaint: a proof
// that every replica checks from public data alone (the checker's
// CheckComplaint, deterministic as CheckDeal is). A complaint that holds
// disqualifies the dealer: its deal leaves the round, which qualifies
// again with the other dealers' deals, or is aborted when too few remain;
// the current epoch serves on either way. A complaint that does not hold
// is refused and says why.

// ComplaintChecker checks complaints. The state machine's DealChecker
// implements it to accept complaints; without it every complaint is
// refused.
type ComplaintChecker interface {
	// CheckComplaint returns nil when member's complaint against dealer's
	// deal in round r holds (its sub-share to the member is bad), and an
	// error saying why it does not otherwise. clusterID and r.Round bind
	// the deal's encryption.
	CheckComplaint(clusterID string, r *Reshare, member *Member, dealer uint32, deal, proof []byte) error
}

// Complaint is a member's complaint against a dealer's deal in a round:
// the round in progress, or the last completed one if the member has not
// acknowledged it. Proof's encoding belongs to the ComplaintChecker.
type Complaint struct {
	Round  uint64 `json:"round"`
	Dealer uint32 `json:"dealer"`
	Proof  []byte `json:"proof"`
	// Key names the Tang or FROST key whose deal the complaint is
	// against; empty, the deal of the cluster key.
	Key string `json:"key,omitempty"`
}

// RestartReshare starts a new resharing round to the current members, as
// a membership change does, with the dealers of Exclude (share indexes)
// left out. It replaces a round in progress (an aborted one, or one that
// waits on a dealer that does not deal); with no round in progress it
// refreshes the shares of the current members.
type RestartReshare struct {
	Exclude []uint32 `json:"exclude,omitempty"`
}

// recount sets what the round needs after dealers were disqualified: a
// fresh round needs a deal from every qualified dealer (and at least
// Threshold of them), a resharing the old threshold's. With fewer
// qualified dealers left the round is aborted.
func (r *Reshare) recount() {
	left := 0
	for _, d := range r.Dealers {
		if !slices.Contains(r.Disqualified, d) {
			left++
		}
	}
	least := r.Needed
	if r.Fresh {
		r.Needed, least = left, r.Threshold
	}
	if left < least {
		r.Aborted = fmt.Sprintf("%d of %d dealers remain qualified, %d are needed", left, len(r.Dealers), least)
	}
}

func (t *transition) complaint(c *Complaint) *Error {
	s := t.s
	if c == nil {
		return errorf(CodeInvalid, "complaint command is empty")
	}
	cc, ok := t.fsm.checker.(ComplaintChecker)
	if !ok {
		return errorf(CodeInvalid, "this state machine cannot check complaints")
	}
	r, late := s.Reshare, false
	if r == nil || r.Round != c.Round {
		r, late = s.LastRound, true
		if r == nil || r.Round != c.Round {
			return errorf(CodeState, "no resharing round %d in progress or last completed", c.Round)
		}
	}
	m := r.Member(t.signer)
	switch {
	case m == nil:
		return errorf(CodeDenied, "node %q is not a member of round %d", t.signer, r.Round)
	case !late && r.Aborted != "":
		return errorf(CodeState, "resharing round %d was aborted: %s", r.Round, r.Aborted)
	case late && r.HasAcked(t.signer):
		return errorf(CodeDenied, "node %q acknowledged round %d: its share of it checked out", t.signer, r.Round)
	case late && s.Nodes[t.signer].Leaving:
		return errorf(CodeState, "node %q is leaving: it needs no share", t.signer)
	case late && s.Reshare != nil && s.Reshare.Member(t.signer) != nil:
		return errorf(CodeState, "resharing round %d in progress gives node %q a new share", s.Reshare.Round, t.signer)
	case slices.Contains(r.Disqualified, c.Dealer):
		return errorf(CodeExists, "dealer %d is already disqualified in round %d", c.Dealer, r.Round)
	}
	deal := r.DealOf(c.Dealer)
	if deal == nil {
		return errorf(CodeNotFound, "round %d has no deal from %d", r.Round, c.Dealer)
	}
	if c.Key != "" && r.FROSTRoundOf(c.Key) != nil {
		if err := t.frostComplaint(r, m, c.Dealer, c.Key, c.Proof); err != nil {
			return err
		}
	} else if c.Key != "" {
		if err := t.tangComplaint(r, m, c.Dealer, c.Key, c.Proof); err != nil {
			return err
		}
	} else if err := cc.CheckComplaint(s.ClusterID, r, m, c.Dealer, deal, c.Proof); err != nil {
		return errorf(CodeInvalid, "complaint of %s against dealer %d in round %d refused: %v", t.signer, c.Dealer, r.Round, err)
	}
	if late {
		// The epoch stands, and the member has no share of it: a new
		// round without the dealer gives it one.
		r.Disqualified = append(slices.Clip(r.Disqualified), c.Dealer)
		t.startRound(false)
		nr := s.Reshare
		if slices.Contains(nr.Dealers, c.Dealer) && !slices.Contains(nr.Disqualified, c.Dealer) {
			nr.Disqualified = append(nr.Disqualified, c.Dealer)
		}
		nr.recount()
		t.recountTang(nr)
		t.recountFROST(nr)
		return nil
	}
	nr := *r
	nr.Deals = slices.DeleteFunc(slices.Clone(r.Deals), func(d Deal) bool { return d.Dealer == c.Dealer })
	nr.Disqualified = append(slices.Clone(r.Disqualified), c.Dealer)
	nr.Poly, nr.Acks = nil, nil
	nr.Tang = slices.Clone(r.Tang)
	for i := range nr.Tang {
		nr.Tang[i].Shares = nil
	}
	nr.Frost = slices.Clone(r.Frost)
	for i := range nr.Frost {
		nr.Frost[i].Commits = nil
	}
	nr.recount()
	t.recountTang(&nr)
	t.recountFROST(&nr)
	if err := t.qualify(&nr); err != nil {
		return errorf(CodeInvalid, "round %d without dealer %d: %v", r.Round, c.Dealer, err.Message)
	}
	s.Reshare = &nr
	return nil
}

func (t *transition) restartReshare(rr *RestartReshare) *Error {
	s := t.s
	if rr == nil {
		rr = &RestartReshare{}
	}
	saved := s.Reshare
	t.startRound(s.Epoch == 0)
	nr := s.Reshare
	if nr == nil {
		s.Reshare = saved
		return errorf(CodeState, "the cluster waits for its %d initial members to make its key", s.InitialNodes)
	}
	for _, d := range rr.Exclude {
		if !slices.Contains(nr.Dealers, d) {
			s.Reshare = saved
			return errorf(CodeInvalid, "%d is not a dealer of a new round (dealers: %v)", d, nr.Dealers)
		}
		if !slices.Contains(nr.Disqualified, d) {
			nr.Disqualified = append(nr.Disqualified, d)
		}
	}
	nr.Aborted = ""
	nr.recount()
	t.recountTang(nr)
	t.recountFROST(nr)
	if nr.Aborted != "" {
		s.Reshare = saved
		return errorf(CodeState, "a new round without dealers %v cannot complete: %s", nr.Disqualified, nr.Aborted)
	}
	return nil
}
