package jepsen

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
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
//
// The sign workload is the same rounds with an ed25519-frost key, signed
// by quorum instead of released: no signature is produced for a key after
// its revocation was acknowledged, and every signature verifies with
// crypto/ed25519 under the key's public key.

const (
	revokePrefix = "rev/"
	signPrefix   = "sig/"
)

// revoke is the revoke workload, or with sign the sign workload.
type revoke struct {
	e    *env
	sign bool
}

func (v *revoke) workload() string {
	if v.sign {
		return WorkloadSign
	}
	return WorkloadRevoke
}

func (v *revoke) stream() uint64 {
	if v.sign {
		return streamSign
	}
	return streamRevoke
}

func (v *revoke) run(stop, hard context.Context) {
	e := v.e
	rnd := seeded(e.cfg.Seed, v.stream())
	proc := e.h.process()
	prefix, use := revokePrefix, "release"
	if v.sign {
		prefix, use = signPrefix, "sign"
	}
	if v.sign {
		// A key that is never revoked signs through every fault of the
		// run, so its shares are reshared under the member nemesis while
		// it is in use.
		steady := signPrefix + "steady"
		if v.create(stop, hard, rnd, &proc, steady) == OK {
			seed := rnd.Uint64()
			w := rnd.IntN(1 << 16)
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Go(func() { v.user(stop, hard, use, w, steady, seed) })
		}
	}
	for round := 0; stop.Err() == nil; round++ {
		name := fmt.Sprintf("%s%d", prefix, round)
		if v.create(stop, hard, rnd, &proc, name) != OK {
			continue
		}
		releasing, stopReleasing := context.WithCancel(stop)
		var wg sync.WaitGroup
		for i := range len(e.db.members()) {
			seed := rnd.Uint64()
			wg.Go(func() { v.user(releasing, hard, use, i, name, seed) })
		}
		select {
		case <-stop.Done():
		case <-time.After(between(rnd, 200*time.Millisecond, 1500*time.Millisecond)):
		}
		for try := 0; try < 10; try++ {
			n, id := e.target(rnd.IntN(1 << 16))
			op := e.h.do(hard, Op{Process: proc, Workload: v.workload(), Node: id, F: "revoke", Key: name},
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

// create makes the key name, trying up to five times while it is refused:
// a secret for the revoke workload, an ed25519-frost key for the sign
// workload (made from the secret as a seed; the history records its
// public key). A creation of unknown outcome moves the process on.
func (v *revoke) create(stop, hard context.Context, rnd *rand.Rand, proc *int, name string) Outcome {
	e := v.e
	secret := make([]byte, 16)
	if v.sign {
		secret = make([]byte, ed25519.SeedSize)
	}
	for j := range secret {
		secret[j] = byte(rnd.Uint32())
	}
	var priv ed25519.PrivateKey
	base := Op{Workload: v.workload(), F: "create", Key: name, New: hex.EncodeToString(secret)}
	if v.sign {
		priv = ed25519.NewKeyFromSeed(secret)
		base.New = hex.EncodeToString(priv.Public().(ed25519.PublicKey))
	}
	var created Op
	for try := 0; try < 5 && stop.Err() == nil; try++ {
		n, id := e.target(rnd.IntN(1 << 16))
		op := base
		op.Process, op.Node = *proc, id
		created = e.h.do(hard, op,
			func(ctx context.Context, op *Op) error {
				if v.sign {
					_, err := e.db.client(n).CreateFROST(ctx, name, priv, nil)
					return err
				}
				_, err := e.db.client(n).CreateSecret(ctx, name, []byte(op.New), time.Time{})
				return err
			})
		if created.Outcome != Fail {
			break
		}
		e.pace(stop, created, rnd)
	}
	if created.Outcome == Unknown {
		*proc = e.h.process()
	}
	return created.Outcome
}

// user releases (f "release") or signs with (f "sign") one key through
// member w until stop.
func (v *revoke) user(stop, hard context.Context, f string, w int, name string, seed uint64) {
	e := v.e
	rnd := seeded(int64(seed), v.stream())
	proc := e.h.process()
	for i := 0; stop.Err() == nil; i++ {
		n, id := e.target(w)
		op := Op{Process: proc, Workload: v.workload(), Node: id, F: f, Key: name}
		if f == "sign" {
			op.Old = fmt.Sprintf("message %d of worker %d", i, w)
		}
		op = e.h.do(hard, op,
			func(ctx context.Context, op *Op) error {
				if f == "sign" {
					sig, err := e.db.client(n).SignMessage(ctx, name, []byte(op.Old), "")
					if err == nil {
						op.Value = hex.EncodeToString(sig.Signature)
					}
					return err
				}
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
	refused  int  // definite failures among the revocations
	releases []Op // releases, or signatures
}

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
		case "release", "sign":
			k.releases = append(k.releases, op)
		}
	}
	return keys
}

// check applies the rule to the history: no release (signature) that
// began after an acknowledged revocation succeeded, and every release
// returned the secret (every signature verifies under the public key).
func (v *revoke) check(rep *Summary, ops []Op) {
	var late, total int
	w := v.workload()
	keys := revokeKeys(ops, w)
	for name, k := range keys {
		for _, op := range k.releases {
			if op.Outcome != OK {
				continue
			}
			total++
			if k.acked >= 0 && op.Call > k.acked {
				late++
				rep.anomaly(w, "%s: %s #%d on %s began at %s, after the revocation was acknowledged at %s, and succeeded", name, op.F, op.Index, op.Node, ms(op.Call), ms(k.acked))
			}
			switch {
			case v.sign && !validSignature(k.secret, op.Old, op.Value):
				rep.anomaly("sign-bad-signature", "%s: signature #%d on %s of %q does not verify under the public key %s", name, op.Index, op.Node, op.Old, k.secret)
			case !v.sign && op.Value != k.secret:
				rep.anomaly("revoke-wrong-secret", "%s: release #%d on %s returned %s, the creator wrote %s", name, op.Index, op.Node, op.Value, k.secret)
			}
		}
	}
	sum := &RevokeSummary{Keys: len(keys), SuccessfulReleases: total, LateReleases: late}
	if v.sign {
		rep.Sign = sum
	} else {
		rep.Revoke = sum
	}
}

// validSignature reports whether sigHex is an Ed25519 signature of msg
// under the public key pubHex.
func validSignature(pubHex, msg, sigHex string) bool {
	pub, err1 := hex.DecodeString(pubHex)
	sig, err2 := hex.DecodeString(sigHex)
	return err1 == nil && err2 == nil && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, []byte(msg), sig)
}

// final asks every node for the state of every key after healing.
func (v *revoke) final(ctx context.Context, rep *Summary, ops []Op) {
	e := v.e
	for name, k := range revokeKeys(ops, v.workload()) {
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
				rep.anomaly(v.workload(), "%s: %s cannot show it after healing: %v", name, e.db.nodeID(n), err)
			case key.State != want:
				rep.anomaly(v.workload(), "%s: %s reports it %s; it should be %s", name, e.db.nodeID(n), key.State, want)
			}
		}
	}
}
