package kxd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/client/kxddir"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// kxdTestCert is a certificate and its key, made for a test.
type kxdTestCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (c *kxdTestCert) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

func (c *kxdTestCert) keyPEM(t *testing.T) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// newKxdTestCert signs tmpl with parent, or self-signs it when parent is
// nil, filling in a serial and a validity around now unless tmpl has them.
func newKxdTestCert(t *testing.T, tmpl *x509.Certificate, parent *kxdTestCert) *kxdTestCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	if tmpl.NotAfter.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	parentCert, signer := tmpl, key
	if parent != nil {
		parentCert, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &kxdTestCert{cert: cert, key: key}
}

func kxdTestCA(t *testing.T, cn string) *kxdTestCert {
	return newKxdTestCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil)
}

// kxdTestLeaf is a client certificate, self-signed when parent is nil.
func kxdTestLeaf(t *testing.T, cn string, parent *kxdTestCert, eku ...x509.ExtKeyUsage) *kxdTestCert {
	return newKxdTestCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
	}, parent)
}

// kxdWorld holds the certificates of the tests: a server, three clients
// with their own self-signed certificates, and a CA with a leaf it signed.
type kxdWorld struct {
	server, alice, bob, mallory, ca, carol *kxdTestCert
}

var (
	kxdWorldOnce sync.Once
	kxdWorldVal  *kxdWorld
)

func kxdTestWorld(t *testing.T) *kxdWorld {
	kxdWorldOnce.Do(func() {
		w := &kxdWorld{
			server: newKxdTestCert(t, &x509.Certificate{
				Subject:     pkix.Name{CommonName: "kxd test server"},
				IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
				DNSNames:    []string{"localhost"},
				KeyUsage:    x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}, nil),
			alice:   kxdTestLeaf(t, "alice", nil),
			bob:     kxdTestLeaf(t, "bob", nil),
			mallory: kxdTestLeaf(t, "mallory", nil),
			ca:      kxdTestCA(t, "kxd clients CA"),
		}
		w.carol = kxdTestLeaf(t, "carol", w.ca, x509.ExtKeyUsageClientAuth)
		kxdWorldVal = w
	})
	if kxdWorldVal == nil {
		t.Fatal("making the test certificates failed")
	}
	return kxdWorldVal
}

// fakeKxdKeys stands in for the cluster with real key bytes.
type fakeKxdKeys struct {
	mu       sync.Mutex
	keys     map[string]*fakeKxdKey
	released []Client
	adm      cluster.Admission
}

type fakeKxdKey struct {
	key        []byte
	policy     Policy
	releaseErr error
}

// Admit checks the client with the cluster's admission check, on the key
// the policy describes.
func (f *fakeKxdKeys) Admit(ctx context.Context, p string, c Client) (*Admitted, error) {
	f.mu.Lock()
	k, ok := f.keys[p]
	f.mu.Unlock()
	if !ok {
		return nil, cluster.Errorf(cluster.KindNotFound, "no kxd key %q", p)
	}
	key := &fsm.Key{Name: p, Type: fsm.KeyTypeSecret, State: fsm.KeyActive, KeyDetail: &fsm.KeyDetail{Access: &fsm.Access{Gateways: []string{fsm.GatewayKxd},
		ClientCerts: k.policy.AllowedClients, Hosts: k.policy.AllowedHosts, EmailTo: k.policy.EmailTo}}}
	a, err := f.adm.Admit(ctx, fsm.GatewayKxd, key, cluster.GatewayClient{Certs: c.Chain, Addr: c.Addr.Addr()})
	if err != nil {
		return nil, err
	}
	return &Admitted{EmailTo: a.Key.Access().EmailTo, Chains: a.Chains}, nil
}

func (f *fakeKxdKeys) Release(_ context.Context, p string, c Client, _ *Admitted) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[p]
	if !ok {
		return nil, cluster.Errorf(cluster.KindNotFound, "no kxd key %q", p)
	}
	if k.releaseErr != nil {
		return nil, k.releaseErr
	}
	f.released = append(f.released, c)
	return bytes.Clone(k.key), nil
}

func (f *fakeKxdKeys) releases() []Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Client(nil), f.released...)
}

// kxdLog is a log that tests read back.
type kxdLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *kxdLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *kxdLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// kxdTestServer is a kxd endpoint on 127.0.0.1 over real TLS.
type kxdTestServer struct {
	addr string // 127.0.0.1:port
	log  *kxdLog
}

func startKxdServer(t *testing.T, keys Keys, notify *Notifier) *kxdTestServer {
	t.Helper()
	w := kxdTestWorld(t)
	logs := &kxdLog{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   Handler(keys, notify, log),
		TLSConfig: TLSConfig(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{w.server.cert.Raw}, PrivateKey: w.server.key}}}),
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return &kxdTestServer{addr: ln.Addr().String(), log: logs}
}

type kxdReply struct {
	status      int
	body        []byte
	contentType string
}

// get asks for urlPath presenting chain, whose first certificate's key is
// key, as kxc would.
func (s *kxdTestServer) get(t *testing.T, method, urlPath string, key *ecdsa.PrivateKey, chain ...*x509.Certificate) kxdReply {
	t.Helper()
	w := kxdTestWorld(t)
	roots := x509.NewCertPool()
	roots.AddCert(w.server.cert)
	clientCert := &tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		clientCert.Certificate = append(clientCert.Certificate, c.Raw)
	}
	tr := &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{
			RootCAs:              roots,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return clientCert, nil },
		},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, "https://"+s.addr+urlPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return kxdReply{status: resp.StatusCode, body: body, contentType: resp.Header.Get("Content-Type")}
}

// kxdSecret is a key with bytes that text handling would damage.
var kxdSecret = []byte("s3cret-KEY\x00\n\xff\r\nbytes\n")

func TestKxdStatuses(t *testing.T) {
	w := kxdTestWorld(t)
	expired := newKxdTestCert(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "expired"},
		NotBefore: time.Now().Add(-48 * time.Hour),
		NotAfter:  time.Now().Add(-24 * time.Hour),
	}, nil)
	serverOnly := kxdTestLeaf(t, "server-only", w.ca, x509.ExtKeyUsageServerAuth)
	otherCA := kxdTestCA(t, "other CA")
	dave := kxdTestLeaf(t, "dave", otherCA, x509.ExtKeyUsageClientAuth)
	// signedByAlice is signed with alice's key, but alice's certificate is
	// a leaf, not a CA: it authorizes itself only.
	signedByAlice := kxdTestLeaf(t, "signed-by-alice", w.alice, x509.ExtKeyUsageClientAuth)

	allow := func(certs ...*kxdTestCert) [][]byte {
		var ders [][]byte
		for _, c := range certs {
			ders = append(ders, c.cert.Raw)
		}
		return ders
	}
	keys := &fakeKxdKeys{keys: map[string]*fakeKxdKey{
		"host1/disk":        {key: kxdSecret, policy: Policy{AllowedClients: allow(w.alice)}},
		"ca/disk":           {key: []byte("ca key"), policy: Policy{AllowedClients: allow(w.ca)}},
		"hosts/none":        {key: []byte("k"), policy: Policy{AllowedClients: allow(w.alice), AllowedHosts: []string{}}},
		"hosts/other":       {key: []byte("k"), policy: Policy{AllowedClients: allow(w.alice), AllowedHosts: []string{"192.0.2.1", "::2"}}},
		"hosts/localhost":   {key: []byte("by name"), policy: Policy{AllowedClients: allow(w.alice), AllowedHosts: []string{"192.0.2.1", "localhost"}}},
		"hosts/ip":          {key: []byte("by ip"), policy: Policy{AllowedClients: allow(w.alice), AllowedHosts: []string{"127.0.0.1"}}},
		"hosts/mapped":      {key: []byte("by mapped ip"), policy: Policy{AllowedClients: allow(w.alice), AllowedHosts: []string{"::ffff:127.0.0.1"}}},
		"expired":           {key: []byte("k"), policy: Policy{AllowedClients: allow(expired)}},
		"quorum/lost":       {key: []byte("k"), policy: Policy{AllowedClients: allow(w.alice)}, releaseErr: cluster.Errorf(cluster.KindNoQuorum, "only 1 of 3 nodes answered; 2 are needed")},
		"internal/error":    {key: []byte("k"), policy: Policy{AllowedClients: allow(w.alice)}, releaseErr: errors.New("disk on fire at /var/lib/keyd")},
		"a b/with space/ok": {key: []byte("spaced"), policy: Policy{AllowedClients: allow(w.alice)}},
	}}
	srv := startKxdServer(t, keys, nil)

	const (
		octet = "application/octet-stream"
		text  = "text/plain; charset=utf-8"
	)
	tests := []struct {
		name   string
		method string
		path   string
		client *kxdTestCert
		chain  []*x509.Certificate // nil: the client's certificate alone
		status int
		body   string
	}{
		{"granted", "GET", "/v1/host1/disk", w.alice, nil, 200, string(kxdSecret)},
		{"granted, unclean path", "GET", "/v1//host1/./disk/", w.alice, nil, 200, string(kxdSecret)},
		{"granted, escaped space", "GET", "/v1/a%20b/with%20space/ok", w.alice, nil, 200, "spaced"},
		{"dot-dot escaping /v1", "GET", "/v1/../etc/passwd", w.alice, nil, 406, "Invalid key path\n"},
		{"dot-dot inside a name", "GET", "/v1/a..b/key", w.alice, nil, 406, "Invalid key path\n"},
		{"dot-dot resolved inside /v1/, as kxd cleans", "GET", "/v1/host1/x/../disk", w.alice, nil, 200, string(kxdSecret)},
		{"not under /v1/", "GET", "/v2/host1/disk", w.alice, nil, 406, "Invalid key path\n"},
		{"bare /v1/", "GET", "/v1/", w.alice, nil, 406, "Invalid key path\n"},
		{"control character", "GET", "/v1/host1%0a/disk", w.alice, nil, 406, "Invalid key path\n"},
		{"too long", "GET", "/v1/" + strings.Repeat("a", kxddir.MaxPath), w.alice, nil, 406, "Invalid key path\n"},
		{"unknown key", "GET", "/v1/host1/nope", w.alice, nil, 404, "Unknown key\n"},
		{"unknown key before the certificate", "GET", "/v1/host1/nope", w.mallory, nil, 404, "Unknown key\n"},
		{"path before unknown key", "GET", "/v1/nope/a..b", w.mallory, nil, 406, "Invalid key path\n"},
		{"host not allowed", "GET", "/v1/hosts/other", w.alice, nil, 403, "Host not allowed\n"},
		{"empty allowed_hosts allows none", "GET", "/v1/hosts/none", w.alice, nil, 403, "Host not allowed\n"},
		{"host before the certificate", "GET", "/v1/hosts/other", w.mallory, nil, 403, "Host not allowed\n"},
		{"host allowed by name", "GET", "/v1/hosts/localhost", w.alice, nil, 200, "by name"},
		{"host allowed by address", "GET", "/v1/hosts/ip", w.alice, nil, 200, "by ip"},
		{"host allowed by IPv4-mapped address", "GET", "/v1/hosts/mapped", w.alice, nil, 200, "by mapped ip"},
		{"certificate not allowed", "GET", "/v1/host1/disk", w.bob, nil, 403, "No allowed certificate found\n"},
		{"CA-signed leaf allowed", "GET", "/v1/ca/disk", w.carol, nil, 200, "ca key"},
		{"CA-signed leaf with the CA after it", "GET", "/v1/ca/disk", w.carol, []*x509.Certificate{w.carol.cert, w.ca.cert}, 200, "ca key"},
		{"leaf of another CA", "GET", "/v1/ca/disk", dave, nil, 403, "No allowed certificate found\n"},
		{"leaf of another CA with that CA after it", "GET", "/v1/ca/disk", dave, []*x509.Certificate{dave.cert, otherCA.cert}, 403, "No allowed certificate found\n"},
		{"CA-signed leaf for servers only", "GET", "/v1/ca/disk", serverOnly, nil, 403, "No allowed certificate found\n"},
		{"own leaf then someone else's allowed leaf", "GET", "/v1/host1/disk", w.mallory, []*x509.Certificate{w.mallory.cert, w.alice.cert}, 403, "No allowed certificate found\n"},
		{"own leaf then the allowed CA", "GET", "/v1/ca/disk", w.mallory, []*x509.Certificate{w.mallory.cert, w.ca.cert}, 403, "No allowed certificate found\n"},
		{"own leaf then an allowed CA-signed leaf", "GET", "/v1/ca/disk", w.mallory, []*x509.Certificate{w.mallory.cert, w.carol.cert}, 403, "No allowed certificate found\n"},
		{"a leaf is not a CA", "GET", "/v1/host1/disk", signedByAlice, []*x509.Certificate{signedByAlice.cert, w.alice.cert}, 403, "No allowed certificate found\n"},
		{"expired allowed certificate", "GET", "/v1/expired", expired, nil, 403, "No allowed certificate found\n"},
		{"cluster without quorum", "GET", "/v1/quorum/lost", w.alice, nil, 503, "only 1 of 3 nodes answered; 2 are needed\n"},
		{"internal error hides its text", "GET", "/v1/internal/error", w.alice, nil, 500, "Internal error\n"},
		{"wrong method", "POST", "/v1/host1/disk", w.alice, nil, 405, "Method not allowed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain := tt.chain
			if chain == nil {
				chain = []*x509.Certificate{tt.client.cert}
			}
			got := srv.get(t, tt.method, tt.path, tt.client.key, chain...)
			if got.status != tt.status || string(got.body) != tt.body {
				t.Fatalf("got %d %q, want %d %q", got.status, got.body, tt.status, tt.body)
			}
			want := text
			if tt.status == 200 {
				want = octet
			}
			if got.contentType != want {
				t.Errorf("Content-Type %q, want %q", got.contentType, want)
			}
		})
	}

	// Every release went to the leaf the client proved it holds.
	for _, c := range keys.releases() {
		if !c.Cert.Equal(w.alice.cert) && !c.Cert.Equal(w.carol.cert) {
			t.Errorf("released to %s", c.Cert.Subject)
		}
		if c.Addr.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("released to address %s", c.Addr)
		}
	}
	if logs := srv.log.String(); strings.Contains(logs, "s3cret") || !strings.Contains(logs, "disk on fire") {
		t.Errorf("the log must hold the internal error and no key bytes:\n%s", logs)
	}
}

// kxcFiles writes what stock kxc reads: the client's certificate chain
// and key, and the server's certificate.
func kxcFiles(t *testing.T, dir, name string, key *ecdsa.PrivateKey, chain ...*kxdTestCert) (certFile, keyFile string) {
	t.Helper()
	var certs []byte
	for _, c := range chain {
		certs = append(certs, c.certPEM()...)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	signer := &kxdTestCert{key: key}
	if err := os.WriteFile(certFile, certs, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, signer.keyPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// runKxc runs stock kxc for kxd://addr/keyPath.
func runKxc(t *testing.T, serverCert, certFile, keyFile, addr, keyPath string) (stdout, stderr []byte, exitCode int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command("kxc", "--client_cert", certFile, "--client_key", keyFile, "--server_cert", serverCert, "kxd://"+addr+"/"+keyPath)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		exitCode = exit.ExitCode()
	default:
		t.Fatalf("running kxc: %v", err)
	}
	return out.Bytes(), errOut.Bytes(), exitCode
}

func needKxc(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("kxc"); err != nil {
		t.Skip("stock kxc is not installed")
	}
}

func TestKxdStockKxc(t *testing.T) {
	needKxc(t)
	w := kxdTestWorld(t)
	dir := t.TempDir()
	serverCert := filepath.Join(dir, "server.crt")
	if err := os.WriteFile(serverCert, w.server.certPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := &fakeKxdKeys{keys: map[string]*fakeKxdKey{
		"host1/disk":      {key: kxdSecret, policy: Policy{AllowedClients: [][]byte{w.alice.cert.Raw}}},
		"ca/disk":         {key: []byte("ca key\n"), policy: Policy{AllowedClients: [][]byte{w.ca.cert.Raw}}},
		"hosts/localhost": {key: []byte("by name"), policy: Policy{AllowedClients: [][]byte{w.alice.cert.Raw}, AllowedHosts: []string{"localhost"}}},
		"hosts/other":     {key: []byte("k"), policy: Policy{AllowedClients: [][]byte{w.alice.cert.Raw}, AllowedHosts: []string{"192.0.2.1"}}},
	}}
	srv := startKxdServer(t, keys, nil)
	aliceCert, aliceKey := kxcFiles(t, dir, "alice", w.alice.key, w.alice)
	carolCert, carolKey := kxcFiles(t, dir, "carol", w.carol.key, w.carol)
	bobCert, bobKey := kxcFiles(t, dir, "bob", w.bob.key, w.bob)
	// mallory's file carries her own certificate, then alice's: stock kxd
	// lets this in.
	malloryCert, malloryKey := kxcFiles(t, dir, "mallory", w.mallory.key, w.mallory, w.alice)

	tests := []struct {
		name             string
		certFile, keyFil string
		keyPath          string
		stdout           string
		stderr           string
	}{
		{"granted", aliceCert, aliceKey, "host1/disk", string(kxdSecret), ""},
		{"CA-signed leaf", carolCert, carolKey, "ca/disk", "ca key\n", ""},
		{"host by name", aliceCert, aliceKey, "hosts/localhost", "by name", ""},
		{"invalid path", aliceCert, aliceKey, "a..b/key", "", `HTTP error "406 Not Acceptable" getting key: Invalid key path`},
		{"unknown key", aliceCert, aliceKey, "host1/nope", "", `HTTP error "404 Not Found" getting key: Unknown key`},
		{"host not allowed", aliceCert, aliceKey, "hosts/other", "", `HTTP error "403 Forbidden" getting key: Host not allowed`},
		{"certificate not allowed", bobCert, bobKey, "host1/disk", "", `HTTP error "403 Forbidden" getting key: No allowed certificate found`},
		{"own leaf then someone else's", malloryCert, malloryKey, "host1/disk", "", `HTTP error "403 Forbidden" getting key: No allowed certificate found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runKxc(t, serverCert, tt.certFile, tt.keyFil, srv.addr, tt.keyPath)
			if tt.stderr == "" {
				if code != 0 || !bytes.Equal(stdout, []byte(tt.stdout)) {
					t.Fatalf("kxc exit %d, stdout %q, stderr %s; want exit 0, stdout %q", code, stdout, stderr, tt.stdout)
				}
				return
			}
			if code != 1 || len(stdout) != 0 || !bytes.Contains(stderr, []byte(tt.stderr)) {
				t.Fatalf("kxc exit %d, stdout %q, stderr %q; want exit 1 and %q", code, stdout, stderr, tt.stderr)
			}
		})
	}
}

// kxdTestSMTP is a mail relay that keeps what it is given.
type kxdTestSMTP struct {
	addr string
	mu   sync.Mutex
	mail []kxdTestMail
}

type kxdTestMail struct {
	from  string
	rcpts []string
	data  string
}

func startKxdTestSMTP(t *testing.T) *kxdTestSMTP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &kxdTestSMTP{addr: ln.Addr().String()}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(conn)
		}
	}()
	return s
}

func (s *kxdTestSMTP) serve(conn net.Conn) {
	defer conn.Close()
	tp := textproto.NewConn(conn)
	var m kxdTestMail
	tp.PrintfLine("220 test relay")
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			tp.PrintfLine("250 test relay")
		case "MAIL":
			m = kxdTestMail{from: arg}
			tp.PrintfLine("250 ok")
		case "RCPT":
			m.rcpts = append(m.rcpts, arg)
			tp.PrintfLine("250 ok")
		case "DATA":
			tp.PrintfLine("354 go ahead")
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m.data = string(data)
			s.mu.Lock()
			s.mail = append(s.mail, m)
			s.mu.Unlock()
			tp.PrintfLine("250 queued")
		case "QUIT":
			tp.PrintfLine("221 bye")
			return
		default:
			tp.PrintfLine("250 ok")
		}
	}
}

func (s *kxdTestSMTP) messages() []kxdTestMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]kxdTestMail(nil), s.mail...)
}

// writeKxdHook writes an executable shell script as a hook.
func writeKxdHook(t *testing.T, body string) string {
	t.Helper()
	hook := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return hook
}

// readKxdEnv reads a file of NAME=value lines as env prints them.
func readKxdEnv(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	env := map[string]string{}
	for line := range strings.Lines(string(data)) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		env[k] = v
	}
	return env
}

func TestKxdNotifyMailAndHook(t *testing.T) {
	t.Setenv("KXD_TEST_DAEMON_SECRET", "not for hooks")
	w := kxdTestWorld(t)
	relay := startKxdTestSMTP(t)
	envFile := filepath.Join(t.TempDir(), "hook.env")
	hook := writeKxdHook(t, "env > '"+envFile+"'")
	keys := &fakeKxdKeys{keys: map[string]*fakeKxdKey{
		"host1/disk": {key: kxdSecret, policy: Policy{
			AllowedClients: [][]byte{w.ca.cert.Raw},
			EmailTo:        []string{"ops@example.com", "Security Team <sec@example.com>"},
		}},
	}}
	notify := &Notifier{SMTPAddr: relay.addr, From: "kxd@example.net", Hook: hook}
	srv := startKxdServer(t, keys, notify)

	// A refused access sends no mail and runs no hook, as in kxd.
	if got := srv.get(t, "GET", "/v1/host1/disk", w.bob.key, w.bob.cert); got.status != 403 {
		t.Fatalf("bob: %d %q", got.status, got.body)
	}
	if n := len(relay.messages()); n != 0 {
		t.Fatalf("a refused access sent %d e-mails", n)
	}
	if _, err := os.Stat(envFile); err == nil {
		t.Fatal("a refused access ran the hook")
	}

	got := srv.get(t, "GET", "/v1/host1/disk", w.carol.key, w.carol.cert)
	if got.status != 200 || !bytes.Equal(got.body, kxdSecret) {
		t.Fatalf("carol: %d %q", got.status, got.body)
	}

	// The mail was delivered before the key was answered.
	mail := relay.messages()
	if len(mail) != 1 {
		t.Fatalf("%d e-mails, want 1", len(mail))
	}
	m := mail[0]
	if m.from != "FROM:<kxd@example.net>" || strings.Join(m.rcpts, ",") != "TO:<ops@example.com>,TO:<sec@example.com>" {
		t.Errorf("envelope from %q to %q", m.from, m.rcpts)
	}
	for _, want := range []string{
		"From: kxd@example.net\n",
		"To: ops@example.com, Security Team <sec@example.com>\n",
		"Subject: Access to key host1/disk\n",
		"Key: host1/disk\n",
		"Accessed by: 127.0.0.1:",
		"Subject: CN=carol\n",
		"Issuer: CN=kxd clients CA\n",
		"SHA-256: " + kxdFingerprint(w.carol.cert) + "\n",
		"CN=carol <- CN=kxd clients CA\n",
	} {
		if !strings.Contains(m.data, want) {
			t.Errorf("the e-mail lacks %q:\n%s", want, m.data)
		}
	}
	if strings.Contains(m.data, "s3cret") {
		t.Errorf("the e-mail holds key bytes:\n%s", m.data)
	}

	env := readKxdEnv(t, envFile)
	for k, want := range map[string]string{
		"KEY_PATH":              "host1/disk",
		"MAIL_FROM":             "kxd@example.net",
		"EMAIL_TO":              "ops@example.com Security Team <sec@example.com>",
		"CLIENT_CERT_SUBJECT":   "CN=carol",
		"CLIENT_CERT_ISSUER":    "CN=kxd clients CA",
		"CLIENT_CERT_SHA256":    kxdFingerprint(w.carol.cert),
		"CLIENT_CERT_SIGNATURE": hex.EncodeToString(w.carol.cert.Signature),
		"CHAIN_0":               "CN=carol <- CN=kxd clients CA",
	} {
		if env[k] != want {
			t.Errorf("hook %s=%q, want %q", k, env[k], want)
		}
	}
	if !strings.HasPrefix(env["REMOTE_ADDR"], "127.0.0.1:") {
		t.Errorf("hook REMOTE_ADDR=%q", env["REMOTE_ADDR"])
	}
	if _, ok := env["KXD_TEST_DAEMON_SECRET"]; ok {
		t.Error("the hook sees the daemon's environment")
	}
	if data, _ := os.ReadFile(envFile); bytes.Contains(data, []byte("s3cret")) {
		t.Error("the hook's environment holds key bytes")
	}
}

func TestKxdNotifyFailuresDoNotRefuse(t *testing.T) {
	w := kxdTestWorld(t)
	// A relay that is gone: the port was listened on and closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadRelay := ln.Addr().String()
	ln.Close()
	keys := &fakeKxdKeys{keys: map[string]*fakeKxdKey{
		"host1/disk": {key: kxdSecret, policy: Policy{AllowedClients: [][]byte{w.alice.cert.Raw}, EmailTo: []string{"ops@example.com"}}},
	}}
	notify := &Notifier{SMTPAddr: deadRelay, From: "kxd@example.net", Hook: writeKxdHook(t, "echo hook says no >&2; exit 3")}
	srv := startKxdServer(t, keys, notify)

	got := srv.get(t, "GET", "/v1/host1/disk", w.alice.key, w.alice.cert)
	if got.status != 200 || !bytes.Equal(got.body, kxdSecret) {
		t.Fatalf("got %d %q, want the key", got.status, got.body)
	}
	logs := srv.log.String()
	for _, want := range []string{"notification failed", "sending the access e-mail through " + deadRelay, "exit status 3", "hook says no"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

func TestKxdHookVeto(t *testing.T) {
	w := kxdTestWorld(t)
	marker := filepath.Join(t.TempDir(), "ran")
	tests := []struct {
		name   string
		hook   string
		status int
		body   string
	}{
		{"hook allows", writeKxdHook(t, "touch '"+marker+"'; exit 0"), 200, string(kxdSecret)},
		{"hook refuses", writeKxdHook(t, "exit 1"), 403, "Prevented by hook\n"},
		{"hook missing", filepath.Join(t.TempDir(), "no-such-hook"), 403, "Prevented by hook\n"},
		{"hook out of time", writeKxdHook(t, "exec sleep 60"), 403, "Prevented by hook\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := &fakeKxdKeys{keys: map[string]*fakeKxdKey{
				"host1/disk": {key: kxdSecret, policy: Policy{AllowedClients: [][]byte{w.alice.cert.Raw}}},
			}}
			notify := &Notifier{Hook: tt.hook, HookVeto: true, Timeout: 300 * time.Millisecond}
			srv := startKxdServer(t, keys, notify)
			got := srv.get(t, "GET", "/v1/host1/disk", w.alice.key, w.alice.cert)
			if got.status != tt.status || string(got.body) != tt.body {
				t.Fatalf("got %d %q, want %d %q", got.status, got.body, tt.status, tt.body)
			}
			released := len(keys.releases())
			if tt.status == 200 && released != 1 || tt.status != 200 && released != 0 {
				t.Errorf("the cluster released the key %d times", released)
			}
		})
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the allowing hook did not run once: %v", err)
	}
}

func TestKxdNotifierNilAndZero(t *testing.T) {
	var nilNotifier *Notifier
	if err := nilNotifier.Notify(context.Background(), Access{Path: "a", EmailTo: []string{"x@y"}}); err != nil {
		t.Errorf("nil notifier: %v", err)
	}
	if err := (&Notifier{}).Notify(context.Background(), Access{Path: "a", EmailTo: []string{"x@y"}}); err != nil {
		t.Errorf("zero notifier: %v", err)
	}
}

func TestKxdMessageIsOneLinePerField(t *testing.T) {
	w := kxdTestWorld(t)
	evil := newKxdTestCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "evil\r\nBcc: all@example.com\r\n.\r\n"}}, nil)
	msg := string(kxdMessage("kxd@example.net", Access{
		Path:    "host1/disk\r\nBcc: x@example.com",
		Client:  evil.cert,
		Addr:    netip.MustParseAddrPort("127.0.0.1:5"),
		EmailTo: []string{"ops@example.com"},
		Chains:  [][]*x509.Certificate{{evil.cert}, {w.carol.cert, w.ca.cert}},
	}))
	for line := range strings.Lines(msg) {
		if strings.HasPrefix(line, "Bcc:") || line == ".\n" || strings.Contains(line, "\r") {
			t.Errorf("injected line %q in:\n%s", line, msg)
		}
	}
}

func TestKxdTLSConfig(t *testing.T) {
	w := kxdTestWorld(t)
	cfg := TLSConfig(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{w.server.cert.Raw}, PrivateKey: w.server.key}}})
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.RequireAnyClientCert || len(cfg.Certificates) != 1 {
		t.Errorf("config %+v", cfg)
	}
	// A client without a certificate does not get past the handshake.
	srv := startKxdServer(t, &fakeKxdKeys{}, nil)
	roots := x509.NewCertPool()
	roots.AddCert(w.server.cert)
	conn, err := tls.Dial("tcp", srv.addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err == nil {
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Error("a client without a certificate was served")
	}
}

//END

// writeKxdFiles writes files (path under root -> content) as kxd's data
// directory would hold them.
func writeKxdFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestParseKxdDirServesKxc imports a directory laid out like kxd's and
// serves it to stock kxc.
func TestParseKxdDirServesKxc(t *testing.T) {
	needKxc(t)
	w := kxdTestWorld(t)
	root := t.TempDir()
	writeKxdFiles(t, root, map[string]string{
		"host1/disk/key":             string(kxdSecret),
		"host1/disk/allowed_clients": string(w.ca.certPEM()) + string(w.alice.certPEM()),
		"host1/disk/allowed_hosts":   "localhost\n",
		"host2/disk/key":             "only from elsewhere",
		"host2/disk/allowed_clients": string(w.alice.certPEM()),
		"host2/disk/allowed_hosts":   "192.0.2.1\n",
	})
	entries, err := kxddir.Parse(root)
	if err != nil {
		t.Fatal(err)
	}
	keys := &fakeKxdKeys{keys: map[string]*fakeKxdKey{}}
	for _, e := range entries {
		keys.keys[e.Path] = &fakeKxdKey{key: e.Key, policy: e.Policy}
	}
	srv := startKxdServer(t, keys, nil)

	dir := t.TempDir()
	serverCert := filepath.Join(dir, "server.crt")
	if err := os.WriteFile(serverCert, w.server.certPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cert *kxdTestCert
	}{{"alice", w.alice}, {"carol", w.carol}} {
		certFile, keyFile := kxcFiles(t, dir, c.name, c.cert.key, c.cert)
		stdout, stderr, code := runKxc(t, serverCert, certFile, keyFile, srv.addr, "host1/disk")
		if code != 0 || !bytes.Equal(stdout, kxdSecret) {
			t.Errorf("%s: kxc exit %d, stdout %q, stderr %s", c.name, code, stdout, stderr)
		}
	}
	certFile, keyFile := kxcFiles(t, dir, "alice2", w.alice.key, w.alice)
	_, stderr, code := runKxc(t, serverCert, certFile, keyFile, srv.addr, "host2/disk")
	if code != 1 || !bytes.Contains(stderr, []byte(`HTTP error "403 Forbidden" getting key: Host not allowed`)) {
		t.Errorf("host2: kxc exit %d, stderr %s", code, stderr)
	}
}

// TestStatusOfEveryKind: a cluster error of every kind is answered with
// the status the REST API gives it (the one table, vocab), kxd's 404
// "Unknown key" for not_found, and no kind falls through to 500 but
// internal.
func TestStatusOfEveryKind(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, k := range cluster.Kinds {
		rec := httptest.NewRecorder()
		(&kxdHandler{}).clusterError(rec, log, cluster.Errorf(k, "message of %s", k))
		if rec.Code != k.HTTPStatus() {
			t.Errorf("%s: status %d, want the REST API's %d", k, rec.Code, k.HTTPStatus())
		}
		if (rec.Code == http.StatusInternalServerError) != (k == cluster.KindInternal) {
			t.Errorf("%s: status %d", k, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	(&kxdHandler{}).clusterError(rec, log, cluster.Errorf(cluster.KindNoQuorum, "2 of 3 did not answer"))
	if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != "2 of 3 did not answer\n" {
		t.Errorf("no quorum: %d %q", rec.Code, rec.Body.String())
	}
}
