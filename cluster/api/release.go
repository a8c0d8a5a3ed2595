package api

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// SealedRelease is a blind release: what the coordinating node relays for
// a release request that carries an ephemeral key (an operator's or a
// machine's). Every share holder sealed its partial, with its DLEQ proof,
// to that key; the node relays them with the key's ciphertext and the
// epoch's public polynomial, and never holds what opens them. The client
// opens it with Open.
type SealedRelease = vocab.UnlockReply

// SealedPartial is a holder's partial (the JSON of a shamir.Partial)
// sealed to the request's ephemeral X25519 key with shamir.SealX25519,
// under fsm.PartialSealInfo. Node names the holder, for the client's errors.
type SealedPartial = vocab.SealedPartial

// ErrShareMode says a release in share mode (fsm.SealShare) did not open:
// a seal that does not open with its holder's public share, a value that
// is not a point, or a combination the key's ciphertext's AEAD tag
// refuses. Share mode has no proofs, so it cannot say who lied: the
// client makes the release again in proof mode (a new signed request,
// nonce and ephemeral key), whose proofs name the holder or the
// coordinator at fault, and stays in proof mode from then on.
var ErrShareMode = errors.New("the release in share mode does not open (a holder or the coordinator lied; a release with proofs names which)")

// OpenRelease checks a blind release r and decrypts it: the release must be of key
// name in cluster clusterID, and its public polynomial's constant term
// must be pin, the cluster public key the client pinned. The request
// whose signed payload is payload chose how its partials are sealed
// (fsm.ReleaseRequest.Seal): with proofs (proof mode, the default) or
// with the holders' shares (share mode). The error never carries key
// material.
//
// Proof mode: a polynomial the node forged with that constant term gets
// no valid proof (fsm/checkpoint.go argues it), so t partials whose
// proofs verify come from t holders of the pinned key. Every partial must
// open with ephPriv and carry a valid proof. A partial that fails is
// named in the error, by share index and node, whether or not t others
// passed: a holder or the coordinator lied. The proofs are what stops the
// coordinator there: it relays R and the sealed key and knows the
// ephemeral public key, so it could seal made-up partials that combine
// to r'*X for an R' = r'*G of its own and a secret of its choice sealed
// under it.
//
// Share mode (openShareMode): each holder sealed its value s_i*R alone,
// with a key derived from s_i*E that only it and this client can compute
// (the coordinator knows E and Y_i = s_i*G only: CDH), bound to the
// key's ciphertext as the holder's state had it. Of the t seals opened,
// at least one is an honest holder's even under a polynomial the
// coordinator forged with the pinned constant term (it can know the
// discrete logarithm of at most t-1 of its public shares; t would give
// the cluster key's), so a ciphertext of the coordinator's making fails
// that seal; with the real ciphertext, made by an honest client at
// create, a wrong combination gives the AEAD a key nobody knows, and
// its tag fails. Any failure is ErrShareMode, and the caller makes the
// release again in proof mode to name the liar.
func OpenRelease(r *SealedRelease, clusterID, name string, pin, payload []byte, ephPriv *shamir.X25519Key) ([]byte, error) {
	if r.Key != name {
		return nil, fmt.Errorf("the release is of key %q, not %q", r.Key, name)
	}
	if r.ClusterID != clusterID {
		return nil, fmt.Errorf("the release is from cluster %q, not the pinned %q", r.ClusterID, clusterID)
	}
	poly := &shamir.PublicPoly{Commits: r.Poly}
	if err := validatePoly(poly); err != nil {
		return nil, fmt.Errorf("public polynomial: %w", err)
	}
	t := poly.Threshold()
	if r.Threshold != t {
		return nil, fmt.Errorf("threshold %d does not match the polynomial's %d", r.Threshold, t)
	}
	if len(pin) == 0 || subtle.ConstantTimeCompare(poly.Commits[0], pin) != 1 {
		return nil, errors.New("the node sent a public polynomial that is not for the pinned cluster public key: refusing its release")
	}
	rctx := fsm.ReleaseContext(r.ClusterID, name, r.Version, r.Epoch, payload)
	v, err := shamir.NewVerifier(poly, r.R, rctx)
	if err != nil {
		return nil, fmt.Errorf("the release's ciphertext: %w", err)
	}
	if sealMode(payload) == fsm.SealShare {
		return openShareMode(r, name, v, rctx, t, ephPriv)
	}
	// The partials are opened one after the other, on the caller's
	// goroutine: a goroutine each cost the client more CPU (their starts,
	// their stacks' growth, the scheduler's wakeups) than the one X25519
	// it could overlap at one client saved in time, and a client under
	// load has no core to spare for it.
	//
	// Any partial that fails fails the release, so the subgroup checks of
	// the values of the first t, the ones Open combines when all pass,
	// are left to Open, which makes one for all of them (VerifyProof);
	// when it fails, each is checked on its own to name the one at fault.
	// The first t's proofs are checked at once (VerifyBatch) when their
	// holders sent the commitments; when that fails, or one did not,
	// each is checked on its own, which decides and names the ones at
	// fault. Partials after the first t get every check, each on its own.
	parts := make([]*shamir.Partial, len(r.Partials))
	checked := make([]*shamir.VerifiedPartial, len(r.Partials))
	errs := make([]error, len(r.Partials))
	for i := range r.Partials {
		parts[i], errs[i] = openPartial(&r.Partials[i], ephPriv, rctx)
		if errs[i] == nil && i >= t {
			checked[i], errs[i] = v.Verify(parts[i])
		}
	}
	first := min(t, len(r.Partials))
	batched := false
	if !slices.ContainsFunc(errs[:first], func(err error) bool { return err != nil }) {
		var vps []*shamir.VerifiedPartial
		if vps, batched = v.VerifyBatch(rand.Reader, parts[:first]); batched {
			copy(checked, vps)
		}
	}
	if !batched {
		for i := range first {
			if errs[i] == nil {
				checked[i], errs[i] = v.VerifyProof(parts[i])
			}
		}
	}
	var good []*shamir.VerifiedPartial
	seen := map[uint32]bool{}
	for i := range r.Partials {
		if errs[i] == nil && seen[checked[i].Index()] {
			errs[i] = errors.New("a second partial for the same share")
		}
		if errs[i] == nil {
			seen[checked[i].Index()] = true
			good = append(good, checked[i])
		}
	}
	if err := rejection(r.Partials, errs); err != nil {
		return nil, err
	}
	if len(good) < t {
		return nil, fmt.Errorf("%d partials, %d needed", len(good), t)
	}
	secret, err := v.Open(&shamir.Ciphertext{R: r.R, Sealed: r.Sealed}, fsm.SealInfo(r.ClusterID, name), good)
	if errors.Is(err, shamir.ErrInvalidPoint) {
		for i, p := range parts[:first] {
			if p != nil {
				_, errs[i] = v.Verify(p)
			}
		}
		if rerr := rejection(r.Partials, errs); rerr != nil {
			return nil, rerr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening the secret with verified partials: %w", err)
	}
	return secret, nil
}

// rejection names each partial of ps whose errs entry is not nil, with
// its node; nil when none is.
func rejection(ps []SealedPartial, errs []error) error {
	var rejected []string
	for i, err := range errs {
		if err != nil {
			rejected = append(rejected, fmt.Sprintf("partial of share %d (node %q): %v", ps[i].Index, ps[i].Node, err))
		}
	}
	if len(rejected) == 0 {
		return nil
	}
	return fmt.Errorf("rejected %d of %d partials: %s", len(rejected), len(ps), strings.Join(rejected, "; "))
}

// each runs f(0) ... f(n-1) on up to GOMAXPROCS goroutines and returns
// when all have returned.
func each(n int, f func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// lastValid is the last public polynomial validatePoly accepted: a client
// releases many times at one epoch, and the full check of every
// commitment costs as much as verifying a partial.
var lastValid atomic.Pointer[[][]byte]

// validatePoly is poly.Validate, skipped when poly is byte for byte the
// last polynomial that passed it.
func validatePoly(poly *shamir.PublicPoly) error {
	if last := lastValid.Load(); last != nil && slices.EqualFunc(*last, poly.Commits, bytes.Equal) {
		return nil
	}
	if err := poly.Validate(); err != nil {
		return err
	}
	commits := make([][]byte, len(poly.Commits))
	for i, c := range poly.Commits {
		commits[i] = slices.Clone(c)
	}
	lastValid.Store(&commits)
	return nil
}

// openPartial opens one holder's sealed partial.
func openPartial(sp *SealedPartial, ephPriv *shamir.X25519Key, rctx []byte) (*shamir.Partial, error) {
	if sp.Index == 0 {
		return nil, errors.New("share index 0")
	}
	pt, err := ephPriv.Open(&shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}, fsm.PartialSealInfo(rctx, sp.Index))
	if err != nil {
		return nil, fmt.Errorf("does not open with the request's ephemeral key: %w", err)
	}
	defer clear(pt)
	var p shamir.Partial
	if err := json.Unmarshal(pt, &p); err != nil {
		return nil, fmt.Errorf("is not a partial: %v", err)
	}
	if p.Index != sp.Index {
		return nil, fmt.Errorf("says it is of share %d", p.Index)
	}
	return &p, nil
}

// sealMode is the seal mode of the release request whose signed payload
// is payload: what this client signed.
func sealMode(payload []byte) string {
	var cmd struct {
		Release struct {
			Seal string `json:"seal"`
		} `json:"release"`
	}
	if json.Unmarshal(payload, &cmd) != nil {
		return ""
	}
	return cmd.Release.Seal
}

// openShareMode is OpenRelease's share mode: the first t seals, opened
// with the polynomial's public shares and the hash of the relayed
// ciphertext, combined, and the key's ciphertext decrypted (its AEAD tag
// decides). Any failure wraps ErrShareMode, naming the seal (index and
// node) when one did not open.
func openShareMode(r *SealedRelease, name string, v *shamir.Verifier, rctx []byte, t int, ephPriv *shamir.X25519Key) ([]byte, error) {
	if len(r.Partials) < t {
		return nil, fmt.Errorf("%d partials, %d needed", len(r.Partials), t)
	}
	seals := make([]shamir.ShareSeal, t)
	for i := range t {
		sp := &r.Partials[i]
		if len(sp.R) != 0 {
			return nil, fmt.Errorf("%w: the partial of share %d (node %q) is not share-sealed", ErrShareMode, sp.Index, sp.Node)
		}
		seals[i] = shamir.ShareSeal{Index: sp.Index, Sealed: sp.Sealed}
	}
	info := func(index uint32) []byte { return fsm.PartialSealInfo(rctx, index) }
	secret, err := v.OpenShareSeals(ephPriv, &shamir.Ciphertext{R: r.R, Sealed: r.Sealed}, fsm.SealInfo(r.ClusterID, name), info, seals)
	if err != nil {
		var sse *shamir.ShareSealError
		if errors.As(err, &sse) {
			for _, sp := range r.Partials[:t] {
				if sp.Index == sse.Index {
					return nil, fmt.Errorf("%w: the partial of share %d (node %q): %v", ErrShareMode, sp.Index, sp.Node, sse.Err)
				}
			}
		}
		return nil, fmt.Errorf("%w: %v", ErrShareMode, err)
	}
	return secret, nil
}
