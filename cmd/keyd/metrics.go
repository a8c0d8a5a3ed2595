package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/gateway/https"
)

// serveMetrics serves, on addr (--metrics-addr), in plain HTTP and to
// anyone who reaches it:
//
//   - GET /metrics: the node's metrics for Prometheus (cluster/metrics);
//     no key names, no material, only counts, latencies and the state's
//     sizes;
//   - GET /ready: 200 "ready" when the node can serve a release now
//     (cluster.Node.Ready), 503 with the reason otherwise: what a
//     Kubernetes readiness probe or a load balancer asks.
//
// It is a listener of its own so that the API port keeps requiring a
// certificate of the cluster CA for everything but the bootstrap calls,
// and a Prometheus server needs no credential of the cluster. Bind it to
// loopback or a monitoring network (docs/operations.md).
func serveMetrics(n *cluster.Node, addr string, log *slog.Logger) (gateway, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.Metrics().Handler())
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := n.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Handler: mux, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	https.DefaultTimeouts(cluster.DefaultRequestTimeout).Apply(srv)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return gateway{}, fmt.Errorf("metrics on %s: %w", addr, err)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return gateway{name: "metrics", shutdown: srv.Shutdown}, nil
}
