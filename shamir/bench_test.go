package shamir

import (
	"crypto/rand"
	"testing"

	"filippo.io/edwards25519"
)

type benchCluster struct {
	nodes []*node
	poly  *PublicPoly
	ct    *Ciphertext
	parts []*Partial
}

func newBenchCluster(b *testing.B, n, th int) *benchCluster {
	b.Helper()
	idx := make([]uint32, n)
	for i := range idx {
		idx[i] = uint32(i + 1)
	}
	nodes := newNodes(b, idx...)
	poly := runDKG(b, nodes, th, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, make([]byte, 64))
	if err != nil {
		b.Fatal(err)
	}
	return &benchCluster{nodes: nodes, poly: poly, ct: ct, parts: partialsFrom(b, nodes, ct.R, testRelease)}
}

func BenchmarkSeal(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	X := c.poly.PublicKey()
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(rand.Reader, X, testInfo, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkComputePartial(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ComputePartial(rand.Reader, c.nodes[0].share, c.ct.R, testRelease); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyPartial(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifyPartial(c.poly, c.ct.R, c.parts[1], testRelease); err != nil {
			b.Fatal(err)
		}
	}
}

func benchOpen(b *testing.B, n, th int) {
	c := newBenchCluster(b, n, th)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(c.poly, c.ct, testInfo, c.parts, testRelease); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen2of3(b *testing.B) { benchOpen(b, 3, 2) }
func BenchmarkOpen3of5(b *testing.B) { benchOpen(b, 5, 3) }

func BenchmarkCombinePoints2(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	pts := map[uint32][]byte{1: c.parts[0].Value, 2: c.parts[1].Value}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CombinePoints(pts, 2); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidatePoint(b *testing.B) {
	p := randomPoint(b).Bytes()
	for b.Loop() {
		if err := ValidatePoint(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewFreshDeal3(b *testing.B) {
	nodes := newNodes(b, 1, 2, 3)
	rs, _ := recipientsOf(nodes)
	for b.Loop() {
		if _, err := NewFreshDeal(rand.Reader, 1, 2, rs, testContext); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenDeal(b *testing.B) {
	nodes := newNodes(b, 1, 2, 3)
	rs, _ := recipientsOf(nodes)
	d, err := NewFreshDeal(rand.Reader, 1, 2, rs, testContext)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := OpenDeal(d, 2, nodes[1].encPriv, testContext); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPointMulKyber and BenchmarkPointMulFilippo compare one
// constant-time variable-base multiplication in each library.
func BenchmarkPointMulKyber(b *testing.B) {
	s, _ := randomScalar(rand.Reader)
	ks := toKyberScalar(s)
	P := toKyberPoint(randomPoint(b))
	R := suite.Point()
	for b.Loop() {
		R.Mul(ks, P)
	}
}

func BenchmarkPointMulFilippo(b *testing.B) {
	s, _ := randomScalar(rand.Reader)
	P := randomPoint(b)
	R := new(edwards25519.Point)
	for b.Loop() {
		R.ScalarMult(s, P)
	}
}

func BenchmarkBaseMulKyber(b *testing.B) {
	s, _ := randomScalar(rand.Reader)
	ks := toKyberScalar(s)
	R := suite.Point()
	for b.Loop() {
		R.Mul(ks, nil)
	}
}

func BenchmarkBaseMulFilippo(b *testing.B) {
	s, _ := randomScalar(rand.Reader)
	R := new(edwards25519.Point)
	for b.Loop() {
		R.ScalarBaseMult(s)
	}
}

// BenchmarkVerifierVerify is VerifyPartial with R and the polynomial
// decoded once (NewVerifier), as a combiner of several partials does.
func BenchmarkVerifierVerify(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	v, err := NewVerifier(c.poly, c.ct.R, testRelease)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(c.parts[1]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifierOpen2of3 is a client's open of a blind release: verify
// two partials and open with them, each proof checked once.
func BenchmarkVerifierOpen2of3(b *testing.B) { benchVerifierOpen(b, (*Verifier).Verify) }

// BenchmarkVerifierProofOpen2of3 is the same with VerifyProof (what
// api.OpenRelease does): one subgroup check, on the combination.
func BenchmarkVerifierProofOpen2of3(b *testing.B) { benchVerifierOpen(b, (*Verifier).VerifyProof) }

func benchVerifierOpen(b *testing.B, verify func(*Verifier, *Partial) (*VerifiedPartial, error)) {
	c := newBenchCluster(b, 3, 2)
	b.ReportAllocs()
	for b.Loop() {
		v, err := NewVerifier(c.poly, c.ct.R, testRelease)
		if err != nil {
			b.Fatal(err)
		}
		var good []*VerifiedPartial
		for _, p := range c.parts[:2] {
			vp, err := verify(v, p)
			if err != nil {
				b.Fatal(err)
			}
			good = append(good, vp)
		}
		if _, err := v.Open(c.ct, testInfo, good); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewVerifier is a combiner's setup for one release: R (checked
// once per process, then the cheap checks only) and the commitments.
func BenchmarkNewVerifier(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewVerifier(c.poly, c.ct.R, testRelease); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProverPartial is a holder's partial on the release path: the
// share ready (NewProver) and the value s_i*R held from an earlier
// release of the key, so only the proof is computed (against
// BenchmarkComputePartial).
func BenchmarkProverPartial(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	pr, err := NewProver(c.nodes[0].share)
	if err != nil {
		b.Fatal(err)
	}
	V, err := pr.Value(c.ct.R)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pr.Partial(rand.Reader, c.ct.R, V, testRelease); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifierBatchOpen2of3 is api.OpenRelease's check and open of
// two partials with their commitments, of shares 1 and 2 and of shares 1
// and 3 in turn (a coordinator of share 1 asks the others in turn):
// both proofs in one batch (VerifyBatch), against
// BenchmarkVerifierProofOpen2of3 and BenchmarkVerifierProofOpen2of3Mixed.
func BenchmarkVerifierBatchOpen2of3(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	parts := proverPartials(b, c.nodes, c.ct.R, testRelease)
	pairs := [][]*Partial{parts[:2], {parts[0], parts[2]}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		v, err := NewVerifier(c.poly, c.ct.R, testRelease)
		if err != nil {
			b.Fatal(err)
		}
		vps, ok := v.VerifyBatch(rand.Reader, pairs[i%2])
		if !ok {
			b.Fatal("the batch failed")
		}
		if _, err := v.Open(c.ct, testInfo, vps); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkVerifierProofOpen2of3Mixed is BenchmarkVerifierProofOpen2of3
// with shares 1 and 2 and shares 1 and 3 in turn.
func BenchmarkVerifierProofOpen2of3Mixed(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	pairs := [][]*Partial{c.parts[:2], {c.parts[0], c.parts[2]}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		v, err := NewVerifier(c.poly, c.ct.R, testRelease)
		if err != nil {
			b.Fatal(err)
		}
		var good []*VerifiedPartial
		for _, p := range pairs[i%2] {
			vp, err := v.VerifyProof(p)
			if err != nil {
				b.Fatal(err)
			}
			good = append(good, vp)
		}
		if _, err := v.Open(c.ct, testInfo, good); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkVerifyBatches100 is a transit caller's check of a batch of 100
// items, two partials each (t = 2), every proof in one batch
// (VerifyBatches), per batch.
func BenchmarkVerifyBatches100(b *testing.B) {
	c := newBenchCluster(b, 3, 2)
	vs := make([]*Verifier, 100)
	ps := make([][]*Partial, 100)
	for i := range vs {
		ctx := []byte{'i', byte(i)}
		var err error
		if vs[i], err = NewVerifier(c.poly, c.ct.R, ctx); err != nil {
			b.Fatal(err)
		}
		ps[i] = proverPartials(b, c.nodes, c.ct.R, ctx)[:2]
	}
	for b.Loop() {
		if _, ok := VerifyBatches(rand.Reader, vs, ps); !ok {
			b.Fatal("the batch failed")
		}
	}
}
