package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// statusCluster is a fake cluster's status API: members with node
// certificates of a cluster CA, each answering GET /v1/cluster/status
// with its view (honest by default; lie changes a member's).
type statusCluster struct {
	ca       *pki.CA
	id       string
	key      []byte
	poly     [][]byte // the key's public polynomial, for the proofs of possession
	operator tls.Certificate
	members  []*statusMember
}

type statusMember struct {
	c    *statusCluster
	id   string
	sign ed25519.PublicKey
	addr string
	mu   sync.Mutex
	lie  func(*api.Status)
	hits int
	// share is the member's real share of the key; prove, when set,
	// replaces its honest answer to a challenge.
	share *shamir.Share
	prove func(nonce []byte) *api.Possession
}

// dealKey deals a cluster key to indexes 1..n with threshold th: its
// public polynomial and each index's share.
func dealKey(t *testing.T, n, th int) (*shamir.PublicPoly, []*shamir.Share) {
	t.Helper()
	var rs []shamir.Recipient
	var privs [][]byte
	for i := 1; i <= n; i++ {
		priv, pub, err := shamir.GenerateEncryptionKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, shamir.Recipient{Index: uint32(i), EncPub: pub})
		privs = append(privs, priv)
	}
	dctx := []byte("test deal")
	d, err := shamir.NewFreshDeal(rand.Reader, 1, th, rs, dctx)
	if err != nil {
		t.Fatal(err)
	}
	var poly *shamir.PublicPoly
	var shares []*shamir.Share
	for i, r := range rs {
		sub, err := shamir.OpenDeal(d, r.Index, privs[i], dctx)
		if err != nil {
			t.Fatal(err)
		}
		sh, p, err := shamir.CombineFresh([]*shamir.Deal{d}, map[uint32][]byte{1: sub}, r.Index)
		if err != nil {
			t.Fatal(err)
		}
		poly, shares = p, append(shares, sh)
	}
	return poly, shares
}

// proveWith is m's answer to a challenge with share sh against poly.
func (m *statusMember) proveWith(sh *shamir.Share, poly [][]byte, nonce []byte) *api.Possession {
	p, err := api.ProvePossession(rand.Reader, sh, m.c.id, 3, m.id, poly, nonce)
	if err != nil {
		panic(err)
	}
	return p
}

func newStatusCluster(t *testing.T, n int) *statusCluster {
	t.Helper()
	ca, err := pki.NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	poly, shares := dealKey(t, n, n/2+1)
	sc := &statusCluster{ca: ca, id: "c1", key: poly.PublicKey(), poly: poly.Commits}
	sc.operator = sc.cert(t, pki.RoleOperator, "op1")
	for i := 1; i <= n; i++ {
		m := &statusMember{c: sc, id: "n" + string(rune('0'+i)), share: shares[i-1]}
		cert := sc.cert(t, pki.RoleNode, m.id)
		m.sign = cert.PrivateKey.(ed25519.PrivateKey).Public().(ed25519.PublicKey)
		ts := httptest.NewUnstartedServer(m)
		ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
		ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
		ts.StartTLS()
		t.Cleanup(ts.Close)
		m.addr = ts.Listener.Addr().String()
		sc.members = append(sc.members, m)
	}
	return sc
}

func (sc *statusCluster) cert(t *testing.T, role, id string) tls.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := sc.ca.Issue(pub, role, id, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: priv, Leaf: leaf}
}

// status is the honest status as member m answers it.
func (sc *statusCluster) status(m *statusMember) *api.Status {
	st := &api.Status{ClusterID: sc.id, Node: m.id, Leader: sc.members[0].id, Epoch: 3, N: len(sc.members),
		Threshold: len(sc.members)/2 + 1, PublicKey: bytes.Clone(sc.key)}
	for i, o := range sc.members {
		st.Members = append(st.Members, api.MemberStatus{ID: o.id, APIAddr: o.addr, Index: uint32(i + 1), Holder: true, SignKey: o.sign})
	}
	return st
}

func (m *statusMember) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.hits++
	lie, prove := m.lie, m.prove
	m.mu.Unlock()
	challenge := r.Method == http.MethodPost && r.URL.Path == api.PossessionPath
	if !challenge && (r.Method != http.MethodGet || r.URL.Path != statusPath) {
		http.NotFound(w, r)
		return
	}
	if len(r.TLS.PeerCertificates) == 0 {
		writeErr(w, 401, "unauthenticated", "a client certificate of the cluster CA is required")
		return
	}
	if role, _, err := pki.CertRole(r.TLS.PeerCertificates[0]); err != nil || role != pki.RoleOperator {
		writeErr(w, 401, "unauthenticated", "not an operator")
		return
	}
	if challenge {
		var req api.PossessionRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeErr(w, 400, "invalid", err.Error())
			return
		}
		if prove == nil {
			prove = func(nonce []byte) *api.Possession { return m.proveWith(m.share, m.c.poly, nonce) }
		}
		writeJSON(w, 200, prove(req.Nonce))
		return
	}
	st := m.c.status(m)
	if lie != nil {
		lie(st)
	}
	writeJSON(w, 200, st)
}

func (sc *statusCluster) confirm(t *testing.T, servers ...string) (*Confirmed, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return ConfirmPin(ctx, ConfirmOptions{Servers: servers, CA: string(sc.ca.CertPEM), Operator: sc.operator, TimeoutPerNode: 5 * time.Second})
}

func TestConfirmPin(t *testing.T) {
	sc := newStatusCluster(t, 3)
	n1, n3 := sc.members[0], sc.members[2]

	cf, err := sc.confirm(t, n1.addr)
	if err != nil {
		t.Fatalf("ConfirmPin: %v", err)
	}
	if cf.ClusterID != sc.id || !bytes.Equal(cf.PublicKey, sc.key) || strings.Join(cf.Confirmers, ",") != "n1,n2,n3" {
		t.Errorf("confirmed %+v", cf)
	}
	for _, m := range sc.members {
		m.mu.Lock()
		hits := m.hits
		m.mu.Unlock()
		if hits == 0 {
			t.Errorf("member %s at its own address was not asked", m.id)
		}
	}

	// A member that answers as another node is not counted; t of 3 still
	// confirm.
	n3.mu.Lock()
	n3.lie = func(st *api.Status) { st.Node = "n9" } // answers as another node
	n3.mu.Unlock()
	if cf, err := sc.confirm(t, n1.addr); err != nil || strings.Join(cf.Confirmers, ",") != "n1,n2" {
		t.Errorf("with n3 answering as another node: %+v, %v; want n1 and n2 to confirm", cf, err)
	}
	n3.mu.Lock()
	n3.lie = nil
	n3.mu.Unlock()
}

// A node that lies about the cluster key is not confirmed by the others.
func TestConfirmPinRefusesALiar(t *testing.T) {
	sc := newStatusCluster(t, 3)
	n1, n2 := sc.members[0], sc.members[1]
	forged := bytes.Repeat([]byte{9}, ClusterKeySize)

	n1.lie = func(st *api.Status) { st.PublicKey = forged }
	cf, err := sc.confirm(t, n1.addr)
	if KindOf(err) != vocab.KindBadReply || cf != nil {
		t.Fatalf("a liar asked first: %+v, %v; want a bad_reply refusal", cf, err)
	}
	if !strings.Contains(err.Error(), "only 0 of the 2 members needed") || !strings.Contains(err.Error(), "n1 at "+n1.addr+": proves against a polynomial that is not for the cluster key") {
		t.Errorf("the error does not say how many confirmed and why n1 does not: %v", err)
	}

	// Asked second, after an honest node: the servers disagree.
	if cf, err := sc.confirm(t, n2.addr, n1.addr); KindOf(err) != vocab.KindBadReply || cf != nil ||
		!strings.Contains(err.Error(), "refusing to pin either") {
		t.Errorf("an honest server and a liar: %+v, %v; want a bad_reply refusal", cf, err)
	}

	// A liar that lists itself as the only holder, t = 1, of a key of its
	// own (whose secret it knows, so its proofs hold): enroll pins for the
	// first time, so nothing but the other servers contradicts it. Every
	// server given must agree, so give them all.
	own, ownShares := dealKey(t, 1, 1)
	n1.lie = func(st *api.Status) {
		st.PublicKey, st.N, st.Threshold = own.PublicKey(), 1, 1
		st.Members = st.Members[:1]
	}
	n1.prove = func(nonce []byte) *api.Possession { return n1.proveWith(ownShares[0], own.Commits, nonce) }
	if cf, err := sc.confirm(t, n1.addr, n2.addr); KindOf(err) != vocab.KindBadReply || cf != nil {
		t.Errorf("a lone liar contradicted by another server: %+v, %v; want a bad_reply refusal", cf, err)
	}
	n1.prove = nil

	// A member that presents another node's certificate at its address is
	// not counted: n1 lists n3 at n2's address.
	n1.lie = func(st *api.Status) { st.Members[2].APIAddr = n2.addr }
	if cf, err := sc.confirm(t, n1.addr); err != nil || strings.Join(cf.Confirmers, ",") != "n1,n2" {
		t.Errorf("n3 listed at n2's address: %+v, %v; want only n1 and n2 to confirm", cf, err)
	}
	n1.lie = nil

	// Without an operator certificate the node refuses the status.
	ctx := context.Background()
	if _, err := ConfirmPin(ctx, ConfirmOptions{Servers: []string{n2.addr}, CA: string(sc.ca.CertPEM)}); KindOf(err) != vocab.KindUnauthenticated {
		t.Errorf("without an operator certificate: %v; want unauthenticated", err)
	}
	if _, err := ConfirmPin(ctx, ConfirmOptions{Servers: []string{n2.addr}}); KindOf(err) != vocab.KindConfig {
		t.Errorf("without the cluster CA: %v; want a config error", err)
	}
}

// TestConfirmPinRefusesALoneHolder (issue 9, hole 3): a node that lists
// itself as the only holder, with threshold 1 and the real cluster key,
// was the only member its view named, and confirmed itself when it was
// the one server given. Every holder of the view must now prove its share
// for a fresh nonce against a polynomial whose constant term is the key:
// with t=1 that is the cluster secret, which the liar does not know,
// whatever polynomial it proves against. The honest cluster still
// confirms, each holder having proved its share.
func TestConfirmPinRefusesALoneHolder(t *testing.T) {
	sc := newStatusCluster(t, 3)
	n1 := sc.members[0]
	n1.lie = func(st *api.Status) {
		st.N, st.Threshold = 1, 1
		st.Members = st.Members[:1]
	}
	for _, tc := range []struct {
		name  string
		prove func(nonce []byte) *api.Possession
		want  string
	}{
		{"its share against the constant key", func(nonce []byte) *api.Possession {
			return n1.proveWith(n1.share, sc.poly[:1], nonce)
		}, "proof of possession fails"},
		{"its share against the real polynomial", func(nonce []byte) *api.Possession {
			return n1.proveWith(n1.share, sc.poly, nonce)
		}, "polynomial of threshold 2, not 1"},
		{"a proof for another nonce", func([]byte) *api.Possession {
			return n1.proveWith(n1.share, sc.poly[:1], make([]byte, api.PossessionNonceSize))
		}, "proof of possession fails"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n1.mu.Lock()
			n1.prove = tc.prove
			n1.mu.Unlock()
			cf, err := sc.confirm(t, n1.addr)
			if KindOf(err) != vocab.KindBadReply || cf != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("a lone holder asked alone: %+v, %v; want a bad_reply refusal with %q", cf, err, tc.want)
			}
		})
	}

	n1.mu.Lock()
	n1.lie, n1.prove = nil, nil
	n1.mu.Unlock()
	cf, err := sc.confirm(t, n1.addr)
	if err != nil || !bytes.Equal(cf.PublicKey, sc.key) || strings.Join(cf.Confirmers, ",") != "n1,n2,n3" {
		t.Fatalf("the honest cluster: %+v, %v", cf, err)
	}
}
