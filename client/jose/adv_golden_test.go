package jose

import (
	"bytes"
	"crypto/ecdh"
	"fmt"
	"github.com/keyquorum/keyquorum/golden"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"
)

// TestAdvertisementGolden pins the Tang advertisement clevis reads, made
// for a fixed exchange key. NewAdvertisement draws its one-time signing
// key and the signature's nonce from crypto's own randomness, which a
// fixed seed makes fixed (a Go release that changes how crypto/ecdsa draws
// it changes the signing key, thp and signature: check then that nothing
// else moved). When stock clevis is installed, it must accept the golden
// advertisement: clevis encrypt tang with the advertisement given, which
// checks its signature with jose and encrypts to its exchange key.
func TestAdvertisementGolden(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	exc, err := ecdh.P256().NewPrivateKey(bytes.Repeat([]byte{0x24}, 32))
	if err != nil {
		t.Fatal(err)
	}
	adv, kid, thp, err := NewAdvertisement(nil, exc.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "adv.jws", append(bytes.Clone(adv), '\n'))
	golden.Check(t, "adv-ids.txt", fmt.Appendf(nil, "kid: %s\nthp: %s\n", kid, thp))
	if !AdvHasThumbprint(adv, thp) {
		t.Fatal("the advertisement is not signed by thp")
	}

	for _, bin := range []string{"clevis", "clevis-encrypt-tang", "jose"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("stock clevis is not installed (%s: %v): the golden advertisement was not given to it", bin, err)
		}
	}
	path := filepath.Join(t.TempDir(), "adv.jws")
	if err := os.WriteFile(path, adv, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("clevis", "encrypt", "tang", fmt.Sprintf(`{"url":"https://tang.invalid","adv":%q,"thp":%q}`, path, thp))
	cmd.Stdin = strings.NewReader("a disk key")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	jwe, err := cmd.Output()
	if err != nil {
		t.Fatalf("clevis refuses the golden advertisement: %v: %s", err, stderr.String())
	}
	if !bytes.Contains(jwe, []byte(".")) {
		t.Fatalf("clevis encrypt tang wrote %q, want a compact JWE", jwe)
	}
}
