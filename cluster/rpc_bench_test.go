//go:build unix

package cluster

import (
	"context"
	"testing"
)

// BenchmarkNodeCall is one node-to-node call between two nodes of a
// 3-node cluster in this process, the hop a release makes from its
// coordinator to the other share holder: "status" is the transport with
// a small answer, "sealed-partial" a holder's whole answer (its own read
// index from the leader, which is another such call, and its checks and
// partial). cpu-us/op is the CPU of the whole process, both ends.
func BenchmarkNodeCall(b *testing.B) {
	c := newTestCluster(b, 3)
	c.createSecret("hop", randomBytes(b, 32))
	leader := c.leader()
	from, to := leader, c.anyRunning(leader)
	c.waitHasKey(to, "hop")
	ctx := context.Background()
	b.Run("status", func(b *testing.B) {
		start := processCPU()
		for b.Loop() {
			var ns nodeStatus
			if _, err := from.n.call(ctx, to.cfg.RaftAddr, statusPath, nil, &ns); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-us/op")
	})
	b.Run("sealed-partial", func(b *testing.B) {
		reqs := make([]*partialRequest, b.N)
		for i := range reqs {
			reqs[i] = c.holderRequest("hop", 0)
		}
		b.ResetTimer()
		start := processCPU()
		for _, req := range reqs {
			var sp SealedPartial
			if _, err := from.n.call(ctx, to.cfg.RaftAddr, "/internal/v1/sealed-partial", req, &sp); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-us/op")
	})
}
