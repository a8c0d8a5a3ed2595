package shamir

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"

	"filippo.io/edwards25519"
)

// frostVector is RFC 9591's test vector for FROST(Ed25519, SHA-512), as
// testdata/frost-ed25519-sha512.json transcribes it from the RFC's text.
type frostVector struct {
	Participants []uint32          `json:"participant_list"`
	GroupSecret  string            `json:"group_secret_key"`
	GroupPublic  string            `json:"group_public_key"`
	Message      string            `json:"message"`
	Coefficients []string          `json:"share_polynomial_coefficients"`
	Shares       map[string]string `json:"participant_shares"`
	RoundOne     []struct {
		ID              uint32 `json:"identifier"`
		HidingRand      string `json:"hiding_nonce_randomness"`
		BindingRand     string `json:"binding_nonce_randomness"`
		HidingNonce     string `json:"hiding_nonce"`
		BindingNonce    string `json:"binding_nonce"`
		HidingCommit    string `json:"hiding_nonce_commitment"`
		BindingCommit   string `json:"binding_nonce_commitment"`
		BindingFactorIn string `json:"binding_factor_input"`
		BindingFactor   string `json:"binding_factor"`
	} `json:"round_one"`
	RoundTwo map[string]string `json:"round_two"`
	Sig      string            `json:"sig"`
}

func loadFROSTVector(t *testing.T) *frostVector {
	t.Helper()
	b, err := os.ReadFile("testdata/frost-ed25519-sha512.json")
	if err != nil {
		t.Fatal(err)
	}
	var v frostVector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

// TestFROSTRFC9591Vectors runs RFC 9591's FROST(Ed25519, SHA-512) vector
// step by step: the shares from the dealer's polynomial, the nonces and
// commitments from the given randomness, the binding factors, every
// signature share, the signature, and crypto/ed25519's verdict on it.
func TestFROSTRFC9591Vectors(t *testing.T) {
	v := loadFROSTVector(t)
	secret, err := decodeScalar(mustHex(t, v.GroupSecret))
	if err != nil {
		t.Fatal(err)
	}
	if got := new(edwards25519.Point).ScalarBaseMult(secret).Bytes(); hex.EncodeToString(got) != v.GroupPublic {
		t.Fatalf("group public key %x, want %s", got, v.GroupPublic)
	}
	a1, err := decodeScalar(mustHex(t, v.Coefficients[0]))
	if err != nil {
		t.Fatal(err)
	}
	poly := &PublicPoly{Commits: [][]byte{
		mustHex(t, v.GroupPublic), new(edwards25519.Point).ScalarBaseMult(a1).Bytes(),
	}}
	shares := map[uint32]*Share{}
	for id, hexShare := range v.Shares {
		x, _ := strconv.Atoi(id)
		want := edwards25519.NewScalar().MultiplyAdd(a1, scalarFromUint32(uint32(x)), secret)
		if hex.EncodeToString(want.Bytes()) != hexShare {
			t.Fatalf("share %d: f(%d) = %x, the vector says %s", x, x, want.Bytes(), hexShare)
		}
		shares[uint32(x)] = &Share{Index: uint32(x), Value: mustHex(t, hexShare)}
		if err := poly.VerifyShare(shares[uint32(x)]); err != nil {
			t.Fatal(err)
		}
	}
	msg := mustHex(t, v.Message)
	nonces := map[uint32]*SigningNonces{}
	var commitments []NonceCommitment
	for _, r1 := range v.RoundOne {
		n, err := frostCommitWith(shares[r1.ID], mustHex(t, r1.HidingRand), mustHex(t, r1.BindingRand))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(n.hiding.Bytes()); got != r1.HidingNonce {
			t.Errorf("P%d hiding nonce %s, want %s", r1.ID, got, r1.HidingNonce)
		}
		if got := hex.EncodeToString(n.binding.Bytes()); got != r1.BindingNonce {
			t.Errorf("P%d binding nonce %s, want %s", r1.ID, got, r1.BindingNonce)
		}
		c := n.Commitment()
		if hex.EncodeToString(c.Hiding) != r1.HidingCommit || hex.EncodeToString(c.Binding) != r1.BindingCommit {
			t.Errorf("P%d commitments %x %x, want %s %s", r1.ID, c.Hiding, c.Binding, r1.HidingCommit, r1.BindingCommit)
		}
		nonces[r1.ID] = n
		commitments = append(commitments, c)
	}
	round, err := NewFROSTRound(mustHex(t, v.GroupPublic), msg, commitments)
	if err != nil {
		t.Fatal(err)
	}
	for i, r1 := range v.RoundOne {
		if got := hex.EncodeToString(round.rho[i].Bytes()); got != r1.BindingFactor {
			t.Errorf("P%d binding factor %s, want %s", r1.ID, got, r1.BindingFactor)
		}
		if got := hex.EncodeToString(round.bindingFactorInput(i)); got != r1.BindingFactorIn {
			t.Errorf("P%d binding factor input %s, want %s", r1.ID, got, r1.BindingFactorIn)
		}
	}
	sigShares := map[uint32][]byte{}
	for _, r1 := range v.RoundOne {
		z, err := round.Sign(shares[r1.ID], nonces[r1.ID])
		if err != nil {
			t.Fatal(err)
		}
		if want := v.RoundTwo[strconv.Itoa(int(r1.ID))]; hex.EncodeToString(z) != want {
			t.Errorf("P%d signature share %x, want %s", r1.ID, z, want)
		}
		ps, _ := poly.PublicShare(r1.ID)
		if err := round.VerifyShare(r1.ID, ps, z); err != nil {
			t.Errorf("P%d: %v", r1.ID, err)
		}
		sigShares[r1.ID] = z
	}
	sig, err := round.Aggregate(sigShares)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(sig) != v.Sig {
		t.Fatalf("signature %x, want %s", sig, v.Sig)
	}
	if !ed25519.Verify(mustHex(t, v.GroupPublic), msg, sig) {
		t.Fatal("crypto/ed25519 rejects the vector's signature")
	}
}

// frostSign runs both rounds among signers (all of them honest) and
// returns the signature.
func frostSign(t testing.TB, poly *PublicPoly, signers []*node, msg []byte) []byte {
	t.Helper()
	var commitments []NonceCommitment
	nonces := map[uint32]*SigningNonces{}
	for _, n := range signers {
		sn, err := FROSTCommit(rand.Reader, n.share)
		if err != nil {
			t.Fatal(err)
		}
		nonces[n.index] = sn
		commitments = append(commitments, sn.Commitment())
	}
	round, err := NewFROSTRound(poly.PublicKey(), msg, commitments)
	if err != nil {
		t.Fatal(err)
	}
	shares := map[uint32][]byte{}
	for _, n := range signers {
		z, err := round.Sign(n.share, nonces[n.index])
		if err != nil {
			t.Fatal(err)
		}
		ps, _ := poly.PublicShare(n.index)
		if err := round.VerifyShare(n.index, ps, z); err != nil {
			t.Fatal(err)
		}
		shares[n.index] = z
	}
	sig, err := round.Aggregate(shares)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestFROSTWithDKGKeysVerifiesWithEd25519: a key made by the DKG signs by
// every subset of t holders, before and after a reshare to other members
// with another threshold, and crypto/ed25519 accepts every signature
// under the one public key.
func TestFROSTWithDKGKeysVerifiesWithEd25519(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3, 4, 5)
	poly := runDKG(t, nodes, 3, []byte("frost-test"))
	pk := poly.PublicKey()
	msg := []byte("sign me")
	for _, sub := range subsets(len(nodes), 3) {
		var signers []*node
		for _, i := range sub {
			signers = append(signers, nodes[i])
		}
		sig := frostSign(t, poly, signers, msg)
		if !ed25519.Verify(pk, msg, sig) {
			t.Fatalf("signers %v: crypto/ed25519 rejects the signature", sub)
		}
	}
	next := newNodes(t, 2, 6, 7)
	poly2 := runReshare(t, poly, nodes[:3], next, 2, []byte("frost-test-2"))
	if !bytes.Equal(poly2.PublicKey(), pk) {
		t.Fatal("the reshare changed the public key")
	}
	sig := frostSign(t, poly2, next[1:], msg)
	if !ed25519.Verify(pk, msg, sig) {
		t.Fatal("crypto/ed25519 rejects a signature of the reshared key")
	}
	// The old holders' shares no longer fit the new polynomial.
	ps, _ := poly2.PublicShare(1)
	if err := poly2.VerifyShare(nodes[0].share); err == nil {
		t.Fatalf("node 1's old share matches the new epoch's public share %x", ps)
	}
}

// TestFROSTImportedEd25519Key: an Ed25519 key from crypto/ed25519, dealt
// by its scalar, signs by quorum under its own public key.
func TestFROSTImportedEd25519Key(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Ed25519Scalar(priv)
	if err != nil {
		t.Fatal(err)
	}
	poly, shares, err := DealKey(rand.Reader, s, 2, []uint32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(poly.PublicKey(), pub) {
		t.Fatalf("dealt public key %x, want %x", poly.PublicKey(), pub)
	}
	signers := []*node{{index: 1, share: shares[0]}, {index: 3, share: shares[2]}}
	msg := []byte("imported")
	if sig := frostSign(t, poly, signers, msg); !ed25519.Verify(pub, msg, sig) {
		t.Fatal("crypto/ed25519 rejects the signature of an imported key")
	}
}

// TestFROSTBadShareIsNamed: a signer that sends a wrong share is named by
// VerifyShare, the aggregate refuses, and a new round with another signer
// completes.
func TestFROSTBadShareIsNamed(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, []byte("frost-bad"))
	msg := []byte("m")
	var commitments []NonceCommitment
	nonces := map[uint32]*SigningNonces{}
	for _, n := range nodes[:2] {
		sn, err := FROSTCommit(rand.Reader, n.share)
		if err != nil {
			t.Fatal(err)
		}
		nonces[n.index] = sn
		commitments = append(commitments, sn.Commitment())
	}
	round, err := NewFROSTRound(poly.PublicKey(), msg, commitments)
	if err != nil {
		t.Fatal(err)
	}
	z1, _ := round.Sign(nodes[0].share, nonces[1])
	z2, _ := round.Sign(nodes[1].share, nonces[2])
	bad := edwards25519.NewScalar()
	s2, _ := decodeScalar(z2)
	bad.Add(s2, scalarFromUint32(1))
	ps2, _ := poly.PublicShare(2)
	err = round.VerifyShare(2, ps2, bad.Bytes())
	if !errors.Is(err, ErrBadSignatureShare) || !bytes.Contains([]byte(err.Error()), []byte("from 2")) {
		t.Fatalf("VerifyShare of a wrong share: %v, want ErrBadSignatureShare naming 2", err)
	}
	if _, err := round.Aggregate(map[uint32][]byte{1: z1, 2: bad.Bytes()}); !errors.Is(err, ErrBadSignatureShare) {
		t.Fatalf("Aggregate with a wrong share: %v", err)
	}
	if sig := frostSign(t, poly, []*node{nodes[0], nodes[2]}, msg); !ed25519.Verify(poly.PublicKey(), msg, sig) {
		t.Fatal("the retry without signer 2 does not verify")
	}
}

// TestFROSTNoncesAreUsedOnce: Sign erases the nonces; a second round with
// them is refused, so one nonce pair never signs two messages.
func TestFROSTNoncesAreUsedOnce(t *testing.T) {
	nodes := newNodes(t, 1, 2)
	poly := runDKG(t, nodes, 2, []byte("frost-once"))
	n1, _ := FROSTCommit(rand.Reader, nodes[0].share)
	n2, _ := FROSTCommit(rand.Reader, nodes[1].share)
	cs := []NonceCommitment{n1.Commitment(), n2.Commitment()}
	r1, err := NewFROSTRound(poly.PublicKey(), []byte("one"), cs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r1.Sign(nodes[0].share, n1); err != nil {
		t.Fatal(err)
	}
	r2, _ := NewFROSTRound(poly.PublicKey(), []byte("two"), cs)
	if _, err := r2.Sign(nodes[0].share, n1); !errors.Is(err, ErrNoncesSpent) {
		t.Fatalf("second Sign with the same nonces: %v, want ErrNoncesSpent", err)
	}
}

// TestFROSTRefusesForgedCommitments: a coordinator that lists another
// commitment for a signer than its nonces made, or leaves the signer out,
// gets no share, and the nonces are gone all the same; malformed lists
// are refused before any secret is touched.
func TestFROSTRefusesForgedCommitments(t *testing.T) {
	nodes := newNodes(t, 1, 2)
	poly := runDKG(t, nodes, 2, []byte("frost-forged"))
	pk := poly.PublicKey()
	n1, _ := FROSTCommit(rand.Reader, nodes[0].share)
	n2, _ := FROSTCommit(rand.Reader, nodes[1].share)
	other, _ := FROSTCommit(rand.Reader, nodes[0].share)
	forged := []NonceCommitment{other.Commitment(), n2.Commitment()}
	r, err := NewFROSTRound(pk, []byte("m"), forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sign(nodes[0].share, n1); !errors.Is(err, ErrBadCommitments) {
		t.Fatalf("Sign with a forged commitment: %v, want ErrBadCommitments", err)
	}
	if _, err := r.Sign(nodes[0].share, n1); !errors.Is(err, ErrNoncesSpent) {
		t.Fatalf("the nonces survived a refused Sign: %v", err)
	}
	onlyTwo, _ := NewFROSTRound(pk, []byte("m"), []NonceCommitment{n2.Commitment()})
	if _, err := onlyTwo.Sign(nodes[0].share, other); !errors.Is(err, ErrBadCommitments) {
		t.Fatalf("Sign when left out of the list: %v", err)
	}
	c1, c2 := n2.Commitment(), n2.Commitment()
	c1.Index = 1
	small := make([]byte, 32) // the identity's encoding is 1 followed by zeros
	small[0] = 1
	for name, list := range map[string][]NonceCommitment{
		"unsorted":  {c2, c1},
		"duplicate": {c2, c2},
		"index 0":   {{Index: 0, Hiding: c2.Hiding, Binding: c2.Binding}},
		"identity":  {{Index: 2, Hiding: small, Binding: c2.Binding}},
		"short":     {{Index: 2, Hiding: c2.Hiding[:31], Binding: c2.Binding}},
		"empty":     {},
	} {
		if _, err := NewFROSTRound(pk, []byte("m"), list); !errors.Is(err, ErrBadCommitments) {
			t.Errorf("%s: %v, want ErrBadCommitments", name, err)
		}
	}
}

// FuzzFROSTRound: any commitment list and share either is refused or
// verifies as NewFROSTRound and VerifyShare say, without panicking.
func FuzzFROSTRound(f *testing.F) {
	f.Add([]byte("m"), uint32(1), make([]byte, 32), make([]byte, 32), make([]byte, 32))
	f.Fuzz(func(t *testing.T, msg []byte, index uint32, hiding, binding, z []byte) {
		pk := edwards25519.NewGeneratorPoint().Bytes()
		r, err := NewFROSTRound(pk, msg, []NonceCommitment{{Index: index, Hiding: hiding, Binding: binding}})
		if err != nil {
			return
		}
		if r.VerifyShare(index, pk, z) == nil {
			// z*G = D + rho*E + c*G: possible only if the fuzzer found z.
			if _, err := r.Aggregate(map[uint32][]byte{index: z}); err != nil {
				t.Fatalf("a share that verifies does not aggregate: %v", err)
			}
		}
	})
}

// BenchmarkFROSTSign is one whole FROST(Ed25519) signature by 2 of 3
// holders on one core: both holders' commitments and shares, the
// coordinator's check of each share against the holder's public share,
// aggregation and crypto/ed25519's verification.
func BenchmarkFROSTSign(b *testing.B) {
	nodes := newNodes(b, 1, 2, 3)
	poly := runDKG(b, nodes, 2, []byte("bench"))
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		frostSign(b, poly, nodes[:2], msg)
	}
}

// BenchmarkFROSTHolder is one holder's part of a signature: its
// commitment and its share.
func BenchmarkFROSTHolder(b *testing.B) {
	nodes := newNodes(b, 1, 2, 3)
	poly := runDKG(b, nodes, 2, []byte("bench"))
	other, _ := FROSTCommit(rand.Reader, nodes[1].share)
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		n, err := FROSTCommit(rand.Reader, nodes[0].share)
		if err != nil {
			b.Fatal(err)
		}
		r, err := NewFROSTRound(poly.PublicKey(), msg, []NonceCommitment{n.Commitment(), other.Commitment()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Sign(nodes[0].share, n); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSealedShareOpensOnlyForItsNode: a dealt share sealed to a node opens
// with that node's key, index and context and matches the polynomial;
// another node's key, another index or context, or a flipped bit fail.
func TestSealedShareOpensOnlyForItsNode(t *testing.T) {
	nodes := newNodes(t, 1, 2)
	s, _ := randomScalar(rand.Reader)
	poly, shares, err := DealKey(rand.Reader, s.Bytes(), 2, []uint32{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := SealShare(rand.Reader, nodes[0].encPub, shares[0], []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenShare(nodes[0].encPriv, sealed, 1, []byte("ctx"), poly)
	if err != nil || !bytes.Equal(got.Value, shares[0].Value) {
		t.Fatalf("OpenShare: %v", err)
	}
	flipped := bytes.Clone(sealed)
	flipped[40] ^= 1
	for name, try := range map[string]func() error{
		"other key":     func() error { _, err := OpenShare(nodes[1].encPriv, sealed, 1, []byte("ctx"), poly); return err },
		"other index":   func() error { _, err := OpenShare(nodes[0].encPriv, sealed, 2, []byte("ctx"), poly); return err },
		"other context": func() error { _, err := OpenShare(nodes[0].encPriv, sealed, 1, []byte("cty"), poly); return err },
		"tampered":      func() error { _, err := OpenShare(nodes[0].encPriv, flipped, 1, []byte("ctx"), poly); return err },
	} {
		if err := try(); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: %v, want ErrDecrypt", name, err)
		}
	}
	other, _, _ := DealKey(rand.Reader, s.Bytes(), 2, []uint32{1, 2})
	if _, err := OpenShare(nodes[0].encPriv, sealed, 1, []byte("ctx"), other); !errors.Is(err, ErrBadShare) {
		t.Errorf("a share off the polynomial: %v, want ErrBadShare", err)
	}
}
