package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/keyquorum/keyquorum/gateway/tlv"
)

func needPrograms(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed (.ci/run installs it from Debian's packages)", n)
		}
	}
}

// gatewayAddr is node i's address of a gateway, as the script prints it.
func (c *localCluster) gatewayAddr(i int, gw string) string {
	c.t.Helper()
	r := c.mustScript("addr", strconv.Itoa(i), c.dir, gw)
	return strings.TrimSpace(string(r.stdout))
}

var tangCreated = regexp.MustCompile(`kid (\S+), thp (\S+)`)

// TestTangWithStockClevis: stock clevis (tang pin, and sss over three
// nodes' URLs) encrypts and decrypts against a Tang key held as shares,
// binds a LUKS2 image and unlocks it; with two nodes down /rec answers
// 503 fast.
func TestTangWithStockClevis(t *testing.T) {
	t.Parallel()
	needPrograms(t, "clevis", "jose", "curl", "cryptsetup")
	c := startCluster(t, 3)
	r := c.mustKeyctl(1, "key", "create", "disks/web", "--type", "tang")
	m := tangCreated.FindStringSubmatch(string(r.stdout))
	if m == nil {
		t.Fatalf("key create printed no kid and thp: %v", r)
	}
	thp := m[2]
	env := append(baseEnv(), "CURL_CA_BUNDLE="+c.caFile())
	url := func(i int) string { return "https://" + c.addr(i) + "/tang/disks/web" }
	plain := []byte("the volume key of web\n")

	// Any node serves the key: bind to each, decrypt through it.
	for i := 1; i <= 3; i++ {
		cfg := fmt.Sprintf(`{"url":%q,"thp":%q}`, url(i), thp)
		enc := runIn(t, time.Minute, env, plain, "clevis", "encrypt", "tang", cfg)
		if enc.code != 0 {
			t.Fatalf("node %d: %v", i, enc)
		}
		dec := runIn(t, time.Minute, env, enc.stdout, "clevis", "decrypt")
		if dec.code != 0 || !bytes.Equal(dec.stdout, plain) {
			t.Fatalf("node %d: decrypt: %v", i, dec)
		}
	}

	// A wrong thp is refused by clevis: the adv is not signed by it.
	bad := runIn(t, time.Minute, env, plain, "clevis", "encrypt", "tang", fmt.Sprintf(`{"url":%q,"thp":"AAAA"}`, url(1)))
	if bad.code == 0 {
		t.Errorf("clevis encrypted with an unknown thp: %v", bad)
	}

	// sss, 2 of the 3 nodes' URLs; one node down still decrypts.
	sss := fmt.Sprintf(`{"t":2,"pins":{"tang":[{"url":%q,"thp":%q},{"url":%q,"thp":%q},{"url":%q,"thp":%q}]}}`,
		url(1), thp, url(2), thp, url(3), thp)
	enc := runIn(t, time.Minute, env, plain, "clevis", "encrypt", "sss", sss)
	if enc.code != 0 {
		t.Fatalf("sss encrypt: %v", enc)
	}

	// A LUKS2 image bound with the tang pin, unlocked with clevis.
	img := filepath.Join(t.TempDir(), "disk.img")
	keyfile := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(keyfile, []byte("first passphrase"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("truncate", "-s", "20M", img).CombinedOutput(); err != nil {
		t.Fatalf("truncate: %v %s", err, out)
	}
	format := run(t, time.Minute, env, "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", img, keyfile)
	if format.code != 0 {
		t.Fatalf("luksFormat: %v", format)
	}
	bind := run(t, 2*time.Minute, env, "clevis", "luks", "bind", "-y", "-k", keyfile, "-d", img, "tang",
		fmt.Sprintf(`{"url":%q,"thp":%q}`, url(2), thp))
	if bind.code != 0 {
		t.Fatalf("clevis luks bind: %v", bind)
	}
	list := run(t, time.Minute, env, "clevis", "luks", "list", "-d", img)
	slot := strings.SplitN(strings.TrimSpace(string(list.stdout)), ":", 2)[0]
	if list.code != 0 || slot == "" {
		t.Fatalf("clevis luks list: %v", list)
	}
	unlock := run(t, 2*time.Minute, env, "clevis", "luks", "unlock", "-d", img, "-t", slot)
	if unlock.code != 0 {
		t.Fatalf("clevis luks unlock -t %s: %v", slot, unlock)
	}

	c.mustScript("kill", "3", c.dir)
	dec := runIn(t, time.Minute, env, enc.stdout, "clevis", "decrypt")
	if dec.code != 0 || !bytes.Equal(dec.stdout, plain) {
		t.Fatalf("sss decrypt with node 3 down: %v", dec)
	}

	// Protocol errors, as tangd answers them, from a plain HTTPS client.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tlsConfig(false)}}
	post := func(path, body string) int {
		resp, err := hc.Post("https://"+c.addr(1)+path, "application/jwk+json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	kid := m[1]
	gx, gy := elliptic.P256().Params().Gx, elliptic.P256().Params().Gy
	b64 := func(n *big.Int) string { return b64url(n.FillBytes(make([]byte, 32))) }
	good := fmt.Sprintf(`{"alg":"ECMR","crv":"P-256","kty":"EC","x":%q,"y":%q}`, b64(gx), b64(gy))
	offCurve := fmt.Sprintf(`{"alg":"ECMR","crv":"P-256","kty":"EC","x":%q,"y":%q}`, b64(gx), b64(new(big.Int).Add(gy, big.NewInt(1))))
	for _, tc := range []struct {
		name, path, body string
		want             int
	}{
		{"the generator", "/rec/" + kid, good, http.StatusOK},
		{"a point off the curve", "/rec/" + kid, offCurve, http.StatusBadRequest},
		{"not JSON", "/rec/" + kid, "{", http.StatusBadRequest},
		{"another curve", "/rec/" + kid, strings.Replace(good, "P-256", "P-384", 1), http.StatusBadRequest},
		{"an unknown kid", "/rec/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", good, http.StatusNotFound},
	} {
		if got := post(tc.path, tc.body); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}

	// Two of three down: no quorum, answered fast with 503.
	c.mustScript("kill", "2", c.dir)
	start := time.Now()
	if got := post("/rec/"+kid, good); got != http.StatusServiceUnavailable {
		t.Errorf("with two nodes down: status %d, want 503", got)
	}
	t.Logf("no quorum answered in %v", time.Since(start).Round(time.Millisecond))
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// clientCert makes a self-signed client certificate and key, as PEM files.
func clientCert(t *testing.T, dir, name string) (certFile, keyFile string, der []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
	return certFile, keyFile, der
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestKxdWithStockKxc: a kxd data directory imported with keyctl is served
// to stock kxc by every node, with kxd's rules: allowed clients (a client
// sending someone else's allowed certificate after its own is refused),
// allowed hosts, unknown keys; and it survives a node down.
func TestKxdWithStockKxc(t *testing.T) {
	t.Parallel()
	needPrograms(t, "kxc")
	c := startCluster(t, 3)
	dir := t.TempDir()
	cert, key, _ := clientCert(t, dir, "boot1")
	otherCert, otherKey, _ := clientCert(t, dir, "stranger")
	certPEM, _ := os.ReadFile(cert)
	secret := []byte("kxd secret \x00\r\n with every byte kept")
	data := filepath.Join(dir, "kxd-data")
	writeFile(t, filepath.Join(data, "host1", "disk", "key"), secret)
	writeFile(t, filepath.Join(data, "host1", "disk", "allowed_clients"), certPEM)
	writeFile(t, filepath.Join(data, "host1", "disk", "allowed_hosts"), []byte("localhost\n"))
	writeFile(t, filepath.Join(data, "host2", "disk", "key"), []byte("unreachable"))
	writeFile(t, filepath.Join(data, "host2", "disk", "allowed_clients"), certPEM)
	writeFile(t, filepath.Join(data, "host2", "disk", "allowed_hosts"), []byte(""))
	c.mustKeyctl(1, "key", "import-kxd", data)

	kxc := func(i int, path, cert, key string) result {
		url := "kxd://" + c.gatewayAddr(i, "kxd") + "/" + path
		return run(t, time.Minute, baseEnv(), "kxc", "--client_cert", cert, "--client_key", key, "--server_cert", c.caFile(), url)
	}
	for i := 1; i <= 3; i++ {
		if r := kxc(i, "host1/disk", cert, key); r.code != 0 || !bytes.Equal(r.stdout, secret) {
			t.Fatalf("node %d: kxc: %v", i, r)
		}
	}
	for _, tc := range []struct {
		name, path, cert, key, want string
	}{
		{"no host allowed", "host2/disk", cert, key, "Host not allowed"},
		{"an unknown key", "host3/disk", cert, key, "Unknown key"},
		{"a client not allowed", "host1/disk", otherCert, otherKey, "No allowed certificate found"},
	} {
		r := kxc(1, tc.path, tc.cert, tc.key)
		if r.code != 1 || len(r.stdout) != 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: %v, want exit 1 saying %q", tc.name, r, tc.want)
		}
	}
	// The attack stock kxd falls for: the stranger's own leaf, then the
	// allowed certificate.
	chain := filepath.Join(dir, "chain.pem")
	strangerPEM, _ := os.ReadFile(otherCert)
	writeFile(t, chain, append(strangerPEM, certPEM...))
	if r := kxc(1, "host1/disk", chain, otherKey); r.code == 0 || len(r.stdout) != 0 {
		t.Errorf("a client presenting someone else's certificate after its own got the key: %v", r)
	}
	c.mustScript("kill", "1", c.dir)
	if r := kxc(2, "host1/disk", cert, key); r.code != 0 || !bytes.Equal(r.stdout, secret) {
		t.Fatalf("with node 1 down: %v", r)
	}
}

// TestTLVAssembledKeys: keys imported with keyctl key import-dir sign and
// decrypt through the Keyless SSL gateway of every node, over TCP and
// QUIC, for the allowed client only; a revoked key is no longer found. The
// RSA key is imported as an rsa-threshold key and signs and decrypts by
// quorum; another, imported with --assembled-rsa, is assembled.
func TestTLVAssembledKeys(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	dir := t.TempDir()
	keysDir := filepath.Join(dir, "keys")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, k := range map[string]crypto.Signer{"ec": ec, "rsa": rk, "ed": ed} {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(keysDir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	// The terminator's certificate: the operator's, from the cluster CA
	// that the TLV gateway trusts by default.
	c.mustKeyctl(1, "key", "import-dir", keysDir, "--client-cert", c.envValue("KEYQUORUM_CLIENT_CERT"), "--assemble-ttl", "1m")
	if show := string(c.mustKeyctl(1, "key", "show", "tls/rsa").stdout); !strings.Contains(show, "type:      rsa-threshold") || !strings.Contains(show, "never assembled") {
		t.Fatalf("the imported RSA key is not a threshold key:\n%s", show)
	}
	if show := string(c.mustKeyctl(1, "key", "show", "tls/ec").stdout); !strings.Contains(show, "assembled: ECDSA has no practical threshold scheme") {
		t.Fatalf("key show does not say the ECDSA key is assembled:\n%s", show)
	}
	assembledDir := filepath.Join(dir, "assembled")
	rka, _ := rsa.GenerateKey(rand.Reader, 2048)
	writeFile(t, filepath.Join(assembledDir, "rsa.pem"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rka)}))
	c.mustKeyctl(1, "key", "import-dir", assembledDir, "--prefix", "fast/", "--assembled-rsa", "--client-cert", c.envValue("KEYQUORUM_CLIENT_CERT"))
	if show := string(c.mustKeyctl(1, "key", "show", "fast/rsa").stdout); !strings.Contains(show, "type:      rsa\n") {
		t.Fatalf("--assembled-rsa did not import an assembled key:\n%s", show)
	}
	conf := c.tlsConfig(true)
	ski := func(pub crypto.PublicKey) []byte {
		s, err := tlv.SKI(pub)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	digest := sha256.Sum256([]byte("a TLS handshake transcript"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 1; i <= 3; i++ {
		for _, quic := range []bool{false, true} {
			addr := c.gatewayAddr(i, "tlv")
			var conn *tlv.Conn
			var err error
			if quic {
				conn, err = tlv.DialQUIC(ctx, addr, conf.Clone())
			} else {
				conn, err = tlv.Dial(ctx, addr, conf.Clone())
			}
			if err != nil {
				t.Fatalf("node %d (quic %v): dial: %v", i, quic, err)
			}
			resp, err := conn.Do(ctx, &tlv.Request{Op: tlv.OpECDSASignSHA256, SKI: ski(&ec.PublicKey), Payload: digest[:]})
			if err != nil || resp.Err() != nil || !ecdsa.VerifyASN1(&ec.PublicKey, digest[:], resp.Payload) {
				t.Fatalf("node %d (quic %v): ecdsa sign: %v %v", i, quic, err, resp)
			}
			for _, k := range []*rsa.PrivateKey{rk, rka} {
				resp, err = conn.Do(ctx, &tlv.Request{Op: tlv.OpRSASignSHA256, SKI: ski(&k.PublicKey), Payload: digest[:]})
				if err != nil || resp.Err() != nil || rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, digest[:], resp.Payload) != nil {
					t.Fatalf("node %d (quic %v): rsa sign: %v %v", i, quic, err, resp)
				}
			}
			resp, err = conn.Do(ctx, &tlv.Request{Op: tlv.OpRSAPSSSignSHA256, SKI: ski(&rk.PublicKey), Payload: digest[:]})
			pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
			if err != nil || resp.Err() != nil || rsa.VerifyPSS(&rk.PublicKey, crypto.SHA256, digest[:], resp.Payload, pss) != nil {
				t.Fatalf("node %d (quic %v): rsa-pss sign by quorum: %v %v", i, quic, err, resp)
			}
			premaster := bytes.Repeat([]byte{3, 3, byte(i)}, 16)
			//lint:ignore SA1019 the client's side of keyless's PKCS #1 v1.5 decrypt
			ct, _ := rsa.EncryptPKCS1v15(rand.Reader, &rk.PublicKey, premaster)
			resp, err = conn.Do(ctx, &tlv.Request{Op: tlv.OpRSADecrypt, SKI: ski(&rk.PublicKey), Payload: ct})
			if err != nil || resp.Err() != nil || !bytes.Equal(resp.Payload, premaster) {
				t.Fatalf("node %d (quic %v): rsa decrypt by quorum: %v %v", i, quic, err, resp)
			}
			msg := []byte("ed25519 signs the message itself")
			resp, err = conn.Do(ctx, &tlv.Request{Op: tlv.OpEd25519Sign, SKI: ski(ed.Public()), Payload: msg})
			if err != nil || resp.Err() != nil || !ed25519.Verify(ed.Public().(ed25519.PublicKey), msg, resp.Payload) {
				t.Fatalf("node %d (quic %v): ed25519 sign: %v %v", i, quic, err, resp)
			}
			conn.Close()
		}
	}
	c.mustKeyctl(1, "key", "revoke", "tls/ec")
	conn, err := tlv.Dial(ctx, c.gatewayAddr(2, "tlv"), conf.Clone())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	eventually(t, 10*time.Second, "the revoked key to be refused on node 2", func() (bool, string) {
		_, err := conn.Do(ctx, &tlv.Request{Op: tlv.OpECDSASignSHA256, SKI: ski(&ec.PublicKey), Payload: digest[:]})
		var e *tlv.Error
		return errors.As(err, &e) && e.Code == tlv.CodeKeyNotFound, fmt.Sprint(err)
	})
	// The other keys are still served from the same connection.
	if _, err := conn.Do(ctx, &tlv.Request{Op: tlv.OpRSASignSHA256, SKI: ski(&rk.PublicKey), Payload: digest[:]}); err != nil {
		t.Fatalf("rsa after the ecdsa key's revoke: %v", err)
	}
}

// TestHTTP3 reaches the REST API of a node over HTTP/3 with the operator's
// certificate, after an answer over TCP advertised it with Alt-Svc.
func TestHTTP3(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	conf := c.tlsConfig(true)
	url := "https://" + c.addr(2) + "/v1/cluster/status"

	tcp := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf.Clone()}}
	resp, err := tcp.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if alt := resp.Header.Get("Alt-Svc"); !strings.Contains(alt, `h3=":`) {
		t.Errorf("Alt-Svc %q: want HTTP/3 advertised", alt)
	}
	h3 := &http.Client{Timeout: 30 * time.Second, Transport: &http3.Transport{TLSClientConfig: conf.Clone()}}
	resp, err = h3.Get(url)
	if err != nil {
		t.Fatalf("GET over HTTP/3: %v", err)
	}
	defer resp.Body.Close()
	var st struct {
		N         int `json:"n"`
		Threshold int `json:"threshold"`
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 3 || json.NewDecoder(resp.Body).Decode(&st) != nil || st.N != 3 {
		t.Fatalf("over HTTP/3: %s %s, status %+v", resp.Proto, resp.Status, st)
	}
	// Without the operator certificate the API refuses, over QUIC too.
	anon := &http.Client{Timeout: 30 * time.Second, Transport: &http3.Transport{TLSClientConfig: c.tlsConfig(false)}}
	resp, err = anon.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no client certificate over HTTP/3: %s, want 401", resp.Status)
	}
}
