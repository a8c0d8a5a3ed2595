package cli

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/shamir"
)

// TestRecoveryKeygenAndInitFlags: keygen writes the officer's private key
// (mode 0600, never over another file) and prints the public key that
// cluster init's --recovery-officer takes; init's flags make the kit
// request, and refuse a threshold the officers cannot meet.
func TestRecoveryKeygenAndInitFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "officer.key")
	var out, errOut bytes.Buffer
	if code := Run([]string{"recovery", "keygen", "--out", path}, nil, &out, &errOut); code != ExitOK {
		t.Fatalf("keygen: exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	pub := lines[len(lines)-1]
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v, mode %v", err, fi.Mode())
	}
	raw, _ := os.ReadFile(path)
	priv, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	want, err := shamir.EncryptionPublicKey(priv)
	if err != nil || hex.EncodeToString(want) != pub {
		t.Fatalf("printed public key %s is not the file's (%x, %v)", pub, want, err)
	}
	if code := Run([]string{"recovery", "keygen", "--out", path}, nil, &out, &errOut); code == ExitOK {
		t.Fatal("keygen wrote over an existing key file")
	}

	var o officerFlags
	if err := o.Set("alice=" + pub); err != nil {
		t.Fatal(err)
	}
	if err := o.Set("bob=abcd"); err == nil {
		t.Fatal("a short public key was taken")
	}
	if r, err := o.request(1); err != nil || r.Threshold != 1 || len(r.Officers) != 1 || r.Officers[0].Name != "alice" {
		t.Fatalf("request: %+v, %v", r, err)
	}
	if _, err := o.request(2); err == nil {
		t.Fatal("a threshold above the officers was taken")
	}
	if r, err := (officerFlags{}).request(0); r != nil || err != nil {
		t.Fatalf("no officers: %+v, %v (want no kit)", r, err)
	}
}
