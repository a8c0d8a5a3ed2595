package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// TestAssembledSymmetricCLI: keyctl transit create --type hmac-sha512
// --key-file imports RFC 4231 case 1's key, and transit hmac through every
// node prints the RFC's MAC, which transit verify accepts (not for another
// input); an aes256-cbc key of random bytes encrypts through one node and
// decrypts through another, and an imported one's ciphertext opens with
// the whole key (IV || AES-CBC, PKCS #7). key show says the key is whole
// on the coordinating node for the operation.
func TestAssembledSymmetricCLI(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	hkey, msgFile, badFile := filepath.Join(dir, "hmac.key"), filepath.Join(dir, "msg"), filepath.Join(dir, "bad")
	writeFile(t, hkey, bytes.Repeat([]byte{0x0b}, 20))
	writeFile(t, msgFile, []byte("Hi There"))
	writeFile(t, badFile, []byte("Hi there"))
	c.mustKeyctl(1, "transit", "create", "compat/mac", "--type", "hmac-sha512", "--key-file", hkey)
	want := "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
	m := hmac.New(sha512.New, bytes.Repeat([]byte{0x0b}, 20))
	m.Write([]byte("Hi There"))
	wantB64 := base64.StdEncoding.EncodeToString(m.Sum(nil))
	if got := base64.StdEncoding.EncodeToString(mustUnhex(t, want)); got != wantB64 {
		t.Fatal("crypto/hmac differs from RFC 4231")
	}
	for i := 1; i <= 3; i++ {
		out := strings.TrimSpace(string(c.mustKeyctl(i, "transit", "hmac", "compat/mac", "--in", msgFile).stdout))
		if out != wantB64 {
			t.Fatalf("node %d printed %q, want RFC 4231's %q", i, out, wantB64)
		}
		c.mustKeyctl(i, "transit", "verify", "compat/mac", "--hmac", out, "--in", msgFile)
		if r := c.keyctl(i, "transit", "verify", "compat/mac", "--hmac", out, "--in", badFile); r.code == 0 {
			t.Fatalf("node %d: the MAC verified another input: %v", i, r)
		}
	}
	show := string(c.mustKeyctl(2, "key", "show", "compat/mac").stdout)
	if !strings.Contains(show, "whole on the coordinating node for the operation") {
		t.Errorf("key show does not say where the key is whole:\n%s", show)
	}
	c.mustKeyctl(1, "transit", "create", "compat/cbc", "--type", "aes256-cbc")
	ct := strings.TrimSpace(string(c.mustKeyctl(1, "transit", "encrypt", "compat/cbc", "--in", msgFile).stdout))
	if pt := c.mustKeyctl(2, "transit", "decrypt", "compat/cbc", ct).stdout; string(pt) != "Hi There" {
		t.Fatalf("decrypted through node 2: %q", pt)
	}
	akey := filepath.Join(dir, "aes.key")
	raw := bytes.Repeat([]byte{0x42}, 32)
	writeFile(t, akey, raw)
	c.mustKeyctl(3, "transit", "create", "compat/cbc2", "--type", "aes256-cbc", "--key-file", akey)
	ct = strings.TrimSpace(string(c.mustKeyctl(3, "transit", "encrypt", "compat/cbc2", "--in", msgFile).stdout))
	data, err := base64.StdEncoding.DecodeString(ct)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := api.CBCDecrypt(raw, data); err != nil || string(pt) != "Hi There" {
		t.Fatalf("the whole key does not open the cluster's ciphertext: %q, %v", pt, err)
	}
}

func mustUnhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
