package tlv

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"
)

// The Server benchmarks sign over a loopback TLS connection (or QUIC
// stream) with up to 64 requests in flight per CPU; client and server run
// in the same process and share the CPUs. Compare with the Bare
// benchmarks, which call the same signer directly. Each reports sig/s
// (wall clock) and sig/cpu-s: operations per second of CPU time used by
// the whole process (client, server, TLS), which is the per-core figure
// and does not depend on what else the machine is running.

// reportRates adds the wall-clock and CPU-time rates of b.N operations,
// given the process CPU time when the timer started.
func reportRates(b *testing.B, unit string, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
	if used := cpuTime() - cpu0; used > 0 && cpu0 > 0 {
		b.ReportMetric(float64(b.N)/used.Seconds(), unit+"/cpu-s")
	}
}

func benchDigest() []byte {
	d := sha256.Sum256([]byte("benchmark"))
	return d[:]
}

func benchBare(b *testing.B, key crypto.Signer) {
	d := benchDigest()
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := key.Sign(rand.Reader, d, crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, "sig", cpu0)
}

func benchServer(b *testing.B, transport string, key *testKey, op Op) {
	h := newHarness(b)
	c := h.dial(b, transport, &getPKI().clientA)
	d := benchDigest()
	ctx := context.Background()
	if _, err := c.Do(ctx, &Request{Op: op, SKI: key.ski, Payload: d}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(64)
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		req := &Request{Op: op, SKI: key.ski, Digest: key.digest, Payload: d}
		for pb.Next() {
			if _, err := c.Do(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRates(b, "sig", cpu0)
}

func BenchmarkBareECDSAP256(b *testing.B) { benchBare(b, getKeys().ec.signer) }
func BenchmarkBareRSA2048(b *testing.B)   { benchBare(b, getKeys().rsa.signer) }

func BenchmarkServerECDSAP256(b *testing.B) {
	benchServer(b, "tcp", getKeys().ec, OpECDSASignSHA256)
}

func BenchmarkServerRSA2048(b *testing.B) {
	benchServer(b, "tcp", getKeys().rsa, OpRSASignSHA256)
}

func BenchmarkServerECDSAP256QUIC(b *testing.B) {
	benchServer(b, "quic", getKeys().ec, OpECDSASignSHA256)
}

func BenchmarkServerPing(b *testing.B) {
	h := newHarness(b)
	c := h.dial(b, "tcp", &getPKI().clientA)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(64)
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		req := &Request{Op: OpPing, Payload: []byte("ping")}
		for pb.Next() {
			if _, err := c.Do(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRates(b, "req", cpu0)
}
