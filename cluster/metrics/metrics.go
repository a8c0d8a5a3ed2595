// Package metrics declares every Prometheus metric a keyquorum node
// exports, in one place (Set and New), and serves them (Set.Handler).
//
// A node owns one Set with its own registry, so that several nodes in one
// process (keyd dev, the in-process tests) keep apart. To add a metric:
// add a field to Set, make and register it in New, and document it in
// docs/operations.md (TestEveryMetricIsDocumented checks that the page
// names it). Labels never carry a key's name or any material: only key
// types, operations, gateways, error kinds and outcomes, so that the
// series are few and say nothing about what is stored.
package metrics

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyquorum/keyquorum/vocab"
)

// Namespace prefixes every metric's name.
const Namespace = "keyquorum"

// Label values used where there is nothing more precise to say.
const (
	// NoGateway labels an operation that came through no gateway the node
	// knows of (a direct call of the Go API, as in tests).
	NoGateway = "none"
	// NoKeyType labels an operation on a key the node could not find.
	NoKeyType = "none"
	// ResultOK is the result label of a success; a failure's is its error
	// kind (vocab.Kind).
	ResultOK = "ok"
)

// Op labels of the transit operations a gateway serves on its own node,
// with the key's public key or none, without a quorum (docs/transit.md):
// the gateways observe them; the node observes the rest (cluster's op
// labels: decrypt, derive, sign, holder, and the command types).
const (
	OpEncrypt = "encrypt" // transit encrypt (REST, gRPC), a batch counted once
	OpDataKey = "datakey" // transit datakey (REST)
	OpVerify  = "verify"  // transit verify (REST): ok even when the signature is not valid
	OpHash    = "hash"    // transit hash (REST): no key
	OpRandom  = "random"  // transit random (REST): no key
)

// Set is one node's metrics.
type Set struct {
	reg *prometheus.Registry

	// Operations and OperationSeconds count and time every operation the
	// node coordinates or answers: op, key_type, gateway, result.
	Operations       *prometheus.CounterVec
	OperationSeconds *prometheus.HistogramVec

	// ReshareRounds and ReshareSeconds: resharing rounds this node took
	// part in, by outcome (completed, replaced), timed from when the node
	// saw the round start to when it saw it end.
	ReshareRounds  *prometheus.CounterVec
	ReshareSeconds *prometheus.HistogramVec

	// Raft: leader changes this node observed, the time from proposing an
	// entry to its commit and application (commit), and the state
	// machine's time to apply one entry (apply).
	LeaderChanges     prometheus.Counter
	RaftCommitSeconds prometheus.Histogram
	RaftApplySeconds  prometheus.Histogram

	// Gateways: connections accepted (TCP; QUIC connections are not
	// counted) and errors answered, per gateway and, for errors, the
	// protocol's own code (an HTTP status, a gRPC code name).
	GatewayConnections *prometheus.CounterVec
	GatewayErrors      *prometheus.CounterVec

	// Audit: records appended and appends that failed.
	AuditRecords  *prometheus.CounterVec
	AuditFailures prometheus.Counter

	state atomic.Pointer[func() State]
}

// State is what the node's state gauges are read from at each scrape.
type State struct {
	Joined bool
	Leader bool
	Epoch  uint64
	// Threshold is t; Holders the share holders of the epoch and
	// HoldersReachable those gossip sees alive (this node counts as
	// alive); Voters and VotersReachable the same for Raft's voters.
	Threshold, Holders, HoldersReachable, Voters, VotersReachable int
	// ShareHeld: this node holds a share of the current epoch.
	ShareHeld bool
	// ApplyLag is Raft's commit index less the applied index.
	ApplyLag uint64
	// Diverged: this replica found its log differs from the leader's and
	// serves no share until it is rebuilt.
	Diverged bool
}

// Tolerance is how many more nodes may fail before an operation stops:
// for releases, the holders beyond t that are reachable; for Raft, the
// reachable voters beyond a majority; a release needs both (its read
// index needs a Raft majority). Below zero: that many nodes are missing
// and the operation has already stopped.
type Tolerance struct{ Holders, Raft, Release int }

// Tolerance computes the failure tolerance from s.
func (s State) Tolerance() Tolerance {
	t := Tolerance{Holders: s.HoldersReachable - s.Threshold, Raft: s.VotersReachable - (s.Voters/2 + 1)}
	t.Release = min(t.Holders, t.Raft)
	return t
}

// Buckets of the latency histograms, in seconds: from 0.5 ms (a release
// on an idle LAN takes a few ms) to the request timeout's order.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// New makes a node's metrics, with the Go runtime's and the process's
// collectors.
func New() *Set {
	s := &Set{reg: prometheus.NewRegistry()}
	opLabels := []string{"op", "key_type", "gateway", "result"}
	s.Operations = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "operations_total",
		Help: "Operations this node coordinated or answered, by operation, key type, gateway and result (ok or the error kind)."}, opLabels)
	s.OperationSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "operation_duration_seconds",
		Help: "Latency of the operations of keyquorum_operations_total.", Buckets: latencyBuckets}, opLabels)
	s.ReshareRounds = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "reshare_rounds_total",
		Help: "Resharing rounds this node saw end, by outcome (completed, replaced)."}, []string{"outcome"})
	s.ReshareSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "reshare_duration_seconds",
		Help:    "Duration of the resharing rounds of keyquorum_reshare_rounds_total, from start to end as this node saw them.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"outcome"})
	s.LeaderChanges = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "raft", Name: "leader_changes_total",
		Help: "Raft leader changes this node observed."})
	s.RaftCommitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "raft", Name: "commit_duration_seconds",
		Help: "Time from this node proposing an entry as leader to its commit and application.", Buckets: latencyBuckets})
	s.RaftApplySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "raft", Name: "apply_duration_seconds",
		Help: "Time the state machine takes to apply one entry on this node.", Buckets: latencyBuckets})
	s.GatewayConnections = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "gateway", Name: "connections_total",
		Help: "Connections accepted, by gateway."}, []string{"gateway"})
	s.GatewayErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "gateway", Name: "errors_total",
		Help: "Errors answered to clients, by gateway and the protocol's code (HTTP status, gRPC code name)."}, []string{"gateway", "code"})
	s.AuditRecords = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "audit", Name: "records_total",
		Help: "Authorization decisions appended to the audit log, by outcome (allowed, refused)."}, []string{"outcome"})
	s.AuditFailures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "audit", Name: "failures_total",
		Help: "Audit records that could not be written."})
	s.reg.MustRegister(s.Operations, s.OperationSeconds, s.ReshareRounds, s.ReshareSeconds, s.LeaderChanges,
		s.RaftCommitSeconds, s.RaftApplySeconds, s.GatewayConnections, s.GatewayErrors, s.AuditRecords, s.AuditFailures,
		stateCollector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

// SetState sets what the state gauges are read from at each scrape.
func (s *Set) SetState(fn func() State) { s.state.Store(&fn) }

// Handler serves the metrics in Prometheus' text and protobuf formats.
func (s *Set) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})
}

// Observe records one operation that started at start and ended with err.
func (s *Set) Observe(ctx context.Context, op, keyType string, start time.Time, err error) {
	if keyType == "" {
		keyType = NoKeyType
	}
	labels := prometheus.Labels{"op": op, "key_type": keyType, "gateway": GatewayOf(ctx), "result": Result(err)}
	s.Operations.With(labels).Inc()
	s.OperationSeconds.With(labels).Observe(time.Since(start).Seconds())
}

// Result is an operation's result label: ok, or the error's kind.
func Result(err error) string {
	if err == nil {
		return ResultOK
	}
	return string(vocab.KindOf(err))
}

type gatewayKey struct{}

// WithGateway marks ctx as a request that came through gateway (rest,
// grpc, kxd, tang, tlv, ...): the node labels the operations it does for
// the request with it.
func WithGateway(ctx context.Context, gateway string) context.Context {
	return context.WithValue(ctx, gatewayKey{}, gateway)
}

// GatewayOf is the gateway WithGateway set on ctx, or NoGateway.
func GatewayOf(ctx context.Context) string {
	if g, ok := ctx.Value(gatewayKey{}).(string); ok && g != "" {
		return g
	}
	return NoGateway
}

// The state gauges, read at each scrape.
var (
	descJoined        = prometheus.NewDesc(Namespace+"_joined", "1 if this node is in a cluster.", nil, nil)
	descLeader        = prometheus.NewDesc(Namespace+"_raft_leader", "1 if this node is the Raft leader.", nil, nil)
	descApplyLag      = prometheus.NewDesc(Namespace+"_raft_apply_lag", "Raft's commit index less the index this node has applied.", nil, nil)
	descEpoch         = prometheus.NewDesc(Namespace+"_epoch", "The cluster key's epoch (resharing rounds completed).", nil, nil)
	descThreshold     = prometheus.NewDesc(Namespace+"_threshold", "t: the shares a release needs.", nil, nil)
	descHolders       = prometheus.NewDesc(Namespace+"_holders", "Share holders of the epoch, by whether gossip sees them alive (reachable) or not (unreachable).", []string{"state"}, nil)
	descVoters        = prometheus.NewDesc(Namespace+"_raft_voters", "Raft voters, by whether gossip sees them alive (reachable) or not (unreachable).", []string{"state"}, nil)
	descShareHeld     = prometheus.NewDesc(Namespace+"_share_held", "1 if this node holds a share of the current epoch.", nil, nil)
	descDiverged      = prometheus.NewDesc(Namespace+"_diverged", "1 if this replica found its log differs from the leader's: it serves no share until an operator rebuilds it.", nil, nil)
	descFailTolerance = prometheus.NewDesc(Namespace+"_failure_tolerance",
		"How many more nodes may fail before releases stop (limit=release), counting the holders beyond t (limit=holders) and the Raft voters beyond a majority (limit=raft) that are reachable; negative when already stopped.",
		[]string{"limit"}, nil)
)

type stateCollector struct{ s *Set }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJoined, descLeader, descApplyLag, descEpoch, descThreshold, descHolders, descVoters, descShareHeld, descDiverged, descFailTolerance} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.s.state.Load()
	if fn == nil {
		return
	}
	st := (*fn)()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descJoined, boolValue(st.Joined))
	if !st.Joined {
		return
	}
	gauge(descLeader, boolValue(st.Leader))
	gauge(descApplyLag, float64(st.ApplyLag))
	gauge(descEpoch, float64(st.Epoch))
	gauge(descThreshold, float64(st.Threshold))
	gauge(descHolders, float64(st.HoldersReachable), "reachable")
	gauge(descHolders, float64(st.Holders-st.HoldersReachable), "unreachable")
	gauge(descVoters, float64(st.VotersReachable), "reachable")
	gauge(descVoters, float64(st.Voters-st.VotersReachable), "unreachable")
	gauge(descShareHeld, boolValue(st.ShareHeld))
	gauge(descDiverged, boolValue(st.Diverged))
	tol := st.Tolerance()
	gauge(descFailTolerance, float64(tol.Release), "release")
	gauge(descFailTolerance, float64(tol.Holders), "holders")
	gauge(descFailTolerance, float64(tol.Raft), "raft")
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// CountConnections counts the connections ln accepts as gateway's.
func (s *Set) CountConnections(ln net.Listener, gateway string) net.Listener {
	return countingListener{ln, s.GatewayConnections.WithLabelValues(gateway)}
}

type countingListener struct {
	net.Listener
	c prometheus.Counter
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.c.Inc()
	}
	return c, err
}

// HTTP labels h's requests as gateway's (WithGateway) and counts its
// answers with a status of 400 or more as errors.
func (s *Set) HTTP(gateway string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r.WithContext(WithGateway(r.Context(), gateway)))
		if sw.status >= 400 {
			s.GatewayErrors.WithLabelValues(gateway, strconv.Itoa(sw.status)).Inc()
		}
	})
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer's Flush and
// deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
