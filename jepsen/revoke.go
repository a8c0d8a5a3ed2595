package jepsen

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// The revoke workload, in rounds: create a key, start a releaser on every
// member, revoke the key through a random member after a random delay,
// keep releasing a little longer, stop. No release that began after a
// revocation of its key was acknowledged may succeed (docs/architecture.md,
// Consistency), every successful release returns the key's secret, and after
// healing every node reports a key whose revocation was acknowledged as
// revoked, and a key whose every revocation was refused as active.

const revokePrefix = "rev/"

type revoke struct {
	e *env
}

func (v *revoke) run(stop, hard context.Context) {
	e := v.e
	rnd := seeded(e.cfg.Seed, streamRevoke)
	proc := e.h.process()
	for round := 0; stop.Err() == nil; round++ {
		name := fmt.Sprintf("%s%d", revokePrefix, round)
		secret := make([]byte, 16)
		for j := range secret {
			secret[j] = byte(rnd.Uint32())
		}
		var created Op
		for try := 0; try < 5 && stop.Err() == nil; try++ {
			n, id := e.target(rnd.IntN(1 << 16))
			created = e.h.do(hard, Op{Process: proc, Workload: WorkloadRevoke, Node: id, F: "create", Key: name, New: hex.EncodeToString(secret)},
				func(ctx context.Context, op *Op) error {
					_, err := e.db.client(n).CreateSecret(ctx, name, []byte(op.New), time.Time{})
					return err
				})
			if created.Outcome != Fail {
				break
			}
			e.pace(stop, created, rnd)
		}
		if created.Outcome == Unknown {
			proc = e.h.process()
		}
		if created.Outcome != OK {
			continue
		}
		releasing, stopReleasing := context.WithCancel(stop)
		var wg sync.WaitGroup
		for i := range len(e.db.members()) {
			seed := rnd.Uint64()
			wg.Go(func() { v.releaser(releasing, hard, i, name, seed) })
		}
		select {
		case <-stop.Done():
		case <-time.After(between(rnd, 200*time.Millisecond, 1500*time.Millisecond)):
		}
		for try := 0; try < 10; try++ {
			n, id := e.target(rnd.IntN(1 << 16))
			op := e.h.do(hard, Op{Process: proc, Workload: WorkloadRevoke, Node: id, F: "revoke", Key: name},
				func(ctx context.Context, op *Op) error {
					_, err := e.db.client(n).Revoke(ctx, name)
					return err
				})
			if op.Outcome == Unknown {
				proc = e.h.process()
			}
			if op.Outcome != Fail || stop.Err() != nil {
				break
			}
			e.pace(stop, op, rnd)
		}
		select {
		case <-stop.Done():
		case <-time.After(1500 * time.Millisecond):
		}
		stopReleasing()
		wg.Wait()
	}
}

// releaser releases one key through member w until stop.
func (v *revoke) releaser(stop, hard context.Context, w int, name string, seed uint64) {
	e := v.e
	rnd := seeded(int64(seed), streamRevoke)
	proc := e.h.process()
	for stop.Err() == nil {
		n, id := e.target(w)
		op := e.h.do(hard, Op{Process: proc, Workload: WorkloadRevoke, Node: id, F: "release", Key: name},
			func(ctx context.Context, op *Op) error {
				b, err := e.db.client(n).Get(ctx, name)
				op.Value = string(b)
				return err
			})
		if op.Outcome == Unknown {
			proc = e.h.process()
		}
		e.pace(stop, op, rnd)
	}
}

// revokeKeys gathers each key's history.
type revokeKey struct {
	secret   string
	created  Outcome
	acked    int64 // Return of the first acknowledged revocation; -1 if none
	attempts int
	refused  int // definite failures among the revocations
	releases []Op
}

func revokeKeys(ops []Op) map[string]*revokeKey {
	keys := map[string]*revokeKey{}
	get := func(name string) *revokeKey {
		k := keys[name]
		if k == nil {
			k = &revokeKey{acked: -1}
			keys[name] = k
		}
		return k
	}
	for _, op := range ops {
		if op.Workload != WorkloadRevoke {
			continue
		}
		k := get(op.Key)
		switch op.F {
		case "create":
			k.secret, k.created = op.New, op.Outcome
		case "revoke":
			k.attempts++
			switch op.Outcome {
			case OK:
				if k.acked < 0 || op.Return < k.acked {
					k.acked = op.Return
				}
			case Fail:
				k.refused++
			}
		case "release":
			k.releases = append(k.releases, op)
		}
	}
	return keys
}

// check applies the rule to the history: no release that began after an
// acknowledged revocation succeeded, and every release returned the
// secret.
func (v *revoke) check(rep *Summary, ops []Op) {
	var late, total int
	for name, k := range revokeKeys(ops) {
		for _, op := range k.releases {
			if op.Outcome != OK {
				continue
			}
			total++
			if k.acked >= 0 && op.Call > k.acked {
				late++
				rep.anomaly("revoke", "%s: release #%d on %s began at %s, after the revocation was acknowledged at %s, and succeeded", name, op.Index, op.Node, ms(op.Call), ms(k.acked))
			}
			if op.Value != k.secret {
				rep.anomaly("revoke-wrong-secret", "%s: release #%d on %s returned %s, the creator wrote %s", name, op.Index, op.Node, op.Value, k.secret)
			}
		}
	}
	rep.Revoke = &RevokeSummary{Keys: len(revokeKeys(ops)), SuccessfulReleases: total, LateReleases: late}
}

// final asks every node for the state of every key after healing.
func (v *revoke) final(ctx context.Context, rep *Summary, ops []Op) {
	e := v.e
	for name, k := range revokeKeys(ops) {
		if k.created != OK {
			continue
		}
		want := ""
		switch {
		case k.acked >= 0:
			want = fsm.KeyRevoked
		case k.attempts > 0 && k.refused == k.attempts:
			want = fsm.KeyActive
		default:
			continue // no revocation, or one of unknown outcome
		}
		for _, n := range e.db.members() {
			var key *fsm.Key
			err := retryDefinite(ctx, 5, func(ctx context.Context) error {
				var err error
				key, err = e.db.client(n).Key(ctx, name)
				return err
			})
			switch {
			case err != nil:
				rep.anomaly("revoke", "%s: %s cannot show it after healing: %v", name, e.db.nodeID(n), err)
			case key.State != want:
				rep.anomaly("revoke", "%s: %s reports it %s; it should be %s", name, e.db.nodeID(n), key.State, want)
			}
		}
	}
}
