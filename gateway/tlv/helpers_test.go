package tlv

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and two client
// certificates, plus a client certificate of a CA the server does not trust.
type testPKI struct {
	caPool    *x509.CertPool
	server    tls.Certificate
	clientA   tls.Certificate // CN edge-a: may use every key
	clientB   tls.Certificate // CN edge-b: denied the restricted key
	untrusted tls.Certificate // CN edge-a, signed by another CA
}

func newCA(cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return cert, key
}

func newLeaf(ca *x509.Certificate, caKey crypto.Signer, cn string, server bool) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		panic(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

func getPKI() *testPKI {
	pkiOnce.Do(func() {
		ca, caKey := newCA("keyless test CA")
		other, otherKey := newCA("someone else's CA")
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		pki = &testPKI{
			caPool:    pool,
			server:    newLeaf(ca, caKey, "keyless server", true),
			clientA:   newLeaf(ca, caKey, "edge-a", false),
			clientB:   newLeaf(ca, caKey, "edge-b", false),
			untrusted: newLeaf(other, otherKey, "edge-a", false),
		}
	})
	return pki
}

// clientConfig trusts the test CA and presents cert (none if nil).
func clientConfig(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: getPKI().caPool, ServerName: "127.0.0.1"}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// testKey is a key the test Keys knows, under its SKI and digest.
type testKey struct {
	signer crypto.Signer
	ski    []byte
	digest []byte
	// onlyFor, if set, is the one client CN that may use the key.
	onlyFor string
}

// The test keys. rsaKey, ecKey and edKey are real keys looked up by their
// SKI and digest; the others are looked up by made-up identifiers.
type keySet struct {
	rsa, ec, ed, restricted *testKey
	opaqueRSA               *testKey // an RSA signer that is neither a Decrypter nor raw-capable
	rawRSA                  *testKey // an RSA signer with its own RawDecrypter
	failing                 *testKey // an ECDSA signer whose Sign fails
}

var (
	keysOnce sync.Once
	keySetV  *keySet
)

func madeUpID(name string, n int) []byte {
	sum := sha1.Sum([]byte(name))
	out := make([]byte, n)
	copy(out, sum[:])
	return out
}

func realKey(signer crypto.Signer) *testKey {
	ski, err := SKI(signer.Public())
	if err != nil {
		panic(err)
	}
	digest, err := Digest(signer.Public())
	if err != nil {
		panic(err)
	}
	return &testKey{signer: signer, ski: ski, digest: digest}
}

func fakeKey(name string, signer crypto.Signer) *testKey {
	return &testKey{signer: signer, ski: madeUpID(name, SKISize), digest: madeUpID(name+" digest", DigestSize)}
}

// opaqueSigner hides every method of the key but Public and Sign.
type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, d, opts)
}

// rawSigner is an RSA key with a RawDecrypter of its own (math/big: a test
// reference, not constant-time), to check the server uses the interface.
type rawSigner struct {
	opaqueSigner
	key   *rsa.PrivateKey
	calls atomic.Int64
}

func (r *rawSigner) DecryptRaw(c []byte) ([]byte, error) {
	r.calls.Add(1)
	x := new(big.Int).SetBytes(c)
	if x.Cmp(r.key.N) >= 0 {
		return nil, errors.New("ciphertext too large")
	}
	m := new(big.Int).Exp(x, r.key.D, r.key.N)
	return m.FillBytes(make([]byte, len(c))), nil
}

type failingSigner struct{ opaqueSigner }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("the HSM is unplugged")
}

func getKeys() *keySet {
	keysOnce.Do(func() {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		rek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, edk, _ := ed25519.GenerateKey(rand.Reader)
		restricted := realKey(rek)
		restricted.onlyFor = "edge-a"
		keySetV = &keySet{
			rsa:        realKey(rk),
			ec:         realKey(ek),
			ed:         realKey(edk),
			restricted: restricted,
			opaqueRSA:  fakeKey("opaque", opaqueSigner{rk}),
			rawRSA:     fakeKey("raw", &rawSigner{opaqueSigner: opaqueSigner{rk}, key: rk}),
			failing:    fakeKey("failing", failingSigner{opaqueSigner{ek}}),
		}
	})
	return keySetV
}

// testKeys is the Keys of the tests. Some server names make it misbehave:
// "broken.test" fails, "panic.test" panics, and "slow.test" waits until
// release is closed (or the lookup's context ends).
type testKeys struct {
	bySKI    map[string]*testKey
	byDigest map[string]*testKey
	release  chan struct{}
	entered  chan struct{} // gets a value when a slow lookup starts waiting
	last     atomic.Pointer[Client]
}

func newTestKeys() *testKeys {
	ks := getKeys()
	k := &testKeys{
		bySKI:    map[string]*testKey{},
		byDigest: map[string]*testKey{},
		release:  make(chan struct{}),
		entered:  make(chan struct{}, 16),
	}
	for _, e := range []*testKey{ks.rsa, ks.ec, ks.ed, ks.restricted, ks.opaqueRSA, ks.rawRSA, ks.failing} {
		k.bySKI[string(e.ski)] = e
		k.byDigest[string(e.digest)] = e
	}
	return k
}

func (k *testKeys) Lookup(ctx context.Context, ski, digest []byte, sni string, client Client) (crypto.Signer, error) {
	switch sni {
	case "broken.test":
		return nil, errors.New("no quorum")
	case "panic.test":
		panic("a Keys implementation panicked")
	case "slow.test":
		k.entered <- struct{}{}
		select {
		case <-k.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "record.test":
		k.last.Store(&client)
	}
	e := k.bySKI[string(ski)]
	if e == nil {
		e = k.byDigest[string(digest)]
	}
	if e == nil {
		return nil, ErrKeyNotFound
	}
	if e.onlyFor != "" && (client.Cert == nil || client.Cert.Subject.CommonName != e.onlyFor) {
		return nil, ErrDenied
	}
	return e.signer, nil
}

// harness is a server on a TCP and a QUIC listener of 127.0.0.1.
type harness struct {
	srv      *Server
	keys     *testKeys
	tcpAddr  string
	quicAddr string
	served   chan error // one value from Serve and one from ServeQUIC
	shutDown bool
}

func newHarness(t testing.TB, opts ...Option) *harness {
	t.Helper()
	p := getPKI()
	h := &harness{keys: newTestKeys(), served: make(chan error, 2)}
	h.srv = NewServer(h.keys, slog.New(slog.DiscardHandler), opts...)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.tcpAddr = ln.Addr().String()
	tl := tls.NewListener(ln, ServerTLSConfig(&tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.caPool}))
	go func() { h.served <- h.srv.Serve(tl) }()

	ql, err := quic.ListenAddr("127.0.0.1:0", ServerQUICConfig(&tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.caPool}), h.srv.QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	h.quicAddr = ql.Addr().String()
	go func() { h.served <- h.srv.ServeQUIC(ql) }()

	t.Cleanup(func() {
		if h.shutDown {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		for range 2 {
			if err := <-h.served; err != nil {
				t.Errorf("Serve returned %v after Shutdown, want nil", err)
			}
		}
	})
	return h
}

// dial connects a client over "tcp" or "quic" with the given certificate.
func (h *harness) dial(t testing.TB, transport string, cert *tls.Certificate) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		c   *Conn
		err error
	)
	if transport == "quic" {
		c, err = DialQUIC(ctx, h.quicAddr, clientConfig(cert))
	} else {
		c, err = Dial(ctx, h.tcpAddr, clientConfig(cert))
	}
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawStream is a connection or QUIC stream on which a test writes bytes of
// its own choosing and reads replies one by one.
type rawStream struct {
	w          io.Writer
	r          *bufio.Reader
	closeWrite func() error
	close      func() error
}

func (h *harness) raw(t testing.TB, transport string) *rawStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cert := getPKI().clientA
	if transport == "quic" {
		cfg := clientConfig(&cert)
		cfg.NextProtos = []string{ALPN}
		qc, err := quic.DialAddr(ctx, h.quicAddr, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		str, err := qc.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { qc.CloseWithError(0, "") })
		return &rawStream{w: str, r: bufio.NewReader(str), closeWrite: str.Close, close: func() error { return qc.CloseWithError(0, "") }}
	}
	d := tls.Dialer{Config: clientConfig(&cert)}
	c, err := d.DialContext(ctx, "tcp", h.tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*tls.Conn)
	t.Cleanup(func() { tc.Close() })
	return &rawStream{w: tc, r: bufio.NewReader(tc), closeWrite: tc.CloseWrite, close: tc.Close}
}

func (s *rawStream) send(t testing.TB, msgs ...[]byte) {
	t.Helper()
	var all []byte
	for _, m := range msgs {
		all = append(all, m...)
	}
	if _, err := s.w.Write(all); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// recv reads one reply and returns it with its size on the wire.
func (s *rawStream) recv() (*Response, int, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(s.r, hb[:]); err != nil {
		return nil, 0, err
	}
	n := int(binary.BigEndian.Uint16(hb[2:4]))
	msg := make([]byte, HeaderSize+n)
	copy(msg, hb[:])
	if _, err := io.ReadFull(s.r, msg[HeaderSize:]); err != nil {
		return nil, 0, err
	}
	if hb[0] != 1 || hb[1] != 0 {
		return nil, 0, errors.New("reply of a version other than 1.0")
	}
	resp, err := ParseResponse(msg)
	return resp, len(msg), err
}

func (s *rawStream) mustRecv(t testing.TB) (*Response, int) {
	t.Helper()
	resp, n, err := s.recv()
	if err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	return resp, n
}

// item is a raw item for building messages by hand.
type item struct {
	tag  Tag
	data []byte
}

// rawMsg builds a message of version major.0 with the items as given.
func rawMsg(major byte, id uint32, items ...item) []byte {
	var body []byte
	for _, it := range items {
		body = append(body, byte(it.tag))
		body = binary.BigEndian.AppendUint16(body, uint16(len(it.data)))
		body = append(body, it.data...)
	}
	msg := []byte{major, 0}
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(body)))
	msg = binary.BigEndian.AppendUint32(msg, id)
	return append(msg, body...)
}

func opItem(op Op) item { return item{TagOpcode, []byte{byte(op)}} }
