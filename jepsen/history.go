package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
)

// Outcome is what a client knows of an operation once it returns.
type Outcome string

// Outcomes.
const (
	OK      Outcome = "ok"      // it happened, and returned what Op says
	Fail    Outcome = "fail"    // it definitely did not happen
	Unknown Outcome = "unknown" // it may or may not have happened
)

// Op is one client operation of the history.
type Op struct {
	Index    int     `json:"index"`
	Process  int     `json:"process"` // a worker; a new one after each unknown outcome
	Workload string  `json:"workload"`
	Node     string  `json:"node"` // the node the client asked
	F        string  `json:"f"`    // read, version, cas, create, release, revoke, sign
	Key      string  `json:"key"`
	Old      string  `json:"old,omitempty"`     // cas: the value compared; sign: the message
	New      string  `json:"new,omitempty"`     // cas: the value written; create: the secret (sign workload: the public key, hex)
	Value    string  `json:"value,omitempty"`   // read, release: the secret released; sign: the signature, hex
	Version  uint64  `json:"version,omitempty"` // version: the key's version
	Call     int64   `json:"call"`              // ns since the run began
	Return   int64   `json:"return"`
	Outcome  Outcome `json:"outcome"`
	ErrKind  string  `json:"err_kind,omitempty"`
	Err      string  `json:"error,omitempty"`
	// Timeout marks an operation cut off by the client's deadline.
	Timeout bool `json:"timeout,omitempty"`
}

// verdict is an error's meaning for the history.
type verdict struct {
	outcome Outcome
	kind    cluster.Kind
}

// classify decides what an operation's error means. The API's kinds are
// definite except unknown_outcome, which package client also
// gives a write that lost its connection after it was sent. Two more
// cases are unknown, because the request may have reached a node that
// acted on it: the client's own deadline ran out (ctx is done), and an
// error that is not one of the API's (no *cluster.Error).
func classify(ctx context.Context, err error) verdict {
	if err == nil {
		return verdict{outcome: OK}
	}
	var e *cluster.Error
	switch {
	case !errors.As(err, &e):
		return verdict{outcome: Unknown, kind: cluster.KindInternal}
	case e.Kind == cluster.KindUnknownOutcome || ctx.Err() != nil:
		return verdict{outcome: Unknown, kind: e.Kind}
	}
	return verdict{outcome: Fail, kind: e.Kind}
}

// history records the operations of a run.
type history struct {
	clock   *clock
	timeout time.Duration
	mu      sync.Mutex
	ops     []Op
	procs   int
}

func newHistory(c *clock, timeout time.Duration) *history {
	return &history{clock: c, timeout: timeout}
}

// process allocates a process number.
func (h *history) process() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.procs++
	return h.procs - 1
}

// do runs fn as the operation op, bounded by the operation timeout, and
// records it. ctx is the run's hard stop; workers stop starting
// operations at the soft one, so no operation is cut short by the end of
// the run.
func (h *history) do(ctx context.Context, op Op, fn func(ctx context.Context, op *Op) error) Op {
	cctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	op.Call = h.clock.now()
	err := fn(cctx, &op)
	op.Return = h.clock.now()
	v := classify(cctx, err)
	op.Outcome = v.outcome
	op.Timeout = cctx.Err() != nil && ctx.Err() == nil
	if err != nil {
		op.ErrKind, op.Err = string(v.kind), err.Error()
	}
	h.mu.Lock()
	op.Index = len(h.ops)
	h.ops = append(h.ops, op)
	h.mu.Unlock()
	return op
}

// snapshot returns the operations recorded so far.
func (h *history) snapshot() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// writeJSONLines writes the operations, one JSON object a line.
func writeJSONLines(w io.Writer, ops []Op) error {
	enc := json.NewEncoder(w)
	for i := range ops {
		if err := enc.Encode(&ops[i]); err != nil {
			return err
		}
	}
	return nil
}
