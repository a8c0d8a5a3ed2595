package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// A machine's unlock that waits for an operator may ask the node to hold
// it (a long poll): the node keeps the request until an approval or a
// denial of that machine applies on it, then answers as if asked again
// (the key, or the denial), so the machine's keyagent continues as soon
// as the decision is in the log rather than at its next retry. The node
// holds a request only after the request passed every check and is
// pending, so only a registered machine, signing fresh requests, can make
// it hold one; and it holds at most MaxUnlockHold, at most
// maxHoldsPerMachine requests of one machine and maxHolds in all. A
// request it cannot hold is answered pending at once, and the machine
// asks again after its backoff.

// Bounds of the held unlocks.
const (
	// MaxUnlockHold is the longest a node holds one unlock.
	MaxUnlockHold = 25 * time.Second
	// maxHoldsPerMachine bounds one machine's held unlocks (a keyagent
	// holds one; a second covers a restart before the first times out).
	maxHoldsPerMachine = 2
	// maxHolds bounds the held unlocks of a node.
	maxHolds = 256
)

// unlockHolds counts the unlocks a node holds, per machine and in all.
type unlockHolds struct {
	mu    sync.Mutex
	total int
	per   map[string]int
}

// take reserves a hold for machine; release gives it back. ok is false
// when a bound is reached.
func (h *unlockHolds) take(machine string) (release func(), ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.total >= maxHolds || h.per[machine] >= maxHoldsPerMachine {
		return nil, false
	}
	if h.per == nil {
		h.per = map[string]int{}
	}
	h.total++
	h.per[machine]++
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.total--
		if h.per[machine]--; h.per[machine] == 0 {
			delete(h.per, machine)
		}
	}, true
}

// held reports how many unlocks the node holds, in all and of machine.
func (h *unlockHolds) held(machine string) (total, ofMachine int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total, h.per[machine]
}

// holdPending holds sg, a machine's release request for key that was
// answered pending, for at most hold (bounded by MaxUnlockHold): decided
// is true as soon as this node's applied state decides it (a usable
// approval, an approval window, a denial, or any other change that ends
// the wait), false when the hold ends first or ctx ends. held is false
// when the node holds too many requests already: it then returns at once.
func (n *Node) holdPending(ctx context.Context, sg *fsm.Signed, key string, hold time.Duration) (decided, held bool) {
	// The request must still be fresh when it is answered again: a hold
	// never outlasts it (nor makes a clock skew of a request answered
	// pending now).
	var cmd fsm.Command
	if json.Unmarshal(sg.Payload, &cmd) != nil {
		return false, false
	}
	hold = min(hold, MaxUnlockHold, time.Until(time.Unix(0, cmd.IssuedAt).Add(fsm.MaxClockSkew))-n.cfg.RequestTimeout)
	if hold <= 0 {
		return false, false
	}
	release, ok := n.unlockHolds.take(sg.Signer)
	if !ok {
		return false, false
	}
	defer release()
	timer := time.NewTimer(hold)
	defer timer.Stop()
	for {
		// The channel is taken before the state is read: an apply in
		// between closes it, and is not missed.
		_, changed := n.watch()
		if !n.stillPending(sg, key) {
			return true, true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false, true
		case <-ctx.Done():
			return false, true
		}
	}
}

// stillPending reports whether this node's applied state still makes
// sg wait: refused as pending, with no approved use to spend.
func (n *Node) stillPending(sg *fsm.Signed, key string) bool {
	pending := false
	n.fsm.Read(func(s *fsm.State) {
		_, _, e := s.AuthorizeRelease(sg, time.Now())
		pending = e != nil && e.Code == fsm.CodePending && !s.UsableApproval(sg.Signer, key)
	})
	return pending
}
