package cluster

import (
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// A release trace, for measuring only (keybench -trace): a node records
// when each step of a blind release began and ended, by request, so that
// the steps of every node can be lined up with the client's and show where
// a release's wall time goes, and which of it is waiting. It is off unless
// EnableReleaseTrace is called, which keyd does only with --debug-addr;
// off, a step costs one atomic load.

// TraceStep is one step of a release on one node.
type TraceStep struct {
	// Req names the release: the first 8 bytes of its request's
	// signature, in hex; empty for a step shared by the requests that
	// joined it (a read index round).
	Req   string `json:"req,omitempty"`
	Node  string `json:"node"`
	Step  string `json:"step"`
	Start int64  `json:"start"` // Unix nanoseconds
	End   int64  `json:"end"`
}

// maxTraceSteps bounds the steps a node keeps until they are taken.
const maxTraceSteps = 1 << 20

type releaseTracer struct {
	mu    sync.Mutex
	steps []TraceStep
}

var releaseTrace atomic.Pointer[releaseTracer]

// EnableReleaseTrace makes the nodes of this process record the steps of
// the releases they take part in, until TakeReleaseTrace takes them.
func EnableReleaseTrace() { releaseTrace.CompareAndSwap(nil, &releaseTracer{}) }

// TakeReleaseTrace returns the steps recorded since the last call and
// forgets them; nil when tracing is off.
func TakeReleaseTrace() []TraceStep {
	t := releaseTrace.Load()
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.steps
	t.steps = nil
	return out
}

func noTrace() {}

// traceStep starts step of the release of sg (nil for a shared step) on
// this node; the function it returns ends it.
func (n *Node) traceStep(sg *fsm.Signed, step string) func() {
	return traceStep(n.id.NodeID, sg, step)
}

// traceAsk starts the step of asking holder for its answer to the release
// of sg; the function it returns ends it.
func (n *Node) traceAsk(sg *fsm.Signed, holder string) func() {
	if releaseTrace.Load() == nil {
		return noTrace
	}
	return n.traceStep(sg, "coordinator: ask "+holder)
}

// traceStep starts step of the release of sg (nil for a shared step) on
// node; the function it returns ends it.
func traceStep(node string, sg *fsm.Signed, step string) func() {
	t := releaseTrace.Load()
	if t == nil {
		return noTrace
	}
	req := ""
	if sg != nil {
		req = traceID(sg)
	}
	start := time.Now()
	return func() {
		t.add(TraceStep{Req: req, Node: node, Step: step, Start: start.UnixNano(), End: time.Now().UnixNano()})
	}
}

// traceID is how a trace names the release of sg.
func traceID(sg *fsm.Signed) string {
	return hex.EncodeToString(sg.Signature[:min(8, len(sg.Signature))])
}

// traceSince records step of the release of sg on this node, from start
// to now.
func (n *Node) traceSince(sg *fsm.Signed, step string, start time.Time) {
	if t := releaseTrace.Load(); t != nil && sg != nil {
		t.add(TraceStep{Req: traceID(sg), Node: n.id.NodeID, Step: step, Start: start.UnixNano(), End: time.Now().UnixNano()})
	}
}

func (t *releaseTracer) add(s TraceStep) {
	t.mu.Lock()
	if len(t.steps) < maxTraceSteps {
		t.steps = append(t.steps, s)
	}
	t.mu.Unlock()
}
