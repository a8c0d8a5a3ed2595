package kxddir

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testCert is a certificate and its key, made for a test.
type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (c *testCert) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

func (c *testCert) keyPEM(t *testing.T) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// newTestCert self-signs a certificate for cn, a CA's if ca.
func newTestCert(t *testing.T, cn string, ca bool) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  ca,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: cert, key: key}
}

// testWorld are the clients the tests allow: alice, bob and a CA.
type testWorld struct{ alice, bob, ca *testCert }

func kxdTestWorld(t *testing.T) *testWorld {
	return &testWorld{alice: newTestCert(t, "alice", false), bob: newTestCert(t, "bob", false), ca: newTestCert(t, "kxd clients CA", true)}
}

// kxdSecret is a key with bytes that text handling would damage.
var kxdSecret = []byte("s3cret-KEY\x00\n\xff\r\nbytes\n")

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

func TestParseKxdDir(t *testing.T) {
	w := kxdTestWorld(t)
	root := t.TempDir()
	// openssl x509 -text style: text around the blocks is ignored.
	clients := "alice's laptop\n" + string(w.alice.certPEM()) + "\nSubject: CN=kxd clients CA\n" + string(w.ca.certPEM())
	writeKxdFiles(t, root, map[string]string{
		"host1/disk/key":             string(kxdSecret),
		"host1/disk/allowed_clients": clients,
		"host1/disk/email_to":        "ops@example.com\nnot an address\n\n  sec@example.com  \r\n# who@cares\n",

		"host1/disk/backup/key":             "nested under another key",
		"host1/disk/backup/allowed_clients": string(w.bob.certPEM()),
		"host1/disk/backup/allowed_hosts":   "localhost\n\n# the backup server\n 192.0.2.7 \n::1\n",

		"deep/a/b/c/key":           "deep",
		"deep/a/b/c/allowed_hosts": "",

		"noclients/key": "",

		// A directory without a key is not a key.
		"half/allowed_clients": string(w.alice.certPEM()),
		"half/notes.txt":       "nothing",
	})

	got, err := Parse(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Path: "deep/a/b/c", Key: []byte("deep"), Policy: Policy{AllowedHosts: []string{}}},
		{Path: "host1/disk", Key: kxdSecret, Policy: Policy{
			AllowedClients: [][]byte{w.alice.cert.Raw, w.ca.cert.Raw},
			EmailTo:        []string{"ops@example.com", "sec@example.com", "# who@cares"},
		}},
		{Path: "host1/disk/backup", Key: []byte("nested under another key"), Policy: Policy{
			AllowedClients: [][]byte{w.bob.cert.Raw},
			AllowedHosts:   []string{"localhost", "192.0.2.7", "::1"},
		}},
		{Path: "noclients", Key: []byte{}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, x := got[i], want[i]
		if g.Path != x.Path || !bytes.Equal(g.Key, x.Key) || !reflect.DeepEqual(g.Policy.AllowedClients, x.Policy.AllowedClients) ||
			!reflect.DeepEqual(g.Policy.EmailTo, x.Policy.EmailTo) || !reflect.DeepEqual(g.Policy.AllowedHosts, x.Policy.AllowedHosts) {
			t.Errorf("entry %d:\n got %q %q clients=%d hosts=%#v email=%#v\nwant %q %q clients=%d hosts=%#v email=%#v", i,
				g.Path, g.Key, len(g.Policy.AllowedClients), g.Policy.AllowedHosts, g.Policy.EmailTo,
				x.Path, x.Key, len(x.Policy.AllowedClients), x.Policy.AllowedHosts, x.Policy.EmailTo)
		}
	}
	// Missing allowed_hosts (every host) and an empty one (no host) stay
	// apart.
	if got[1].Policy.AllowedHosts != nil {
		t.Error("a missing allowed_hosts must give nil")
	}
	if got[0].Policy.AllowedHosts == nil || len(got[0].Policy.AllowedHosts) != 0 {
		t.Error("an empty allowed_hosts must give an empty, non-nil list")
	}
}

func TestParseKxdDirProblems(t *testing.T) {
	w := kxdTestWorld(t)
	good := string(w.alice.certPEM())
	truncated := good[:len(good)-30]
	tests := []struct {
		name  string
		files map[string]string
		want  []string // in the error
	}{
		{"broken PEM", map[string]string{"h/k/key": "SECRETBYTES", "h/k/allowed_clients": good + truncated},
			[]string{filepath.Join("h", "k", "allowed_clients"), "PEM block 2 is malformed"}},
		{"bad base64", map[string]string{"h/k/key": "SECRETBYTES", "h/k/allowed_clients": "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"},
			[]string{filepath.Join("h", "k", "allowed_clients"), "PEM block 1 is malformed"}},
		{"not a certificate", map[string]string{"h/k/key": "SECRETBYTES", "h/k/allowed_clients": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
			[]string{filepath.Join("h", "k", "allowed_clients"), "PEM block 1 is not a valid certificate"}},
		{"a private key among the clients", map[string]string{"h/k/key": "SECRETBYTES", "h/k/allowed_clients": good + string(w.alice.keyPEM(t))},
			[]string{filepath.Join("h", "k", "allowed_clients"), `PEM block 2 is a "PRIVATE KEY"`}},
		{"no PEM at all", map[string]string{"h/k/key": "SECRETBYTES", "h/k/allowed_clients": "alice\n"},
			[]string{filepath.Join("h", "k", "allowed_clients"), "holds no PEM certificate"}},
		{"two hosts on a line", map[string]string{"h/k/key": "SECRETBYTES", "h/k/allowed_hosts": "a.example b.example\n"},
			[]string{filepath.Join("h", "k", "allowed_hosts"), "line 1"}},
		{"key at the root", map[string]string{"key": "SECRETBYTES"},
			[]string{"root of the data directory"}},
		{"path kxc cannot ask for", map[string]string{"a..b/key": "SECRETBYTES"},
			[]string{`"a..b"`, "cannot be asked for"}},
		{"every problem reported", map[string]string{
			"x/key": "SECRETBYTES", "x/allowed_clients": truncated,
			"y/key": "SECRETBYTES", "y/allowed_hosts": "a b\n",
			"z/key": "SECRETBYTES",
		}, []string{filepath.Join("x", "allowed_clients"), filepath.Join("y", "allowed_hosts")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeKxdFiles(t, root, tt.files)
			entries, err := Parse(root)
			if err == nil {
				t.Fatalf("no error; entries %+v", entries)
			}
			if entries != nil {
				t.Errorf("entries returned with an error: %d", len(entries))
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "SECRETBYTES") {
				t.Errorf("error holds key bytes: %v", err)
			}
		})
	}

	if _, err := Parse(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory must be an error")
	}
	file := filepath.Join(t.TempDir(), "file")
	writeKxdFiles(t, filepath.Dir(file), map[string]string{"file": "x"})
	if _, err := Parse(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as root: %v", err)
	}
}

func FuzzKxdPath(f *testing.F) {
	for _, s := range []string{
		"/v1/host1/disk", "/v1/", "/v1", "/v1/..", "/v1/a/../b", "/v1/a..b", "/v2/a", "//v1/a",
		"/v1//a/./b/", "/v1/a\x00b", "/v1/a\nb", "/v1/\xff", "v1/a", "", "/", "/v1/.../x", "/v1/%2e%2e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, urlPath string) {
		keyPath, ok := KeyPath(urlPath)
		if !ok {
			if keyPath != "" {
				t.Fatalf("refused %q but returned %q", urlPath, keyPath)
			}
			return
		}
		if keyPath == "" || strings.HasPrefix(keyPath, "/") || strings.HasSuffix(keyPath, "/") {
			t.Fatalf("%q gave key path %q", urlPath, keyPath)
		}
		if strings.Contains(keyPath, "..") || path.Clean("/"+keyPath) != "/"+keyPath {
			t.Fatalf("%q gave an unclean key path %q", urlPath, keyPath)
		}
		if !pathChars(keyPath) || len(keyPath) > MaxPath {
			t.Fatalf("%q gave key path %q with bad characters or length", urlPath, keyPath)
		}
		if again, ok := KeyPath("/v1/" + keyPath); !ok || again != keyPath {
			t.Fatalf("%q: key path %q does not map to itself (%q, %v)", urlPath, keyPath, again, ok)
		}
	})
}
