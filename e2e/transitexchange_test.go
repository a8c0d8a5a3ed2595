package e2e

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	grpcgw "github.com/keyquorum/keyquorum/gateway/grpc"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// TestTransitExchangeCLI: keyctl against keyd processes. An x25519 key
// imported from RFC 7748 section 6.1's Alice's private key shows her
// X25519 public key (transit import, key show) and gives the RFC's shared
// secret with Bob's public key through every node, and to an application
// with a token for flag exchange (not one for derive), by keyctl and by
// gRPC TransitExchange with no client certificate; a created one
// exchanges with a peer drawn here as crypto/ecdh does on the peer's
// side; a twist u is refused; the key neither encrypts nor derives.
func TestTransitExchangeCLI(t *testing.T) {
	c := startCluster(t, 3)
	keyFile := filepath.Join(t.TempDir(), "alice")
	if err := os.WriteFile(keyFile, []byte("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	alicePub := b64hex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	out := string(c.mustKeyctl(1, "transit", "import", "dh/alice", "--type", "x25519", "--key-file", keyFile).stdout)
	if !strings.Contains(out, alicePub) {
		t.Fatalf("transit import printed %q, want Alice's public key %s", out, alicePub)
	}
	if show := string(c.mustKeyctl(2, "key", "show", "dh/alice").stdout); !strings.Contains(show, "X25519 public key "+alicePub) {
		t.Fatalf("key show:\n%s\nwant the X25519 public key %s", show, alicePub)
	}
	shared := b64hex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
	for i := 1; i <= 3; i++ {
		got := strings.TrimSpace(string(c.mustKeyctl(i, "transit", "exchange", "dh/alice", "--peer-public", b64hex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")).stdout))
		if got != shared {
			t.Fatalf("through node %d: %s, want RFC 7748's shared secret %s", i, got, shared)
		}
	}
	// An application with a token for flag exchange, the pin and the
	// key's metadata (POST /v1/token/transit/exchange); a derive token is
	// refused.
	meta := filepath.Join(t.TempDir(), "alice.json")
	aliceKey, aliceMeta := c.keyMetadata("dh/alice")
	if err := os.WriteFile(meta, aliceMeta, 0o600); err != nil {
		t.Fatal(err)
	}
	exchange := strings.TrimSpace(string(c.mustKeyctl(1, "token", "create", "--key", "dh/alice", "--flags", "exchange", "--ttl", "1h").stdout))
	derive := strings.TrimSpace(string(c.mustKeyctl(1, "token", "create", "--key", "dh/alice", "--flags", "derive", "--ttl", "1h").stdout))
	app := baseEnv()
	for _, k := range []string{"KEYQUORUM_CACERT", "KEYQUORUM_CLUSTER_ID", "KEYQUORUM_CLUSTER_KEY"} {
		app = withVar(app, k, c.envValue(k))
	}
	app = withVar(app, "KEYQUORUM_ADDR", c.addr(2))
	bob := b64hex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
	if r := keyctl(t, app, "transit", "exchange", "dh/alice", "--peer-public", bob, "--token", exchange, "--key-file", meta); r.code != 0 || strings.TrimSpace(string(r.stdout)) != shared {
		t.Fatalf("an exchange token: %v, want %s", r, shared)
	}
	if r := keyctl(t, app, "transit", "exchange", "dh/alice", "--peer-public", bob, "--token", derive, "--key-file", meta); r.code != 5 {
		t.Fatalf("a derive token exchanging: %v, want exit 5 (denied)", r)
	}
	// The same over gRPC, with the exchange token in the call's metadata
	// and no client certificate, combined here.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bobU, _ := base64.StdEncoding.DecodeString(bob)
	peers := []fsm.TransitPoint{{Version: aliceKey.Transit().Latest().Version, Point: bobU}}
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	tsg := tokenRequest(t, exchange, &fsm.ReleaseRequest{Key: "dh/alice", Op: fsm.OpExchange, Ephemeral: eph.PublicKey().Bytes(), Points: peers})
	gctx := metadata.AppendToOutgoingContext(ctx, grpcgw.TokenMetadata, base64.RawURLEncoding.EncodeToString(tsg.Token))
	grep, err := keyquorumv1.NewClusterServiceClient(c.grpcConn(3, false, false)).TransitExchange(gctx,
		&keyquorumv1.TransitExchangeRequest{Request: &keyquorumv1.SignedCommand{Signer: tsg.Signer, Payload: tsg.Payload}})
	if err != nil {
		t.Fatalf("gRPC TransitExchange with a token: %v", err)
	}
	res, err := api.OpenTransitExchange(grpcTransitReply(grep), c.envValue("KEYQUORUM_CLUSTER_ID"), aliceKey, peers, tsg.Payload, eph)
	if err != nil || res[0].Error != nil || base64.StdEncoding.EncodeToString(res[0].Plaintext) != shared {
		t.Fatalf("gRPC exchange: %+v, %v; want RFC 7748's shared secret %s", res, err, shared)
	}
	// A created key, against a peer's crypto/ecdh.
	out = string(c.mustKeyctl(1, "transit", "create", "dh/new", "--type", "x25519").stdout)
	_, pubB64, ok := strings.Cut(strings.TrimSpace(out), "X25519 public key ")
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	if !ok || err != nil {
		t.Fatalf("transit create printed %q", out)
	}
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	ours, _ := ecdh.X25519().NewPublicKey(pub)
	want, err := peer.ECDH(ours)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(c.mustKeyctl(3, "transit", "exchange", "dh/new", "--peer-public", base64.StdEncoding.EncodeToString(peer.PublicKey().Bytes())).stdout))
	if got != base64.StdEncoding.EncodeToString(want) {
		t.Fatalf("the exchange gave %s; the peer computes %x", got, want)
	}
	// RFC 7748 5.2's second vector's u is on the twist.
	if r := c.keyctl(2, "transit", "exchange", "dh/alice", "--peer-public", b64hex(t, "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493")); r.code == 0 || !strings.Contains(r.stderr, "twist") {
		t.Fatalf("a twist point: %v", r)
	}
	if r := c.keyctl(1, "transit", "encrypt", "dh/alice", "--in", keyFile); r.code == 0 {
		t.Fatalf("encrypting to an x25519 key: %v", r)
	}
	if r := c.keyctl(1, "transit", "derive", "dh/alice", "--context", "Yw=="); r.code == 0 {
		t.Fatalf("deriving with an x25519 key: %v", r)
	}
}

func b64hex(t *testing.T, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}
