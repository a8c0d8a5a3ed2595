package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// operatorService is the part of a node AuthorizeOperator asks: its CA
// and the operators it knows.
type operatorService struct {
	Service // nil: AuthorizeOperator calls nothing else
	ca      []byte
	ops     map[string]*fsm.Operator
}

func (s *operatorService) Identity() Identity                    { return Identity{NodeID: "n1"} }
func (s *operatorService) Membership() (caCert, nodeCert []byte) { return s.ca, nil }
func (s *operatorService) Principal(_ context.Context, pub []byte) (*fsm.Operator, error) {
	if op := s.ops[fsm.PrincipalID(pub)]; op != nil {
		return op, nil
	}
	return nil, Errorf(KindUnauthenticated, "no operator has the key of this certificate")
}

func issued(t *testing.T, ca *CA, role, id string) (*x509.Certificate, ed25519.PublicKey) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Issue(pub, role, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCertPEM(p)
	if err != nil {
		t.Fatal(err)
	}
	return c, pub
}

// TestAuthorizeOperator: the one check of an operator's client
// certificate, which the REST and gRPC gateways both make, admits only a
// leaf of the cluster CA with the operator role on a known operator's key.
func TestAuthorizeOperator(t *testing.T) {
	t.Parallel()
	ca, err := NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("c2")
	if err != nil {
		t.Fatal(err)
	}
	opCert, opKey := issued(t, ca, RoleOperator, "alice")
	nodeCert, nodeKey := issued(t, ca, RoleNode, "n2")
	strangerCert, _ := issued(t, ca, RoleOperator, "mallory")
	foreignCert, foreignKey := issued(t, other, RoleOperator, "alice")
	alice := &fsm.Operator{ID: fsm.PrincipalID(opKey), Name: "alice"}
	svc := &operatorService{ca: ca.CertPEM, ops: map[string]*fsm.Operator{
		alice.ID: alice,
		// Known keys, on certificates that must not count.
		fsm.PrincipalID(nodeKey):    {ID: fsm.PrincipalID(nodeKey)},
		fsm.PrincipalID(foreignKey): {ID: fsm.PrincipalID(foreignKey)},
	}}
	ctx := context.Background()

	got, err := AuthorizeOperator(ctx, svc, []*x509.Certificate{opCert})
	if err != nil || got.ID != alice.ID {
		t.Fatalf("the operator's own certificate: %v, %v", got, err)
	}
	for _, tc := range []struct {
		name  string
		svc   Service
		chain []*x509.Certificate
		kind  Kind
		msg   string
	}{
		{"unjoined node", &operatorService{}, []*x509.Certificate{opCert}, KindNotInitialized, "not part of a cluster"},
		{"no certificate", svc, nil, KindUnauthenticated, "client certificate of the cluster CA is required"},
		{"node certificate", svc, []*x509.Certificate{nodeCert}, KindUnauthenticated, "not an operator certificate"},
		{"another CA's operator", svc, []*x509.Certificate{foreignCert}, KindUnauthenticated, "client certificate:"},
		{"unknown operator", svc, []*x509.Certificate{strangerCert}, KindUnauthenticated, "no operator has the key"},
		// Only the leaf the client proved it holds is an identity.
		{"operator certificate sent after another", svc, []*x509.Certificate{foreignCert, opCert}, KindUnauthenticated, "client certificate:"},
	} {
		got, err := AuthorizeOperator(ctx, tc.svc, tc.chain)
		if KindOf(err) != tc.kind || err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, %v; want %s (%q)", tc.name, got, err, tc.kind, tc.msg)
		}
	}
}

// TestCheckSigned: a command posted under an operator's certificate is
// taken only if it is of a type the call takes and that operator signed
// it.
func TestCheckSigned(t *testing.T) {
	t.Parallel()
	alice := &fsm.Operator{ID: "alice"}
	signed := func(signer, payload string) *fsm.Signed {
		return &fsm.Signed{Signer: signer, Payload: []byte(payload)}
	}
	if err := CheckSigned(alice, signed("alice", `{"type":"create_key"}`), fsm.TypeCreateKey); err != nil {
		t.Errorf("alice's create_key: %v", err)
	}
	if err := CheckSigned(alice, signed("alice", `{"type":"revoke_key"}`), fsm.TypeCreateKey, fsm.TypeRevokeKey); err != nil {
		t.Errorf("alice's revoke_key to a call that takes two types: %v", err)
	}
	for _, tc := range []struct {
		name  string
		op    *fsm.Operator
		sg    *fsm.Signed
		types []string
		kind  Kind
	}{
		{"another operator's command", alice, signed("bob", `{"type":"create_key"}`), []string{fsm.TypeCreateKey}, KindUnauthenticated},
		{"another type", alice, signed("alice", `{"type":"destroy_key"}`), []string{fsm.TypeCreateKey}, KindInvalid},
		{"none of the types", alice, signed("alice", `{"type":"release"}`), []string{fsm.TypeCreateKey, fsm.TypeRevokeKey}, KindInvalid},
		{"not a command", alice, signed("alice", `[1]`), []string{fsm.TypeCreateKey}, KindInvalid},
		{"no command", alice, nil, []string{fsm.TypeCreateKey}, KindInvalid},
		{"no operator", nil, signed("alice", `{"type":"create_key"}`), []string{fsm.TypeCreateKey}, KindUnauthenticated},
	} {
		if err := CheckSigned(tc.op, tc.sg, tc.types...); KindOf(err) != tc.kind {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.kind)
		}
	}
}

// TestServingCert: a node's gateways present a self-signed certificate for
// the node's key until it joins, and its certificate of the cluster CA
// from then on, with the same key.
func TestServingCert(t *testing.T) {
	t.Parallel()
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	nodePEM, err := ca.Issue(pub, RoleNode, "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var joined []byte
	sc, err := NewServingCert(key, "n1", func() (caCert, nodeCert []byte) {
		if joined == nil {
			return nil, nil
		}
		return ca.CertPEM, joined
	})
	if err != nil {
		t.Fatal(err)
	}
	before, err := sc.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if err := before.Leaf.CheckSignature(before.Leaf.SignatureAlgorithm, before.Leaf.RawTBSCertificate, before.Leaf.Signature); err != nil || !pub.Equal(before.Leaf.PublicKey) {
		t.Errorf("before joining: want a self-signed certificate for the node's key (%v)", err)
	}
	joined = nodePEM
	after, err := sc.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if role, id, err := CertRole(after.Leaf); err != nil || role != RoleNode || id != "n1" || after.Leaf.CheckSignatureFrom(ca.Cert) != nil {
		t.Errorf("after joining: %s %s %v; want the node certificate of the cluster CA", role, id, err)
	}
	if !key.Equal(after.PrivateKey) {
		t.Error("after joining: not the node's key")
	}
}

// TestAuthorizeOperatorRemembersChainsPerCA: a chain AuthorizeOperator
// accepted once is accepted again only under the same CA, only while its
// certificates are valid, and only for an operator the node still knows.
func TestAuthorizeOperatorRemembersChainsPerCA(t *testing.T) {
	t.Parallel()
	ca, err := NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("c2")
	if err != nil {
		t.Fatal(err)
	}
	opCert, opKey := issued(t, ca, RoleOperator, "alice")
	alice := &fsm.Operator{ID: fsm.PrincipalID(opKey), Name: "alice"}
	svc := &operatorService{ca: ca.CertPEM, ops: map[string]*fsm.Operator{alice.ID: alice}}
	ctx := context.Background()
	chain := []*x509.Certificate{opCert}
	for range 2 {
		if got, err := AuthorizeOperator(ctx, svc, chain); err != nil || got.ID != alice.ID {
			t.Fatalf("the operator's own certificate: %v, %v", got, err)
		}
	}
	moved := &operatorService{ca: other.CertPEM, ops: svc.ops}
	if _, err := AuthorizeOperator(ctx, moved, chain); KindOf(err) != KindUnauthenticated {
		t.Errorf("the chain under another CA: %v, want unauthenticated", err)
	}
	removed := &operatorService{ca: ca.CertPEM, ops: map[string]*fsm.Operator{}}
	if _, err := AuthorizeOperator(ctx, removed, chain); KindOf(err) != KindUnauthenticated {
		t.Errorf("a removed operator's chain: %v, want unauthenticated", err)
	}
	key := operatorChainKey(ca.CertPEM, chain)
	if !operatorChains.valid(key, time.Now()) {
		t.Fatal("the accepted chain is not remembered")
	}
	if operatorChains.valid(key, opCert.NotAfter.Add(time.Second)) || operatorChains.valid(key, ca.Cert.NotAfter.Add(time.Second)) {
		t.Error("the chain is remembered past its certificates' validity")
	}
	if operatorChains.valid(key, opCert.NotBefore.Add(-time.Second)) {
		t.Error("the chain is remembered before its certificate's validity")
	}
}
