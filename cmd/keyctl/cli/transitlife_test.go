package cli

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTransitImportUsage: transit import needs --key-file, whose content
// is 32 bytes or 64 hex digits, or --wrapped with --wrapping-private-key
// (a PEM key), not both; transit export needs --wrapping-key, a PEM RSA
// public key; anything else, and a negative --expires, is a usage error
// (exit 2) before any connection.
func TestTransitImportUsage(t *testing.T) {
	t.Setenv("KEYQUORUM_ADDR", "127.0.0.1:1")
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("0123"), 0o600)
	for _, args := range [][]string{
		{"transit", "import", "k"},
		{"transit", "import", "k", "--key-file", short},
		{"transit", "create", "k", "--expires", "-1h"},
		{"transit", "import", "k", "--key-file", short, "--wrapped", short},
		{"transit", "import", "k", "--wrapped", short},
		{"transit", "import", "k", "--wrapped", short, "--wrapping-private-key", short},
		{"transit", "export", "k"},
		{"transit", "export", "k", "--wrapping-key", short},
	} {
		if code, _, errb := keyctl(t, args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, ExitUsage, errb)
		}
	}
	raw := bytes.Repeat([]byte{7}, 32)
	for name, content := range map[string][]byte{"raw": raw, "hex": []byte(hex.EncodeToString(raw) + "\n")} {
		f := filepath.Join(dir, name)
		os.WriteFile(f, content, 0o600)
		got, err := readTransitScalar(f)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("%s: %x, %v; want %x", name, got, err, raw)
		}
	}
	f := filepath.Join(dir, "hex63")
	os.WriteFile(f, []byte(strings.Repeat("a", 63)+"\n"), 0o600)
	if _, err := readTransitScalar(f); err == nil {
		t.Errorf("63 hex digits were read as a key")
	}
}
