package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
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
	// Caller is the client's address as the coordinator saw it, for a
	// capability token restricted to a network: the coordinator's word,
	// which a holder cannot check (docs/tokens.md).
	Caller string `json:"caller,omitempty"`
	// LeaderRead is the read the coordinator made, when it is the leader
	// and confirmed its leadership itself: the index and its chain hash
	// there. A holder that knows the sender as the leader takes it in
	// place of its own read (which it would have asked of that same node:
	// leaderVouched); from any other node it is ignored.
	LeaderRead *leaderRead `json:"leader_read,omitempty"`
	// ReadFollows says that the coordinator, the leader, sends that read
	// on the same call once its heartbeat round confirms it (a follow
	// frame, calls.go), and sent this request while the round was in
	// flight. A holder that knows the sender as the leader computes its
	// answer meanwhile and releases it only once the read came and its
	// checks stand at it (readFollows); from any other node, or over
	// HTTP/2, the holder makes its own read.
	ReadFollows bool `json:"read_follows,omitempty"`

	// local is set when the coordinator answers itself, after its own
	// read: never from the wire.
	local bool
	// from is the node that sent the request, by the certificate of its
	// connection (peerNode): never from the wire.
	from string
	// follow waits for the body of the call's follow frame (callFollow),
	// nil over HTTP/2: never from the wire.
	follow func(context.Context) ([]byte, error)
	// readAfter is the coordinator's read still in flight when it sends
	// ReadFollows: the coordinator's own, never on the wire.
	readAfter *pendingRead
	// labels is Request's command as decodeCommand decoded it, once
	// decodedLabels: what the holder's metrics and audit record name
	// (command), never what a check reads.
	labels        *fsm.Command
	decodedLabels bool
}

// command is req's signed command for the holder's metric labels and
// audit record (decodeCommand, nil when it does not parse), decoded once
// per request: the checks decode the signed payload themselves. It is
// called only by the node answering req, on its own copy.
func (req *partialRequest) command() *fsm.Command {
	if !req.decodedLabels {
		req.labels, req.decodedLabels = decodeCommand(req.Request), true
	}
	return req.labels
}

// leaderRead is a leader's read index and its chain hash there.
type leaderRead struct {
	Index uint64 `json:"index"`
	Chain []byte `json:"chain,omitempty"`
}

// maxChainHash bounds a chain hash in a followed read (chain.go's are
// SHA-256, 32 bytes).
const maxChainHash = 64

// appendFollowed appends lr as the body of a follow frame: the index (8
// bytes, big-endian), then the chain hash.
func (lr *leaderRead) appendFollowed(b []byte) []byte {
	return append(binary.BigEndian.AppendUint64(b, lr.Index), lr.Chain...)
}

// parseFollowedRead parses a follow frame's body (appendFollowed).
func parseFollowedRead(b []byte) (*leaderRead, error) {
	if len(b) < 8 || len(b) > 8+maxChainHash {
		return nil, Errorf(KindInvalid, "a followed read of %d bytes", len(b))
	}
	lr := &leaderRead{Index: binary.BigEndian.Uint64(b)}
	if len(b) > 8 {
		lr.Chain = bytes.Clone(b[8:])
	}
	return lr, nil
}

// pendingRead is a leader's read whose heartbeat round is in flight
// (coordinatorReadAhead): read is the mark, a read once done is closed
// with err nil.
type pendingRead struct {
	read leaderRead
	done chan struct{}
	err  error
}

// wait returns the read once the round confirmed it.
func (p *pendingRead) wait(ctx context.Context) (*leaderRead, error) {
	select {
	case <-p.done:
		if p.err != nil {
			return nil, p.err
		}
		return &p.read, nil
	case <-ctx.Done():
		return nil, Errorf(KindNoQuorum, "the leader did not confirm its read in time")
	}
}

// follow sends p's read after a holder's request, once confirmed; a
// round that failed cancels the call instead.
func (p *pendingRead) follow() *follow {
	return &follow{ready: p.done, body: func() ([]byte, error) {
		if p.err != nil {
			return nil, p.err
		}
		return p.read.appendFollowed(nil), nil
	}}
}

// authorized is what a coordinator's read found: everything an operation
// needs to ask the holders.
type authorized struct {
	request   *fsm.Signed
	caller    netip.Addr // the client's address (WithCaller), for a capability token
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
	// leaderRead is the read index this node made as the leader, if it
	// did: the holders take it as their own (partialRequest.LeaderRead).
	leaderRead *leaderRead
	// readAfter is the leader's read still in flight
	// (coordinatorReadAhead), which the holders wait for
	// (partialRequest.ReadFollows).
	readAfter *pendingRead
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
	if err := n.recordTokenUses(ctx, sg); err != nil {
		return nil, err
	}
	endRead := n.traceStep(sg, "coordinator: read index")
	r, err := n.sharedReadIndex(ctx)
	endRead()
	if err != nil {
		return nil, err
	}
	defer n.traceStep(sg, "coordinator: authorize at the read")()
	if err := n.waitApplied(ctx, r.index); err != nil {
		return nil, err
	}
	a := &authorized{request: sg, caller: callerOf(ctx)}
	if r.leader == n.id.NodeID {
		a.leaderRead = &leaderRead{Index: r.index, Chain: r.chain}
	}
	basis, ferr := n.authorizeOn(a, also)
	if ferr != nil {
		err := fromFSM(ferr)
		n.decide(roleCoordinator, a.request, "", err)
		return nil, err
	}
	if err := n.decide(roleCoordinator, sg, basis, nil); err != nil {
		return nil, err
	}
	return a, nil
}

// authorizeOn authorizes a.request on the state this node has applied
// and fills a from it (coordinatorRead); also runs in the same read.
func (n *Node) authorizeOn(a *authorized, also func(s *fsm.State, a *authorized, refused *fsm.Error)) (basis string, ferr *fsm.Error) {
	n.fsm.Read(func(s *fsm.State) {
		cmd, k, b, e := authorizeRequest(s, a.request, now(), a.caller)
		if e == nil {
			basis = b
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
	return basis, ferr
}

// coordinatorReadAhead is coordinatorRead on the leader with its
// heartbeat round in flight (leaderReadAhead): it takes the read's mark
// (the index this node has applied and its chain hash there), authorizes
// sg on its state at or after the mark, and returns at once with the
// round's outcome to come, so the holders are asked during the round.
// The request it makes of them carries ReadFollows and the read to
// follow (readAfter); nothing computed for it leaves a holder, this one
// included, before the round confirms the read, and the caller records
// its own decision (decide, with basis) only then. ok is false, with
// nothing started, when this node is not a ready leader or the state
// refuses sg: coordinatorRead's confirmed read then says why. A request
// under a capability token takes coordinatorRead too: a token's use
// bounds go through the log before the read (recordTokenUses).
func (n *Node) coordinatorReadAhead(ctx context.Context, sg *fsm.Signed) (a *authorized, basis string, ok bool) {
	if _, err := n.joined(); err != nil || len(sg.Token) != 0 || n.cons.divergedErr() != nil {
		return nil, "", false
	}
	endRead := n.traceStep(sg, "coordinator: read ahead")
	defer endRead()
	m, confirmed, err := n.cons.leaderReadAhead()
	if err != nil {
		return nil, "", false
	}
	a = &authorized{request: sg, caller: callerOf(ctx)}
	basis, ferr := n.authorizeOn(a, nil)
	if ferr != nil {
		return nil, "", false
	}
	p := &pendingRead{read: leaderRead{Index: m.Index, Chain: m.Hash}, done: make(chan struct{})}
	go func() {
		if err := <-confirmed; err != nil {
			p.err = Errorf(kindNotLeader, "node %s could not confirm its leadership: %v", n.id.NodeID, err)
		}
		close(p.done)
	}()
	a.readAfter = p
	return a, basis, true
}

// partialFor is the request to ask the holders, for the shares of epoch
// (0 for the shares of a Tang or threshold RSA key, which are the key's
// own).
func (a *authorized) partialFor(epoch uint64) *partialRequest {
	return &partialRequest{ReadIndex: a.readAt, Request: a.request, Version: a.key.Version, Epoch: epoch, Caller: callerString(a.caller),
		LeaderRead: a.leaderRead, ReadFollows: a.readAfter != nil, readAfter: a.readAfter}
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
// holders listed and t. early, if not nil, is what speculate asked before
// the read: its answers are used when it asked for what gather would.
func gather[P, R any](ctx context.Context, n *Node, a *authorized, call holderCall[P], req *partialRequest, tooFew string, early *speculation[P], open func(own, others []*P) (R, error)) (R, error) {
	if len(a.holders) < a.threshold {
		var zero R
		return zero, Errorf(KindNoQuorum, tooFew, len(a.holders), a.threshold)
	}
	ask := askHolder(n, call.path, req, call.local, call.index)
	var holders []fsm.Node
	if early.matches(a, req) {
		holders = early.holders
	} else {
		early.discard()
		early = nil
		holders = n.holderPick.order(n.id.NodeID, a.holders)
	}
	return gatherAndOpen(ctx, n.id.NodeID, holders, a.threshold, func(ctx context.Context, h fsm.Node) (*P, error) {
		if r, ok := early.answer(ctx, h.ID); ok {
			return r.p, r.err
		}
		done := n.holderPick.asking(h.ID)
		defer done()
		return ask(ctx, h)
	}, open)
}

// sharedReadIndex is a read index for a coordinator, from a round it
// shares with this node's other coordinations and holder checks that
// arrived before the round started (holderReadIndex). A coordinator uses
// its own share too: like a holder, it compares its chain hash with the
// leader's (checkLeaderChain).
func (n *Node) sharedReadIndex(ctx context.Context) (readIndexResult, error) {
	select {
	case r := <-n.holderReadIndex():
		if r.err != nil {
			return r, r.err
		}
		return r, n.checkLeaderChain(ctx, r)
	case <-ctx.Done():
		return readIndexResult{}, Errorf(KindNoQuorum, "node %s could not get a read index from the leader in time", n.id.NodeID)
	}
}

// A speculation asks the other holders while the coordinator's own read
// is in flight, so that their reads and computations overlap it instead
// of following it. It is made on the state this node has applied: the
// holders, key version and epoch there. It asks only holders other than
// this node, each of which makes its own read before it answers (holder.go)
// and takes the coordinator's index as a lower bound only; this node's
// own answer still follows its read. gather uses the answers only if the
// read found the same request, key version, epoch and holders
// (speculation.matches); otherwise it discards them and asks again at the
// read. A holder refuses a request for another key version than its
// read's before it spends the request's nonce, so asking it again at the
// right version is answered; one that did answer the speculation read the
// earlier version after the request arrived, a write raced the release,
// and the release fails with that holder's refusal of the replay, as any
// release that races a write to its key may.
type speculation[P any] struct {
	request *fsm.Signed
	version uint64
	epoch   uint64
	// holders is the order gather asks in: this node first, then the
	// ones asked early.
	holders []fsm.Node
	asked   map[string]chan partialResult[*P]
	cancel  context.CancelFunc
}

// speculate asks the holders that gather would ask after this node, t-1
// of them, with the state this node has applied; nil when that state does
// not authorize sg (the read will say why) or this node is no holder.
func speculate[P any](ctx context.Context, n *Node, sg *fsm.Signed, call holderCall[P]) *speculation[P] {
	var (
		sp        speculation[P]
		t         int
		holders   []fsm.Node
		appliedAt uint64
		ok        bool
	)
	n.fsm.Read(func(s *fsm.State) {
		_, k, _, e := authorizeRequest(s, sg, now(), callerOf(ctx))
		if e != nil {
			return
		}
		ok = true
		sp.request, sp.version, sp.epoch = sg, k.Version, s.Epoch
		t, appliedAt = s.Threshold, s.Applied
		for _, h := range s.Holders() {
			holders = append(holders, *h)
		}
	})
	if !ok || len(holders) < t || t < 1 {
		return nil
	}
	sp.holders = n.holderPick.order(n.id.NodeID, holders)
	if sp.holders[0].ID != n.id.NodeID {
		return nil
	}
	req := &partialRequest{ReadIndex: appliedAt, Request: sg, Version: sp.version, Epoch: sp.epoch, Caller: callerString(callerOf(ctx))}
	ask := askHolder(n, call.path, req, call.local, call.index)
	ctx, sp.cancel = context.WithCancel(ctx)
	sp.asked = map[string]chan partialResult[*P]{}
	for _, h := range sp.holders[1:t] {
		ch := make(chan partialResult[*P], 1)
		sp.asked[h.ID] = ch
		done := n.holderPick.asking(h.ID)
		go func() {
			defer done()
			p, err := ask(ctx, h)
			ch <- partialResult[*P]{node: h.ID, p: p, err: err}
		}()
	}
	return &sp
}

// matches reports whether the read a asks for what sp asked: the same
// request, key version and epoch, and the same holders.
func (sp *speculation[P]) matches(a *authorized, req *partialRequest) bool {
	if sp == nil || sp.request != a.request || sp.version != req.Version || sp.epoch != req.Epoch || len(sp.holders) != len(a.holders) {
		return false
	}
	for _, h := range a.holders {
		if !slices.ContainsFunc(sp.holders, func(o fsm.Node) bool { return o.ID == h.ID && o.Index == h.Index && o.RaftAddr == h.RaftAddr }) {
			return false
		}
	}
	return true
}

// answer waits for the early answer of holder id, if it was asked early.
func (sp *speculation[P]) answer(ctx context.Context, id string) (partialResult[*P], bool) {
	if sp == nil {
		return partialResult[*P]{}, false
	}
	ch, ok := sp.asked[id]
	if !ok {
		return partialResult[*P]{}, false
	}
	select {
	case r := <-ch:
		return r, true
	case <-ctx.Done():
		return partialResult[*P]{err: ctx.Err()}, true
	}
}

// discard cancels the early requests.
func (sp *speculation[P]) discard() {
	if sp != nil {
		sp.cancel()
	}
}

// holderPicker spreads a coordinator's requests over the holders: it
// asks itself first (its own partial costs no round trip and no second
// read index), then the other holders with the fewest of its requests
// in flight, in turn among equals. A slow or overloaded holder has more
// requests in flight, so it is asked less; one that does not answer is
// covered by the hedge (gatherAndOpen). Which holders answer changes
// nothing about what a release checks: every holder runs its own checks.
type holderPicker struct {
	mu       sync.Mutex
	turn     int
	inFlight map[string]int
}

// order returns holders in the order to ask them: self (if a holder)
// first, then the others by requests in flight, in turn among equals.
func (p *holderPicker) order(self string, holders []fsm.Node) []fsm.Node {
	out := make([]fsm.Node, 0, len(holders))
	var others []fsm.Node
	for _, h := range holders {
		if h.ID == self {
			out = append(out, h)
		} else {
			others = append(others, h)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(others) > 0 {
		p.turn = (p.turn + 1) % len(others)
		others = slices.Concat(others[p.turn:], others[:p.turn])
	}
	slices.SortStableFunc(others, func(a, b fsm.Node) int { return p.inFlight[a.ID] - p.inFlight[b.ID] })
	return append(out, others...)
}

// asking counts a request to holder id in flight until the returned
// function is called.
func (p *holderPicker) asking(id string) func() {
	p.mu.Lock()
	if p.inFlight == nil {
		p.inFlight = map[string]int{}
	}
	p.inFlight[id]++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.inFlight[id]--; p.inFlight[id] <= 0 {
			delete(p.inFlight, id)
		}
	}
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
		defer n.traceAsk(req.Request, h.ID)()
		if h.ID == n.id.NodeID {
			own := *req
			own.local = true
			var err error
			if p, err = local(ctx, &own); err != nil {
				return nil, err
			}
		} else {
			p = new(P)
			if err := callHolder(ctx, n, h, path, req, p); err != nil {
				return nil, err
			}
		}
		if i := index(p); i != h.Index {
			return nil, fmt.Errorf("answered for share %d, holds %d", i, h.Index)
		}
		return p, nil
	}
}

// callHolder asks holder h at path for its answer to req, into out. A
// request whose read follows (req.readAfter) gets it on the same call
// once confirmed; a holder that takes no follow frames (of an earlier
// version) is asked once the read is confirmed, with the read in the
// request (LeaderRead).
func callHolder(ctx context.Context, n *Node, h fsm.Node, path string, req *partialRequest, out any) error {
	if req.readAfter == nil {
		_, err := n.call(ctx, h.RaftAddr, path, req, out)
		return err
	}
	_, err := n.cons.callFollowed(ctx, h.RaftAddr, path, req, req.readAfter.follow(), out)
	if !errors.Is(err, errNoFollow) {
		return err
	}
	lr, err := req.readAfter.wait(ctx)
	if err != nil {
		return err
	}
	after := *req
	after.ReadFollows, after.LeaderRead, after.readAfter = false, lr, nil
	_, err = n.call(ctx, h.RaftAddr, path, &after, out)
	return err
}

type partialResult[P any] struct {
	node string
	own  bool // computed here, with this node's share
	p    P
	err  error
}

// gatherAndOpen asks the first t of holders (in the order given: see
// holderPicker) for partials, and the other holders too if one of them
// fails or is slow; it opens as soon as the partials it has contain t that
// verify. open gets this node's own partial (none or one) apart from the
// others', so it can skip checking its own.
func gatherAndOpen[P, R any](ctx context.Context, self string, holders []fsm.Node, t int, ask func(context.Context, fsm.Node) (P, error), open func(own, others []P) (R, error)) (R, error) {
	var zero R
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
