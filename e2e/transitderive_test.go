package e2e

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// TestTransitOperationsCLI: on a real 3-node cluster (keyd processes),
// keyctl transit derive gives the same key through every node for the
// same context (combined on the client from a quorum's proved partials)
// and another key for another context or hash; keyctl transit hmac makes
// a kq:v1:... HMAC that checks against its input and not against another
// input; a derived key refuses a derivation without a context. keyctl
// transit sign signs by quorum with an ed25519-frost key through
// POST /v1/transit/sign/NAME: a kq:v1:... signature that crypto/ed25519
// verifies under the key's public key, that keyctl transit verify and
// POST /v1/transit/verify/NAME accept, and reject for another input; a
// transit key is not a signing key. POST /v1/transit/derive/NAME relays
// t sealed answers for a request for NAME and refuses one for another key.
func TestTransitOperationsCLI(t *testing.T) {
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

	// Sign and verify with an ed25519-frost key under transit names.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustKeyctl(1, "key", "create", "app/signer", "--type", "ed25519-frost", "--from-file", pemFile)
	for i := 1; i <= 3; i++ {
		sig := strings.TrimSpace(string(c.mustKeyctl(i, "transit", "sign", "app/signer", "--in", in).stdout))
		raw, ok := strings.CutPrefix(sig, "kq:v1:")
		b, err := base64.StdEncoding.DecodeString(raw)
		if !ok || err != nil || !ed25519.Verify(pub, []byte("the message"), b) {
			t.Fatalf("transit sign through node %d printed %q: not a kq:v1: Ed25519 signature of the input (%v)", i, sig, err)
		}
		if out := c.mustKeyctl(i%3+1, "transit", "verify", "app/signer", "--in", in, "--signature", sig).stdout; strings.TrimSpace(string(out)) != "valid" {
			t.Fatalf("transit verify printed %q", out)
		}
		if r := c.keyctl(i, "transit", "verify", "app/signer", "--in", other, "--signature", sig); r.code == 0 {
			t.Fatalf("a signature of another input verified: %v", r)
		}
	}
	sig := strings.TrimSpace(string(c.mustKeyctl(2, "transit", "sign", "app/signer", "--in", in).stdout))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tlsConfig(true)}, Timeout: time.Minute}
	verify := func(input []byte) api.VerifyReply {
		t.Helper()
		b, _ := json.Marshal(api.TransitVerifyRequest{Input: input, Signature: sig})
		resp, err := hc.Post("https://"+c.addr(3)+"/v1/transit/verify/app/signer", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rep api.VerifyReply
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&rep) != nil {
			t.Fatalf("POST /v1/transit/verify: %d", resp.StatusCode)
		}
		return rep
	}
	if rep := verify([]byte("the message")); !rep.Valid {
		t.Fatalf("REST verify of a good signature: %+v", rep)
	}
	if rep := verify([]byte("another message")); rep.Valid || rep.Error == "" {
		t.Fatalf("REST verify of another input: %+v", rep)
	}
	if r := c.keyctl(1, "transit", "sign", "app/kdf", "--in", in); r.code == 0 || !strings.Contains(r.stderr, "ed25519-frost") {
		t.Fatalf("transit sign with a transit key: %v", r)
	}

	// REST derive: the path names the key the signed request names; a
	// request for another key is refused before any holder is asked.
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	sg := c.operatorSign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "app/kdf", Op: fsm.OpDerive,
		Ephemeral: eph.PublicKey().Bytes(), Derive: []fsm.TransitDerivation{{Version: 1, Context: []byte("tenant-1")}}}})
	post := func(path string, out any) int {
		t.Helper()
		b, _ := json.Marshal(fsm.Signed{Signer: sg.GetSigner(), Payload: sg.GetPayload(), Signature: sg.GetSignature()})
		resp, err := hc.Post("https://"+c.addr(1)+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(out)
		return resp.StatusCode
	}
	var rep api.TransitDecryptReply
	if code := post("/v1/transit/derive/app/tenants", &rep); code != 400 {
		t.Fatalf("a derivation for app/kdf posted to app/tenants: %d", code)
	}
	if code := post("/v1/transit/derive/app/kdf", &rep); code != 200 || len(rep.Partials) != 2 || rep.Key != "app/kdf" {
		t.Fatalf("REST derive: %d %+v", code, rep)
	}
}
