package e2e

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
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

// TestTransitCLI: a transit key created with keyctl on a real 3-node
// cluster (keyd processes) encrypts with keyctl on the client and decrypts
// by quorum through every node; a rotation encrypts with version 2 while
// version 1 still decrypts; rewrap moves a ciphertext to version 2; once
// min_decryption_version is 2 a version-1 ciphertext is denied; a batch
// reports a result per item and fails only its bad items; a data key's
// ciphertext decrypts to its plaintext; key show takes the key's ID; gRPC
// decrypts and derives, signed or with a capability token.
func TestTransitCLI(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	plain := []byte("attack at dawn\n")
	in := filepath.Join(dir, "plain")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	created := string(c.mustKeyctl(1, "transit", "create", "app/orders").stdout)
	if !strings.Contains(created, "no node holds it whole") {
		t.Errorf("transit create printed %q", created)
	}
	ct1 := strings.TrimSpace(string(c.mustKeyctl(1, "transit", "encrypt", "app/orders", "--in", in).stdout))
	if !strings.HasPrefix(ct1, "kq:v1:") {
		t.Fatalf("encrypt printed %q, want kq:v1:...", ct1)
	}
	for i := 1; i <= 3; i++ {
		if out := c.mustKeyctl(i, "transit", "decrypt", "app/orders", ct1).stdout; string(out) != string(plain) {
			t.Fatalf("decrypt through node %d printed %q", i, out)
		}
	}
	c.mustKeyctl(2, "transit", "rotate", "app/orders")
	ct2 := strings.TrimSpace(string(c.mustKeyctl(3, "transit", "encrypt", "app/orders", "--in", in).stdout))
	if !strings.HasPrefix(ct2, "kq:v2:") {
		t.Fatalf("after a rotation encrypt printed %q, want kq:v2:...", ct2)
	}
	rewrapped := strings.TrimSpace(string(c.mustKeyctl(1, "transit", "rewrap", "app/orders", ct1).stdout))
	if !strings.HasPrefix(rewrapped, "kq:v2:") || string(c.mustKeyctl(2, "transit", "decrypt", "app/orders", rewrapped).stdout) != string(plain) {
		t.Fatalf("rewrap printed %q", rewrapped)
	}
	if out := c.mustKeyctl(2, "transit", "decrypt", "app/orders", ct1).stdout; string(out) != string(plain) {
		t.Fatalf("version 1 after the rotation: %q", out)
	}

	// A batch: good items open, bad ones fail alone (exit 1).
	batch := filepath.Join(dir, "batch.json")
	items := []map[string]string{{"ciphertext": ct1}, {"ciphertext": ct2}, {"ciphertext": "kq:v1:bm90IGEgY2lwaGVydGV4dA=="},
		{"ciphertext": ct2[:len(ct2)-4] + "AAA="}}
	b, _ := json.Marshal(items)
	if err := os.WriteFile(batch, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.keyctl(3, "transit", "decrypt", "app/orders", "--batch", batch)
	var res struct {
		BatchResults []struct {
			Plaintext []byte          `json:"plaintext"`
			Error     json.RawMessage `json:"error"`
		} `json:"batch_results"`
	}
	if err := json.Unmarshal(r.stdout, &res); err != nil || r.code != 1 || len(res.BatchResults) != 4 {
		t.Fatalf("batch: %v (%v)", r, err)
	}
	for i, want := range []bool{true, true, false, false} {
		got := res.BatchResults[i]
		if ok := string(got.Plaintext) == string(plain) && got.Error == nil; ok != want {
			t.Errorf("batch item %d: %q %s; want ok %v", i, got.Plaintext, got.Error, want)
		}
	}

	// min_decryption_version: version 1 is denied (exit 5), 2 decrypts.
	c.mustKeyctl(1, "transit", "config", "app/orders", "--min-decryption-version", "2")
	if r := c.keyctl(2, "transit", "decrypt", "app/orders", ct1); r.code != 5 || !strings.Contains(r.stderr, "min_decryption_version") {
		t.Fatalf("a version-1 ciphertext below min_decryption_version: %v", r)
	}
	c.mustKeyctl(3, "transit", "decrypt", "app/orders", ct2)

	// A data key.
	var dk struct {
		Plaintext  []byte `json:"plaintext"`
		Ciphertext string `json:"ciphertext"`
	}
	if err := json.Unmarshal(c.mustKeyctl(1, "transit", "datakey", "app/orders").stdout, &dk); err != nil || len(dk.Plaintext) != 32 {
		t.Fatalf("datakey: %+v %v", dk, err)
	}
	if out := c.mustKeyctl(2, "transit", "decrypt", "app/orders", dk.Ciphertext).stdout; string(out) != string(dk.Plaintext) {
		t.Fatalf("the data key's ciphertext decrypts to %s, not %s", base64.StdEncoding.EncodeToString(out), base64.StdEncoding.EncodeToString(dk.Plaintext))
	}

	// gRPC, over TCP and QUIC: encrypt on the node, decrypt and derive by
	// quorum combined here, with the key's metadata from ShowKey; the
	// quorum calls signed by the operator, and with a capability token and
	// no certificate. A derivation gives the key keyctl derives.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := strings.TrimSpace(string(c.mustKeyctl(1, "token", "create", "--prefix", "app/", "--flags", "decrypt,derive", "--ttl", "1h").stdout))
	deriveCtx := []byte("tenant 7")
	derive := []fsm.TransitDerivation{{Version: 2, Context: deriveCtx}}
	derived := strings.TrimSpace(string(c.mustKeyctl(1, "transit", "derive", "app/orders", "--version", "2",
		"--context", base64.StdEncoding.EncodeToString(deriveCtx)).stdout))
	withToken := func(sg *fsm.Signed) (context.Context, *keyquorumv1.SignedCommand) {
		return metadata.AppendToOutgoingContext(ctx, grpcgw.TokenMetadata, base64.RawURLEncoding.EncodeToString(sg.Token)),
			&keyquorumv1.SignedCommand{Signer: sg.Signer, Payload: sg.Payload}
	}
	for _, quic := range []bool{false, true} {
		gc := keyquorumv1.NewClusterServiceClient(c.grpcConn(2, quic, true))
		shown, err := gc.ShowKey(ctx, &keyquorumv1.ShowKeyRequest{Name: "app/orders"})
		if err != nil || shown.GetKey().GetTransit() == nil || !strings.HasPrefix(shown.GetKey().GetId(), "id:") {
			t.Fatalf("gRPC ShowKey (quic %v): %v %v", quic, shown, err)
		}
		k := &fsm.Key{ID: shown.GetKey().GetId(), Name: "app/orders", Type: fsm.KeyTypeTransit, State: fsm.KeyActive,
			KeyDetail: &fsm.KeyDetail{Transit: &fsm.TransitKey{Cipher: shown.GetKey().GetTransit().GetCipher()}}}
		for _, v := range shown.GetKey().GetTransit().GetVersions() {
			k.Transit().Versions = append(k.Transit().Versions, fsm.TransitVersion{Version: v.GetVersion(),
				Sharing: &fsm.FROSTKey{Threshold: int(v.GetThreshold()), Epoch: v.GetEpoch(), Commits: v.GetCommits()}})
		}
		enc, err := gc.TransitEncrypt(ctx, &keyquorumv1.TransitEncryptRequest{Key: "app/orders", Items: []*keyquorumv1.TransitItem{{Plaintext: plain}}})
		if err != nil || len(enc.GetResults()) != 1 || enc.GetResults()[0].GetError() != "" {
			t.Fatalf("gRPC TransitEncrypt (quic %v): %v %v", quic, enc, err)
		}
		var items []*api.TransitCiphertext
		var points []fsm.TransitPoint
		for _, s := range []string{enc.GetResults()[0].GetCiphertext(), ct2} {
			ct, err := api.ParseTransitCiphertext(s)
			if err != nil {
				t.Fatal(err)
			}
			items, points = append(items, ct), append(points, ct.Point(nil))
		}
		eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
		sg := c.operatorSign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: k.ID, Op: fsm.OpDecrypt,
			Ephemeral: eph.PublicKey().Bytes(), Points: points}})
		dec, err := gc.TransitDecrypt(ctx, &keyquorumv1.TransitDecryptRequest{Request: sg})
		if err != nil {
			t.Fatalf("gRPC TransitDecrypt (quic %v): %v", quic, err)
		}
		rep := &api.TransitDecryptReply{ClusterID: dec.GetClusterId(), Key: dec.GetKey(), Epoch: dec.GetEpoch(), Threshold: int(dec.GetThreshold())}
		for _, p := range dec.GetPartials() {
			rep.Partials = append(rep.Partials, api.SealedPartial{Index: p.GetIndex(), Node: p.GetNode(), R: p.GetR(), Sealed: p.GetSealed()})
		}
		res, err := api.OpenTransitDecrypt(rep, c.envValue("KEYQUORUM_CLUSTER_ID"), k, items, make([][]byte, 2), sg.GetPayload(), eph)
		if err != nil || string(res[0].Plaintext) != string(plain) || string(res[1].Plaintext) != string(plain) {
			t.Fatalf("gRPC decryption (quic %v): %+v, %v", quic, res, err)
		}

		bare := keyquorumv1.NewClusterServiceClient(c.grpcConn(3, quic, false))
		eph, _ = ecdh.X25519().GenerateKey(rand.Reader)
		tsg := tokenRequest(t, tok, &fsm.ReleaseRequest{Key: k.Name, Op: fsm.OpDecrypt, Ephemeral: eph.PublicKey().Bytes(), Points: points[1:]})
		tctx, tcmd := withToken(tsg)
		dec, err = bare.TransitDecrypt(tctx, &keyquorumv1.TransitDecryptRequest{Request: tcmd})
		if err != nil {
			t.Fatalf("gRPC TransitDecrypt with a token (quic %v): %v", quic, err)
		}
		rep = &api.TransitDecryptReply{ClusterID: dec.GetClusterId(), Key: dec.GetKey(), Epoch: dec.GetEpoch(), Threshold: int(dec.GetThreshold())}
		for _, p := range dec.GetPartials() {
			rep.Partials = append(rep.Partials, api.SealedPartial{Index: p.GetIndex(), Node: p.GetNode(), R: p.GetR(), Sealed: p.GetSealed()})
		}
		res, err = api.OpenTransitDecrypt(rep, c.envValue("KEYQUORUM_CLUSTER_ID"), k, items[1:], make([][]byte, 1), tsg.Payload, eph)
		if err != nil || string(res[0].Plaintext) != string(plain) {
			t.Fatalf("gRPC decryption with a token (quic %v): %+v, %v", quic, res, err)
		}

		openDerived := func(what string, der *keyquorumv1.TransitDeriveResponse, err error, payload []byte, eph *ecdh.PrivateKey) {
			t.Helper()
			if err != nil {
				t.Fatalf("gRPC TransitDerive %s (quic %v): %v", what, quic, err)
			}
			rep := &api.TransitDecryptReply{ClusterID: der.GetClusterId(), Key: der.GetKey(), Epoch: der.GetEpoch(), Threshold: int(der.GetThreshold())}
			for _, p := range der.GetPartials() {
				rep.Partials = append(rep.Partials, api.SealedPartial{Index: p.GetIndex(), Node: p.GetNode(), R: p.GetR(), Sealed: p.GetSealed()})
			}
			res, err := api.OpenTransitDerive(rep, c.envValue("KEYQUORUM_CLUSTER_ID"), k, derive, "sha2-256", 32, payload, eph)
			if err != nil || res[0].Error != nil || base64.StdEncoding.EncodeToString(res[0].Plaintext) != derived {
				t.Fatalf("gRPC derivation %s (quic %v): %+v, %v; keyctl derived %s", what, quic, res, err, derived)
			}
		}
		eph, _ = ecdh.X25519().GenerateKey(rand.Reader)
		sg = c.operatorSign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: k.ID, Op: fsm.OpDerive,
			Ephemeral: eph.PublicKey().Bytes(), Derive: derive}})
		der, err := gc.TransitDerive(ctx, &keyquorumv1.TransitDeriveRequest{Request: sg})
		openDerived("signed", der, err, sg.GetPayload(), eph)
		eph, _ = ecdh.X25519().GenerateKey(rand.Reader)
		tsg = tokenRequest(t, tok, &fsm.ReleaseRequest{Key: k.Name, Op: fsm.OpDerive, Ephemeral: eph.PublicKey().Bytes(), Derive: derive})
		tctx, tcmd = withToken(tsg)
		der, err = bare.TransitDerive(tctx, &keyquorumv1.TransitDeriveRequest{Request: tcmd})
		openDerived("with a token", der, err, tsg.Payload, eph)
	}

	// REST, as Vault transit's callers use it: encrypt on the node (one
	// item and a batch with a bad item), a wrapped data key, hash, random.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tlsConfig(true)}, Timeout: time.Minute}
	post := func(path string, body any, out any) int {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := hc.Post("https://"+c.addr(1)+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	var enc api.TransitEncryptReply
	if code := post("/v1/transit/encrypt/app/orders", api.TransitEncryptRequest{Plaintext: plain}, &enc); code != 200 || !strings.HasPrefix(enc.Ciphertext, "kq:v2:") {
		t.Fatalf("REST encrypt: %d %+v", code, enc)
	}
	if out := c.mustKeyctl(3, "transit", "decrypt", "app/orders", enc.Ciphertext).stdout; string(out) != string(plain) {
		t.Fatalf("REST encrypt's ciphertext decrypts to %q", out)
	}
	var batchEnc api.TransitEncryptReply
	post("/v1/transit/encrypt/app/orders", api.TransitEncryptRequest{BatchInput: []api.TransitBatchItem{{Plaintext: plain}, {Plaintext: plain, Context: []byte("not derived")}}}, &batchEnc)
	if len(batchEnc.BatchResults) != 2 || batchEnc.BatchResults[0].Ciphertext == "" || batchEnc.BatchResults[1].Error == nil {
		t.Fatalf("REST batch encrypt: %+v", batchEnc)
	}
	var wrapped api.TransitDataKeyReply
	if code := post("/v1/transit/datakey/wrapped/app/orders", api.TransitEncryptRequest{}, &wrapped); code != 200 || wrapped.Plaintext != nil || wrapped.Ciphertext == "" {
		t.Fatalf("REST wrapped data key: %d %+v", code, wrapped)
	}
	if out := c.mustKeyctl(2, "transit", "decrypt", "app/orders", wrapped.Ciphertext).stdout; len(out) != 32 {
		t.Fatalf("the wrapped data key decrypts to %d bytes", len(out))
	}
	for alg, sum := range map[string]string{"sha2-256": hex.EncodeToString(sha256Sum(plain)), "sha2-512": hex.EncodeToString(sha512Sum(plain))} {
		var h api.TransitHashReply
		if code := post("/v1/transit/hash/"+alg, api.TransitHashRequest{Input: plain}, &h); code != 200 || h.Sum != sum {
			t.Errorf("REST hash %s: %d %q, want %q", alg, code, h.Sum, sum)
		}
	}
	var rnd api.TransitRandomReply
	if code := post("/v1/transit/random/48", nil, &rnd); code != 200 || len(rnd.RandomBytes) != 48 {
		t.Errorf("REST random: %d, %d bytes", code, len(rnd.RandomBytes))
	}
	if code := post("/v1/transit/random/0", nil, nil); code != 400 {
		t.Errorf("REST random of 0 bytes: %d, want 400", code)
	}
	if code := post("/v1/transit/hash/md5", api.TransitHashRequest{Input: plain}, nil); code != 400 {
		t.Errorf("REST hash md5: %d, want 400", code)
	}

	// The key's ID names it in key show.
	show := string(c.mustKeyctl(3, "key", "show", "app/orders").stdout)
	var id string
	for _, line := range strings.Split(show, "\n") {
		if v, ok := strings.CutPrefix(line, "id:"); ok {
			id = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(id, "id:") {
		t.Fatalf("key show printed no ID:\n%s", show)
	}
	if byID := string(c.mustKeyctl(1, "key", "show", id).stdout); !strings.Contains(byID, "name:      app/orders") || !strings.Contains(byID, "never assembled") {
		t.Fatalf("key show %s:\n%s", id, byID)
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func sha512Sum(b []byte) []byte { s := sha512.Sum512(b); return s[:] }
