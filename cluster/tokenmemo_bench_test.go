//go:build unix

package cluster

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/token"
)

// BenchmarkTokenCoordinatorChecks is a coordinator's token checks of one
// token-authorized release, on a real node's state: before its read
// (verifyRequest), as it speculates and after the read
// (authorizeRequest). Each release binds a fresh token, as a client does.
func BenchmarkTokenCoordinatorChecks(b *testing.B) {
	c := newTestCluster(b, 1)
	c.createSecret("app/a", randomBytes(b, 32))
	tok, err := token.Mint(c.opID, c.opKey, token.Scope{Prefixes: []string{"app/"}, Flags: token.Flags, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*fsm.Signed, b.N)
	for i := range reqs {
		reqs[i] = c.tokenRelease(c.opID, tok, "app/a")
	}
	n := c.nodes[0].n
	b.ResetTimer()
	start := processCPU()
	for _, sg := range reqs {
		var e *fsm.Error
		n.fsm.Read(func(s *fsm.State) {
			if e = verifyRequest(s, sg, now(), netip.Addr{}); e != nil {
				return
			}
			for range 2 {
				if _, _, _, e = authorizeRequest(s, sg, now(), netip.Addr{}); e != nil {
					return
				}
			}
		})
		if e != nil {
			b.Fatal(e)
		}
	}
	b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-us/op")
}

// BenchmarkTokenRelease is a token-authorized release through node1 of a
// 3-node cluster in this process: cpu-us/op is the CPU of all three
// nodes (the coordinator's checks and the holders').
func BenchmarkTokenRelease(b *testing.B) {
	c := newTestCluster(b, 3)
	c.createSecret("app/a", randomBytes(b, 32))
	tok, err := token.Mint(c.opID, c.opKey, token.Scope{Prefixes: []string{"app/"}, Flags: token.Flags, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*fsm.Signed, b.N)
	for i := range reqs {
		reqs[i] = c.tokenRelease(c.opID, tok, "app/a")
	}
	n := c.nodes[0].n
	b.ResetTimer()
	start := processCPU()
	for _, sg := range reqs {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		_, err := n.Release(ctx, sg)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-us/op")
}
