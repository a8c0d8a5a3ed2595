package api

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// blindRelease is a key dealt 2 of 3, its secret sealed under the cluster
// key, and the sealed release the holders make for one request: what a
// client's OpenRelease takes.
type blindRelease struct {
	clusterID, name string
	secret, pin     []byte
	payload         []byte
	eph             *shamir.X25519Key
	release         *SealedRelease
}

// newBlindRelease is a release in proof mode: each holder's partial, with
// its proof, sealed to the client's ephemeral key (shamir.SealX25519).
func newBlindRelease(tb testing.TB, holders ...uint32) *blindRelease {
	tb.Helper()
	return newRelease(tb, []byte(`{"type":"release"}`), func(p *shamir.Prover, ct *shamir.Ciphertext, rctx []byte, eph *shamir.X25519Key) SealedPartial {
		part, err := p.Compute(rand.Reader, ct.R, rctx)
		if err != nil {
			tb.Fatal(err)
		}
		plain, err := json.Marshal(part)
		if err != nil {
			tb.Fatal(err)
		}
		sealed, err := shamir.SealX25519(rand.Reader, eph.PublicKey(), fsm.PartialSealInfo(rctx, p.Index()), plain)
		if err != nil {
			tb.Fatal(err)
		}
		return SealedPartial{R: sealed.R, Sealed: sealed.Sealed}
	}, holders...)
}

// newRelease is a release of a 2-of-3 key whose request's signed payload
// is payload, with a partial of each of holders, made by answer.
func newRelease(tb testing.TB, payload []byte, answer func(p *shamir.Prover, ct *shamir.Ciphertext, rctx []byte, eph *shamir.X25519Key) SealedPartial, holders ...uint32) *blindRelease {
	tb.Helper()
	br := &blindRelease{clusterID: "kq-test", name: "app/a", secret: []byte("the secret"), payload: payload}
	poly, shares, err := shamir.DealKey(rand.Reader, make32(tb), 2, []uint32{1, 2, 3})
	if err != nil {
		tb.Fatal(err)
	}
	br.pin = poly.Commits[0]
	ct, err := shamir.Seal(rand.Reader, poly.PublicKey(), fsm.SealInfo(br.clusterID, br.name), br.secret)
	if err != nil {
		tb.Fatal(err)
	}
	if br.eph, err = shamir.NewX25519Key(rand.Reader); err != nil {
		tb.Fatal(err)
	}
	r := &SealedRelease{ClusterID: br.clusterID, Key: br.name, Version: 1, Epoch: 1, Threshold: 2, Poly: poly.Commits, R: ct.R, Sealed: ct.Sealed}
	rctx := fsm.ReleaseContext(br.clusterID, br.name, 1, 1, br.payload)
	for _, i := range holders {
		p, err := shamir.NewProver(shares[i-1])
		if err != nil {
			tb.Fatal(err)
		}
		sp := answer(p, ct, rctx, br.eph)
		sp.Index, sp.Node = i, "n"+string(rune('0'+i))
		r.Partials = append(r.Partials, sp)
	}
	br.release = r
	return br
}

// make32 is a random scalar, reduced: its last byte is cleared.
func make32(tb testing.TB) []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	b[31] = 0
	return b
}

func (br *blindRelease) open() ([]byte, error) {
	return OpenRelease(br.release, br.clusterID, br.name, br.pin, br.payload, br.eph)
}

func TestOpenReleaseOpensTwoOfThree(t *testing.T) {
	for _, holders := range [][]uint32{{1, 2}, {1, 3}, {2, 3}, {1, 2, 3}} {
		br := newBlindRelease(t, holders...)
		got, err := br.open()
		if err != nil || string(got) != string(br.secret) {
			t.Errorf("holders %v: %q, %v", holders, got, err)
		}
	}
}

// BenchmarkOpenRelease is a client's side of a blind release of a key
// dealt 2 of 3, once it has the answer: open the two sealed partials,
// check their proofs, combine and decrypt. cpu-s is per second of the
// process's CPU time.
func BenchmarkOpenRelease(b *testing.B) { benchOpen(b, newBlindRelease(b, 1, 2)) }

// benchOpen times br's opening, as OpenRelease's benchmarks report it.
func benchOpen(b *testing.B, br *blindRelease) {
	cpu0 := cpuTime()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.open(); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, "release", cpu0)
}

// shareModePayload is a signed release payload in share mode, as far as
// OpenRelease reads it.
var shareModePayload = []byte(`{"type":"release","release":{"key":"app/a","op":"get","seal":"share"}}`)

// newShareModeRelease is newBlindRelease in share mode: each holder's
// value sealed with its share (shamir.Prover.SealToEphemeral).
func newShareModeRelease(tb testing.TB, holders ...uint32) *blindRelease {
	tb.Helper()
	return newRelease(tb, shareModePayload, func(p *shamir.Prover, ct *shamir.Ciphertext, rctx []byte, eph *shamir.X25519Key) SealedPartial {
		V, err := p.Value(ct.R)
		if err != nil {
			tb.Fatal(err)
		}
		sealed, err := p.SealToEphemeral(eph.PublicKey(), shamir.CiphertextHash(ct), fsm.PartialSealInfo(rctx, p.Index()), V)
		if err != nil {
			tb.Fatal(err)
		}
		return SealedPartial{Sealed: sealed}
	}, holders...)
}

// TestOpenReleaseShareMode: a release in share mode opens with any two
// holders; a seal moved to another index, a proof-mode partial in its
// place, or the ciphertext's sealed bytes changed fail with ErrShareMode
// (the client's cue to release again with proofs), the seal named when
// one does not open.
func TestOpenReleaseShareMode(t *testing.T) {
	for _, holders := range [][]uint32{{1, 2}, {1, 3}, {2, 3}, {1, 2, 3}} {
		br := newShareModeRelease(t, holders...)
		got, err := br.open()
		if err != nil || string(got) != string(br.secret) {
			t.Errorf("holders %v: %q, %v", holders, got, err)
		}
	}
	br := newShareModeRelease(t, 1, 2)
	moved := *br.release
	moved.Partials = []SealedPartial{br.release.Partials[0], br.release.Partials[1]}
	moved.Partials[1].Index = 3
	if _, err := OpenRelease(&moved, br.clusterID, br.name, br.pin, br.payload, br.eph); !errors.Is(err, ErrShareMode) || !strings.Contains(err.Error(), `share 3 (node "n2")`) {
		t.Errorf("a seal moved to another index: %v", err)
	}
	proofs := newBlindRelease(t, 1, 2)
	mixed := *br.release
	mixed.Partials = []SealedPartial{br.release.Partials[0], proofs.release.Partials[1]}
	if _, err := OpenRelease(&mixed, br.clusterID, br.name, br.pin, br.payload, br.eph); !errors.Is(err, ErrShareMode) || !strings.Contains(err.Error(), "not share-sealed") {
		t.Errorf("a proof-mode partial: %v", err)
	}
	tampered := *br.release
	tampered.Sealed = append([]byte(nil), br.release.Sealed...)
	tampered.Sealed[len(tampered.Sealed)-1] ^= 1
	if _, err := OpenRelease(&tampered, br.clusterID, br.name, br.pin, br.payload, br.eph); !errors.Is(err, ErrShareMode) {
		t.Errorf("the ciphertext's sealed bytes changed: %v", err)
	}
	if _, err := OpenRelease(&tampered, br.clusterID, br.name, br.pin, []byte(`{"type":"release"}`), br.eph); err == nil || errors.Is(err, ErrShareMode) {
		t.Errorf("share-mode seals for a request in proof mode: %v, want a refusal of proof mode", err)
	}
}

// FuzzOpenReleaseShareMode: OpenRelease in share mode never panics on
// what the coordinator relays, and what it opens is the secret.
func FuzzOpenReleaseShareMode(f *testing.F) {
	br := newShareModeRelease(f, 1, 2)
	p := br.release.Partials
	f.Add(p[0].Index, p[0].Sealed, p[1].Index, p[1].Sealed, br.release.R, br.release.Sealed)
	f.Add(uint32(0), p[0].Sealed[:5], uint32(2), p[1].Sealed, br.release.R[:31], []byte{})
	f.Fuzz(func(t *testing.T, i1 uint32, s1 []byte, i2 uint32, s2, R, sealed []byte) {
		r := *br.release
		r.R, r.Sealed = R, sealed
		r.Partials = []SealedPartial{{Index: i1, Sealed: s1}, {Index: i2, Sealed: s2}}
		got, err := OpenRelease(&r, br.clusterID, br.name, br.pin, br.payload, br.eph)
		if err == nil && string(got) != string(br.secret) {
			t.Fatalf("opened %q, not the secret", got)
		}
	})
}

// BenchmarkOpenReleaseShareMode is BenchmarkOpenRelease in share mode:
// open the two share seals, combine and decrypt.
func BenchmarkOpenReleaseShareMode(b *testing.B) { benchOpen(b, newShareModeRelease(b, 1, 2)) }
