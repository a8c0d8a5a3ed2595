package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRoundTrip is one release-sized call (a 600-byte request, a
// 2.5 KB answer) through this client's transport and through HTTP/2, to a
// server in this process that answers both: cpu-us/op is the client's and
// the server's CPU per call.
func BenchmarkRoundTrip(b *testing.B) {
	answer := map[string]any{"blob": make([]byte, 1800)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	tlsCfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, MinVersion: tls.VersionTLS13}
	body := map[string]any{"payload": make([]byte, 400), "signature": make([]byte, 64)}
	for _, tc := range []struct {
		name string
		tr   *http.Transport
	}{
		{"this", newTransport(tlsCfg.Clone())},
		{"http2", &http.Transport{TLSClientConfig: tlsCfg.Clone(), ForceAttemptHTTP2: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			hc := &http.Client{Transport: tc.tr}
			var out map[string]any
			if err := doJSON(context.Background(), hc, http.MethodPost, srv.URL, body, &out); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := cpuTime()
			for range b.N {
				if err := doJSON(context.Background(), hc, http.MethodPost, srv.URL, body, &out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
