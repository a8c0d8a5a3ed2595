package e2e

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// TestTransitLifecycleCLI: on a real 3-node cluster (keyd processes),
// keyctl transit import deals a given key: key show marks the version
// imported and shows the public key the key gives computed here, and it
// decrypts by quorum what keyctl encrypted to it. transit create
// --exportable --expires makes an exportable key that decrypts until its
// expiry and is denied (exit 5, "expired") after it, to decrypt, to
// encrypt and to export; a key is non-exportable unless created so.
// transit export of a key imported --exportable prints it wrapped to an
// RSA wrapping key (Vault's BYOK format), which unwraps here to the
// imported scalar, as gRPC TransitExport's shares combined here are, and
// transit import --wrapped deals it again (the same public key); a
// non-exportable key's export is denied (exit 5).
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

	// Export, wrapped, and import the wrapped key back.
	wrapping, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkix, _ := x509.MarshalPKIXPublicKey(&wrapping.PublicKey)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(wrapping)
	pubPEM, privPEM := filepath.Join(dir, "wrapping.pub"), filepath.Join(dir, "wrapping.key")
	os.WriteFile(pubPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), 0o600)
	os.WriteFile(privPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600)
	c.mustKeyctl(1, "transit", "import", "life/xp", "--key-file", keyFile, "--exportable")
	wrapped := c.mustKeyctl(2, "transit", "export", "life/xp", "--wrapping-key", pubPEM).stdout
	if bytes.Contains(wrapped, []byte(hex.EncodeToString(s.Bytes()))) {
		t.Fatal("transit export printed the key")
	}
	got, err := api.UnwrapTransitKey(wrapping, string(wrapped))
	if err != nil || !bytes.Equal(got, s.Bytes()) {
		t.Fatalf("the exported key unwraps to %x, %v; want the imported scalar", got, err)
	}
	// gRPC TransitExport, signed by the operator: the holders' shares,
	// combined here, are the imported scalar.
	xp, _ := c.keyMetadata("life/xp")
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	sg := c.operatorSign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: xp.ID, Op: fsm.OpExport,
		Version: xp.Transit().Latest().Version, Ephemeral: eph.PublicKey().Bytes()}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	grep, err := keyquorumv1.NewClusterServiceClient(c.grpcConn(1, false, true)).TransitExport(ctx, &keyquorumv1.TransitExportRequest{Request: sg})
	if err != nil {
		t.Fatalf("gRPC TransitExport: %v", err)
	}
	if got, err := api.OpenTransitExport(grpcTransitReply(grep), c.envValue("KEYQUORUM_CLUSTER_ID"), xp, xp.Transit().Latest().Version, sg.GetPayload(), eph); err != nil || !bytes.Equal(got, s.Bytes()) {
		t.Fatalf("gRPC export: %x, %v; want the imported scalar", got, err)
	}
	wrappedFile := filepath.Join(dir, "wrapped")
	os.WriteFile(wrappedFile, wrapped, 0o600)
	c.mustKeyctl(3, "transit", "import", "life/back", "--wrapped", wrappedFile, "--wrapping-private-key", privPEM)
	if show := string(c.mustKeyctl(1, "key", "show", "life/back").stdout); !strings.Contains(show, "public key "+pub) {
		t.Errorf("key show of the key imported wrapped, public key %s:\n%s", pub, show)
	}
	if r := c.keyctl(3, "transit", "export", "life/imp", "--wrapping-key", pubPEM); r.code != 5 || !strings.Contains(r.stderr, "non-exportable") {
		t.Errorf("exporting a non-exportable key: %v", r)
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
	if r := c.keyctl(2, "transit", "export", "life/exp", "--wrapping-key", pubPEM); r.code != 5 || !strings.Contains(r.stderr, "expired") {
		t.Errorf("exporting after the expiry: %v", r)
	}
}
