package e2e

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTransitTokensCLI: an application with only the CA, the pin, the
// transit key's metadata (keyctl key show --json) and a capability token
// decrypts, derives and makes an HMAC through every node of a real
// 3-node cluster with keyctl transit ... --token, exactly as the operator
// does: a decrypt token decrypts and derives nothing, a derive token
// derives (and makes HMACs) and decrypts nothing.
func TestTransitTokensCLI(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	plain := []byte("attack at dawn\n")
	in, keyFile := filepath.Join(dir, "plain"), filepath.Join(dir, "app-enc.json")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustKeyctl(1, "transit", "create", "app/enc")
	ct := strings.TrimSpace(string(c.mustKeyctl(1, "transit", "encrypt", "app/enc", "--in", in).stdout))
	if err := os.WriteFile(keyFile, c.mustKeyctl(1, "key", "show", "--json", "app/enc").stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx1 := base64.StdEncoding.EncodeToString([]byte("tenant-1"))
	derived := strings.TrimSpace(string(c.mustKeyctl(1, "transit", "derive", "app/enc", "--context", ctx1).stdout))
	mac := strings.TrimSpace(string(c.mustKeyctl(1, "transit", "hmac", "app/enc", "--in", in).stdout))
	decrypt := strings.TrimSpace(string(c.mustKeyctl(1, "token", "create", "--key", "app/enc", "--flags", "decrypt", "--ttl", "1h").stdout))
	derive := strings.TrimSpace(string(c.mustKeyctl(1, "token", "create", "--key", "app/enc", "--flags", "derive", "--ttl", "1h").stdout))
	app := func(i int) []string {
		env := baseEnv()
		for _, k := range []string{"KEYQUORUM_CACERT", "KEYQUORUM_CLUSTER_ID", "KEYQUORUM_CLUSTER_KEY"} {
			env = withVar(env, k, c.envValue(k))
		}
		return withVar(env, "KEYQUORUM_ADDR", c.addr(i))
	}
	const exitDenied = 5
	for i := 1; i <= 3; i++ {
		if r := keyctl(t, app(i), "transit", "decrypt", "app/enc", ct, "--token", decrypt, "--key-file", keyFile); r.code != 0 || string(r.stdout) != string(plain) {
			t.Fatalf("node %d: decrypt with a decrypt token: %v", i, r)
		}
		if r := keyctl(t, app(i), "transit", "derive", "app/enc", "--context", ctx1, "--token", derive, "--key-file", keyFile); r.code != 0 || strings.TrimSpace(string(r.stdout)) != derived {
			t.Fatalf("node %d: derive with a derive token: %v, want %s", i, r, derived)
		}
		if r := keyctl(t, withVar(app(i), "KEYQUORUM_TOKEN", derive), "transit", "hmac", "app/enc", "--in", in, "--key-file", keyFile); r.code != 0 || strings.TrimSpace(string(r.stdout)) != mac {
			t.Fatalf("node %d: hmac with a derive token: %v, want %s", i, r, mac)
		}
		for _, refused := range [][]string{
			{"transit", "derive", "app/enc", "--context", ctx1, "--token", decrypt, "--key-file", keyFile},
			{"transit", "hmac", "app/enc", "--in", in, "--token", decrypt, "--key-file", keyFile},
			{"transit", "decrypt", "app/enc", ct, "--token", derive, "--key-file", keyFile},
		} {
			if r := keyctl(t, app(i), refused...); r.code != exitDenied {
				t.Errorf("node %d: %v: want exit %d (denied)", i, r, exitDenied)
			}
		}
	}
	if r := keyctl(t, app(1), "transit", "decrypt", "app/enc", ct, "--token", decrypt); r.code != 2 {
		t.Errorf("--token without --key-file: %v, want exit 2 (usage)", r)
	}
}
