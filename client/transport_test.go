package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
)

// BenchmarkNodeTransport is a release-sized request (a 600-byte body, a
// 1,200-byte answer) to a node's TLS server in this process, 8 at a
// time, over the client's transport (http1: nodeTransport) and over the
// HTTP/2 one it replaced (http2). cpu-µs/op is this process's CPU, both
// ends together, per request.
func BenchmarkNodeTransport(b *testing.B) {
	ca, err := pki.NewCA("c1")
	if err != nil {
		b.Fatal(err)
	}
	opPub, opKey, _ := ed25519.GenerateKey(rand.Reader)
	opCert, err := ca.Issue(opPub, pki.RoleOperator, fsm.PrincipalID(opPub), nil)
	if err != nil {
		b.Fatal(err)
	}
	nodePub, nodeKey, _ := ed25519.GenerateKey(rand.Reader)
	nodeCert, err := ca.Issue(nodePub, pki.RoleNode, "n1", []string{"127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := pki.ParseCertPEM(nodeCert)
	if err != nil {
		b.Fatal(err)
	}
	answer := append(bytes.Repeat([]byte{'a'}, 1200), '\n')
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: nodeKey, Leaf: leaf}}}
	srv.StartTLS()
	defer srv.Close()
	c, err := NewClient(srv.Listener.Addr().String(), &Credentials{CACert: ca.CertPEM, Cert: opCert, Key: opKey})
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte{'b'}, 600)
	for _, tr := range []struct {
		name string
		rt   *http.Transport
	}{
		{"http1", nodeTransport(c.tlsConfig)},
		{"http2", &http.Transport{TLSClientConfig: c.tlsConfig, ForceAttemptHTTP2: true}},
	} {
		b.Run(tr.name, func(b *testing.B) {
			hc := &http.Client{Transport: tr.rt}
			defer tr.rt.CloseIdleConnections()
			post := func() error {
				req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, c.base+"/v1/release", bytes.NewReader(body))
				if err != nil {
					return err
				}
				resp, err := hc.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.Copy(io.Discard, resp.Body)
				return err
			}
			for range 8 { // the connections, before the clock
				if err := post(); err != nil {
					b.Fatal(err)
				}
			}
			b.SetParallelism(4) // 8 goroutines on 2 cores
			cpu0 := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := post(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
