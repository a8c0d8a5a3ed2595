package jepsen

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/keyquorum/keyquorum/fsm"
)

// The register workload: each key is a register whose value is the
// secret. Writes are keysrv's compare-and-swap (SHA-256 of the value the
// worker believes current, and a new value no one wrote before); reads
// are releases of the secret and reads of the key's version from its
// metadata. Each successful swap adds one to the version, so the model's
// state is the pair.

// regInput is an operation's input in the model.
type regInput struct {
	F        string // "read", "version" or "cas"
	Old, New string
}

// regOutput is what the operation returned.
type regOutput struct {
	Value   string
	Version uint64
	Unknown bool // a cas whose outcome is unknown
}

// regState is the register: its value and its version.
type regState struct {
	Value   string
	Version uint64
}

// registerModel is the sequential specification of one key, starting
// from its value and version at creation.
func registerModel(init regState) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return init },
		Step: func(state, input, output any) (bool, any) {
			s, in, out := state.(regState), input.(regInput), output.(regOutput)
			switch in.F {
			case "read":
				return out.Value == s.Value, s
			case "version":
				return out.Version == s.Version, s
			case "cas":
				if s.Value == in.Old {
					return true, regState{Value: in.New, Version: s.Version + 1}
				}
				// A swap of unknown outcome that did not match did
				// nothing; one that was acknowledged must have matched.
				return out.Unknown, s
			}
			return false, s
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(regInput), output.(regOutput)
			switch in.F {
			case "read":
				return fmt.Sprintf("read → %s", out.Value)
			case "version":
				return fmt.Sprintf("version → %d", out.Version)
			}
			if out.Unknown {
				return fmt.Sprintf("cas %s→%s ?", in.Old, in.New)
			}
			return fmt.Sprintf("cas %s→%s", in.Old, in.New)
		},
		DescribeState: func(state any) string {
			s := state.(regState)
			return fmt.Sprintf("%s (v%d)", s.Value, s.Version)
		},
		DescribeOperationMetadata: func(info any) string {
			if info == nil {
				return ""
			}
			return info.(string)
		},
	}
}

// regOperations turns one key's recorded operations into porcupine's:
// failed operations did nothing and are left out, as are reads without
// an answer; a swap of unknown outcome stays pending until after the last
// operation of the run (end).
func regOperations(ops []Op, key string, end int64) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Workload != WorkloadRegister || op.Key != key {
			continue
		}
		in := regInput{F: op.F, Old: op.Old, New: op.New}
		var res regOutput
		ret := op.Return
		switch {
		case op.Outcome == OK:
			res = regOutput{Value: op.Value, Version: op.Version}
		case op.Outcome == Unknown && op.F == "cas":
			res, ret = regOutput{Unknown: true}, end
		default:
			continue
		}
		meta := fmt.Sprintf("#%d on %s", op.Index, op.Node)
		if op.Err != "" {
			meta += ": " + op.Err
		}
		out = append(out, porcupine.Operation{ClientId: op.Process, Input: in, Call: op.Call, Output: res, Return: ret, Metadata: meta})
	}
	return out
}

// register runs the workload.
type register struct {
	e    *env
	keys []string
	init map[string]regState
}

func newRegister(e *env) *register {
	r := &register{e: e, init: map[string]regState{}}
	for i := range e.cfg.RegisterKeys {
		r.keys = append(r.keys, fmt.Sprintf("reg/%d", i))
	}
	return r
}

func (r *register) setup(ctx context.Context) error {
	for _, k := range r.keys {
		init := k + "-init"
		var key *fsm.Key
		err := retryDefinite(ctx, 10, func(ctx context.Context) error {
			var err error
			key, err = r.e.db.client(r.e.db.members()[0]).CreateSecret(ctx, k, []byte(init), time.Time{})
			return err
		})
		if err != nil {
			return fmt.Errorf("creating register %s: %w", k, err)
		}
		r.init[k] = regState{Value: init, Version: key.Version}
	}
	return nil
}

// run starts the workers and returns when they have stopped.
func (r *register) run(stop, hard context.Context) {
	e := r.e
	var wg sync.WaitGroup
	for w := range e.cfg.RegisterWorkers {
		wg.Go(func() { r.worker(stop, hard, w) })
	}
	wg.Wait()
}

func (r *register) worker(stop, hard context.Context, w int) {
	e := r.e
	rnd := seeded(e.cfg.Seed, streamRegister<<32|uint64(w))
	proc := e.h.process()
	known := map[string]string{}
	for k, s := range r.init {
		known[k] = s.Value
	}
	writes := 0
	for stop.Err() == nil {
		key := r.keys[rnd.IntN(len(r.keys))]
		n, id := e.target(w)
		c := e.db.client(n)
		base := Op{Process: proc, Workload: WorkloadRegister, Node: id, Key: key}
		var op Op
		switch p := rnd.IntN(100); {
		case p < 35:
			base.F = "read"
			op = e.h.do(hard, base, func(ctx context.Context, op *Op) error {
				v, err := c.Get(ctx, key)
				op.Value = string(v)
				return err
			})
			if op.Outcome == OK {
				known[key] = op.Value
			}
		case p < 65:
			base.F = "version"
			op = e.h.do(hard, base, func(ctx context.Context, op *Op) error {
				k, err := c.Key(ctx, key)
				if err == nil {
					op.Version = k.Version
				}
				return err
			})
		default:
			writes++
			base.F, base.Old, base.New = "cas", known[key], fmt.Sprintf("w%d-%d", w, writes)
			op = e.h.do(hard, base, func(ctx context.Context, op *Op) error {
				sum := sha256.Sum256([]byte(op.Old))
				_, err := c.CompareAndSwap(ctx, key, sum[:], []byte(op.New))
				return err
			})
			if op.Outcome == OK {
				known[key] = op.New
			}
		}
		if op.Outcome == Unknown {
			proc = e.h.process()
		}
		e.pace(stop, op, rnd)
	}
}

// check runs porcupine on each key and writes the visualization of any
// key that is not linearizable (of every key with HTMLAll).
func (r *register) check(rep *Summary, ops []Op, windows []Window) {
	end := int64(0)
	for _, op := range ops {
		end = max(end, op.Return)
	}
	end++
	rep.Linearizable = map[string]string{}
	deadline := time.Now().Add(r.e.cfg.CheckTimeout)
	for _, key := range r.keys {
		model := registerModel(r.init[key])
		hist := regOperations(ops, key, end)
		left := max(time.Until(deadline), time.Second)
		res, info := porcupine.CheckOperationsVerbose(model, hist, left)
		rep.Linearizable[key] = string(res)
		switch res {
		case porcupine.Illegal:
			rep.anomaly("linearizable", "register %s: the history of %d operations is not linearizable (see %s)", key, len(hist), htmlName(key))
		case porcupine.Unknown:
			rep.warn("register %s: the linearizability check timed out after %v", key, left)
		}
		if res == porcupine.Illegal || r.e.cfg.HTMLAll {
			info.AddAnnotations(faultAnnotations(windows))
			path := filepath.Join(r.e.cfg.OutDir, htmlName(key))
			if err := porcupine.VisualizePath(model, info, path); err != nil {
				rep.warn("visualizing %s: %v", key, err)
			}
		}
	}
}

func htmlName(key string) string {
	return "register-" + strings.ReplaceAll(key, "/", "-") + ".html"
}
