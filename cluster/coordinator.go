package cluster

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// The coordinator's protocol, one for every operation that needs t share
// holders (a gateway node's release, a Tang exchange, a blind release for
// a machine or an operator):
//
//  1. authorize: a read index, waited for, and the signed request
//     authorized on the state there (coordinatorRead). The coordinator
//     checks first to fail fast with a precise error; the holders' checks
//     (holder.go) are the ones that count.
//  2. gather: ask the holders of that state at the read's index, t first
//     and the others when one fails or is slow, until t answers open
//     (gather, gatherAndOpen).
//
// An operation says only what differs: which holders and how many
// (a Tang key has its own), which node-to-node path answers and how this
// node answers itself (holderCall), and how the answers combine or are
// relayed.

// partialRequest is what a coordinator asks a share holder. ReadIndex is
// only a lower bound for the holder: it makes its own read.
type partialRequest struct {
	ReadIndex uint64      `json:"read_index"`
	Request   *fsm.Signed `json:"request"`
	Version   uint64      `json:"version"`
	Epoch     uint64      `json:"epoch"`

	// local is set when the coordinator answers itself, after its own
	// read: never from the wire.
	local bool
}

// authorized is what a coordinator's read found: everything an operation
// needs to ask the holders.
type authorized struct {
	request   *fsm.Signed
	cmd       *fsm.Command
	key       *fsm.Key // a shallow copy of the state's
	clusterID string
	epoch     uint64   // the cluster key's
	poly      [][]byte // the cluster key's public polynomial
	// holders are whom to ask, and threshold how many answers open: the
	// epoch's share holders and the cluster's threshold, unless the
	// operation chose others in the same read.
	holders   []fsm.Node
	threshold int
	// readAt is the applied index of the state read, which may be past the
	// read index: the holders wait for it and see the same key version.
	readAt uint64
}

// coordinatorRead is step 1: it gets a read index, waits until this node
// has applied it, and authorizes sg on the state there. also, if not nil,
// runs in the same read, with the refusal if sg was refused (a is then
// incomplete): an operation reads there what else it needs, or chooses
// other holders.
func (n *Node) coordinatorRead(ctx context.Context, sg *fsm.Signed, also func(s *fsm.State, a *authorized, refused *fsm.Error)) (*authorized, error) {
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	idx, err := n.readIndex(ctx)
	if err != nil {
		return nil, err
	}
	if err := n.waitApplied(ctx, idx); err != nil {
		return nil, err
	}
	a := &authorized{request: sg}
	var ferr *fsm.Error
	n.fsm.Read(func(s *fsm.State) {
		cmd, k, e := s.AuthorizeRelease(sg, time.Now())
		if e == nil {
			key := *k // the State's slices are never mutated in place
			a.cmd, a.key = cmd, &key
			a.clusterID, a.epoch, a.poly, a.threshold, a.readAt = s.ClusterID, s.Epoch, s.Poly, s.Threshold, s.Applied
			for _, h := range s.Holders() {
				a.holders = append(a.holders, *h)
			}
		}
		ferr = e
		if also != nil {
			also(s, a, e)
		}
	})
	if ferr != nil {
		return nil, fromFSM(ferr)
	}
	return a, nil
}

// partialFor is the request to ask the holders, for the shares of epoch
// (0 for the shares of a Tang or threshold RSA key, which are the key's
// own).
func (a *authorized) partialFor(epoch uint64) *partialRequest {
	return &partialRequest{ReadIndex: a.readAt, Request: a.request, Version: a.key.Version, Epoch: epoch}
}

// holderCall is how the coordinator asks for one kind of answer P: the
// node-to-node path the holders answer at, this node's own answer, and
// which share an answer is for.
type holderCall[P any] struct {
	path  string
	local func(context.Context, *partialRequest) (*P, error)
	index func(*P) uint32
}

// gather is step 2: it asks a's holders for their answers to req and
// returns what open makes of the first t (a.threshold) that it accepts.
// tooFew explains a read that lists fewer than t holders: a format of the
// holders listed and t.
func gather[P, R any](ctx context.Context, n *Node, a *authorized, call holderCall[P], req *partialRequest, tooFew string, open func(own, others []*P) (R, error)) (R, error) {
	if len(a.holders) < a.threshold {
		var zero R
		return zero, Errorf(KindNoQuorum, tooFew, len(a.holders), a.threshold)
	}
	ask := askHolder(n, call.path, req, call.local, call.index)
	return gatherAndOpen(ctx, n.id.NodeID, a.holders, a.threshold, ask, open)
}

// hedgeDelay is how long the coordinator waits on the first t holders
// before it asks the others too.
const hedgeDelay = 150 * time.Millisecond

// askHolder returns the function that gets one holder's answer to req:
// computed by local for this node, asked at path of the others. index says
// which share an answer is for; it must be the holder's.
func askHolder[P any](n *Node, path string, req *partialRequest, local func(context.Context, *partialRequest) (*P, error), index func(*P) uint32) func(context.Context, fsm.Node) (*P, error) {
	return func(ctx context.Context, h fsm.Node) (*P, error) {
		var p *P
		if h.ID == n.id.NodeID {
			own := *req
			own.local = true
			var err error
			if p, err = local(ctx, &own); err != nil {
				return nil, err
			}
		} else {
			p = new(P)
			if _, err := n.call(ctx, h.RaftAddr, path, req, p); err != nil {
				return nil, err
			}
		}
		if i := index(p); i != h.Index {
			return nil, fmt.Errorf("answered for share %d, holds %d", i, h.Index)
		}
		return p, nil
	}
}

type partialResult[P any] struct {
	node string
	own  bool // computed here, with this node's share
	p    P
	err  error
}

// gatherAndOpen asks t holders (itself first) for partials, and the other
// holders too if one of them fails or is slow; it opens as soon as the
// partials it has contain t that verify. open gets this node's own partial
// (none or one) apart from the others', so it can skip checking its own.
func gatherAndOpen[P, R any](ctx context.Context, self string, holders []fsm.Node, t int, ask func(context.Context, fsm.Node) (P, error), open func(own, others []P) (R, error)) (R, error) {
	var zero R
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slices.SortStableFunc(holders, func(a, b fsm.Node) int {
		if a.ID == self {
			return -1
		}
		if b.ID == self {
			return 1
		}
		return 0
	})
	results := make(chan partialResult[P], len(holders))
	asked := 0
	askUpTo := func(upTo int) {
		for ; asked < upTo && asked < len(holders); asked++ {
			h := holders[asked]
			go func() {
				p, err := ask(ctx, h)
				results <- partialResult[P]{node: h.ID, own: h.ID == self, p: p, err: err}
			}()
		}
	}
	askUpTo(t)
	hedge := time.NewTimer(hedgeDelay)
	defer hedge.Stop()
	var own, got []P // got: the others'
	failures := map[string]error{}
	var lastOpen error
	for answered := 0; answered < asked || asked < len(holders); {
		select {
		case <-hedge.C:
			askUpTo(len(holders))
			continue
		case <-ctx.Done():
			askUpTo(len(holders)) // nothing more will come; report what we have
			return zero, quorumError(len(own)+len(got), t, len(holders), failures, ctx.Err())
		case r := <-results:
			answered++
			if r.err != nil {
				failures[r.node] = r.err
				askUpTo(len(holders))
				continue
			}
			if r.own {
				own = append(own, r.p)
			} else {
				got = append(got, r.p)
			}
		}
		if len(own)+len(got) < t {
			continue
		}
		plain, err := open(own, got)
		if err == nil {
			return plain, nil
		}
		// A partial did not verify: its holder is named in the error.
		lastOpen = err
		askUpTo(len(holders))
	}
	if lastOpen != nil {
		failures["combine"] = lastOpen
	}
	return zero, quorumError(len(own)+len(got), t, len(holders), failures, nil)
}

// quorumError explains a release that got too few partials. A refusal
// every failed holder agrees on (the key was revoked, say) is reported as
// that refusal; otherwise it is "no quorum" with each holder's reason.
func quorumError(got, t, n int, failures map[string]error, ctxErr error) error {
	kinds := map[Kind]int{}
	var first error
	for _, err := range failures {
		k := KindOf(err)
		kinds[k]++
		if first == nil && k != KindInternal && k != KindNoQuorum {
			first = err
		}
	}
	for k, c := range kinds {
		if c == len(failures) && k != KindInternal && k != KindNoQuorum && first != nil {
			return Errorf(k, "%s", first.Error())
		}
	}
	var reasons []string
	for node, err := range failures {
		reasons = append(reasons, node+": "+err.Error())
	}
	sort.Strings(reasons)
	if ctxErr != nil {
		reasons = append(reasons, "the others did not answer in time")
	}
	return Errorf(KindNoQuorum, "%d of the %d share holders needed answered (%d holders; %s)", got, t, n, strings.Join(reasons, "; "))
}
