package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyquorum/keyquorum/vocab"
)

func TestTolerance(t *testing.T) {
	for _, c := range []struct {
		st   State
		want Tolerance
	}{
		{State{Threshold: 2, Holders: 3, HoldersReachable: 3, Voters: 3, VotersReachable: 3}, Tolerance{1, 1, 1}},
		{State{Threshold: 3, Holders: 5, HoldersReachable: 5, Voters: 5, VotersReachable: 5}, Tolerance{2, 2, 2}},
		// t above a majority: the holders fail first.
		{State{Threshold: 4, Holders: 5, HoldersReachable: 5, Voters: 5, VotersReachable: 5}, Tolerance{1, 2, 1}},
		// t below a majority: Raft fails first.
		{State{Threshold: 2, Holders: 5, HoldersReachable: 5, Voters: 5, VotersReachable: 5}, Tolerance{3, 2, 2}},
		{State{Threshold: 2, Holders: 3, HoldersReachable: 1, Voters: 3, VotersReachable: 1}, Tolerance{-1, -1, -1}},
		// An even number of voters: 4 need 3.
		{State{Threshold: 2, Holders: 4, HoldersReachable: 4, Voters: 4, VotersReachable: 4}, Tolerance{2, 1, 1}},
	} {
		if got := c.st.Tolerance(); got != c.want {
			t.Errorf("%+v: tolerance %+v, want %+v", c.st, got, c.want)
		}
	}
}

func TestObserveLabelsGatewayAndResult(t *testing.T) {
	s := New()
	ctx := WithGateway(context.Background(), "grpc")
	s.Observe(ctx, "release", "secret", time.Now(), nil)
	s.Observe(context.Background(), "release", "", time.Now(), vocab.Errorf(vocab.KindDenied, "no"))
	s.Observe(context.Background(), "release", "", time.Now(), errors.New("no kind"))
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"release", "secret", "grpc", ResultOK}, 1},
		{[]string{"release", NoKeyType, NoGateway, "denied"}, 1},
		{[]string{"release", NoKeyType, NoGateway, "internal"}, 1},
	} {
		if got := testutil.ToFloat64(s.Operations.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("%v: %v, want %v", c.labels, got, c.want)
		}
	}
}

func TestHTTPCountsErrorAnswersAndConnections(t *testing.T) {
	s := New()
	var gw string
	h := s.HTTP("kxd", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gw = GatewayOf(r.Context())
		if r.URL.Path == "/bad" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		w.Write([]byte("ok"))
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = s.CountConnections(ln, "kxd")
	srv.Start()
	defer srv.Close()
	for _, p := range []string{"/ok", "/bad", "/bad"} {
		// A new connection each time.
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if gw != "kxd" {
		t.Errorf("the handler saw gateway %q, want kxd", gw)
	}
	if got := testutil.ToFloat64(s.GatewayErrors.WithLabelValues("kxd", "403")); got != 2 {
		t.Errorf("403 answers counted %v, want 2", got)
	}
	if got := testutil.ToFloat64(s.GatewayConnections.WithLabelValues("kxd")); got != 3 {
		t.Errorf("connections counted %v, want 3", got)
	}
}

// TestEveryMetricIsDocumented: docs/operations.md names every metric a
// node exports, and the exposition is valid for Prometheus.
func TestEveryMetricIsDocumented(t *testing.T) {
	s := New()
	s.SetState(func() State {
		return State{Joined: true, Threshold: 2, Holders: 3, HoldersReachable: 3, Voters: 3, VotersReachable: 3}
	})
	s.Observe(context.Background(), "release", "secret", time.Now(), nil)
	s.ReshareRounds.WithLabelValues("completed").Inc()
	s.ReshareSeconds.WithLabelValues("completed").Observe(1)
	s.GatewayConnections.WithLabelValues("https").Inc()
	s.GatewayErrors.WithLabelValues("https", "403").Inc()
	s.AuditRecords.WithLabelValues("allowed").Inc()
	families, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, Namespace+"_") {
			continue
		}
		n++
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/operations.md does not name %s", name)
		}
	}
	if n < 15 {
		t.Errorf("only %d keyquorum metrics gathered", n)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `keyquorum_failure_tolerance{limit="release"} 1`) {
		t.Errorf("exposition: %d\n%s", rec.Code, rec.Body.String())
	}
}
