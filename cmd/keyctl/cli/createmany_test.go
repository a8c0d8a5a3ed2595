package cli

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyCreateMany: against a real node, "key create-many FILE" creates
// every key the file lists, in create_keys entries of up to 1000 (1,003
// keys here: two entries), each with its given or a generated secret;
// a key a create would refuse (an existing name, a bad name) is refused
// alone and named, the others created, and the exit says some failed.
func TestKeyCreateMany(t *testing.T) {
	initOneNode(t)
	if code, _, errb := keyctl(t, "key", "create", "many/old", "--bytes", "16"); code != ExitOK {
		t.Fatalf("key create: exit %d, %s", code, errb)
	}
	secret := []byte("the given secret")
	var file strings.Builder
	fmt.Fprintf(&file, "many/given %s\n\nmany/old\n-bad\n", base64.StdEncoding.EncodeToString(secret))
	for i := range 1000 {
		fmt.Fprintf(&file, "many/gen-%04d\n", i)
	}
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errb := keyctl(t, "key", "create-many", path, "--bytes", "24")
	if code == ExitOK || !strings.Contains(out, "created 1001 of 1003 keys") ||
		!strings.Contains(out, `refused "many/old": key "many/old" exists`) || !strings.Contains(out, `refused "-bad"`) {
		t.Fatalf("key create-many: exit %d, %s%s", code, out, errb)
	}
	code, got, errb := keyctl(t, "key", "get", "many/given")
	if code != ExitOK || !bytes.Equal([]byte(got), secret) {
		t.Errorf("key get many/given: exit %d, %q (%s)", code, got, errb)
	}
	code, got, errb = keyctl(t, "key", "get", "many/gen-0999")
	if code != ExitOK || len(got) != 24 {
		t.Errorf("key get many/gen-0999: exit %d, %d bytes (%s), want 24", code, len(got), errb)
	}
	if code, _, errb := keyctl(t, "key", "show", "-bad"); code == ExitOK {
		t.Errorf("the refused key exists: %s", errb)
	}
	for _, bad := range []string{"NAME two three", "many/x not-base64!"} {
		p := filepath.Join(t.TempDir(), "bad")
		os.WriteFile(p, []byte(bad+"\n"), 0o600)
		if code, _, errb := keyctl(t, "key", "create-many", p); code == ExitOK || !strings.Contains(errb, "line 1") {
			t.Errorf("%q: exit %d, %q: want an error naming line 1", bad, code, errb)
		}
	}
}
