package jepsen

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
)

// The set workload: workers create keys with fresh names and secrets.
// After the faults heal, every key whose creation was acknowledged must be
// listed by every node and released by every node with its secret
// (nothing lost), no key whose creation was refused may exist on any node,
// and a key whose creation has an unknown outcome must be everywhere or
// nowhere.

const setPrefix = "set/"

type set struct {
	e *env
}

func (s *set) run(stop, hard context.Context) {
	var wg sync.WaitGroup
	for w := range s.e.cfg.SetWorkers {
		wg.Go(func() { s.worker(stop, hard, w) })
	}
	wg.Wait()
}

func (s *set) worker(stop, hard context.Context, w int) {
	e := s.e
	rnd := seeded(e.cfg.Seed, streamSet<<32|uint64(w))
	proc := e.h.process()
	// Workers of other workloads use the low worker numbers; offset so
	// the set's workers start on other nodes.
	target := w + 1
	for i := 0; stop.Err() == nil; i++ {
		n, id := e.target(target)
		c := e.db.client(n)
		secret := make([]byte, 16)
		for j := range secret {
			secret[j] = byte(rnd.Uint32())
		}
		op := e.h.do(hard, Op{Process: proc, Workload: WorkloadSet, Node: id, F: "create",
			Key: fmt.Sprintf("%s%d-%d", setPrefix, w, i), New: hex.EncodeToString(secret)},
			func(ctx context.Context, op *Op) error {
				_, err := c.CreateSecret(ctx, op.Key, []byte(op.New), time.Time{})
				return err
			})
		if op.Outcome == Unknown {
			proc = e.h.process()
		}
		target++
		e.pace(stop, op, rnd)
		select {
		case <-stop.Done():
		case <-time.After(e.cfg.SetInterval):
		}
	}
}

// final reads every node's keys and releases every key that should be
// there from every node.
func (s *set) final(ctx context.Context, rep *Summary, ops []Op) {
	e := s.e
	members := e.db.members()
	listed := map[string]map[string]bool{} // node -> names
	for _, n := range members {
		id := e.db.nodeID(n)
		var names map[string]bool
		err := retryDefinite(ctx, 10, func(ctx context.Context) error {
			keys, err := e.db.client(n).Keys(ctx)
			if err != nil {
				return err
			}
			names = map[string]bool{}
			for _, k := range keys {
				if strings.HasPrefix(k.Name, setPrefix) {
					names[k.Name] = true
				}
			}
			return nil
		})
		if err != nil {
			rep.anomaly("set", "could not list the keys of %s after healing: %v", id, err)
			continue
		}
		listed[id] = names
	}
	var nodes []string
	for id := range listed {
		nodes = append(nodes, id)
	}
	slices.Sort(nodes)

	type release struct {
		slot      int
		node, key string
		want      string
	}
	var releases []release
	var acked, refused, unknownHappened int
	for _, op := range ops {
		if op.Workload != WorkloadSet || op.F != "create" {
			continue
		}
		var on []string
		for _, id := range nodes {
			if listed[id][op.Key] {
				on = append(on, id)
			}
		}
		switch op.Outcome {
		case OK:
			acked++
			if len(on) < len(nodes) {
				rep.anomaly("set-lost", "%s: creation acknowledged at %s, but listed only on %v of %v", op.Key, ms(op.Return), on, nodes)
			}
		case Fail:
			refused++
			if len(on) > 0 {
				rep.anomaly("set-refused-exists", "%s: creation refused (%s: %s), but listed on %v", op.Key, op.ErrKind, op.Err, on)
			}
			continue
		case Unknown:
			if len(on) == 0 {
				continue
			}
			unknownHappened++
			if len(on) < len(nodes) {
				rep.anomaly("set-diverged", "%s: creation of unknown outcome is listed only on %v of %v", op.Key, on, nodes)
			}
		}
		for _, n := range members {
			releases = append(releases, release{slot: n, node: e.db.nodeID(n), key: op.Key, want: op.New})
		}
	}
	rep.Set = &SetSummary{Acknowledged: acked, Refused: refused, UnknownPresent: unknownHappened}

	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan release)
	for range 4 {
		wg.Go(func() {
			for r := range work {
				var got []byte
				err := retryDefinite(ctx, 5, func(ctx context.Context) error {
					var err error
					got, err = e.db.client(r.slot).Get(ctx, r.key)
					return err
				})
				mu.Lock()
				rep.Set.Releases++
				switch {
				case cluster.KindOf(err) == cluster.KindNotFound:
					rep.anomaly("set-lost", "%s: %s does not know it: %v", r.key, r.node, err)
				case err != nil:
					rep.anomaly("set-unreadable", "%s: %s cannot release it after healing: %v", r.key, r.node, err)
				case string(got) != r.want:
					rep.anomaly("set-wrong-secret", "%s: %s released %q, the creator wrote %q", r.key, r.node, got, r.want)
				}
				mu.Unlock()
			}
		})
	}
	for _, r := range releases {
		if ctx.Err() != nil {
			break
		}
		work <- r
	}
	close(work)
	wg.Wait()
}

// ms renders a run time.
func ms(t int64) string { return fmt.Sprintf("%.3fs", time.Duration(t).Seconds()) }
