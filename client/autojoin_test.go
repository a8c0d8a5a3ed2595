package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
)

// fakeMember serves GET /v1/bootstrap/ca with caPEM, over TLS with a
// certificate for key issued by issuer, and counts the join requests it
// receives.
func fakeMember(t *testing.T, caPEM []byte, issuer *pki.CA) (addr string, joins *atomic.Int64) {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	certPEM, err := issuer.IssueChain(pub, pki.RoleNode, "node9", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := pki.ParseChainPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	joins = new(atomic.Int64)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/bootstrap/ca", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.ClusterCA{ClusterID: "c", CACert: caPEM})
	})
	mux.HandleFunc("POST /v1/bootstrap/join", func(w http.ResponseWriter, r *http.Request) {
		joins.Add(1)
		json.NewEncoder(w).Encode(api.AutoJoinReply{})
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), joins
}

// TestJoinPeerSendsNothingToAnotherCluster: a joining node's request goes
// only to a node whose certificate chains to the CA of the fingerprint it
// was given. A node of another cluster, and one that shows the real CA's
// (public) certificate but holds a certificate of another CA, receive no
// request; a member of the real cluster, with a certificate its join CA
// issued, receives it.
func TestJoinPeerSendsNothingToAnotherCluster(t *testing.T) {
	real, err := pki.NewCA("real")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := pki.NewCA("rogue")
	if err != nil {
		t.Fatal(err)
	}
	fp, err := api.CAFingerprint(real.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	join, err := real.NewJoinCA()
	if err != nil {
		t.Fatal(err)
	}
	req := &fsm.AutoJoin{Node: &fsm.Node{ID: "node4"}, Token: "0123456789abcdef"}
	for _, tc := range []struct {
		name   string
		ca     []byte
		issuer *pki.CA
		want   bool // the request is sent
	}{
		{"another cluster", rogue.CertPEM, rogue, false},
		{"the real CA's certificate, another CA's node certificate", real.CertPEM, rogue, false},
		{"a member with a certificate of the join CA", real.CertPEM, join, true},
		{"a member with a certificate of the root", real.CertPEM, real, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, joins := fakeMember(t, tc.ca, tc.issuer)
			_, err := JoinPeer{}.Join(context.Background(), addr, fp, req)
			if tc.want {
				if err != nil || joins.Load() != 1 {
					t.Fatalf("to a member: %v, %d requests", err, joins.Load())
				}
				return
			}
			if !errors.Is(err, ErrOtherCluster) {
				t.Fatalf("got %v, want %v", err, ErrOtherCluster)
			}
			if joins.Load() != 0 {
				t.Fatalf("%d join requests reached the node of another cluster", joins.Load())
			}
		})
	}
}
