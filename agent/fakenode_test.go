package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
	"github.com/quic-go/quic-go/http3"
)

// testCluster is the state a fake cluster shares among its nodes: a real
// 2-of-3 sharing of a cluster key (shamir's DKG with one dealer), keys
// sealed to it, registered machines and the nonces seen.
type testCluster struct {
	t        *testing.T
	id       string
	epoch    uint64
	poly     *shamir.PublicPoly
	shares   map[uint32]*shamir.Share
	caPEM    []byte
	leaf     tls.Certificate
	mu       sync.Mutex
	keys     map[string]*storedKey
	machines map[string]ed25519.PublicKey
	nonces   map[string]bool
	maxSkew  time.Duration
}

type storedKey struct {
	version uint64
	ct      *shamir.Ciphertext
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	c := &testCluster{t: t, id: "test-cluster", epoch: 1, shares: map[uint32]*shamir.Share{},
		keys: map[string]*storedKey{}, machines: map[string]ed25519.PublicKey{}, nonces: map[string]bool{},
		maxSkew: time.Minute}
	c.poly, c.shares = dealSharing(t, 2, 3)
	c.caPEM, c.leaf = testCertificates(t)
	return c
}

// dealSharing makes a real t-of-n sharing with shamir's DKG (one dealer).
func dealSharing(t *testing.T, th, n int) (*shamir.PublicPoly, map[uint32]*shamir.Share) {
	t.Helper()
	dealCtx := []byte("agent test deal")
	var recipients []shamir.Recipient
	privs := map[uint32][]byte{}
	for i := uint32(1); i <= uint32(n); i++ {
		priv, pub, err := shamir.GenerateEncryptionKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		privs[i] = priv
		recipients = append(recipients, shamir.Recipient{Index: i, EncPub: pub})
	}
	d, err := shamir.NewFreshDeal(rand.Reader, 1, th, recipients, dealCtx)
	if err != nil {
		t.Fatal(err)
	}
	shares := map[uint32]*shamir.Share{}
	var poly *shamir.PublicPoly
	for i := uint32(1); i <= uint32(n); i++ {
		sub, err := shamir.OpenDeal(d, i, privs[i], dealCtx)
		if err != nil {
			t.Fatal(err)
		}
		sh, p, err := shamir.CombineFresh([]*shamir.Deal{d}, map[uint32][]byte{1: sub}, i)
		if err != nil {
			t.Fatal(err)
		}
		shares[i], poly = sh, p
	}
	return poly, shares
}

// addKey seals a secret to the cluster key, as keyctl key create does.
func (c *testCluster) addKey(name string, secret []byte) {
	c.t.Helper()
	ct, err := shamir.Seal(rand.Reader, c.poly.PublicKey(), fsm.SealInfo(c.id, name), secret)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys[name] = &storedKey{version: 1, ct: ct}
}

// addMachine registers a machine key, as keyctl machine add does.
func (c *testCluster) addMachine(key ed25519.PrivateKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pub := key.Public().(ed25519.PublicKey)
	c.machines[MachineID(pub)] = pub
}

// fakeNode is one node of a testCluster, serving POST /v1/machine/unlock
// with TLS over TCP (and HTTP/3 over QUIC if started with QUIC). Its
// fields change how it answers; set them before use.
type fakeNode struct {
	c *testCluster
	// errKind and errStatus, if set, are the answer to every request
	// that passes authentication.
	errKind   string
	errStatus int
	rawError  string // a non-JSON error body with errStatus
	// pending answers pending_approval this many times, then releases.
	pending int
	// holds says it held each pending answer for an operator's decision
	// when asked to (Prefer: wait), as a node whose hold ended does.
	holds bool
	// holders are the share holders that answer (default 1, 2, 3).
	holders []uint32
	// corrupt holders send a partial with a wrong proof.
	corrupt map[uint32]bool
	// forge answers with a sharing and a key of the node's own making:
	// a sharing it dealt itself (forgedPoly, the same for every answer)
	// whose constant term is not the cluster key, and partials that
	// verify against it.
	forge        []byte
	forgedPoly   *shamir.PublicPoly
	forgedShares map[uint32]*shamir.Share

	addr    string
	mu      sync.Mutex
	protos  []string
	bodies  [][]byte
	prefers []string // the requests' Prefer headers
}

func (c *testCluster) node() *fakeNode { return &fakeNode{c: c} }

// start serves n on 127.0.0.1 over TCP, and over QUIC on the same port
// number if quic is set.
func (n *fakeNode) start(t *testing.T, quic bool) *fakeNode {
	t.Helper()
	n.startOn(t, "127.0.0.1:0")
	if quic {
		udp, err := net.ListenPacket("udp", n.addr)
		if err != nil {
			t.Fatalf("UDP port of %s: %v", n.addr, err)
		}
		h3 := &http3.Server{Handler: n, TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{n.c.leaf}})}
		go h3.Serve(udp)
		t.Cleanup(func() { h3.Close(); udp.Close() })
	}
	return n
}

// startOn serves n over TCP on addr.
func (n *fakeNode) startOn(t *testing.T, addr string) *fakeNode {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(n)
	ts.Listener.Close()
	ts.Listener = l
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{n.c.leaf}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	n.addr = l.Addr().String()
	return n
}

func (n *fakeNode) seen() (protos []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.protos...)
}

func (n *fakeNode) lastBody() []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.bodies) == 0 {
		return nil
	}
	return n.bodies[len(n.bodies)-1]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, kind, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"kind": kind, "message": msg}})
}

// ServeHTTP authenticates like a share holder (signature, nonce, time)
// and answers per the node's fields.
func (n *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != UnlockPath {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	n.mu.Lock()
	n.protos = append(n.protos, r.Proto)
	n.bodies = append(n.bodies, body)
	n.prefers = append(n.prefers, r.Header.Get(vocab.PreferHeader))
	n.mu.Unlock()
	c := n.c
	var sg fsm.Signed
	if err := json.Unmarshal(body, &sg); err != nil {
		writeErr(w, 400, "invalid", "not a signed command")
		return
	}
	c.mu.Lock()
	pub, known := c.machines[sg.Signer]
	c.mu.Unlock()
	if !known {
		writeErr(w, 401, "unauthenticated", "unknown operator or machine "+sg.Signer)
		return
	}
	if !ed25519.Verify(pub, fsm.SigningInput(sg.Payload), sg.Signature) {
		writeErr(w, 401, "unauthenticated", "signature does not verify")
		return
	}
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil || cmd.Type != fsm.TypeRelease || cmd.Release == nil ||
		cmd.Release.Op != fsm.OpGet || len(cmd.Nonce) < 16 {
		writeErr(w, 400, "invalid", "not a release")
		return
	}
	if skew := time.Since(time.Unix(0, cmd.IssuedAt)).Abs(); skew > c.maxSkew {
		writeErr(w, 401, "clock_skew", "request time is "+skew.String()+" off")
		return
	}
	c.mu.Lock()
	replay := c.nonces[string(cmd.Nonce)]
	c.nonces[string(cmd.Nonce)] = true
	k := c.keys[cmd.Release.Key]
	c.mu.Unlock()
	if replay {
		writeErr(w, 401, "unauthenticated", "nonce already used")
		return
	}
	if n.rawError != "" {
		http.Error(w, n.rawError, n.errStatus)
		return
	}
	if n.errKind != "" {
		writeErr(w, n.errStatus, n.errKind, "the node says "+n.errKind)
		return
	}
	if k == nil {
		writeErr(w, 404, "not_found", "unknown key "+cmd.Release.Key)
		return
	}
	n.mu.Lock()
	pend := n.pending > 0
	if pend {
		n.pending--
	}
	n.mu.Unlock()
	if pend {
		if n.holds && r.Header.Get(vocab.PreferHeader) != "" {
			w.Header().Set(vocab.PreferenceAppliedHeader, r.Header.Get(vocab.PreferHeader))
		}
		writeErr(w, 403, "pending_approval", "waiting for an operator's approval")
		return
	}
	poly, shares, ct := c.poly, c.shares, k.ct
	if n.forge != nil {
		// A coordinator that makes its own sharing can make partials
		// that verify against its own polynomial.
		n.mu.Lock()
		if n.forgedPoly == nil {
			n.forgedPoly, n.forgedShares = dealSharing(c.t, 2, 3)
		}
		poly, shares = n.forgedPoly, n.forgedShares
		n.mu.Unlock()
		var err error
		if ct, err = shamir.Seal(rand.Reader, poly.PublicKey(), fsm.SealInfo(c.id, cmd.Release.Key), n.forge); err != nil {
			writeErr(w, 500, "internal", err.Error())
			return
		}
	}
	rctx := fsm.ReleaseContext(c.id, cmd.Release.Key, k.version, c.epoch, sg.Payload)
	holders := n.holders
	if holders == nil {
		holders = []uint32{1, 2, 3}
	}
	rep := vocab.UnlockReply{ClusterID: c.id, Key: cmd.Release.Key, Version: k.version, Epoch: c.epoch,
		Threshold: poly.Threshold(), Poly: poly.Commits, R: ct.R, Sealed: ct.Sealed}
	for _, i := range holders {
		p, err := shamir.ComputePartial(rand.Reader, shares[i], ct.R, rctx)
		if err != nil {
			writeErr(w, 500, "internal", err.Error())
			return
		}
		if n.corrupt[i] {
			p.Response = bytes.Clone(p.Challenge) // a well-formed scalar, a wrong proof
		}
		pj, _ := json.Marshal(p)
		sealed, err := shamir.SealX25519(rand.Reader, cmd.Release.Ephemeral, fsm.PartialSealInfo(rctx, i), pj)
		if err != nil {
			writeErr(w, 400, "invalid", "ephemeral key: "+err.Error())
			return
		}
		rep.Partials = append(rep.Partials, vocab.SealedPartial{Index: i, R: sealed.R, Sealed: sealed.Sealed})
	}
	writeJSON(w, 200, rep)
}

// testCertificates makes a CA and a server certificate for 127.0.0.1.
func testCertificates(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
}

// blackhole is a TCP listener that accepts and never answers.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// syncBuffer is a log that tests read after the agent wrote it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testAgent makes a registered machine's agent for servers, trying them
// in the given order, TCP only unless quic, with short times.
func (c *testCluster) testAgent(t *testing.T, quic bool, servers ...string) (*Agent, *syncBuffer) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.addMachine(key)
	return c.agentWithKey(t, key, quic, servers...)
}

func (c *testCluster) agentWithKey(t *testing.T, key ed25519.PrivateKey, quic bool, servers ...string) (*Agent, *syncBuffer) {
	t.Helper()
	wait := Duration(0)
	a, err := New(Config{Servers: servers, CA: string(c.caPEM), TimeoutPerNode: Duration(2 * time.Second), Wait: &wait, TCPOnly: !quic, InOrder: true,
		ClusterID: c.id, ClusterPublicKey: c.poly.PublicKey()}, key)
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	a.Log = log
	a.Verbose = true
	a.BackoffInitial, a.BackoffMax = time.Millisecond, 4*time.Millisecond
	a.QUICHeadStart = 20 * time.Millisecond
	return a, log
}

func unlock(t *testing.T, a *Agent, name string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Unlock(ctx, name)
}

func parsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	return uint16(p), err
}
