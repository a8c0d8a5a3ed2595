package cluster

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

// TestMetricsCountOperationsByKeyTypeAndResult: a release and a refused
// one are counted under their key type and result, on the coordinator,
// and the holders count their answers.
func TestMetricsCountOperationsByKeyTypeAndResult(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("m/secret", randomBytes(t, 32))
	coord := c.nodes[0]
	c.mustRelease(coord, "m/secret")
	if _, err := c.release(coord, "m/missing"); KindOf(err) != KindNotFound {
		t.Fatalf("release of a missing key: %v, want not_found", err)
	}
	ops := coord.n.Metrics().Operations
	if got := testutil.ToFloat64(ops.WithLabelValues(opRelease, fsm.KeyTypeSecret, metrics.NoGateway, metrics.ResultOK)); got != 1 {
		t.Errorf("ok releases of secrets counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(ops.WithLabelValues(opRelease, metrics.NoKeyType, metrics.NoGateway, string(KindNotFound))); got != 1 {
		t.Errorf("not_found releases counted %v, want 1", got)
	}
	creates := 0.0
	for _, tn := range c.nodes {
		creates += testutil.ToFloat64(tn.n.Metrics().Operations.WithLabelValues(fsm.TypeCreateKey, fsm.KeyTypeSecret, metrics.NoGateway, metrics.ResultOK))
	}
	if creates != 1 {
		t.Errorf("create_key counted %v times, want once, by the node it was submitted to", creates)
	}
	holders := 0.0
	for _, tn := range c.nodes[1:] {
		holders += testutil.ToFloat64(tn.n.Metrics().Operations.WithLabelValues(opHolder, fsm.KeyTypeSecret, metrics.NoGateway, metrics.ResultOK))
	}
	if holders < 1 {
		t.Errorf("the other nodes counted %v holder answers, want at least 1 (t=2, the coordinator answers itself)", holders)
	}
	if n := testutil.CollectAndCount(coord.n.Metrics().OperationSeconds); n < 3 {
		t.Errorf("%d latency histograms, want one per series (at least 3)", n)
	}
	// What a scraper reads carries key types, never key names.
	for _, tn := range c.nodes {
		rec := httptest.NewRecorder()
		tn.n.Metrics().Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		body := rec.Body.String()
		if !strings.Contains(body, `key_type="secret"`) {
			t.Fatalf("%s's metrics show no key type: the check below proves nothing", tn.id())
		}
		for _, name := range []string{"m/secret", "m/missing"} {
			if strings.Contains(body, name) {
				t.Errorf("%s's metrics name the key %q", tn.id(), name)
			}
		}
	}
}

// TestFailureToleranceFollowsReachableNodes: 3 nodes with t=2 tolerate
// one failure; with one down, none, and the node is still ready; with two
// down, releases have stopped and the node says it is not ready.
func TestFailureToleranceFollowsReachableNodes(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	obs := c.nodes[0]
	tolerance := func() metrics.Tolerance { return obs.n.stateMetrics().Tolerance() }
	want := func(tol metrics.Tolerance) {
		t.Helper()
		if !c.waitFor(30*time.Second, func() (bool, string) {
			got := tolerance()
			return got == tol, fmt.Sprintf("tolerance %+v, want %+v", got, tol)
		}) {
			t.Fatal("tolerance did not settle")
		}
	}
	want(metrics.Tolerance{Holders: 1, Raft: 1, Release: 1})
	if err := obs.n.Ready(); err != nil {
		t.Fatalf("a healthy cluster's node is not ready: %v", err)
	}
	st := obs.n.stateMetrics()
	if st.Threshold != 2 || st.Holders != 3 || st.Voters != 3 || !st.ShareHeld {
		t.Fatalf("state %+v: want t=2, 3 holders, 3 voters, a share held", st)
	}
	c.stop(c.nodes[2])
	want(metrics.Tolerance{Holders: 0, Raft: 0, Release: 0})
	c.waitFor(10*time.Second, func() (bool, string) { return obs.n.Ready() == nil, fmt.Sprint(obs.n.Ready()) })
	if err := obs.n.Ready(); err != nil {
		t.Fatalf("with t holders and a majority up, the node is not ready: %v", err)
	}
	c.stop(c.nodes[1])
	want(metrics.Tolerance{Holders: -1, Raft: -1, Release: -1})
	if err := obs.n.Ready(); err == nil {
		t.Fatal("with one node of three up, the node says it is ready")
	}
}
