package jepsen

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/fsm"
)

// A revocation race, in rounds: create a key, start a user on every
// member, revoke the key through a random member after a random delay,
// keep using it a little longer, stop. Two workloads race this way:
//
//   - revoke: the keys are secrets and a use is a release. Every
//     successful release returns the key's secret.
//   - sign: the keys are ed25519-frost keys made from a private key the
//     workload draws, and a use is a signature by quorum of a fresh
//     message. Every signature returned must verify with crypto/ed25519
//     under the key's public key (the one the workload made, not the one
//     the node names).
//
// For both, no use that began after a revocation of its key was
// acknowledged may succeed (docs/architecture.md, Consistency;
// docs/signing.md), and after healing every node reports a key whose
// revocation was acknowledged as revoked, and a key whose every
// revocation was refused as active.

// raceKind is what one revocation race does with its keys.
type raceKind struct {
	workload string
	prefix   string
	stream   uint64
	use      string // the F of a use: "release" or "sign"
	// lateCheck and wrongCheck name the anomalies: a use that succeeded
	// after the acknowledged revocation, and a result that is wrong.
	lateCheck, wrongCheck string
	// newKey draws a key's material: what a create records in Op.New (the
	// secret, or the public key) and the call that creates the key.
	newKey func(rnd *rand.Rand) (recorded string, create func(ctx context.Context, c *client.Client, name string) error)
	// do carries out one use, recording its input and result in op.
	do func(ctx context.Context, c *client.Client, op *Op, rnd *rand.Rand) error
	// wrong says what is wrong with a successful use, "" if nothing.
	wrong func(recorded string, op Op) string
}

// releaseRace is the revoke workload's kind.
var releaseRace = raceKind{
	workload: WorkloadRevoke, prefix: "rev/", stream: streamRevoke, use: "release",
	lateCheck: "revoke", wrongCheck: "revoke-wrong-secret",
	newKey: func(rnd *rand.Rand) (string, func(context.Context, *client.Client, string) error) {
		secret := hex.EncodeToString(randomBytes(rnd, 16))
		return secret, func(ctx context.Context, c *client.Client, name string) error {
			_, err := c.CreateSecret(ctx, name, []byte(secret), time.Time{})
			return err
		}
	},
	do: func(ctx context.Context, c *client.Client, op *Op, _ *rand.Rand) error {
		b, err := c.Get(ctx, op.Key)
		op.Value = string(b)
		return err
	},
	wrong: func(secret string, op Op) string {
		if op.Value != secret {
			return fmt.Sprintf("returned %s, the creator wrote %s", op.Value, secret)
		}
		return ""
	},
}

// signRace is the sign workload's kind.
var signRace = raceKind{
	workload: WorkloadSign, prefix: "sig/", stream: streamSign, use: "sign",
	lateCheck: "sign-revoked", wrongCheck: "sign-invalid",
	newKey: func(rnd *rand.Rand) (string, func(context.Context, *client.Client, string) error) {
		priv := ed25519.NewKeyFromSeed(randomBytes(rnd, ed25519.SeedSize))
		pub := hex.EncodeToString(priv.Public().(ed25519.PublicKey))
		return pub, func(ctx context.Context, c *client.Client, name string) error {
			_, err := c.CreateFROST(ctx, name, priv, nil)
			return err
		}
	},
	do: func(ctx context.Context, c *client.Client, op *Op, rnd *rand.Rand) error {
		msg := randomBytes(rnd, 24)
		op.Message = hex.EncodeToString(msg)
		sig, err := c.SignMessage(ctx, op.Key, msg)
		if sig != nil {
			op.Value = hex.EncodeToString(sig.Signature)
		}
		return err
	},
	wrong: func(public string, op Op) string {
		pub, err1 := hex.DecodeString(public)
		msg, err2 := hex.DecodeString(op.Message)
		sig, err3 := hex.DecodeString(op.Value)
		if err1 != nil || err2 != nil || err3 != nil || len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, msg, sig) {
			return fmt.Sprintf("signature %q of message %q does not verify under the key's public key %s", op.Value, op.Message, public)
		}
		return ""
	},
}

func randomBytes(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// revoke is a revocation race of one kind.
type revoke struct {
	e    *env
	kind raceKind
}

func (v *revoke) run(stop, hard context.Context) {
	e, k := v.e, v.kind
	rnd := seeded(e.cfg.Seed, k.stream)
	proc := e.h.process()
	for round := 0; stop.Err() == nil; round++ {
		name := fmt.Sprintf("%s%d", k.prefix, round)
		recorded, create := k.newKey(rnd)
		var created Op
		for try := 0; try < 5 && stop.Err() == nil; try++ {
			n, id := e.target(rnd.IntN(1 << 16))
			created = e.h.do(hard, Op{Process: proc, Workload: k.workload, Node: id, F: "create", Key: name, New: recorded},
				func(ctx context.Context, op *Op) error { return create(ctx, e.db.client(n), name) })
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
		using, stopUsing := context.WithCancel(stop)
		var wg sync.WaitGroup
		for i := range len(e.db.members()) {
			seed := rnd.Uint64()
			wg.Go(func() { v.user(using, hard, i, name, seed) })
		}
		select {
		case <-stop.Done():
		case <-time.After(between(rnd, 200*time.Millisecond, 1500*time.Millisecond)):
		}
		for try := 0; try < 10; try++ {
			n, id := e.target(rnd.IntN(1 << 16))
			op := e.h.do(hard, Op{Process: proc, Workload: k.workload, Node: id, F: "revoke", Key: name},
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
		stopUsing()
		wg.Wait()
	}
}

// user uses one key through member w until stop.
func (v *revoke) user(stop, hard context.Context, w int, name string, seed uint64) {
	e, k := v.e, v.kind
	rnd := seeded(int64(seed), k.stream)
	proc := e.h.process()
	for stop.Err() == nil {
		n, id := e.target(w)
		op := e.h.do(hard, Op{Process: proc, Workload: k.workload, Node: id, F: k.use, Key: name},
			func(ctx context.Context, op *Op) error { return k.do(ctx, e.db.client(n), op, rnd) })
		if op.Outcome == Unknown {
			proc = e.h.process()
		}
		e.pace(stop, op, rnd)
	}
}

// revokeKey is one key's history.
type revokeKey struct {
	recorded string // the create's Op.New: the secret, or the public key
	created  Outcome
	acked    int64 // Return of the first acknowledged revocation; -1 if none
	attempts int
	refused  int // definite failures among the revocations
	uses     []Op
}

// revokeKeys gathers each key's history of one workload.
func revokeKeys(ops []Op, workload string) map[string]*revokeKey {
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
		if op.Workload != workload {
			continue
		}
		k := get(op.Key)
		switch op.F {
		case "create":
			k.recorded, k.created = op.New, op.Outcome
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
		default:
			k.uses = append(k.uses, op)
		}
	}
	return keys
}

// check applies the rules to the history: no use that began after an
// acknowledged revocation succeeded, and every successful use returned
// the right result. It returns the keys, the successful uses and the
// late ones.
func (v *revoke) check(rep *Summary, ops []Op) (keys, total, late int) {
	k := v.kind
	all := revokeKeys(ops, k.workload)
	for name, key := range all {
		for _, op := range key.uses {
			if op.Outcome != OK {
				continue
			}
			total++
			if key.acked >= 0 && op.Call > key.acked {
				late++
				rep.anomaly(k.lateCheck, "%s: %s #%d on %s began at %s, after the revocation was acknowledged at %s, and succeeded", name, op.F, op.Index, op.Node, ms(op.Call), ms(key.acked))
			}
			if what := k.wrong(key.recorded, op); what != "" {
				rep.anomaly(k.wrongCheck, "%s: %s #%d on %s %s", name, op.F, op.Index, op.Node, what)
			}
		}
	}
	switch k.workload {
	case WorkloadRevoke:
		rep.Revoke = &RevokeSummary{Keys: len(all), SuccessfulReleases: total, LateReleases: late}
	case WorkloadSign:
		rep.Sign = &SignSummary{Keys: len(all), Signatures: total, LateSignatures: late}
	}
	return len(all), total, late
}

// final asks every node for the state of every key after healing.
func (v *revoke) final(ctx context.Context, rep *Summary, ops []Op) {
	e := v.e
	for name, k := range revokeKeys(ops, v.kind.workload) {
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
				rep.anomaly(v.kind.lateCheck, "%s: %s cannot show it after healing: %v", name, e.db.nodeID(n), err)
			case key.State != want:
				rep.anomaly(v.kind.lateCheck, "%s: %s reports it %s; it should be %s", name, e.db.nodeID(n), key.State, want)
			}
		}
	}
}
