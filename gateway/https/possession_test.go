package https

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
)

// provingService is a joined node's refusingService with a proof of
// possession that counts its calls.
type provingService struct {
	refusingService
	caPEM []byte
	calls int
}

func (p *provingService) Membership() (caCert, nodeCert []byte) { return p.caPEM, nil }

func (p *provingService) ProvePossession(context.Context, []byte) (*api.Possession, error) {
	p.calls++
	return &api.Possession{}, nil
}

// TestPossessionIsAnOperatorsCall: the challenge is served at
// api.PossessionPath for an operator only, like the status: a caller
// without a certificate, or with a node's, gets unauthenticated, and the
// node computes nothing for it.
func TestPossessionIsAnOperatorsCall(t *testing.T) {
	ca, err := pki.NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	svc := &provingService{refusingService: refusingService{id: cluster.Identity{NodeID: "n1"}}, caPEM: ca.CertPEM}
	pub, key, _ := ed25519.GenerateKey(nil)
	cert, err := cluster.NewServingCert(key, "n1", svc.Membership)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(svc, cert, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	nodePEM, err := ca.Issue(pub, pki.RoleNode, "n2", nil)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, err := pki.ParseCertPEM(nodePEM)
	if err != nil {
		t.Fatal(err)
	}
	for name, chain := range map[string][]*x509.Certificate{"no certificate": nil, "a node's certificate": {nodeCert}} {
		req := httptest.NewRequest(http.MethodPost, api.PossessionPath, strings.NewReader(`{"nonce":"AAAA"}`))
		req.TLS = &tls.ConnectionState{PeerCertificates: chain}
		w := httptest.NewRecorder()
		s.http.Handler.ServeHTTP(w, req)
		if w.Code != StatusOf(cluster.KindUnauthenticated) || svc.calls != 0 {
			t.Errorf("a challenge with %s: %d %s, %d proofs made; want %d and none",
				name, w.Code, w.Body.String(), svc.calls, StatusOf(cluster.KindUnauthenticated))
		}
	}
}
