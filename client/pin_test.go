package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Attacks by one node on what the client seals (issue 9, hole 3): keyctl
// sealed new secrets and Tang shares to keys one node reported in its
// status. The nodes here are fakes with real certificates of the cluster
// CA, each at its own address: an honest one answers the cluster as it
// is, a lying one what the test says.

type fakeNode struct {
	id     string
	key    ed25519.PrivateKey
	srv    *httptest.Server
	mu     sync.Mutex
	status func() *api.Status
	calls  map[string]int    // by method and path
	posted []*fsm.Signed     // commands posted to /v1/keys
	keys   map[string]string // key name -> the state this node shows
	share  *shamir.Share     // its real share of the cluster key
	// prove answers a challenge; honestly (with share) by default.
	prove func(nonce []byte) *api.Possession
}

type fakeCluster struct {
	t         *testing.T
	ca        *pki.CA
	creds     *Credentials
	nodes     []*fakeNode
	clusterPK []byte
	poly      *shamir.PublicPoly // the cluster key's public polynomial
	truth     func() *api.Status // the cluster as it is
}

// dealTestKey deals a cluster key to share indexes 1..n with threshold
// t, as one dealer of a DKG would: the public polynomial and each index's
// share.
func dealTestKey(t *testing.T, n, th int) (*shamir.PublicPoly, []*shamir.Share) {
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
	ctx := []byte("test deal")
	d, err := shamir.NewFreshDeal(rand.Reader, 1, th, rs, ctx)
	if err != nil {
		t.Fatal(err)
	}
	var poly *shamir.PublicPoly
	var shares []*shamir.Share
	for i, r := range rs {
		sub, err := shamir.OpenDeal(d, r.Index, privs[i], ctx)
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

func newFakeCluster(t *testing.T, n int) *fakeCluster {
	t.Helper()
	ca, err := pki.NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	opPub, opKey, _ := ed25519.GenerateKey(rand.Reader)
	opID := fsm.PrincipalID(opPub)
	opCert, err := ca.Issue(opPub, pki.RoleOperator, opID, nil)
	if err != nil {
		t.Fatal(err)
	}
	poly, shares := dealTestKey(t, n, n/2+1)
	pk := poly.PublicKey()
	fc := &fakeCluster{t: t, ca: ca, clusterPK: pk, poly: poly,
		creds: &Credentials{CACert: ca.CertPEM, Cert: opCert, Key: opKey, OperatorID: opID, ClusterID: "c1", ClusterKey: pk}}
	for i := 1; i <= n; i++ {
		fn := &fakeNode{id: fmt.Sprintf("n%d", i), calls: map[string]int{}, keys: map[string]string{}, share: shares[i-1]}
		fn.prove = func(nonce []byte) *api.Possession { return fn.proveWith(fn.share, poly.Commits, nonce) }
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		fn.key = key
		certPEM, err := ca.Issue(pub, pki.RoleNode, fn.id, []string{"127.0.0.1", "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := pki.ParseCertPEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		fn.srv = httptest.NewUnstartedServer(http.HandlerFunc(fn.serve))
		fn.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}}}
		fn.srv.StartTLS()
		t.Cleanup(fn.srv.Close)
		fc.nodes = append(fc.nodes, fn)
	}
	fc.truth = func() *api.Status {
		st := &api.Status{ClusterID: "c1", Epoch: 2, N: n, Threshold: n/2 + 1, PublicKey: fc.clusterPK}
		for i, fn := range fc.nodes {
			st.Members = append(st.Members, api.MemberStatus{ID: fn.id, APIAddr: fn.srv.Listener.Addr().String(),
				Index: uint32(i + 1), Holder: true, SignKey: fn.key.Public().(ed25519.PublicKey)})
		}
		return st
	}
	for _, fn := range fc.nodes {
		fn.status = fc.truth
	}
	return fc
}

func (fn *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	fn.mu.Lock()
	fn.calls[r.Method+" "+r.URL.Path]++
	status := fn.status
	fn.mu.Unlock()
	switch r.URL.Path {
	case "/v1/cluster/status":
		st := status()
		st.Node = fn.id
		json.NewEncoder(w).Encode(st)
	case api.PossessionPath:
		var req api.PossessionRequest
		json.NewDecoder(r.Body).Decode(&req)
		fn.mu.Lock()
		prove := fn.prove
		fn.mu.Unlock()
		json.NewEncoder(w).Encode(prove(req.Nonce))
	case "/v1/keys":
		var sg fsm.Signed
		json.NewDecoder(r.Body).Decode(&sg)
		fn.mu.Lock()
		fn.posted = append(fn.posted, &sg)
		fn.mu.Unlock()
		json.NewEncoder(w).Encode(&fsm.Result{Key: &fsm.Key{Name: "k"}})
	case "/v1/revoke":
		// Acknowledges any revoke, and shows the key revoked from then on.
		var sg fsm.Signed
		json.NewDecoder(r.Body).Decode(&sg)
		var cmd fsm.Command
		json.Unmarshal(sg.Payload, &cmd)
		fn.mu.Lock()
		fn.keys[cmd.RevokeKey] = fsm.KeyRevoked
		fn.mu.Unlock()
		json.NewEncoder(w).Encode(&fsm.Result{Key: &fsm.Key{Name: cmd.RevokeKey, State: fsm.KeyRevoked}})
	default:
		name, ok := strings.CutPrefix(r.URL.Path, "/v1/keys/")
		fn.mu.Lock()
		state := fn.keys[name]
		fn.mu.Unlock()
		if !ok || state == "" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(&fsm.Key{Name: name, State: state})
	}
}

// proveWith is the node's answer to a challenge with share sh against
// the polynomial poly (epoch 2 of cluster c1).
func (fn *fakeNode) proveWith(sh *shamir.Share, poly [][]byte, nonce []byte) *api.Possession {
	p, err := api.ProvePossession(rand.Reader, sh, "c1", 2, fn.id, poly, nonce)
	if err != nil {
		panic(err)
	}
	return p
}

// answer makes the node answer challenges with prove.
func (fn *fakeNode) answer(prove func(nonce []byte) *api.Possession) {
	fn.mu.Lock()
	fn.prove = prove
	fn.mu.Unlock()
}

// show makes the node show key name in state.
func (fn *fakeNode) show(name, state string) {
	fn.mu.Lock()
	fn.keys[name] = state
	fn.mu.Unlock()
}

func (fn *fakeNode) lie(status func() *api.Status) {
	fn.mu.Lock()
	fn.status = status
	fn.mu.Unlock()
}

func (fn *fakeNode) count(call string) int {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	return fn.calls[call]
}

func (fc *fakeCluster) client(via *fakeNode) *Client {
	fc.t.Helper()
	c, err := NewClient(via.srv.Listener.Addr().String(), fc.creds)
	if err != nil {
		fc.t.Fatal(err)
	}
	return c
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCreateSealsToThePinWithoutAStatusCall: with the pin, key create is
// one call, and the secret is sealed to the pinned key even when the node
// reports another.
func TestCreateSealsToThePinWithoutAStatusCall(t *testing.T) {
	fc := newFakeCluster(t, 3)
	pinPriv, pinPub, _ := shamir.GenerateEncryptionKey(rand.Reader)
	fc.creds.ClusterKey = pinPub
	liar := fc.nodes[0]
	liar.lie(func() *api.Status { st := fc.truth(); st.PublicKey = fc.clusterPK; return st })
	secret := []byte("db root password")
	if _, err := fc.client(liar).CreateSecret(ctx5(t), "db/root", secret, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n := liar.count("GET /v1/cluster/status"); n != 0 {
		t.Errorf("create asked for the status %d times, want 0", n)
	}
	if len(liar.posted) != 1 {
		t.Fatalf("%d creates posted, want 1", len(liar.posted))
	}
	var cmd fsm.Command
	json.Unmarshal(liar.posted[0].Payload, &cmd)
	ct := &shamir.Ciphertext{R: cmd.CreateKey.R, Sealed: cmd.CreateKey.Sealed}
	got, err := shamir.OpenWithKey(pinPriv, ct, fsm.SealInfo("c1", "db/root"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the secret is not sealed to the pinned key: %v", err)
	}

	// Without a pin the client seals nothing and says how to pin.
	fc.creds.ClusterKey, fc.creds.ClusterID = nil, ""
	if _, err := fc.client(liar).CreateSecret(ctx5(t), "db/other", secret, time.Time{}); err == nil || !strings.Contains(err.Error(), "keyctl cluster pin") {
		t.Fatalf("create without a pin: %v, want an error naming keyctl cluster pin", err)
	}
}

// TestLyingStatusMakesTheClientRefuseToSeal: a Tang key's shares are
// sealed only to holders t members confirm, each at its own address with
// its own certificate. A node that reports another cluster key, fake
// holder keys, or other members at addresses it controls gets nothing
// sealed; the honest cluster does.
func TestLyingStatusMakesTheClientRefuseToSeal(t *testing.T) {
	fc := newFakeCluster(t, 3)
	liar := fc.nodes[0]
	_, fakeKey, _ := ed25519.GenerateKey(rand.Reader)
	_, otherPK, _ := shamir.GenerateEncryptionKey(rand.Reader)
	cases := []struct {
		name   string
		status func() *api.Status
		want   string
	}{
		{"another cluster key", func() *api.Status { st := fc.truth(); st.PublicKey = otherPK; return st }, "not the pinned"},
		{"a fake key for another holder", func() *api.Status {
			st := fc.truth()
			st.Members[1].SignKey = fakeKey.Public().(ed25519.PublicKey)
			return st
		}, "only 1 of the 2 members needed confirm"},
		{"its own key for every holder", func() *api.Status {
			st := fc.truth()
			for i := range st.Members {
				st.Members[i].SignKey = liar.key.Public().(ed25519.PublicKey)
			}
			return st
		}, "refusing to seal"},
		{"the other members at its own address", func() *api.Status {
			st := fc.truth()
			for i := range st.Members {
				st.Members[i].APIAddr = liar.srv.Listener.Addr().String()
				st.Members[i].SignKey = liar.key.Public().(ed25519.PublicKey)
			}
			return st
		}, "refusing to seal"},
		{"a lower threshold", func() *api.Status { st := fc.truth(); st.Threshold = 1; return st }, "threshold 1 of 3 holders"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			liar.lie(tc.status)
			before := len(liar.posted)
			_, err := fc.client(liar).CreateTang(ctx5(t), "tang/a", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CreateTang through a node that lies: %v, want an error with %q", err, tc.want)
			}
			if len(liar.posted) != before {
				t.Fatal("the client posted a Tang key dealt to a lying node's view")
			}
			if _, err := fc.client(liar).Pin(ctx5(t)); err == nil {
				t.Fatal("Pin confirmed a lying node's view")
			}
		})
	}

	// The honest cluster: confirmed by every member, and the shares are
	// sealed to the keys in the members' own certificates.
	liar.lie(fc.truth)
	c := fc.client(liar)
	cf, err := c.Confirm(ctx5(t), fc.clusterPK)
	if err != nil || len(cf.Confirmers) != 3 {
		t.Fatalf("the honest cluster: %v, %+v", err, cf)
	}
	if _, err := c.CreateTang(ctx5(t), "tang/a", nil); err != nil {
		t.Fatalf("CreateTang on the honest cluster: %v", err)
	}
	var cmd fsm.Command
	json.Unmarshal(liar.posted[len(liar.posted)-1].Payload, &cmd)
	for i, sh := range cmd.CreateKey.Tang.Shares {
		if sh.NodeID != fc.nodes[i].id {
			t.Errorf("share %d is for %s, want %s", i, sh.NodeID, fc.nodes[i].id)
		}
	}
}

// TestPinIsSavedAndLoaded: the pin goes into env.sh with the other
// credentials, and back; cluster pin replaces it in place.
func TestPinIsSavedAndLoaded(t *testing.T) {
	fc := newFakeCluster(t, 1)
	dir := t.TempDir()
	env, err := fc.creds.Save(dir, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(env, EnvClusterKey+"=") || !strings.Contains(env, EnvClusterID+"=c1") {
		t.Fatalf("env.sh lacks the pin:\n%s", env)
	}
	for _, line := range strings.Split(strings.TrimSpace(env), "\n") {
		k, v, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		t.Setenv(k, v)
	}
	got, err := CredentialsFromEnv()
	if err != nil || got.ClusterID != "c1" || !bytes.Equal(got.ClusterKey, fc.clusterPK) {
		t.Fatalf("read back: %v, %q %x", err, got.ClusterID, got.ClusterKey)
	}
	// SavePin replaces the lines.
	_, other, _ := shamir.GenerateEncryptionKey(rand.Reader)
	got.ClusterKey = other
	if err := got.SavePin(filepath.Join(dir, "env.sh")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "env.sh"))
	if strings.Count(string(b), EnvClusterKey+"=") != 1 || !strings.Contains(string(b), EnvCACert+"=") {
		t.Fatalf("env.sh after SavePin:\n%s", b)
	}
	// Base64 is read too.
	if k, err := ParseClusterKey("  " + strings.TrimRight(encodeB64(other), "=") + "\n"); err != nil || !bytes.Equal(k, other) {
		t.Fatalf("base64 pin: %v", err)
	}
	if _, err := ParseClusterKey("abcd"); err == nil {
		t.Fatal("a short pin was accepted")
	}
}

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestRevokeIsReportedOnlyWhenTMembersShowIt (issue 9, hole 8): keyctl
// believed one node's "revoked". A lying node acknowledges a revoke it
// never committed; the other members still show the key active, so the
// client reports an unknown outcome, not a revoke. When t members show it
// revoked, the revoke is reported.
func TestRevokeIsReportedOnlyWhenTMembersShowIt(t *testing.T) {
	fc := newFakeCluster(t, 3)
	for _, fn := range fc.nodes {
		fn.show("db/root", fsm.KeyActive)
	}
	liar := fc.nodes[0]
	_, err := fc.client(liar).Revoke(ctx5(t), "db/root")
	if err == nil {
		t.Fatal("a revoke one node acknowledged alone was reported done")
	}
	if k := api.KindOf(err); k != api.KindUnknownOutcome || !strings.Contains(err.Error(), "shows it active") {
		t.Fatalf("revoke acknowledged by one node: %v (kind %s), want %s naming the members that show it active", err, k, api.KindUnknownOutcome)
	}
	fc.nodes[1].show("db/root", fsm.KeyRevoked)
	if _, err := fc.client(liar).Revoke(ctx5(t), "db/root"); err != nil {
		t.Fatalf("revoke shown by t=2 members: %v", err)
	}
}

// TestLoneNodeCannotPassForTheCluster (issue 9, hole 3): a node that lists
// itself as the only holder, with threshold 1, is the only member its
// view names, and agreed with itself. Now every holder of the view must
// prove, for a fresh nonce, that it holds its share of a polynomial whose
// constant term is the cluster key; with t=1 that polynomial is the
// constant X, and proving a share of it is knowing the cluster secret.
// So Confirm, CreateTang and Pin (with a pin or pinning for the first
// time) refuse, whatever polynomial the liar proves against; the honest
// cluster passes.
func TestLoneNodeCannotPassForTheCluster(t *testing.T) {
	fc := newFakeCluster(t, 3)
	liar := fc.nodes[0]
	alone := func() *api.Status {
		st := fc.truth()
		st.N, st.Threshold, st.Members = 1, 1, st.Members[:1]
		return st
	}
	liar.lie(alone)
	cases := []struct {
		name  string
		prove func(nonce []byte) *api.Possession
		want  string
	}{
		{"its share against the constant X", func(nonce []byte) *api.Possession {
			return liar.proveWith(liar.share, fc.poly.Commits[:1], nonce)
		}, "proof of possession fails"},
		{"its share against the real polynomial", func(nonce []byte) *api.Possession {
			return liar.proveWith(liar.share, fc.poly.Commits, nonce)
		}, "polynomial of threshold 2, not 1"},
		{"a proof for another nonce", func([]byte) *api.Possession {
			return liar.proveWith(liar.share, fc.poly.Commits[:1], make([]byte, api.PossessionNonceSize))
		}, "proof of possession fails"},
		{"no proof", func([]byte) *api.Possession { return nil }, "refusing to seal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			liar.answer(tc.prove)
			fc.creds.ClusterID, fc.creds.ClusterKey = "c1", fc.clusterPK
			c := fc.client(liar)
			if _, err := c.Confirm(ctx5(t), fc.clusterPK); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Confirm of a lone node's view: %v, want an error with %q", err, tc.want)
			}
			before := len(liar.posted)
			if _, err := c.CreateTang(ctx5(t), "tang/lone", nil); err == nil {
				t.Fatal("CreateTang dealt a Tang key to a lone node")
			}
			if len(liar.posted) != before {
				t.Fatal("the client posted a Tang key dealt to a lone node's view")
			}
			if _, err := c.Pin(ctx5(t)); err == nil {
				t.Fatal("Pin confirmed a lone node's view")
			}
			// Pinning for the first time, the liar's word for the real
			// key does not make it the cluster either.
			fc.creds.ClusterID, fc.creds.ClusterKey = "", nil
			c = fc.client(liar)
			if _, err := c.Pin(ctx5(t)); err == nil || len(c.Credentials().ClusterKey) != 0 {
				t.Fatalf("a first Pin confirmed a lone node's view: %v", err)
			}
		})
	}

	// The honest cluster, with one holder answering a stale proof: the
	// two others are t, and the stale one is not among the confirmers.
	liar.lie(fc.truth)
	liar.answer(func(nonce []byte) *api.Possession {
		return liar.proveWith(liar.share, fc.poly.Commits, make([]byte, api.PossessionNonceSize))
	})
	fc.creds.ClusterID, fc.creds.ClusterKey = "", nil
	c := fc.client(fc.nodes[1])
	cf, err := c.Pin(ctx5(t))
	if err != nil || strings.Join(cf.Confirmers, ",") != "n2,n3" || !bytes.Equal(c.Credentials().ClusterKey, fc.clusterPK) {
		t.Fatalf("Pin on the honest cluster with one stale proof: %v, %+v", err, cf)
	}
	if _, err := c.CreateTang(ctx5(t), "tang/honest", nil); err != nil {
		t.Fatalf("CreateTang on the honest cluster: %v", err)
	}
}
