package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/keyquorum/keyquorum/fsm"
	grpcgw "github.com/keyquorum/keyquorum/gateway/grpc"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
	"github.com/keyquorum/keyquorum/token"
)

// tokenRequest is a release request with the token in text form bound to
// it, as client.TokenClient makes it.
func tokenRequest(t *testing.T, text string, req *fsm.ReleaseRequest) *fsm.Signed {
	t.Helper()
	op, tok, err := token.ParseText(text)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	payload, err := json.Marshal(&fsm.Command{Type: fsm.TypeRelease, Release: req, Nonce: nonce, IssuedAt: time.Now().UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	bound, err := token.Bind(tok, payload)
	if err != nil {
		t.Fatal(err)
	}
	return &fsm.Signed{Signer: op, Payload: payload, Token: bound}
}

// TestCapabilityTokensCLI: an operator mints a token for app/ with every
// flag; a program with no credentials at all restricts it offline (keyctl
// token restrict, with only PATH in its environment) to decrypt of
// app/db from loopback; an application with only the CA and the pin uses
// it through every node of a real 3-node cluster: app/db is released,
// app/other and a signature are refused, as are a restriction to another
// network and, once the operator revokes it, the restricted token; the
// token it was restricted from still signs by quorum; a token bounded to
// one use is used once.
func TestCapabilityTokensCLI(t *testing.T) {
	c := startCluster(t, 3)
	db, other := randomSecret(t, 32), randomSecret(t, 32)
	dir := t.TempDir()
	for name, secret := range map[string][]byte{"app/db": db, "app/other": other} {
		f := filepath.Join(dir, strings.ReplaceAll(name, "/", "-"))
		if err := os.WriteFile(f, secret, 0o600); err != nil {
			t.Fatal(err)
		}
		c.mustKeyctl(1, "key", "create", name, "--from-file", f)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemFile, msgFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "msg")
	msg := []byte("deploy 7\n")
	for f, b := range map[string][]byte{pemFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), msgFile: msg} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.mustKeyctl(1, "key", "create", "app/sign", "--type", "ed25519-frost", "--from-file", pemFile)

	minted := strings.TrimSpace(string(c.mustKeyctl(1, "token", "create", "--prefix", "app/", "--flags", "ALL", "--ttl", "1h").stdout))
	bare := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	restrict := func(args ...string) string {
		t.Helper()
		r := keyctl(t, bare, append([]string{"token", "restrict", minted}, args...)...)
		if r.code != 0 {
			t.Fatalf("offline restrict: %v", r)
		}
		return strings.TrimSpace(string(r.stdout))
	}
	narrow := restrict("--key", "app/db", "--flags", "decrypt", "--network", "127.0.0.0/8")
	elsewhere := restrict("--network", "192.0.2.0/24")

	// The application's environment: a node, the CA and the pin; no
	// operator certificate or key.
	app := func(i int) []string {
		env := baseEnv()
		for _, k := range []string{"KEYQUORUM_CACERT", "KEYQUORUM_CLUSTER_ID", "KEYQUORUM_CLUSTER_KEY"} {
			env = withVar(env, k, c.envValue(k))
		}
		return withVar(env, "KEYQUORUM_ADDR", c.addr(i))
	}
	const exitDenied = 5
	for i := 1; i <= 3; i++ {
		r := keyctl(t, app(i), "key", "get", "app/db", "--token", narrow)
		if r.code != 0 || !bytes.Equal(r.stdout, db) {
			t.Fatalf("node %d: the restricted token's key: %v", i, r)
		}
		for _, refused := range [][]string{
			{"key", "get", "app/other", "--token", narrow},
			{"key", "sign", "app/sign", "--in", msgFile, "--token", narrow},
			{"key", "get", "app/db", "--token", elsewhere},
		} {
			if r := keyctl(t, app(i), refused...); r.code != exitDenied {
				t.Errorf("node %d: %v: want exit %d (denied)", i, r, exitDenied)
			}
		}
		out := keyctl(t, withVar(app(i), "KEYQUORUM_TOKEN", minted), "key", "sign", "app/sign", "--in", msgFile)
		sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(out.stdout)))
		if out.code != 0 || err != nil || !ed25519.Verify(pub, msg, sig) {
			t.Fatalf("node %d: a signature with the minted token: %v", i, out)
		}
	}

	// gRPC, with the token in the call's metadata and no operator
	// certificate: a signature by quorum, and a release the token does not
	// allow.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, quic := range []bool{false, true} {
		gc := keyquorumv1.NewClusterServiceClient(c.grpcConn(3, quic, false))
		sg := tokenRequest(t, minted, &fsm.ReleaseRequest{Key: "app/sign", Op: fsm.OpSign, Message: msg})
		resp, err := gc.Sign(metadata.AppendToOutgoingContext(ctx, grpcgw.TokenMetadata, base64.RawURLEncoding.EncodeToString(sg.Token)),
			&keyquorumv1.SignRequest{Request: &keyquorumv1.SignedCommand{Signer: sg.Signer, Payload: sg.Payload}})
		if err != nil || !ed25519.Verify(pub, msg, resp.GetSignature()) {
			t.Fatalf("gRPC Sign with a token (quic %v): %v", quic, err)
		}
		sg = tokenRequest(t, narrow, &fsm.ReleaseRequest{Key: "app/other", Op: fsm.OpGet, Ephemeral: make([]byte, 32)})
		_, err = gc.Release(metadata.AppendToOutgoingContext(ctx, grpcgw.TokenMetadata, base64.RawURLEncoding.EncodeToString(sg.Token)),
			&keyquorumv1.ReleaseRequest{Request: &keyquorumv1.SignedCommand{Signer: sg.Signer, Payload: sg.Payload}})
		if grpcstatus.Code(err) != codes.PermissionDenied {
			t.Fatalf("gRPC Release beyond the token (quic %v): %v", quic, err)
		}
		if _, err := gc.Release(ctx, &keyquorumv1.ReleaseRequest{Request: &keyquorumv1.SignedCommand{Signer: sg.Signer, Payload: sg.Payload}}); grpcstatus.Code(err) != codes.Unauthenticated {
			t.Fatalf("gRPC Release with neither token nor certificate (quic %v): %v", quic, err)
		}
	}

	// token show lists the chain; revoking the restriction's id refuses
	// the restricted token everywhere and leaves the minted one.
	show := string(keyctl(t, bare, "token", "show", narrow).stdout)
	ids := regexp.MustCompile(`(?m)^  ([0-9a-f]{128})$`).FindAllStringSubmatch(show, -1)
	if len(ids) != 2 || !strings.Contains(show, "bound:\tfalse") {
		t.Fatalf("token show: %s", show)
	}
	c.mustKeyctl(2, "token", "revoke", ids[1][1])
	for i := 1; i <= 3; i++ {
		if r := keyctl(t, app(i), "key", "get", "app/db", "--token", narrow); r.code != exitDenied || !strings.Contains(r.stderr, "revoked") {
			t.Errorf("node %d: the revoked token: %v", i, r)
		}
		if r := keyctl(t, app(i), "key", "get", "app/other", "--token", minted); r.code != 0 || !bytes.Equal(r.stdout, other) {
			t.Errorf("node %d: the token it was restricted from: %v", i, r)
		}
	}
	// A bound on uses holds across nodes: once through node 1, then
	// refused through node 2.
	once := restrict("--key", "app/other", "--max-uses", "1")
	if r := keyctl(t, app(1), "key", "get", "app/other", "--token", once); r.code != 0 || !bytes.Equal(r.stdout, other) {
		t.Fatalf("the one use: %v", r)
	}
	if r := keyctl(t, app(2), "key", "get", "app/other", "--token", once); r.code != exitDenied || !strings.Contains(r.stderr, "token used up") {
		t.Errorf("a second use: %v", r)
	}

	// A bad token is refused with one clear line.
	if r := keyctl(t, app(1), "key", "get", "app/db", "--token", "x.!!"); r.code == 0 {
		t.Errorf("a malformed token: %v", r)
	} else {
		checkOneLineError(t, r)
	}
}

// TestTokenRevokeDestroyCLI: keyctl key revoke and key destroy with a
// token, through REST, by an application with no operator credentials: a
// token without the flag is refused, one with it writes, and every node
// shows the key revoked.
func TestTokenRevokeDestroyCLI(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	f := filepath.Join(dir, "secret")
	if err := os.WriteFile(f, randomSecret(t, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustKeyctl(1, "key", "create", "app/w", "--from-file", f)
	revokeOnly := strings.TrimSpace(string(c.mustKeyctl(1, "token", "create", "--prefix", "app/", "--flags", "revoke", "--ttl", "1h").stdout))
	env := baseEnv()
	for _, k := range []string{"KEYQUORUM_CACERT", "KEYQUORUM_CLUSTER_ID", "KEYQUORUM_CLUSTER_KEY"} {
		env = withVar(env, k, c.envValue(k))
	}
	env = withVar(env, "KEYQUORUM_ADDR", c.addr(2))
	const exitDenied = 5
	if r := keyctl(t, env, "key", "destroy", "app/w", "--token", revokeOnly); r.code != exitDenied {
		t.Fatalf("destroy with a token without the flag: %v", r)
	}
	if r := keyctl(t, env, "key", "revoke", "app/w", "--token", revokeOnly); r.code != 0 {
		t.Fatalf("revoke with the token: %v", r)
	}
	for i := 1; i <= 3; i++ {
		if out := string(c.mustKeyctl(i, "key", "show", "app/w").stdout); !strings.Contains(out, "revoked") {
			t.Errorf("node %d shows: %s", i, out)
		}
	}
}
