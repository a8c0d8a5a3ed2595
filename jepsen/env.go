package jepsen

import (
	"context"
	"math/rand/v2"
	"time"
)

// env is what the workloads share.
type env struct {
	cfg *Config
	db  *db
	h   *history
}

// target is the member worker w talks to now: workers are spread over
// the members in slot order, and follow membership changes.
func (e *env) target(w int) (slot int, id string) {
	ms := e.db.members()
	n := ms[w%len(ms)]
	return n, e.db.nodeID(n)
}

// pace waits a little after an operation, longer after one that did not
// succeed, so that a worker facing a dead node does not spin.
func (e *env) pace(stop context.Context, op Op, r *rand.Rand) {
	d := time.Duration(r.IntN(5)) * time.Millisecond
	if op.Outcome != OK {
		d = 100*time.Millisecond + time.Duration(r.IntN(200))*time.Millisecond
	}
	select {
	case <-stop.Done():
	case <-time.After(d):
	}
}
