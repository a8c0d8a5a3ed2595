package e2e

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTransitDeriveCLI: on a real 3-node cluster (keyd processes),
// keyctl transit derive gives the same key through every node for the
// same context (combined on the client from a quorum's proved partials)
// and another key for another context or hash; keyctl transit hmac makes
// a kq:v1:... HMAC that checks against its input and not against another
// input; a derived key refuses a derivation without a context.
func TestTransitDeriveCLI(t *testing.T) {
	c := startCluster(t, 3)
	c.mustKeyctl(1, "transit", "create", "app/kdf")
	c.mustKeyctl(1, "transit", "create", "app/tenants", "--derived")
	ctx1 := base64.StdEncoding.EncodeToString([]byte("tenant-1"))
	ctx2 := base64.StdEncoding.EncodeToString([]byte("tenant-2"))
	derive := func(i int, args ...string) []byte {
		t.Helper()
		out := strings.TrimSpace(string(c.mustKeyctl(i, append([]string{"transit", "derive"}, args...)...).stdout))
		b, err := base64.StdEncoding.DecodeString(out)
		if err != nil {
			t.Fatalf("derive printed %q: %v", out, err)
		}
		return b
	}
	first := derive(1, "app/kdf", "--context", ctx1)
	if len(first) != 32 {
		t.Fatalf("a derived key of %d bytes, want 32", len(first))
	}
	for i := 2; i <= 3; i++ {
		if got := derive(i, "app/kdf", "--context", ctx1); string(got) != string(first) {
			t.Fatalf("through node %d the same context derived %x, not %x", i, got, first)
		}
	}
	if got := derive(2, "app/kdf", "--context", ctx2); string(got) == string(first) {
		t.Fatal("another context derived the same key")
	}
	if got := derive(3, "app/kdf", "--context", ctx1, "--algorithm", "sha2-512", "--bytes", "64"); len(got) != 64 || string(got[:32]) == string(first) {
		t.Fatalf("sha2-512: %x", got)
	}
	if r := c.keyctl(1, "transit", "derive", "app/tenants"); r.code == 0 || !strings.Contains(r.stderr, "derived") {
		t.Fatalf("a derived key without a context: %v", r)
	}

	dir := t.TempDir()
	in, other := filepath.Join(dir, "in"), filepath.Join(dir, "other")
	if err := os.WriteFile(in, []byte("the message"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte("another message"), 0o600); err != nil {
		t.Fatal(err)
	}
	mac := strings.TrimSpace(string(c.mustKeyctl(1, "transit", "hmac", "app/kdf", "--in", in).stdout))
	if !strings.HasPrefix(mac, "kq:v1:") {
		t.Fatalf("hmac printed %q, want kq:v1:...", mac)
	}
	if out := c.mustKeyctl(2, "transit", "hmac", "app/kdf", "--in", in, "--hmac", mac).stdout; strings.TrimSpace(string(out)) != "valid" {
		t.Fatalf("checking the HMAC through node 2 printed %q", out)
	}
	if r := c.keyctl(3, "transit", "hmac", "app/kdf", "--in", other, "--hmac", mac); r.code == 0 {
		t.Fatalf("the HMAC of another input checked: %v", r)
	}
}
