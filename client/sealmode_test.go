package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/token"
)

// fakeRelease is a node that answers blind releases of one key of a 2-of-3
// cluster key, with holders 1 and 2, in the seal mode each request signed;
// holder 2 lies when lying is set: in share mode its value carries a
// small-order point, in proof mode it is the value of another point.
type fakeRelease struct {
	t       testing.TB
	poly    *shamir.PublicPoly
	provers []*shamir.Prover
	ct      *shamir.Ciphertext
	secret  []byte

	mu       sync.Mutex
	lying    bool
	spoiling bool // the coordinator spoils holder 2's share seal, and relays proof mode as it is
	requests []*fsm.ReleaseRequest
	nonces   map[string]bool
}

const fakeClusterID = "c-fake"

func newFakeRelease(t testing.TB) *fakeRelease {
	t.Helper()
	a0, a1 := randomScalar(t), randomScalar(t)
	G := edwards25519.NewGeneratorPoint()
	poly := &shamir.PublicPoly{Commits: [][]byte{
		new(edwards25519.Point).ScalarMult(a0, G).Bytes(), new(edwards25519.Point).ScalarMult(a1, G).Bytes()}}
	f := &fakeRelease{t: t, poly: poly, secret: []byte("the fake's secret"), nonces: map[string]bool{}}
	for i := uint32(1); i <= 2; i++ {
		x, _ := edwards25519.NewScalar().SetCanonicalBytes(append([]byte{byte(i)}, make([]byte, 31)...))
		s := edwards25519.NewScalar().MultiplyAdd(a1, x, a0)
		pr, err := shamir.NewProver(&shamir.Share{Index: i, Value: s.Bytes()})
		if err != nil {
			t.Fatal(err)
		}
		f.provers = append(f.provers, pr)
	}
	var err error
	if f.ct, err = shamir.Seal(rand.Reader, poly.PublicKey(), fsm.SealInfo(fakeClusterID, "db/a"), f.secret); err != nil {
		t.Fatal(err)
	}
	return f
}

func randomScalar(t testing.TB) *edwards25519.Scalar {
	b := make([]byte, 64)
	rand.Read(b)
	s, err := edwards25519.NewScalar().SetUniformBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fakeRelease) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var sg fsm.Signed
	var cmd fsm.Command
	if json.NewDecoder(r.Body).Decode(&sg) != nil || json.Unmarshal(sg.Payload, &cmd) != nil || cmd.Release == nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req := cmd.Release
	f.mu.Lock()
	f.requests = append(f.requests, req)
	if f.nonces[string(cmd.Nonce)] {
		f.t.Errorf("a nonce used twice")
	}
	f.nonces[string(cmd.Nonce)] = true
	lying, spoiling := f.lying, f.spoiling
	f.mu.Unlock()
	sr := &api.SealedRelease{ClusterID: fakeClusterID, Key: req.Key, Version: 1, Epoch: 1, Threshold: 2,
		Poly: f.poly.Commits, R: f.ct.R, Sealed: f.ct.Sealed}
	rctx := fsm.ReleaseContext(fakeClusterID, req.Key, 1, 1, sg.Payload)
	for _, pr := range f.provers {
		i := pr.Index()
		V, err := pr.Value(f.ct.R)
		if err != nil {
			f.t.Fatal(err)
		}
		sp := api.SealedPartial{Index: i, Node: fmt.Sprintf("n%d", i)}
		if req.Seal == fsm.SealShare {
			if lying && i == 2 {
				Vp, _ := new(edwards25519.Point).SetBytes(V)
				T, _ := new(edwards25519.Point).SetBytes([]byte{0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
					0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05})
				V = Vp.Add(Vp, T).Bytes()
			}
			sp.Sealed, err = pr.SealToEphemeral(req.Ephemeral, shamir.CiphertextHash(f.ct), fsm.PartialSealInfo(rctx, i), V)
			if spoiling && i == 2 && err == nil {
				sp.Sealed[0] ^= 1
			}
		} else {
			if lying && i == 2 {
				_, other, _ := shamir.GenerateEncryptionKey(rand.Reader)
				V, _ = pr.Value(other)
			}
			var p *shamir.Partial
			if p, err = pr.Partial(rand.Reader, f.ct.R, V, rctx); err == nil {
				plain, _ := json.Marshal(p)
				var ct *shamir.Ciphertext
				if ct, err = shamir.SealX25519(rand.Reader, req.Ephemeral, fsm.PartialSealInfo(rctx, i), plain); err == nil {
					sp.R, sp.Sealed = ct.R, ct.Sealed
				}
			}
		}
		if err != nil {
			f.t.Fatal(err)
		}
		sr.Partials = append(sr.Partials, sp)
	}
	json.NewEncoder(w).Encode(sr)
}

func (f *fakeRelease) client(t testing.TB) *Client {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	return &Client{base: srv.URL, http: srv.Client(), creds: &Credentials{Key: key, OperatorID: fsm.PrincipalID(pub),
		ClusterID: fakeClusterID, ClusterKey: f.poly.Commits[0]}}
}

func (f *fakeRelease) seen() []*fsm.ReleaseRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fsm.ReleaseRequest(nil), f.requests...)
}

// TestReleaseInShareModeFallsBackToProofs: a client asks for share mode
// and gets the secret through honest holders in one request. When a
// holder's share-sealed value is wrong (a small-order point added), the
// release does not open; the client makes it again with proofs (a new
// request: new nonce, new ephemeral key), whose error names that holder
// alone, and makes every release after with proofs.
func TestReleaseInShareModeFallsBackToProofs(t *testing.T) {
	ctx := context.Background()
	f := newFakeRelease(t)
	c := f.client(t)
	got, err := c.Get(ctx, "db/a")
	if err != nil || string(got) != string(f.secret) {
		t.Fatalf("an honest release in share mode: %q, %v", got, err)
	}
	if reqs := f.seen(); len(reqs) != 1 || reqs[0].Seal != fsm.SealShare || c.proofMode.Load() {
		t.Fatalf("want one request in share mode, got %d (proof mode %v)", len(reqs), c.proofMode.Load())
	}

	f.mu.Lock()
	f.lying = true
	f.mu.Unlock()
	_, err = c.Get(ctx, "db/a")
	if err == nil {
		t.Fatal("the client opened a release with a lying holder")
	}
	if msg := err.Error(); !strings.Contains(msg, `partial of share 2 (node "n2")`) || !strings.Contains(msg, "rejected 1 of") {
		t.Errorf("the error %q does not name holder 2 alone", msg)
	}
	if errors.Is(err, api.ErrShareMode) {
		t.Errorf("the error of the proof-mode retry is the share mode's: %v", err)
	}
	reqs := f.seen()
	if len(reqs) != 3 || reqs[1].Seal != fsm.SealShare || reqs[2].Seal != "" || string(reqs[1].Ephemeral) == string(reqs[2].Ephemeral) {
		t.Fatalf("want the share-mode release, then one with proofs and a new ephemeral key; got %d requests", len(reqs))
	}
	if !c.proofMode.Load() {
		t.Fatal("the client did not switch to proof mode")
	}

	f.mu.Lock()
	f.lying = false
	f.mu.Unlock()
	if got, err := c.Get(ctx, "db/a"); err != nil || string(got) != string(f.secret) {
		t.Fatalf("an honest release after: %q, %v", got, err)
	}
	if reqs := f.seen(); len(reqs) != 4 || reqs[3].Seal != "" {
		t.Fatalf("the release after the fallback is not in proof mode")
	}
}

// TestTokenReleaseInShareModeFallsBackToProofs: a token client's Get
// asks for share mode, and when it does not open releases again with
// proofs, naming the lying holder, and keeps to proofs after.
func TestTokenReleaseInShareModeFallsBackToProofs(t *testing.T) {
	ctx := context.Background()
	f := newFakeRelease(t)
	c := newFakeTokenClient(t, f)
	if got, err := c.Get(ctx, "db/a"); err != nil || string(got) != string(f.secret) {
		t.Fatalf("an honest release in share mode: %q, %v", got, err)
	}
	f.mu.Lock()
	f.lying = true
	f.mu.Unlock()
	if _, err := c.Get(ctx, "db/a"); err == nil || !strings.Contains(err.Error(), `partial of share 2 (node "n2")`) {
		t.Fatalf("a lying holder: %v, want it named", err)
	}
	f.mu.Lock()
	f.lying = false
	f.mu.Unlock()
	if got, err := c.Get(ctx, "db/a"); err != nil || string(got) != string(f.secret) {
		t.Fatalf("an honest release after: %q, %v", got, err)
	}
	var modes []string
	for _, r := range f.seen() {
		modes = append(modes, r.Seal)
	}
	if want := []string{fsm.SealShare, fsm.SealShare, "", ""}; !slices.Equal(modes, want) {
		t.Fatalf("seal modes %q, want %q", modes, want)
	}
}

// TestShareModeDowngradeIsReported: a coordinator that spoils one seal of
// every release in share mode, and relays releases with proofs as they
// are, pushes the client into proof mode for good (by design: share mode
// cannot say who lied). The secret still comes, through the release made
// again with proofs; the client keeps the share-mode failure, naming the
// seal and its node, for its operator to see (keyctl prints it on
// stderr), and a client that never fell back reports none. The same for
// a token client.
func TestShareModeDowngradeIsReported(t *testing.T) {
	ctx := context.Background()
	f := newFakeRelease(t)
	c := f.client(t)
	if got, err := c.Get(ctx, "db/a"); err != nil || string(got) != string(f.secret) || c.ShareModeFailure() != nil {
		t.Fatalf("an honest release in share mode: %q, %v, share-mode failure %v", got, err, c.ShareModeFailure())
	}
	f.mu.Lock()
	f.spoiling = true
	f.mu.Unlock()
	got, err := c.Get(ctx, "db/a")
	if err != nil || string(got) != string(f.secret) {
		t.Fatalf("the release made again with proofs: %q, %v", got, err)
	}
	failure := c.ShareModeFailure()
	if !errors.Is(failure, api.ErrShareMode) || !strings.Contains(failure.Error(), `partial of share 2 (node "n2")`) {
		t.Fatalf("the client's share-mode failure %v, want api.ErrShareMode naming share 2", failure)
	}
	if reqs := f.seen(); len(reqs) != 3 || reqs[1].Seal != fsm.SealShare || reqs[2].Seal != "" {
		t.Fatalf("want the spoiled release in share mode, then one with proofs; got %d requests", len(reqs))
	}

	tc := newFakeTokenClient(t, f)
	if tc.ShareModeFailure() != nil {
		t.Fatal("a new token client reports a share-mode failure")
	}
	if got, err := tc.Get(ctx, "db/a"); err != nil || string(got) != string(f.secret) {
		t.Fatalf("the token client's release made again with proofs: %q, %v", got, err)
	}
	if failure := tc.ShareModeFailure(); !errors.Is(failure, api.ErrShareMode) || !strings.Contains(failure.Error(), `node "n2"`) {
		t.Fatalf("the token client's share-mode failure %v, want api.ErrShareMode naming n2", failure)
	}
}

// BenchmarkShareModeDowngrade measures what a coordinator that spoils
// share mode costs a client (and its two holders, here in the fake): an
// honest release in share mode, one in proof mode (where the client stays
// after a fallback), and a new client's first release through the
// spoiling coordinator (share mode, then the release made again with
// proofs: what every keyctl process pays). Wall time and CPU on one
// machine, loopback HTTPS.
func BenchmarkShareModeDowngrade(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name      string
		spoiling  bool
		proofMode bool
		fresh     bool
	}{
		{"share", false, false, false},
		{"proof", false, true, false},
		{"spoiled-first-release", true, false, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFakeRelease(b)
			f.spoiling = bc.spoiling
			c := f.client(b)
			c.proofMode.Store(bc.proofMode)
			for b.Loop() {
				if bc.fresh {
					c.failure.Store(nil)
					c.proofMode.Store(false)
				}
				if _, err := c.Get(ctx, "db/a"); err != nil {
					b.Fatal(err)
				}
				f.mu.Lock()
				f.requests, f.nonces = nil, map[string]bool{}
				f.mu.Unlock()
			}
		})
	}
}

// newFakeTokenClient is a token client of f, over TLS, with a token of a
// new operator that may decrypt db/a for an hour.
func newFakeTokenClient(t *testing.T, f *fakeRelease) *TokenClient {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	op := fsm.PrincipalID(pub)
	tok, err := token.Mint(op, key, token.Scope{Keys: []string{"db/a"}, Flags: []string{token.FlagDecrypt}, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	return &TokenClient{base: srv.URL, http: srv.Client(), clusterID: fakeClusterID, pin: f.poly.Commits[0], operator: op, token: tok}
}
