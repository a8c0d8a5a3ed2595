//go:build unix

package cluster

import (
	"context"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// BenchmarkBlindRelease is an operator's blind release through node1 (the
// leader) of a 3-node cluster in this process, the nodes' side only: the
// requests are signed before the timer starts and the answers are not
// opened. cpu-us/op is the CPU of all three nodes: the coordinator's
// checks and its own partial, the other holder's, and the calls between
// them.
func BenchmarkBlindRelease(b *testing.B) {
	c := newTestCluster(b, 3)
	c.createSecret("app/a", randomBytes(b, 32))
	reqs := make([]*fsm.Signed, b.N+20)
	for i := range reqs {
		reqs[i] = c.releaseRequest("app/a")
	}
	n := c.nodes[0].n
	release := func(sg *fsm.Signed) {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := n.Release(ctx, sg); err != nil {
			b.Fatal(err)
		}
	}
	for _, sg := range reqs[b.N:] { // connections, memos and held values
		release(sg)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := processCPU()
	for _, sg := range reqs[:b.N] {
		release(sg)
	}
	b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-us/op")
}
