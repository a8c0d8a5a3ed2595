package tang

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/client/jose"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/shamir"
)

// b64 is the unpadded base64url of JOSE.
var b64 = base64.RawURLEncoding.Strict()

func b64url(b []byte) string { return b64.EncodeToString(b) }

// jwkJSON builds a JWK document from members, for tests that need
// documents jose.NewJWK would never make.
func jwkJSON(t testing.TB, members map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(members)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeTangKey is one Tang key held the way the cluster holds it: a P-256
// secret dealt 2-of-3, which nobody keeps whole; answers are combined from
// verified partials of two shares.
type fakeTangKey struct {
	name         string
	adv          []byte
	parsed       *jose.Advertisement
	kid, thp     string
	pub          []byte
	t            int
	shares       []*shamir.P256Share
	publicShares map[uint32][]byte
}

func newFakeTangKey(t testing.TB, name string) *fakeTangKey {
	t.Helper()
	pub, shares, publicShares, err := shamir.DealP256(rand.Reader, 2, []uint32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := shamir.CheckP256PublicShares(pub, 2, publicShares); err != nil {
		t.Fatal(err)
	}
	adv, kid, thp, err := jose.NewAdvertisement(rand.Reader, pub)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jose.ParseAdvertisement(adv)
	if err != nil {
		t.Fatalf("our own advertisement does not parse: %v", err)
	}
	if parsed.Kid != kid || !parsed.HasSigningKey(thp) {
		t.Fatalf("kid or thp does not match the advertisement")
	}
	if p, _ := parsed.Exchange.Point(); !bytes.Equal(p, pub) {
		t.Fatal("the advertised exchange key is not the dealt public key")
	}
	return &fakeTangKey{name: name, adv: adv, parsed: parsed, kid: kid, thp: thp, pub: pub, t: 2, shares: shares, publicShares: publicShares}
}

// fakeTang implements Keys for tests.
type fakeTang struct {
	mu       sync.Mutex
	keys     []*fakeTangKey
	def      string // name of the default key
	err      error  // when set, every call fails with it
	next     int    // rotates the pair of shares that answers
	calls    []string
	lastAddr netip.Addr
}

func (f *fakeTang) find(name string) *fakeTangKey {
	for _, k := range f.keys {
		if k.name == name {
			return k
		}
	}
	return nil
}

func (f *fakeTang) Adv(ctx context.Context, name, thp string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("adv name=%q thp=%q", name, thp))
	if f.err != nil {
		return nil, f.err
	}
	if name == "" {
		name = f.def
	}
	k := f.find(name)
	if k == nil {
		return nil, cluster.Errorf(cluster.KindNotFound, "no tang key %q", name)
	}
	if thp != "" && !k.parsed.HasSigningKey(thp) {
		return nil, cluster.Errorf(cluster.KindNotFound, "no tang key has the signing key %q", thp)
	}
	return k.adv, nil
}

func (f *fakeTang) Recover(ctx context.Context, name, kid string, x []byte, addr netip.Addr) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("rec name=%q kid=%q", name, kid))
	f.lastAddr = addr
	if f.err != nil {
		return nil, f.err
	}
	var k *fakeTangKey
	for _, c := range f.keys {
		if c.kid == kid && (name == "" || c.name == name) {
			k = c
		}
		if c.parsed.HasSigningKey(kid) {
			return nil, cluster.Errorf(cluster.KindDenied, "%q is a signing key", kid)
		}
	}
	if k == nil {
		return nil, cluster.Errorf(cluster.KindNotFound, "no tang key has kid %q", kid)
	}
	// Two of the three holders answer, a different pair each time.
	f.next++
	context := []byte("test/" + k.name + "/" + kid)
	var partials []*shamir.P256Partial
	for i := range k.t {
		sh := k.shares[(f.next+i)%len(k.shares)]
		p, err := shamir.ComputeP256Partial(rand.Reader, sh, x, context)
		if err != nil {
			return nil, cluster.Errorf(cluster.KindInvalid, "%v", err)
		}
		if err := shamir.VerifyP256Partial(k.publicShares[p.Index], x, p, context); err != nil {
			return nil, err
		}
		partials = append(partials, p)
	}
	return shamir.CombineP256(partials, k.t)
}

func (f *fakeTang) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeTang) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

// tangPKI is a test CA and a server certificate for 127.0.0.1 it signed.
type tangPKI struct {
	server tls.Certificate
	pool   *x509.CertPool
	caFile string // PEM of the CA, for CURL_CA_BUNDLE
}

func newTangPKI(t testing.TB) *tangPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "keyquorum tang test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tangPKI{
		server: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
		pool:   pool,
		caFile: caFile,
	}
}

// startTang serves Handler over TLS on 127.0.0.1, mounted on a mux the
// way a node mounts it.
func startTang(t testing.TB, pki *tangPKI, keys Keys) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	h := Handler(keys, nil)
	for _, p := range Patterns {
		mux.Handle(p, h)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func (p *tangPKI) client() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
}

// --- stock clevis against the gateway ---

func needClevis(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"clevis", "clevis-encrypt-tang", "jose", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("stock clevis is not installed (%s: %v); install the Debian packages clevis, jose and curl to run this test", bin, err)
		}
	}
}

// clevis runs a clevis command with the test CA trusted, and returns its
// standard output.
func clevis(t *testing.T, pki *tangPKI, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a safety net against a hang, not an assertion
	defer cancel()
	cmd := exec.CommandContext(ctx, "clevis", args...)
	cmd.Env = append(os.Environ(), "CURL_CA_BUNDLE="+pki.caFile, "NO_PROXY=*", "no_proxy=*")
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("clevis %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func tangConfig(t *testing.T, cfg map[string]any) string {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// jweHeader decodes the protected header of a compact JWE.
func jweHeader(t *testing.T, jwe []byte) map[string]any {
	t.Helper()
	first, _, ok := bytes.Cut(jwe, []byte("."))
	if !ok {
		t.Fatalf("clevis output is not a compact JWE: %.80s", jwe)
	}
	raw, err := b64.DecodeString(string(first))
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestClevisTangRoundTrip(t *testing.T) {
	needClevis(t)
	pki := newTangPKI(t)
	key := newFakeTangKey(t, "disks/web1")
	keys := &fakeTang{keys: []*fakeTangKey{key}, def: key.name}
	srv := startTang(t, pki, keys)
	plaintext := []byte("the unlock key of web1\n")

	for _, tc := range []struct {
		name string
		cfg  map[string]any
		args []string
		adv  string // the call the encryption made
	}{
		{"thp S256", map[string]any{"url": srv.URL, "thp": key.thp}, nil, fmt.Sprintf("adv name=%q thp=%q", "", key.thp)},
		{"thp S1", map[string]any{"url": srv.URL, "thp": key.parsed.Signing[0].ThumbprintS1()}, nil, fmt.Sprintf("adv name=%q thp=%q", "", key.parsed.Signing[0].ThumbprintS1())},
		{"-y and /adv/", map[string]any{"url": srv.URL}, []string{"-y"}, fmt.Sprintf("adv name=%q thp=%q", "", "")},
		{"per-key URL", map[string]any{"url": srv.URL + "/tang/disks/web1", "thp": key.thp}, nil, fmt.Sprintf("adv name=%q thp=%q", "disks/web1", key.thp)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"encrypt", "tang", tangConfig(t, tc.cfg)}, tc.args...)
			jwe, err := clevis(t, pki, plaintext, args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := keys.lastCall(); got != tc.adv {
				t.Fatalf("encryption asked %s, want %s", got, tc.adv)
			}
			hdr := jweHeader(t, jwe)
			if hdr["kid"] != key.kid {
				t.Fatalf("the JWE's kid is %v, want the exchange key's thumbprint %s", hdr["kid"], key.kid)
			}
			got, err := clevis(t, pki, jwe, "decrypt")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plaintext) {
				t.Fatalf("clevis decrypt gave %q, want %q", got, plaintext)
			}
			wantRec := fmt.Sprintf("rec name=%q kid=%q", "", key.kid)
			if tc.name == "per-key URL" {
				wantRec = fmt.Sprintf("rec name=%q kid=%q", key.name, key.kid)
			}
			if got := keys.lastCall(); got != wantRec {
				t.Fatalf("decryption asked %s, want %s", got, wantRec)
			}
			if keys.lastAddr != netip.MustParseAddr("127.0.0.1") {
				t.Fatalf("client address %v, want 127.0.0.1", keys.lastAddr)
			}
		})
	}

	t.Run("refusals reach clevis", func(t *testing.T) {
		other := newFakeTangKey(t, "other")
		if _, err := clevis(t, pki, plaintext, "encrypt", "tang", tangConfig(t, map[string]any{"url": srv.URL, "thp": other.thp})); err == nil {
			t.Fatal("clevis encrypted to an advertisement signed by an untrusted key")
		}
		jwe, err := clevis(t, pki, plaintext, "encrypt", "tang", tangConfig(t, map[string]any{"url": srv.URL, "thp": key.thp}))
		if err != nil {
			t.Fatal(err)
		}
		keys.set(cluster.Errorf(cluster.KindDenied, "revoked"))
		defer keys.set(nil)
		if out, err := clevis(t, pki, jwe, "decrypt"); err == nil {
			t.Fatalf("clevis decrypted a revoked key: %q", out)
		}
	})
}

func TestClevisSSSWithOneServerDown(t *testing.T) {
	needClevis(t)
	pki := newTangPKI(t)
	keys := &fakeTang{}
	var urls []any
	var servers []*httptest.Server
	for i := range 3 {
		k := newFakeTangKey(t, fmt.Sprintf("tang/k%d", i+1))
		keys.keys = append(keys.keys, k)
		srv := startTang(t, pki, keys)
		servers = append(servers, srv)
		urls = append(urls, map[string]any{"url": srv.URL + "/tang/" + k.name})
	}
	cfg := tangConfig(t, map[string]any{"t": 2, "pins": map[string]any{"tang": urls}})
	plaintext := []byte("sss over three tang servers")
	jwe, err := clevis(t, pki, plaintext, "encrypt", "sss", cfg, "-y")
	if err != nil {
		t.Fatal(err)
	}

	servers[2].Close()
	got, err := clevis(t, pki, jwe, "decrypt")
	if err != nil {
		t.Fatalf("with two of three servers up: %v", err)
	}
	if !bytes.Equal(got, plaintext) {
		t.Fatalf("clevis decrypt gave %q, want %q", got, plaintext)
	}

	servers[1].Close()
	if out, err := clevis(t, pki, jwe, "decrypt"); err == nil {
		t.Fatalf("decrypted with one of three servers up (t=2): %q", out)
	}
}

// --- status codes, with Go's HTTP client ---

func TestTangStatusCodes(t *testing.T) {
	pki := newTangPKI(t)
	def := newFakeTangKey(t, "default")
	named := newFakeTangKey(t, "disks/web1")
	tricky := newFakeTangKey(t, "a/adv")
	keys := &fakeTang{keys: []*fakeTangKey{def, named, tricky}, def: def.name}
	srv := startTang(t, pki, keys)
	client := pki.client()

	gen := elliptic.P256().Params()
	G := append(append([]byte{4}, gen.Gx.FillBytes(make([]byte, 32))...), gen.Gy.FillBytes(make([]byte, 32))...)
	xJWK := func(mut func(m map[string]any)) []byte {
		k, err := jose.NewJWK(G, jose.JWKAlgECMR, jose.JWKOpDerive)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{"alg": k.Alg, "crv": k.Crv, "key_ops": k.KeyOps, "kty": k.Kty, "x": k.X, "y": k.Y}
		if mut != nil {
			mut(m)
		}
		return jwkJSON(t, m)
	}
	offCurve := bytes.Clone(G)
	offCurve[64] ^= 1
	p384, err := ecdh.P384().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384pt := p384.PublicKey().Bytes()

	type request struct {
		name   string
		method string
		path   string
		body   []byte
		status int
		call   string // the Keys call made, "" for none
	}
	rec := "/rec/" + def.kid
	for _, tc := range []request{
		{"adv", "GET", "/adv", nil, 200, `adv name="" thp=""`},
		{"adv/", "GET", "/adv/", nil, 200, `adv name="" thp=""`},
		{"adv S256", "GET", "/adv/" + def.thp, nil, 200, fmt.Sprintf(`adv name="" thp=%q`, def.thp)},
		{"adv S1", "GET", "/adv/" + def.parsed.Signing[0].ThumbprintS1(), nil, 200, ""},
		{"adv HEAD", "HEAD", "/adv", nil, 200, ""},
		{"adv of another key's thp", "GET", "/adv/" + named.thp, nil, 404, ""},
		{"adv unknown thp", "GET", "/adv/AAAA", nil, 404, ""},
		{"adv thp with a slash", "GET", "/adv/AA/BB", nil, 404, "none"},
		{"adv thp not base64url", "GET", "/adv/AA+BB", nil, 404, "none"},
		{"adv by name", "GET", "/tang/disks/web1/adv", nil, 200, `adv name="disks/web1" thp=""`},
		{"adv/ by name", "GET", "/tang/disks/web1/adv/", nil, 200, `adv name="disks/web1" thp=""`},
		{"adv by name and thp", "GET", "/tang/disks/web1/adv/" + named.thp, nil, 200, fmt.Sprintf(`adv name="disks/web1" thp=%q`, named.thp)},
		{"adv of a key named a/adv", "GET", "/tang/a/adv/adv", nil, 200, `adv name="a/adv" thp=""`},
		{"adv by unknown name", "GET", "/tang/nope/adv", nil, 404, `adv name="nope" thp=""`},
		{"adv without name", "GET", "/tang/adv", nil, 404, "none"},
		{"name with a bad character", "GET", "/tang/a%20b/adv", nil, 404, "none"},
		{"name starting with a dot", "GET", "/tang/.x/adv", nil, 404, "none"},
		{"no endpoint under /tang/", "GET", "/tang/disks/web1", nil, 404, "none"},
		{"unknown endpoint under /tang/", "GET", "/tang/disks/web1/foo/bar", nil, 404, "none"},
		{"POST adv", "POST", "/adv", nil, 405, "none"},
		{"PUT adv by name", "PUT", "/tang/disks/web1/adv/", nil, 405, "none"},
		{"GET rec", "GET", rec, nil, 405, "none"},
		{"DELETE rec", "DELETE", rec, nil, 405, "none"},
		{"rec", "POST", rec, xJWK(nil), 200, fmt.Sprintf(`rec name="" kid=%q`, def.kid)},
		{"rec by name", "POST", "/tang/disks/web1/rec/" + named.kid, xJWK(nil), 200, fmt.Sprintf(`rec name="disks/web1" kid=%q`, named.kid)},
		{"rec of a key named a/adv", "POST", "/tang/a/adv/rec/" + tricky.kid, xJWK(nil), 200, ""},
		{"rec under another key's name", "POST", "/tang/disks/web1/rec/" + def.kid, xJWK(nil), 404, ""},
		{"rec with alg only (as clevis sends)", "POST", rec, xJWK(func(m map[string]any) { delete(m, "key_ops") }), 200, ""},
		{"rec without alg and key_ops", "POST", rec, xJWK(func(m map[string]any) { delete(m, "key_ops"); delete(m, "alg") }), 200, ""},
		{"rec unknown kid", "POST", "/rec/AAAA", xJWK(nil), 404, `rec name="" kid="AAAA"`},
		{"rec of the signing key", "POST", "/rec/" + def.thp, xJWK(nil), 403, ""},
		{"rec empty kid", "POST", "/rec/", xJWK(nil), 404, "none"},
		{"rec bad JSON", "POST", rec, []byte("{"), 400, "none"},
		{"rec empty body", "POST", rec, nil, 400, "none"},
		{"rec kty RSA", "POST", rec, xJWK(func(m map[string]any) { m["kty"] = "RSA" }), 400, "none"},
		{"rec kty missing", "POST", rec, xJWK(func(m map[string]any) { delete(m, "kty") }), 400, "none"},
		{"rec crv P-384", "POST", rec, xJWK(func(m map[string]any) {
			m["crv"] = "P-384"
			m["x"], m["y"] = b64url(p384pt[1:49]), b64url(p384pt[49:])
		}), 400, "none"},
		{"rec P-384 point labelled P-256", "POST", rec, xJWK(func(m map[string]any) { m["x"], m["y"] = b64url(p384pt[1:49]), b64url(p384pt[49:]) }), 400, "none"},
		{"rec off curve", "POST", rec, xJWK(func(m map[string]any) { m["y"] = b64url(offCurve[33:]) }), 400, "none"},
		{"rec zero point", "POST", rec, xJWK(func(m map[string]any) { m["x"], m["y"] = b64url(make([]byte, 32)), b64url(make([]byte, 32)) }), 400, "none"},
		{"rec x only", "POST", rec, xJWK(func(m map[string]any) { delete(m, "y") }), 400, "none"},
		{"rec alg ECDH-ES", "POST", rec, xJWK(func(m map[string]any) { m["alg"] = "ECDH-ES" }), 400, "none"},
		{"rec key_ops verify", "POST", rec, xJWK(func(m map[string]any) { m["key_ops"] = []string{"verify"} }), 403, "none"},
		{"rec key_ops empty", "POST", rec, xJWK(func(m map[string]any) { m["key_ops"] = []string{} }), 403, "none"},
		{"rec private key", "POST", rec, xJWK(func(m map[string]any) { m["d"] = b64url(make([]byte, 32)) }), 400, "none"},
		{"rec body too large", "POST", rec, xJWK(func(m map[string]any) { m["pad"] = strings.Repeat("a", jose.MaxJWKSize) }), 400, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys.mu.Lock()
			keys.calls = nil
			keys.mu.Unlock()
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tangJWKContentType)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			switch got := keys.lastCall(); {
			case tc.call == "none" && got != "":
				t.Fatalf("the cluster was asked (%s) for a request refused at the edge", got)
			case tc.call != "" && tc.call != "none" && got != tc.call:
				t.Fatalf("the cluster was asked %s, want %s", got, tc.call)
			}
			if resp.StatusCode == 405 && resp.Header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
			if resp.StatusCode != 200 {
				if len(body) != 0 {
					t.Fatalf("error body %q, want empty as tangd sends", body)
				}
				return
			}
			switch {
			case tc.method == "HEAD":
			case !strings.Contains(tc.path, "/rec/"):
				if ct := resp.Header.Get("Content-Type"); ct != tangAdvContentType {
					t.Fatalf("Content-Type %q", ct)
				}
				if _, err := jose.ParseAdvertisement(body); err != nil {
					t.Fatalf("served advertisement: %v", err)
				}
			default:
				if ct := resp.Header.Get("Content-Type"); ct != tangJWKContentType {
					t.Fatalf("Content-Type %q", ct)
				}
				checkRecReply(t, body, keys, tc.path)
			}
		})
	}
}

// checkRecReply checks the answer to X = G: it must be s*G, the key's
// public key, in the exact form tangd writes.
func checkRecReply(t *testing.T, body []byte, keys *fakeTang, path string) {
	t.Helper()
	kid := path[strings.LastIndexByte(path, '/')+1:]
	var want []byte
	for _, k := range keys.keys {
		if k.kid == kid {
			want = k.pub
		}
	}
	wantJWK, err := jose.NewJWK(want, jose.JWKAlgECMR, jose.JWKOpDerive)
	if err != nil {
		t.Fatal(err)
	}
	wantBody, _ := json.Marshal(wantJWK)
	if !bytes.Equal(body, wantBody) {
		t.Fatalf("reply %s, want s*G = %s", body, wantBody)
	}
	if !strings.HasPrefix(string(body), `{"alg":"ECMR","crv":"P-256","key_ops":["deriveKey"],"kty":"EC","x":`) {
		t.Fatalf("reply members are not in tangd's order: %s", body)
	}
}

func TestTangClusterErrors(t *testing.T) {
	pki := newTangPKI(t)
	key := newFakeTangKey(t, "k")
	keys := &fakeTang{keys: []*fakeTangKey{key}, def: key.name}
	srv := startTang(t, pki, keys)
	client := pki.client()
	x, _ := json.Marshal(key.parsed.Exchange) // any valid point
	for _, tc := range []struct {
		err    error
		status int
	}{
		{cluster.Errorf(cluster.KindNotFound, "no such key"), 404},
		{cluster.Errorf(cluster.KindDenied, "not allowed"), 403},
		{cluster.Errorf(cluster.KindNoQuorum, "1 of 3 nodes answered"), 503},
		{cluster.Errorf(cluster.KindUnknownOutcome, "timed out"), 503},
		{cluster.Errorf(cluster.KindNotInitialized, "not in a cluster"), 503},
		{cluster.Errorf(cluster.KindInvalid, "bad point"), 400},
		{cluster.Errorf(cluster.KindConflict, "changed"), 500},
		{cluster.Errorf(cluster.KindInternal, "bug"), 500},
		{fmt.Errorf("wrapped: %w", cluster.Errorf(cluster.KindDenied, "not allowed")), 403},
		{errors.New("no kind"), 500},
	} {
		t.Run(fmt.Sprintf("%v", tc.err), func(t *testing.T) {
			keys.set(tc.err)
			defer keys.set(nil)
			for _, r := range []struct{ method, path string }{{"GET", "/adv/"}, {"POST", "/rec/" + key.kid}, {"POST", "/tang/k/rec/" + key.kid}} {
				var resp *http.Response
				var err error
				if r.method == "GET" {
					resp, err = client.Get(srv.URL + r.path)
				} else {
					resp, err = client.Post(srv.URL+r.path, tangJWKContentType, bytes.NewReader(x))
				}
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.status || len(body) != 0 {
					t.Fatalf("%s %s: status %d body %q, want %d and no body", r.method, r.path, resp.StatusCode, body, tc.status)
				}
			}
		})
	}
}

// badPointTang returns a point that is not on the curve: the gateway must
// answer 500, not pass it on.
type badPointTang struct{ fakeTang }

func (b *badPointTang) Recover(context.Context, string, string, []byte, netip.Addr) ([]byte, error) {
	return []byte{0}, nil
}

func TestTangInvalidClusterAnswer(t *testing.T) {
	key := newFakeTangKey(t, "k")
	h := Handler(&badPointTang{fakeTang{keys: []*fakeTangKey{key}}}, nil)
	x, _ := json.Marshal(key.parsed.Exchange)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/rec/"+key.kid, bytes.NewReader(x)))
	if w.Code != 500 || w.Body.Len() != 0 {
		t.Fatalf("status %d body %q, want 500 and no body", w.Code, w.Body)
	}
}

func TestParseTangPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
		want tangRoute
	}{
		{"/adv", true, tangRoute{}},
		{"/adv/", true, tangRoute{}},
		{"/adv/abc_-9", true, tangRoute{arg: "abc_-9"}},
		{"/rec/abc", true, tangRoute{rec: true, arg: "abc"}},
		{"/tang/k/adv", true, tangRoute{name: "k"}},
		{"/tang/a/b/c/adv/", true, tangRoute{name: "a/b/c"}},
		{"/tang/a/b/adv/T", true, tangRoute{name: "a/b", arg: "T"}},
		{"/tang/a/b/rec/K", true, tangRoute{rec: true, name: "a/b", arg: "K"}},
		{"/tang/x/rec/rec/K", true, tangRoute{rec: true, name: "x/rec", arg: "K"}},
		{"/tang/x/adv/adv", true, tangRoute{name: "x/adv"}},
		{"/tang/x/adv/adv/T", true, tangRoute{name: "x/adv", arg: "T"}},
		{"/tang/k.v-1_2/adv", true, tangRoute{name: "k.v-1_2"}},
		{"/rec", false, tangRoute{}},
		{"/rec/", false, tangRoute{}},
		{"/rec/a/b", false, tangRoute{}},
		{"/adv/a=", false, tangRoute{}},
		{"/adv/" + strings.Repeat("A", maxTangToken+1), false, tangRoute{}},
		{"/tang/", false, tangRoute{}},
		{"/tang/adv", false, tangRoute{}},
		{"/tang//adv", false, tangRoute{}},
		{"/tang/a//b/adv", false, tangRoute{}},
		{"/tang/a/../b/adv", false, tangRoute{}},
		{"/tang/-a/adv", false, tangRoute{}},
		{"/tang/a b/adv", false, tangRoute{}},
		{"/tang/k/rec/", false, tangRoute{}},
		{"/tang/k/other/x", false, tangRoute{}},
		{"/", false, tangRoute{}},
		{"/other", false, tangRoute{}},
	} {
		got, ok := parseTangPath(tc.path)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("parseTangPath(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}
