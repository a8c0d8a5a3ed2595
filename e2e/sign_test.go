package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFROSTSignCLI: an Ed25519 key imported from a PEM file with keyctl
// (dealt in FROST shares on the client) signs by quorum through every
// node of a real 3-node cluster; every signature verifies with
// crypto/ed25519 under the PEM's public key and with keyctl key verify; a
// tampered message does not; key show says the key is never assembled.
func TestFROSTSignCLI(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemFile, msgFile, badFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "msg"), filepath.Join(dir, "bad")
	msg := []byte("release 1.2.3\n")
	for f, b := range map[string][]byte{pemFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), msgFile: msg, badFile: []byte("release 1.2.4\n")} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.mustKeyctl(1, "key", "create", "release-signing", "--type", "ed25519-frost", "--from-file", pemFile)
	if show := string(c.mustKeyctl(2, "key", "show", "release-signing").stdout); !strings.Contains(show, "FROST shares") || !strings.Contains(show, "never assembled") {
		t.Errorf("key show does not say the key is in FROST shares and never assembled:\n%s", show)
	}
	for i := 1; i <= 3; i++ {
		out := strings.TrimSpace(string(c.mustKeyctl(i, "key", "sign", "release-signing", "--in", msgFile).stdout))
		sig, err := base64.StdEncoding.DecodeString(out)
		if err != nil {
			t.Fatalf("node %d printed %q, not base64: %v", i, out, err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatalf("node %d: the signature does not verify with crypto/ed25519", i)
		}
		c.mustKeyctl(i%3+1, "key", "verify", "release-signing", "--signature", out, "--in", msgFile)
		if r := c.keyctl(i%3+1, "key", "verify", "release-signing", "--signature", out, "--in", badFile); r.code == 0 {
			t.Fatalf("keyctl key verify accepted the signature for another message: %v", r)
		}
	}
}
