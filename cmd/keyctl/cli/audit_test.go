package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/audit"
)

// TestAuditVerify: keyctl audit verify passes a node's log with its
// fingerprint, and fails (exit 1, one line naming the problem) on an
// edited log, a log of another key, and a log that stops before --until;
// it says how many decisions follow the last signature.
func TestAuditVerify(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	w, err := audit.Open(path, "n1", key)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{audit.Allowed, audit.Refused, audit.Allowed} {
		if err := w.Decide(&audit.Decision{Role: "holder", Principal: "op", Key: "k", Op: "get", Outcome: o}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fp := api.Fingerprint(pub)
	code, out, errb := keyctl(t, "audit", "verify", path, "--fingerprint", fp, "--until", "now")
	if code != ExitOK || !strings.Contains(out, "ok: 5 records, 3 decisions (1 refused), node n1") {
		t.Fatalf("intact log: exit %d, %q %q", code, out, errb)
	}

	b, _ := os.ReadFile(path)
	edited := filepath.Join(dir, "edited.log")
	os.WriteFile(edited, bytes.Replace(b, []byte(`"outcome":"refused"`), []byte(`"outcome":"allowed"`), 1), 0o600)
	if code, _, errb := keyctl(t, "audit", "verify", edited, "--fingerprint", fp); code != ExitError || !strings.Contains(errb, "line 4 (seq 3): it does not follow the line before") {
		t.Errorf("edited log: exit %d, %q", code, errb)
	}
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	if code, _, errb := keyctl(t, "audit", "verify", path, "--fingerprint", api.Fingerprint(otherPub)); code != ExitError || !strings.Contains(errb, "is signed by the key of fingerprint "+fp) {
		t.Errorf("another node's fingerprint: exit %d, %q", code, errb)
	}
	if code, _, errb := keyctl(t, "audit", "verify", path, "--until", "2999-01-01T00:00:00Z"); code != ExitError || !strings.Contains(errb, "cut short") {
		t.Errorf("a log that stops before --until: exit %d, %q", code, errb)
	}

	// A log whose node is still running (or crashed) ends in decisions
	// no seal has signed yet: it verifies, and says so.
	running := filepath.Join(dir, "running.log")
	os.WriteFile(running, b[:bytes.LastIndex(b[:len(b)-1], []byte("\n"))+1], 0o600) // without its close
	code, out, errb = keyctl(t, "audit", "verify", running, "--fingerprint", fp)
	if code != ExitOK || !strings.Contains(out, "unsealed: the last 3 decisions follow the last signature") {
		t.Fatalf("a log ending in an unsealed decision: exit %d, %q %q", code, out, errb)
	}
}
