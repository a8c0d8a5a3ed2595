package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// transitClients are the client counts of the transit throughput runs,
// and transitBatch the items of a batch.
var (
	transitClients = []int{1, 8, 32}
	transitBatch   = 100
)

// transitOnly runs only the transit rows (-transit-only).
var transitOnly bool

// transitAnchor is issue 10's measure of a non-threshold decrypt service
// (one node, the key in memory: what Vault/OpenBao transit decrypt of
// aes256-gcm96 stands for, which cannot be built here) on this machine,
// in decrypts per second, by concurrent clients. It is a figure quoted
// from the issue, not a run of this bench.
var transitAnchor = map[int]string{1: "1,760", 8: "3,800-5,000", 32: "3,800-5,000"}

// transitAnchorLow is the anchor's lower figure per client count, for the
// ratio.
var transitAnchorLow = map[int]float64{1: 1760, 8: 3800, 32: 3800}

// transitRows measures transit encryption (docs/transit.md) through the
// cluster, as issue 12 asks: encrypt (on the client, with a read of the
// key's metadata per call) and decrypt (t holders' partials, combined on
// the client), one item and batches of transitBatch, at each of
// transitClients concurrent clients: items per second, latency p50 and
// p99 of a call, and the CPU time per item of the client and the three
// nodes together (dir holds the nodes' pid files); beside them the bare
// cryptography of one item, and the anchor (transitAnchor) with the
// ratio of a batch decrypt to it.
func transitRows(ctx context.Context, c *client.Client, dir string, window time.Duration) ([]row, error) {
	rows := bareTransit()
	if _, err := c.CreateTransit(ctx, "bench/transit", shamir.CipherAES256GCM, false); err != nil {
		return nil, fmt.Errorf("creating the transit key: %w", err)
	}
	plain := make([]byte, 64)
	rand.Read(plain)
	items := make([]api.TransitBatchItem, transitBatch)
	for i := range items {
		items[i].Plaintext = plain
	}
	enc, err := c.TransitEncryptBatch(ctx, "bench/transit", items)
	if err != nil {
		return nil, err
	}
	cts := make([]api.TransitBatchItem, transitBatch)
	for i, r := range enc {
		if r.Error != nil {
			return nil, r.Error
		}
		cts[i].Ciphertext = r.Ciphertext
	}
	one := cts[0].Ciphertext
	ops := []struct {
		what  string
		items int
		f     func() error
	}{
		{"transit encrypt, 1 item", 1, func() error {
			_, err := c.TransitEncrypt(ctx, "bench/transit", plain, nil)
			return err
		}},
		{fmt.Sprintf("transit encrypt, batch of %d", transitBatch), transitBatch, func() error {
			_, err := c.TransitEncryptBatch(ctx, "bench/transit", items)
			return err
		}},
		{"transit decrypt, 1 item", 1, func() error {
			_, err := c.TransitDecrypt(ctx, "bench/transit", one, nil)
			return err
		}},
		{fmt.Sprintf("transit decrypt, batch of %d", transitBatch), transitBatch, func() error {
			res, err := c.TransitDecryptBatch(ctx, "bench/transit", cts)
			if err == nil {
				for _, r := range res {
					if r.Error != nil {
						return r.Error
					}
				}
			}
			return err
		}},
	}
	batchDecrypt := map[int]float64{}
	for oi, op := range ops {
		for _, k := range transitClients {
			cpu0 := clusterCPU(dir)
			ok, errs, lat := loadLatencies(k, window, op.f)
			cpu := clusterCPU(dir) - cpu0
			rate := float64(ok) * float64(op.items) / window.Seconds()
			value := fmt.Sprintf("%.0f items/s, p50 %s, p99 %s", rate, ms(pct(lat, 50)), ms(pct(lat, 99)))
			if ok > 0 {
				value += fmt.Sprintf(", CPU %.0f µs/item", float64(cpu.Microseconds())/float64(ok*int64(op.items)))
			}
			if errs > 0 {
				value += fmt.Sprintf(" (%d errors)", errs)
			}
			rows = append(rows, row{fmt.Sprintf("%s, %d clients (%v)", op.what, k, window), value, "-"})
			if oi == len(ops)-1 {
				batchDecrypt[k] = rate
			}
		}
	}
	for _, k := range transitClients {
		rows = append(rows, row{fmt.Sprintf("anchor (issue 10's figure, not run here): non-threshold decrypt service, %d clients", k),
			fmt.Sprintf("%s/s; batch decrypt is %.2fx of its lower figure", transitAnchor[k], batchDecrypt[k]/transitAnchorLow[k]), ">= 0.5x"})
	}
	return rows, nil
}

// loadLatencies is load, with the latency of every successful call.
func loadLatencies(n int, window time.Duration, f func() error) (ok, errs int64, lat []time.Duration) {
	var mu sync.Mutex
	ok, errs = load(n, window, func() error {
		start := time.Now()
		err := f()
		if err == nil {
			d := time.Since(start)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
		return err
	})
	slices.Sort(lat)
	return ok, errs, lat
}

// pct is the p-th percentile of the sorted lat.
func pct(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)*p/100, len(lat)-1)]
}

// clusterCPU is the CPU time used so far by this process (the client)
// and the nodes whose pid files n1.pid, n2.pid, n3.pid are in dir.
func clusterCPU(dir string) time.Duration {
	total := selfCPU()
	for i := 1; i <= 3; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.pid", i)))
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: utime and
		// stime are the 12th and 13th, in clock ticks (100 a second).
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+s) * 10 * time.Millisecond
	}
	return total
}

// bareTransit times the cryptography of one transit item on this
// machine: the AEAD of a 64-byte plaintext, encryption (three point
// multiplications, HKDF, AEAD, the encryptor's proof), a holder's check
// of that proof, a holder's partial with its proof, and
// the caller's opening (two proofs checked, combine, HKDF, AEAD).
func bareTransit() []row {
	secret, _ := shamir.RandomSecret(rand.Reader)
	poly, shares, _ := shamir.DealKey(rand.Reader, secret, 2, []uint32{1, 2, 3})
	k := &fsm.Key{ID: "id:bench", Name: "bench", Type: fsm.KeyTypeTransit, State: fsm.KeyActive, KeyDetail: &fsm.KeyDetail{Transit: &fsm.TransitKey{
		Cipher: shamir.CipherAES256GCM, Versions: []fsm.TransitVersion{{Version: 1, Sharing: &fsm.FROSTKey{Threshold: 2, Commits: poly.Commits}}}}}}
	plain := make([]byte, 64)
	s, _ := api.TransitEncrypt(rand.Reader, k, plain, nil)
	ct, _ := api.ParseTransitCiphertext(s)
	p1, _ := shamir.ComputePartial(rand.Reader, shares[0], ct.E, nil)
	p2, _ := shamir.ComputePartial(rand.Reader, shares[1], ct.E, nil)
	aead, _ := shamir.NewTransitAEAD(shamir.CipherAES256GCM, make([]byte, 32))
	nonce := make([]byte, 12)
	per := func(f func()) time.Duration {
		r := testing.Benchmark(func(b *testing.B) {
			for range b.N {
				f()
			}
		})
		return time.Duration(r.NsPerOp())
	}
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d.Nanoseconds())/1e3) }
	bind := api.TransitBinding(k.ID, 1, nil)
	// A batch of transitBatch items as the caller checks it now: every
	// proof of every item in one multi-scalar multiplication
	// (shamir.VerifyBatches), then per item the combination (with its
	// subgroup check), HKDF and AEAD.
	p1s, _ := shamir.NewProver(shares[0])
	p2s, _ := shamir.NewProver(shares[1])
	bvs := make([]*shamir.Verifier, transitBatch)
	bps := make([][]*shamir.Partial, transitBatch)
	for i := range bvs {
		ctx := []byte{byte(i), byte(i >> 8)}
		bvs[i], _ = shamir.NewVerifier(poly, ct.E, ctx)
		a, _ := p1s.Compute(rand.Reader, ct.E, ctx)
		b, _ := p2s.Compute(rand.Reader, ct.E, ctx)
		bps[i] = []*shamir.Partial{a, b}
	}
	p1s.Erase()
	p2s.Erase()
	batchOpen := per(func() {
		vps, ok := shamir.VerifyBatches(rand.Reader, bvs, bps)
		if !ok {
			panic("keybench: a batch of honest partials failed")
		}
		for i, v := range bvs {
			K, _ := v.Combine(vps[i])
			shamir.TransitOpen(K, ct.E, poly.Commits[0], shamir.CipherAES256GCM, bind, bind, ct.Sealed)
		}
	}) / time.Duration(transitBatch)
	return []row{
		{"bare: AES-256-GCM seal of 64 bytes (Vault transit's aes256-gcm96 work per item)", us(per(func() { aead.Seal(nil, nonce, plain, nil) })), "-"},
		{"bare: transit encrypt of 64 bytes (E = r·G, r·P, HKDF, AEAD, the proof of r)", us(per(func() { api.TransitEncrypt(rand.Reader, k, plain, nil) })), "-"},
		{"bare: a holder's check of one ciphertext's encryptor proof, alone", us(per(func() { shamir.VerifyTransitProof(bind, ct.E, ct.Proof) })), "-"},
		{"bare: a holder's partial s_i·E with its DLEQ proof", us(per(func() { shamir.ComputePartial(rand.Reader, shares[0], ct.E, nil) })), "-"},
		{"bare: the caller's open (2 proofs, combine, HKDF, AEAD)", us(per(func() {
			shamir.VerifyPartial(poly, ct.E, p1, nil)
			shamir.VerifyPartial(poly, ct.E, p2, nil)
			K, _ := shamir.CombinePoints(map[uint32][]byte{1: p1.Value, 2: p2.Value}, 2)
			shamir.TransitOpen(K, ct.E, poly.Commits[0], shamir.CipherAES256GCM, bind, bind, ct.Sealed)
		})), "-"},
		{fmt.Sprintf("bare: the caller's open of one item of a batch of %d (all proofs in one batch, combine, HKDF, AEAD; one core)", transitBatch), us(batchOpen), "-"},
	}
}
