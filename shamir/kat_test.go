package shamir

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"filippo.io/edwards25519"
)

// detReader is a deterministic byte stream: SHA-256(seed || counter) blocks.
type detReader struct {
	seed []byte
	ctr  uint64
	buf  []byte
}

func (r *detReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			h := sha256.New()
			h.Write(r.seed)
			_ = binary.Write(h, binary.BigEndian, r.ctr)
			r.ctr++
			r.buf = h.Sum(nil)
		}
		k := copy(p[n:], r.buf)
		r.buf = r.buf[k:]
		n += k
	}
	return n, nil
}

// katPoly is f(x) = a0 + a1 x with fixed coefficients.
func katPoly(t testing.TB) (*PublicPoly, []*Share) {
	a0, _ := decodeScalar(mustHex(t, "0a00000000000000000000000000000000000000000000000000000000000001"))
	a1, _ := decodeScalar(mustHex(t, "0b00000000000000000000000000000000000000000000000000000000000002"))
	poly := &PublicPoly{Commits: [][]byte{
		new(edwards25519.Point).ScalarBaseMult(a0).Bytes(),
		new(edwards25519.Point).ScalarBaseMult(a1).Bytes(),
	}}
	var shares []*Share
	for _, x := range []uint32{1, 2, 3} {
		v := edwards25519.NewScalar().MultiplyAdd(a1, scalarFromUint32(x), a0)
		shares = append(shares, &Share{Index: x, Value: v.Bytes()})
	}
	return poly, shares
}

// Pinned outputs. Ciphertexts live in the replicated state for years: if
// one of these changes, stored secrets may no longer open. Change them only
// with a format version bump.
const (
	katPublicKey = "6ecd12d0a3eac2c1ab55ab0259fef753b274654d5ed797ccb1b76785d3908b04"
	katR         = "f6a688a663f4bf8a4f17d7a43e6a0439553f61d5653cf747f619c2cf76b76bfb"
	katSealed    = "1d431a1c79697c81a6a6ecab062a0267ff3d06df1acac6106fac6b0836d552cb46b06220f772d8d2"
	katPartial1  = "57513c56bb71b9ac9a803c463b0f74231078352a073a2c22161133f4e0d8319fea208665fb540bdda7496c3bc0cab2a63410defa2f1d378f45860095ebeda7037a50b7e37001e540da7bd165a8d454f4a6e763e22ca06b5ee58447f3da6aac02"
	katDealHash  = "d25e352ff83fa60ff22dfdd13e062ed8b5b9594ebe1f3f637e90d78c17080bfe"
)

func TestKnownAnswers(t *testing.T) {
	// RFC 8032 section 7.1, TEST 1: the point encoding is Ed25519's.
	seed := mustHex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	wantPub := "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
	if got := hex.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)); got != wantPub {
		t.Fatalf("crypto/ed25519 disagrees with RFC 8032: %s", got)
	}
	es, _ := new(edwards25519.Scalar).SetBytesWithClamping(hashSeed(seed))
	if got, _ := suite.Point().Mul(toKyberScalar(es), nil).MarshalBinary(); hex.EncodeToString(got) != wantPub {
		t.Fatalf("kyber public key %x, want RFC 8032 %s", got, wantPub)
	}

	poly, shares := katPoly(t)
	if err := poly.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, s := range shares {
		if err := poly.VerifyShare(s); err != nil {
			t.Fatal(err)
		}
	}
	check := func(name, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	check("public key", hex.EncodeToString(poly.PublicKey()), katPublicKey)

	msg := []byte("known answer")
	ct, err := Seal(&detReader{seed: []byte("seal")}, poly.PublicKey(), testInfo, msg)
	if err != nil {
		t.Fatal(err)
	}
	check("R", hex.EncodeToString(ct.R), katR)
	check("Sealed", hex.EncodeToString(ct.Sealed), katSealed)

	p1, err := ComputePartial(&detReader{seed: []byte("partial")}, shares[0], ct.R, testRelease)
	if err != nil {
		t.Fatal(err)
	}
	check("partial 1", hex.EncodeToString(bytes.Join([][]byte{p1.Value, p1.Challenge, p1.Response}, nil)), katPartial1)

	// The pinned ciphertext opens with any two shares.
	pinned := &Ciphertext{R: mustHex(t, katR), Sealed: mustHex(t, katSealed)}
	for _, pair := range [][2]int{{0, 1}, {1, 2}, {2, 0}} {
		ps := partialsFrom(t, []*node{{index: shares[pair[0]].Index, share: shares[pair[0]]}, {index: shares[pair[1]].Index, share: shares[pair[1]]}}, pinned.R, testRelease)
		got, err := Open(poly, pinned, testInfo, ps, testRelease)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("pinned ciphertext with shares %v: %v", pair, err)
		}
	}

	// A deal from fixed randomness.
	priv := mustHex(t, "0c00000000000000000000000000000000000000000000000000000000000003")
	pub, err := EncryptionPublicKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewReshareDeal(&detReader{seed: []byte("deal")}, shares[0], 2, []Recipient{{Index: 5, EncPub: pub}, {Index: 9, EncPub: pub}}, testContext)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_ = binary.Write(h, binary.BigEndian, d.Dealer)
	for _, c := range d.Commits {
		h.Write(c)
	}
	for _, s := range d.Shares {
		_ = binary.Write(h, binary.BigEndian, s.Index)
		h.Write(s.Ciphertext)
	}
	check("deal hash", hex.EncodeToString(h.Sum(nil)), katDealHash)
	if err := VerifyReshareDeal(d, poly, 2, []uint32{5, 9}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []uint32{5, 9} {
		if _, err := OpenDeal(d, x, priv, testContext); err != nil {
			t.Fatal(err)
		}
	}
}
