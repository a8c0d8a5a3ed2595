package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

// TestTransitLifecycleCLI: on a real 3-node cluster (keyd processes),
// keyctl transit import deals a given key: key show marks the version
// imported and shows the public key the key gives computed here, and it
// decrypts by quorum what keyctl encrypted to it. transit create
// --exportable --expires makes an exportable key that decrypts until its
// expiry and is denied (exit 5, "expired") after it, to decrypt and to
// encrypt; a key is non-exportable unless created so.
func TestTransitLifecycleCLI(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	var wide [64]byte
	rand.Read(wide[:])
	s, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(s.Bytes())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "plain")
	if err := os.WriteFile(in, []byte("imported\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := string(c.mustKeyctl(1, "transit", "import", "life/imp", "--key-file", keyFile).stdout); !strings.Contains(out, "imported transit key") {
		t.Errorf("transit import printed %q", out)
	}
	show := string(c.mustKeyctl(2, "key", "show", "life/imp").stdout)
	pub := hex.EncodeToString(new(edwards25519.Point).ScalarBaseMult(s).Bytes())
	if !strings.Contains(show, "public key "+pub) || !strings.Contains(show, "imported") || !strings.Contains(show, "exportable false") {
		t.Errorf("key show of the imported key, public key %s:\n%s", pub, show)
	}
	ct := strings.TrimSpace(string(c.mustKeyctl(1, "transit", "encrypt", "life/imp", "--in", in).stdout))
	if out := string(c.mustKeyctl(3, "transit", "decrypt", "life/imp", ct).stdout); out != "imported\n" {
		t.Errorf("the imported key decrypted %q", out)
	}
	if r := c.keyctl(1, "transit", "import", "life/bad", "--key-file", in); r.code != 2 {
		t.Errorf("importing a file that is not a key: %v", r)
	}

	const life = 4 * time.Second
	expires := time.Now().Add(life)
	c.mustKeyctl(1, "transit", "create", "life/exp", "--exportable", "--expires", life.String())
	if show := string(c.mustKeyctl(2, "key", "show", "life/exp").stdout); !strings.Contains(show, "exportable true") {
		t.Errorf("key show of the exportable key:\n%s", show)
	}
	ct = strings.TrimSpace(string(c.mustKeyctl(1, "transit", "encrypt", "life/exp", "--in", in).stdout))
	if r := c.keyctl(2, "transit", "decrypt", "life/exp", ct); r.code != 0 && time.Now().Before(expires) {
		t.Errorf("decrypting before the expiry: %v", r)
	}
	time.Sleep(time.Until(expires) + 200*time.Millisecond)
	for i := 1; i <= 3; i++ {
		if r := c.keyctl(i, "transit", "decrypt", "life/exp", ct); r.code != 5 || !strings.Contains(r.stderr, "expired") {
			t.Errorf("decrypting through node %d after the expiry: %v", i, r)
		}
	}
	if r := c.keyctl(1, "transit", "encrypt", "life/exp", "--in", in); r.code != 5 || !strings.Contains(r.stderr, "expired") {
		t.Errorf("encrypting after the expiry: %v", r)
	}
}
