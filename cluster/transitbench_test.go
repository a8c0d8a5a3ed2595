//go:build unix

package cluster

import (
	"crypto/rand"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTransitHolderItem is a holder's cryptographic work per item of
// a decryption (docs/transit.md, the cost of the proof): the encryptors'
// proofs checked (checkTransitProofs) and each point's partial with its
// DLEQ proof, for batches of 1 and 100 points a holder has not seen
// before (a pool larger than shamir's cache of checked points), as CPU
// time on every core per item (cpu-ns/item).
func BenchmarkTransitHolderItem(b *testing.B) {
	secret, _ := shamir.RandomSecret(rand.Reader)
	poly, shares, _ := shamir.DealKey(rand.Reader, secret, 2, []uint32{1, 2, 3})
	k := &fsm.Key{ID: "id:bench", Name: "bench", Type: fsm.KeyTypeTransit, State: fsm.KeyActive, Version: 1, KeyDetail: &fsm.KeyDetail{Transit: &fsm.TransitKey{
		Cipher: shamir.CipherAES256GCM, Versions: []fsm.TransitVersion{{Version: 1, Sharing: &fsm.FROSTKey{Threshold: 2, Commits: poly.Commits}}}}}}
	pool := make([]fsm.TransitPoint, 3000)
	for i := range pool {
		s, err := api.TransitEncrypt(rand.Reader, k, []byte("x"), nil)
		if err != nil {
			b.Fatal(err)
		}
		ct, _ := api.ParseTransitCiphertext(s)
		pool[i] = ct.Point(nil)
	}
	tv := &k.Transit().Versions[0]
	prover, err := shamir.NewProver(shares[0]) // the holder cache's (holdervalues.go)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var cpu time.Duration
			next := 0
			for b.Loop() {
				if next+n > len(pool) {
					next = 0
				}
				points := pool[next : next+n]
				next += n
				versions := make([]*fsm.TransitVersion, n)
				for i := range versions {
					versions[i] = tv
				}
				answers := make([]api.TransitItemPartial, n)
				start := processCPU()
				holderItems(k.ID, points, versions, answers, prover)
				cpu += processCPU() - start
				for i, a := range answers {
					if a.Partial == nil {
						b.Fatalf("item %d: %v", i, a.Error)
					}
				}
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/item")
		})
	}
}

// holderItems is answerTransitDecrypt's work on the points.
func holderItems(keyID string, points []fsm.TransitPoint, versions []*fsm.TransitVersion, answers []api.TransitItemPartial, prover *shamir.Prover) {
	checkTransitProofs(keyID, points, versions, answers) // after only
	eachPoint(len(points), func(i int) {
		if versions[i] == nil {
			return
		}
		rctx := api.TransitDecryptContext("c", "bench", 1, []byte("payload"), i)
		p, err := prover.Compute(rand.Reader, points[i].Point, rctx)
		if err != nil {
			answers[i].Error = &api.Error{Kind: api.KindInvalid, Message: err.Error()}
			return
		}
		answers[i].Partial = p
	})
}
