package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestLogsHoldNoSecret: three keyd processes logging JSON at debug level
// create, release, compare-and-swap and revoke secrets; every line of
// their logs is one JSON object with a level and a message, and no log
// holds a secret, in its bytes, hex or base64, nor does the audit log.
func TestLogsHoldNoSecret(t *testing.T) {
	t.Parallel()
	c := startClusterEnv(t, 3, "KEYQUORUM_LOG_FORMAT=json", "KEYQUORUM_LOG_LEVEL=debug")
	dir := t.TempDir()
	secret := bytes.Repeat([]byte("s3cr3t-logscan-"), 3)
	f := filepath.Join(dir, "secret")
	if err := os.WriteFile(f, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustKeyctl(1, "key", "create", "logs/s", "--from-file", f)
	got := c.mustKeyctl(2, "key", "get", "logs/s").stdout
	if !bytes.Equal(got, secret) {
		t.Fatalf("key get returned %q", got)
	}
	generated := c.mustKeyctl(3, "key", "create", "logs/g", "--bytes", "32")
	_ = generated
	g := c.mustKeyctl(1, "key", "get", "logs/g").stdout
	c.mustKeyctl(3, "key", "revoke", "logs/s")
	if r := c.keyctl(1, "key", "get", "logs/s"); r.code == 0 {
		t.Fatal("a revoked key was released")
	}

	var forms [][]byte
	for _, s := range [][]byte{secret, g} {
		forms = append(forms, s, []byte(hex.EncodeToString(s)), []byte(base64.StdEncoding.EncodeToString(s)), []byte(base64.RawURLEncoding.EncodeToString(s)))
	}
	logs, _ := filepath.Glob(filepath.Join(c.dir, "n*.log"))
	audits, _ := filepath.Glob(filepath.Join(c.dir, "n*", "audit.log"))
	if len(logs) != 3 || len(audits) != 3 {
		t.Fatalf("found logs %v and audit logs %v, want 3 of each", logs, audits)
	}
	lines := 0
	for _, path := range append(logs, audits...) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, form := range forms {
			if bytes.Contains(b, form) {
				t.Errorf("%s holds a secret (%q)", path, form)
			}
		}
		if filepath.Base(path) == "audit.log" {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines++
			var line struct {
				Level string `json:"level"`
				Msg   string `json:"msg"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Level == "" || line.Msg == "" {
				t.Errorf("%s: not a JSON log line with a level and a message: %s", path, sc.Bytes())
			}
		}
	}
	if lines < 10 {
		t.Errorf("only %d log lines at debug level", lines)
	}
}
