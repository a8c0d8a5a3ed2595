package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
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

// transitRows measures transit encryption (docs/transit.md) through the
// cluster: encrypt (on the client, with a read of the key's metadata per
// call) and decrypt (t holders' partials, combined on the client), one
// item and batches of transitBatch, latency p50/p99 with one client and
// items per second at transitClients concurrent clients, beside the bare
// cryptography of one item.
func transitRows(ctx context.Context, c *client.Client, n int, window time.Duration) ([]row, error) {
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
		runs  int
		f     func() error
	}{
		{"transit encrypt, 1 item", 1, n, func() error {
			_, err := c.TransitEncrypt(ctx, "bench/transit", plain, nil)
			return err
		}},
		{fmt.Sprintf("transit encrypt, batch of %d", transitBatch), transitBatch, max(n/10, 20), func() error {
			_, err := c.TransitEncryptBatch(ctx, "bench/transit", items)
			return err
		}},
		{"transit decrypt, 1 item", 1, n, func() error {
			_, err := c.TransitDecrypt(ctx, "bench/transit", one, nil)
			return err
		}},
		{fmt.Sprintf("transit decrypt, batch of %d", transitBatch), transitBatch, max(n/10, 20), func() error {
			res, err := c.TransitDecryptBatch(ctx, "bench/transit", cts)
			if err == nil && res[transitBatch-1].Error != nil {
				err = res[transitBatch-1].Error
			}
			return err
		}},
	}
	for _, op := range ops {
		lat := make([]time.Duration, 0, op.runs)
		for range op.runs {
			start := time.Now()
			if err := op.f(); err != nil {
				return nil, fmt.Errorf("%s: %w", op.what, err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		rows = append(rows, row{op.what + ": latency p50, p99 (one client)", ms(lat[len(lat)/2]) + ", " + ms(lat[len(lat)*99/100]), "-"})
		for _, k := range transitClients {
			ok, errs := load(k, window, op.f)
			rows = append(rows, row{fmt.Sprintf("  %s: items per second (%d clients, %v, %d errors)", op.what, k, window, errs),
				fmt.Sprintf("%.0f", float64(ok)*float64(op.items)/window.Seconds()), "-"})
		}
	}
	return rows, nil
}

// bareTransit times the cryptography of one transit item on this
// machine: the AEAD of a 64-byte plaintext, encryption (three point
// multiplications, HKDF, AEAD, the encryptor's proof), a holder's check
// of that proof, a holder's partial with its proof, and
// the caller's opening (two proofs checked, combine, HKDF, AEAD).
func bareTransit() []row {
	secret, _ := shamir.RandomSecret(rand.Reader)
	poly, shares, _ := shamir.DealKey(rand.Reader, secret, 2, []uint32{1, 2, 3})
	k := &fsm.Key{ID: "id:bench", Name: "bench", Type: fsm.KeyTypeTransit, State: fsm.KeyActive, Transit: &fsm.TransitKey{
		Cipher: shamir.CipherAES256GCM, Versions: []fsm.TransitVersion{{Version: 1, Sharing: &fsm.FROSTKey{Threshold: 2, Commits: poly.Commits}}}}}
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
	}
}
