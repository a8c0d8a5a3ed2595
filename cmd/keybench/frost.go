package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/fsm"
)

// signRows measures the generic sign path (REST /v1/sign, what keyctl key
// sign uses; docs/signing.md) through the cluster, each next to the bare
// signature's cost on one core of this machine:
//
//   - an ed25519-frost key: the latency of n sequential signatures (p50,
//     p99; the coordinator's stock of commitments makes most of them one
//     round trip) and signatures per second from clients concurrent
//     clients for the window;
//   - an rsa-threshold RSA-2048 key (PKCS #1 v1.5): signatures per second,
//     each t holders' shares combined;
//   - an assembled ECDSA P-256 key with an assemble_ttl: signatures per
//     second, the coordinating node signing with the key it holds.
//
// Every signature is checked by the client (SignMessage). Client and
// nodes share this machine's cores.
func signRows(ctx context.Context, c *client.Client, n, clients int, window time.Duration) ([]row, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	msg := make([]byte, 64)
	rand.Read(msg)
	digest := sha256.Sum256(msg)
	bareEd := bareRate(func() { ed25519.Sign(priv, msg) })
	if _, err := c.CreateFROST(ctx, "bench/frost", priv, nil); err != nil {
		return nil, fmt.Errorf("creating the FROST key: %w", err)
	}
	clear(priv)
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := c.SignMessage(ctx, "bench/frost", msg, ""); err != nil {
			return nil, fmt.Errorf("FROST signature: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	rows := []row{
		{"bare: Ed25519 signatures per second, one core", fmt.Sprintf("%.0f", bareEd), "-"},
		{"FROST Ed25519 signature latency p50 (2 of 3 holders, one client)", ms(lat[len(lat)/2]), "-"},
		{"FROST Ed25519 signature latency p99", ms(lat[len(lat)*99/100]), "-"},
	}
	rate := func(name string) (float64, int64) {
		ok, errs := load(clients, window, func() error { _, err := c.SignMessage(ctx, name, msg, ""); return err })
		return float64(ok) / window.Seconds(), errs
	}
	r, errs := rate("bench/frost")
	rows = append(rows, row{fmt.Sprintf("FROST Ed25519 signatures per second (%d clients, %v, %d errors)", clients, window, errs),
		fmt.Sprintf("%.0f (%.1f%% of bare per core)", r, 100*r/bareEd), "-"})

	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	bareRSA := bareRate(func() { rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, digest[:]) })
	if _, err := c.CreateThresholdRSA(ctx, "bench/sign-rsa-threshold", rk, nil); err != nil {
		return nil, fmt.Errorf("creating the rsa-threshold key: %w", err)
	}
	r, errs = rate("bench/sign-rsa-threshold")
	rows = append(rows,
		row{"bare: RSA-2048 PKCS #1 v1.5 signatures per second, one core", fmt.Sprintf("%.0f", bareRSA), "-"},
		row{fmt.Sprintf("threshold RSA-2048 signatures per second, sign path (%d clients, %v, %d errors)", clients, window, errs),
			fmt.Sprintf("%.0f (%.1f%% of bare per core)", r, 100*r/bareRSA), "-"})

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	bareEC := bareRate(func() { ecdsa.SignASN1(rand.Reader, ec, digest[:]) })
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		return nil, err
	}
	if _, err := c.CreateSealed(ctx, &fsm.CreateKey{Name: "bench/sign-ecdsa", Type: fsm.KeyTypeECDSA, Public: pub, AssembleTTL: 10 * time.Minute}, der); err != nil {
		return nil, fmt.Errorf("creating the ecdsa key: %w", err)
	}
	r, errs = rate("bench/sign-ecdsa")
	rows = append(rows,
		row{"bare: ECDSA P-256 signatures per second, one core", fmt.Sprintf("%.0f", bareEC), "-"},
		row{fmt.Sprintf("assembled ECDSA P-256 signatures per second, sign path, held by the coordinators (%d clients, %v, %d errors)", clients, window, errs),
			fmt.Sprintf("%.0f (%.1f%% of bare per core)", r, 100*r/bareEC), "-"})
	return rows, nil
}

// bareRate is f's rate per second on one core (testing.Benchmark).
func bareRate(f func()) float64 {
	r := testing.Benchmark(func(b *testing.B) {
		for range b.N {
			f()
		}
	})
	return 1e9 / float64(r.NsPerOp())
}

// loadRow says how busy the machine was: wall-clock rates on a loaded
// machine are low by an unknown factor.
func loadRow() row {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return row{"load average (1, 5, 15 min) at the start", "unknown: " + err.Error(), "-"}
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return row{"load average (1, 5, 15 min) at the start", "unknown", "-"}
	}
	return row{"load average (1, 5, 15 min) at the start", strings.Join(f[:3], ", "), "-"}
}
