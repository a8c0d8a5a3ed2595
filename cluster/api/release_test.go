package api

import (
	"crypto/rand"
	"encoding/json"
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

func newBlindRelease(tb testing.TB, holders ...uint32) *blindRelease {
	tb.Helper()
	br := &blindRelease{clusterID: "kq-test", name: "app/a", secret: []byte("the secret"), payload: []byte(`{"type":"release"}`)}
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
		part, err := p.Compute(rand.Reader, ct.R, rctx)
		if err != nil {
			tb.Fatal(err)
		}
		plain, err := json.Marshal(part)
		if err != nil {
			tb.Fatal(err)
		}
		sealed, err := shamir.SealX25519(rand.Reader, br.eph.PublicKey(), fsm.PartialSealInfo(rctx, i), plain)
		if err != nil {
			tb.Fatal(err)
		}
		r.Partials = append(r.Partials, SealedPartial{Index: i, Node: "n" + string(rune('0'+i)), R: sealed.R, Sealed: sealed.Sealed})
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
func BenchmarkOpenRelease(b *testing.B) {
	br := newBlindRelease(b, 1, 2)
	cpu0 := cpuTime()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.open(); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, "release", cpu0)
}
