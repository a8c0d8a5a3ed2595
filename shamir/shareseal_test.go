package shamir

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"filippo.io/edwards25519"
	"github.com/cloudflare/circl/dh/x25519"
)

// shareSealCase is a 2-of-3 cluster key, a secret sealed under it, each
// holder's Prover and value, and a client's ephemeral key.
type shareSealCase struct {
	poly    *PublicPoly
	ct      *Ciphertext
	provers []*Prover
	values  [][]byte
	eph     *X25519Key
}

var shareSealInfo = []byte("release context")

func shareSealInfoOf(index uint32) []byte {
	return append(bytes.Clone(shareSealInfo), byte(index))
}

func newShareSealCase(t testing.TB) *shareSealCase {
	t.Helper()
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, []byte("share seal test"))
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("the secret"))
	if err != nil {
		t.Fatal(err)
	}
	c := &shareSealCase{poly: poly, ct: ct}
	for _, n := range nodes {
		pr, err := NewProver(n.share)
		if err != nil {
			t.Fatal(err)
		}
		V, err := pr.Value(ct.R)
		if err != nil {
			t.Fatal(err)
		}
		c.provers, c.values = append(c.provers, pr), append(c.values, V)
	}
	if c.eph, err = NewX25519Key(rand.Reader); err != nil {
		t.Fatal(err)
	}
	return c
}

// seal is holder i's (0-based) seal of V for c's ciphertext.
func (c *shareSealCase) seal(t testing.TB, i int, V []byte) ShareSeal {
	t.Helper()
	pr := c.provers[i]
	s, err := pr.SealToEphemeral(c.eph.PublicKey(), CiphertextHash(c.ct), shareSealInfoOf(pr.Index()), V)
	if err != nil {
		t.Fatal(err)
	}
	return ShareSeal{Index: pr.Index(), Sealed: s}
}

func (c *shareSealCase) open(seals ...ShareSeal) ([]byte, error) {
	v, err := NewVerifier(c.poly, c.ct.R, nil)
	if err != nil {
		return nil, err
	}
	return v.OpenShareSeals(c.eph, c.ct, testInfo, shareSealInfoOf, seals)
}

// TestShareSealBothSidesAgree: the holder's u((s/8)*8*P_E) is the
// client's X25519(e, u(s*G)) for random shares and keys, and a seal opens
// with the holder's public share.
func TestShareSealBothSidesAgree(t *testing.T) {
	for range 20 {
		s, err := randomScalar(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := NewProver(&Share{Index: 4, Value: s.Bytes()})
		if err != nil {
			t.Fatal(err)
		}
		k, err := NewX25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		Q, err := x25519PeerPoint(k.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		holder, err := pr.sharedWith(Q)
		if err != nil {
			t.Fatal(err)
		}
		Y := new(edwards25519.Point).ScalarBaseMult(s)
		client, ok := x25519DH(&k.priv, Y.BytesMontgomery())
		if !ok || !bytes.Equal(holder, client[:]) {
			t.Fatalf("holder's u(s*E) %x, client's X25519(e, u(Y)) %x", holder, client)
		}
		V := randomPoint(t).Bytes()
		hash := bytes.Repeat([]byte{7}, 32)
		sealed, err := pr.SealToEphemeral(k.PublicKey(), hash, shareSealInfo, V)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.OpenShareSeal(Y.Bytes(), 4, hash, shareSealInfo, sealed)
		if err != nil || !bytes.Equal(got, V) {
			t.Fatalf("open: %x, %v", got, err)
		}
	}
}

// TestShareSealKnownAnswer pins the seal's bytes for a fixed share,
// ephemeral key, value, ciphertext hash and info: the derivation of the
// key (label, order of the bound fields) is part of the protocol.
func TestShareSealKnownAnswer(t *testing.T) {
	var s [32]byte
	s[0] = 7 // the share 7
	pr, err := NewProver(&Share{Index: 2, Value: s[:]})
	if err != nil {
		t.Fatal(err)
	}
	var e, E x25519.Key
	for i := range e {
		e[i] = byte(i + 1)
	}
	x25519.KeyGen(&E, &e)
	V := new(edwards25519.Point).ScalarBaseMult(scalarFromUint32(11)).Bytes()
	sealed, err := pr.SealToEphemeral(E[:], bytes.Repeat([]byte{0xab}, 32), []byte("kat"), V)
	if err != nil {
		t.Fatal(err)
	}
	const want = "5fbdf8f5f37f48ed3d93e514f8473513842f07548a34f091b89fa326e6919e99bbc9edc045a2074c79f60ce34de29fba"
	if got := hex.EncodeToString(sealed); got != want {
		t.Errorf("seal %s, want %s", got, want)
	}
	k := &X25519Key{priv: e, pub: E}
	Yp := new(edwards25519.Point).ScalarBaseMult(scalarFromUint32(7))
	Y := Yp.Bytes()
	// The holder's secret is crypto/ecdh's X25519(e, u(7*G)) too.
	priv, err := ecdh.X25519().NewPrivateKey(e[:])
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ecdh.X25519().NewPublicKey(Yp.BytesMontgomery())
	if err != nil {
		t.Fatal(err)
	}
	want2, err := priv.ECDH(peer)
	if err != nil {
		t.Fatal(err)
	}
	Q, err := x25519PeerPoint(E[:])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pr.sharedWith(Q); err != nil || !bytes.Equal(got, want2) {
		t.Errorf("holder's secret %x, crypto/ecdh's X25519(e, u(Y)) %x", got, want2)
	}
	if got, err := k.OpenShareSeal(Y, 2, bytes.Repeat([]byte{0xab}, 32), []byte("kat"), sealed); err != nil || !bytes.Equal(got, V) {
		t.Errorf("open: %x, %v", got, err)
	}
}

// TestShareSealOpensOnlyForItsBinding: a seal opens only with the
// ephemeral key it was made for, for the index, public share, ciphertext
// hash and info it was made for: a coordinator that moves a seal to
// another index, another ciphertext or another release gets ErrDecrypt.
func TestShareSealOpensOnlyForItsBinding(t *testing.T) {
	c := newShareSealCase(t)
	pr := c.provers[0]
	hash := CiphertextHash(c.ct)
	sealed, err := pr.SealToEphemeral(c.eph.PublicKey(), hash, shareSealInfo, c.values[0])
	if err != nil {
		t.Fatal(err)
	}
	Y1, _ := c.poly.PublicShare(1)
	Y2, _ := c.poly.PublicShare(2)
	if got, err := c.eph.OpenShareSeal(Y1, 1, hash, shareSealInfo, sealed); err != nil || !bytes.Equal(got, c.values[0]) {
		t.Fatalf("the genuine seal: %v", err)
	}
	other, err := NewX25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherCt, err := Seal(rand.Reader, c.poly.PublicKey(), testInfo, []byte("another secret"))
	if err != nil {
		t.Fatal(err)
	}
	sameR := CiphertextHash(&Ciphertext{R: c.ct.R, Sealed: append(bytes.Clone(c.ct.Sealed), 0)})
	tampered := bytes.Clone(sealed)
	tampered[0] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"another ephemeral key": func() ([]byte, error) { return other.OpenShareSeal(Y1, 1, hash, shareSealInfo, sealed) },
		"another index":         func() ([]byte, error) { return c.eph.OpenShareSeal(Y1, 2, hash, shareSealInfo, sealed) },
		"another public share":  func() ([]byte, error) { return c.eph.OpenShareSeal(Y2, 1, hash, shareSealInfo, sealed) },
		"another ciphertext": func() ([]byte, error) {
			return c.eph.OpenShareSeal(Y1, 1, CiphertextHash(otherCt), shareSealInfo, sealed)
		},
		"another sealed, same R": func() ([]byte, error) { return c.eph.OpenShareSeal(Y1, 1, sameR, shareSealInfo, sealed) },
		"another info":           func() ([]byte, error) { return c.eph.OpenShareSeal(Y1, 1, hash, []byte("other"), sealed) },
		"a tampered seal":        func() ([]byte, error) { return c.eph.OpenShareSeal(Y1, 1, hash, shareSealInfo, tampered) },
		"a short seal":           func() ([]byte, error) { return c.eph.OpenShareSeal(Y1, 1, hash, shareSealInfo, sealed[:40]) },
	} {
		if got, err := open(); !errors.Is(err, ErrDecrypt) || got != nil {
			t.Errorf("%s: %x, %v, want ErrDecrypt", name, got, err)
		}
	}
}

// TestShareSealRefusesLowOrderKeys: an ephemeral key of low order would
// make the seal's key known to everyone; the holder refuses it, and a
// key off the curve (the twist) too.
func TestShareSealRefusesLowOrderKeys(t *testing.T) {
	c := newShareSealCase(t)
	hash := CiphertextHash(c.ct)
	for _, h := range x25519LowOrder {
		E, _ := hex.DecodeString(h)
		if s, err := c.provers[0].SealToEphemeral(E, hash, shareSealInfo, c.values[0]); err == nil || s != nil {
			t.Errorf("sealing to the low-order key %s: no error", h)
		}
	}
	twist := make([]byte, 32)
	twist[0] = 2 // u = 2 is on the twist
	if _, err := c.provers[0].SealToEphemeral(twist, hash, shareSealInfo, c.values[0]); !errors.Is(err, ErrX25519Twist) {
		t.Errorf("sealing to a twist point: %v, want ErrX25519Twist", err)
	}
	if _, err := c.provers[0].SealToEphemeral(make([]byte, 31), hash, shareSealInfo, c.values[0]); !errors.Is(err, ErrInvalidPoint) {
		t.Errorf("a 31-byte key: %v, want ErrInvalidPoint", err)
	}
	c.provers[0].Erase()
	if _, err := c.provers[0].SealToEphemeral(c.eph.PublicKey(), hash, shareSealInfo, c.values[0]); !errors.Is(err, ErrInvalidScalar) {
		t.Errorf("an erased prover: %v, want ErrInvalidScalar", err)
	}
}

// TestOpenShareSealsTheTagDecides: t honest seals open the secret; a
// wrong value, or the right one plus a small-order point, opens its seal
// but fails the ciphertext's tag (ErrDecrypt); a seal of another
// ciphertext fails to open (a *ShareSealError naming its index); fewer or
// more than t seals, or a repeated index, are refused.
func TestOpenShareSealsTheTagDecides(t *testing.T) {
	c := newShareSealCase(t)
	for _, pair := range [][2]int{{0, 1}, {1, 2}, {2, 0}} {
		got, err := c.open(c.seal(t, pair[0], c.values[pair[0]]), c.seal(t, pair[1], c.values[pair[1]]))
		if err != nil || string(got) != "the secret" {
			t.Fatalf("holders %v: %q, %v", pair, got, err)
		}
	}
	wrong := randomPoint(t).Bytes()
	V, _ := decodePointNoSubgroup(c.values[1])
	T, _ := new(edwards25519.Point).SetBytes(mustHex(t, torsionHex[5]))
	plusTorsion := new(edwards25519.Point).Add(V, T).Bytes()
	for name, v := range map[string][]byte{"a wrong value": wrong, "the value plus a small-order point": plusTorsion} {
		if got, err := c.open(c.seal(t, 0, c.values[0]), c.seal(t, 1, v)); !errors.Is(err, ErrDecrypt) || got != nil {
			t.Errorf("%s: %q, %v, want ErrDecrypt", name, got, err)
		}
	}
	if got, err := c.open(c.seal(t, 0, c.values[0]), c.seal(t, 1, make([]byte, 32))); !errors.Is(err, ErrInvalidPoint) || got != nil {
		t.Errorf("a value that is no point: %q, %v", got, err)
	}
	otherCt, err := Seal(rand.Reader, c.poly.PublicKey(), testInfo, []byte("another"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.provers[1].SealToEphemeral(c.eph.PublicKey(), CiphertextHash(otherCt), shareSealInfoOf(2), c.values[1])
	if err != nil {
		t.Fatal(err)
	}
	var sse *ShareSealError
	if _, err := c.open(c.seal(t, 0, c.values[0]), ShareSeal{Index: 2, Sealed: s}); !errors.As(err, &sse) || sse.Index != 2 || !errors.Is(err, ErrDecrypt) {
		t.Errorf("a seal of another ciphertext: %v, want a ShareSealError of share 2", err)
	}
	if _, err := c.open(c.seal(t, 0, c.values[0])); !errors.Is(err, ErrNotEnoughPartials) {
		t.Errorf("one seal of 2: %v", err)
	}
	if _, err := c.open(c.seal(t, 0, c.values[0]), c.seal(t, 0, c.values[0])); !errors.Is(err, ErrDuplicateIndex) {
		t.Errorf("the same seal twice: %v", err)
	}
}

// FuzzOpenShareSeal: OpenShareSeal never panics, and what it opens is
// only the genuine seal's value.
func FuzzOpenShareSeal(f *testing.F) {
	c := newShareSealCase(f)
	hash := CiphertextHash(c.ct)
	sealed, err := c.provers[0].SealToEphemeral(c.eph.PublicKey(), hash, shareSealInfo, c.values[0])
	if err != nil {
		f.Fatal(err)
	}
	Y1, _ := c.poly.PublicShare(1)
	f.Add(Y1, uint32(1), hash, sealed)
	f.Add(mustHex(f, torsionHex[2]), uint32(1), hash, sealed)
	f.Add(Y1, uint32(0), hash[:3], sealed[:5])
	f.Fuzz(func(t *testing.T, Y []byte, index uint32, h, s []byte) {
		got, err := c.eph.OpenShareSeal(Y, index, h, shareSealInfo, s)
		if err == nil && (!bytes.Equal(got, c.values[0]) || !bytes.Equal(s, sealed)) {
			t.Fatalf("opened %x from a seal not the genuine one", got)
		}
	})
}

func BenchmarkSealToEphemeral(b *testing.B) {
	c := newShareSealCase(b)
	hash := CiphertextHash(c.ct)
	E := c.eph.PublicKey()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.provers[0].SealToEphemeral(E, hash, shareSealInfo, c.values[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenShareSeals is the client's side of a 2-of-3 release in
// share mode: two seals opened, combined, the secret decrypted.
func BenchmarkOpenShareSeals(b *testing.B) {
	c := newShareSealCase(b)
	seals := []ShareSeal{c.seal(b, 0, c.values[0]), c.seal(b, 1, c.values[1])}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.open(seals...); err != nil {
			b.Fatal(err)
		}
	}
}

// TestShareSealUnderAChosenPointCarriesOnlyItsKey: a requester authorized
// for key A signs a release in share mode whose ephemeral key E is a point
// of its choice, whose discrete logarithm it does not know: key B's R, a
// checkpoint's HashToPoint, the cluster key X, another holder's public
// share Y_j; or one it does know: G (E = 9), or its own key's R (whose
// holders' values it gets anyway). Holder i seals what it seals in every
// release of A, its value s_i*R_A, under a key from u(s_i*E): for E = R_B
// that is u of holder i's value for B, so only a requester that already
// has B's partial opens it, and what it opens is A's value, never
// s_i*R_B; no point the requester can compute from public values (E, Y_i,
// X, R_A, R_B) or from A's values opens it. Where the requester knows E's
// logarithm (G), or where the point s_i*E is public (a checkpoint's
// partial is logged), the seal opens for anyone who sees it, and gives A's
// value again: the requester can publish only its own key's value so.
func TestShareSealUnderAChosenPointCarriesOnlyItsKey(t *testing.T) {
	c := newShareSealCase(t)
	ctB, err := Seal(rand.Reader, c.poly.PublicKey(), testInfo, []byte("key B's secret"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := HashToPoint("keyquorum checkpoint v1", []byte("a checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	pr := c.provers[0]
	Yj := c.provers[1].pub
	ctHash := CiphertextHash(c.ct)
	info := shareSealInfoOf(pr.Index())
	VA := c.values[0]
	VB, err := pr.Value(ctB.R)
	if err != nil {
		t.Fatal(err)
	}
	G := edwards25519.NewGeneratorPoint().Bytes()
	mont := func(enc []byte) []byte {
		P, err := new(edwards25519.Point).SetBytes(enc)
		if err != nil {
			t.Fatal(err)
		}
		return P.BytesMontgomery()
	}
	publicPoints := map[string][]byte{"R_A": c.ct.R, "R_B": ctB.R, "X": c.poly.PublicKey(), "Y_i": pr.pub, "Y_j": Yj, "G": G,
		"the checkpoint point": cp, "V_A (the requester's own value)": VA}
	for _, tc := range []struct {
		what   string
		E      []byte
		public bool // s_i*E is known to the requester or public
	}{
		{"key B's R", ctB.R, false},
		{"a checkpoint's point", cp, true},
		{"the cluster key X", c.poly.PublicKey(), false},
		{"holder j's public share", Yj, false},
		{"the base point G", G, true},
		{"key A's own R", c.ct.R, true},
	} {
		eph := mont(tc.E)
		sealed, err := pr.SealToEphemeral(eph, ctHash, info, VA)
		if err != nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		// The seal's key is u(s_i*E): the test has s_i.
		P, _ := new(edwards25519.Point).SetBytes(tc.E)
		shared := new(edwards25519.Point).ScalarMult(pr.s, P).BytesMontgomery()
		if tc.what == "key B's R" && !bytes.Equal(shared, mont(VB)) {
			t.Fatalf("%s: the seal's secret is not u of holder i's value for key B", tc.what)
		}
		open := func(shared []byte) ([]byte, error) {
			aead, err := shareSealAEAD(shared, eph, pr.pub, pr.Index(), ctHash, info)
			if err != nil {
				t.Fatal(err)
			}
			var nonce [12]byte
			return aead.Open(nil, nonce[:], sealed, nil)
		}
		got, err := open(shared)
		if err != nil || !bytes.Equal(got, VA) {
			t.Fatalf("%s: with u(s_i*E): %v, want key A's value", tc.what, err)
		}
		if bytes.Equal(got, VB) {
			t.Fatalf("%s: the seal carries key B's value", tc.what)
		}
		if tc.public {
			continue
		}
		for name, Q := range publicPoints {
			if _, err := open(mont(Q)); err == nil {
				t.Errorf("%s: the seal opens with u(%s), which the requester has", tc.what, name)
			}
		}
	}
}

// TestShareSealOfAMixedOrderKeyLeaksNoShareBits: a requester whose
// ephemeral key E is its honest point P = clamp(e)*G plus a point T of
// small order, or P's u coordinate with bit 255 set (a non-canonical
// encoding), gets a seal whose key is u(s_i*P), the one it gets for P
// itself, for every T: the holder multiplies 8*P_E by s_i/8, so nothing of
// s_i modulo 8 reaches it. A holder that multiplied P_E by s_i would give
// u(s_i*P + (s_i mod 8)*T), which this test checks differs. The seal
// binds E's bytes as signed, so it opens with the requester's e and those.
func TestShareSealOfAMixedOrderKeyLeaksNoShareBits(t *testing.T) {
	var s *edwards25519.Scalar
	for s == nil || s.Bytes()[0]%8 == 0 {
		var err error
		if s, err = randomScalar(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	pr, err := NewProver(&Share{Index: 5, Value: s.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	Y := new(edwards25519.Point).ScalarBaseMult(s)
	k, err := NewX25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clamped := make([]byte, 64)
	copy(clamped, k.priv[:])
	clamped[0] &= 248
	clamped[31] = clamped[31]&127 | 64
	a, err := edwards25519.NewScalar().SetUniformBytes(clamped)
	if err != nil {
		t.Fatal(err)
	}
	P := new(edwards25519.Point).ScalarBaseMult(a)
	if !bytes.Equal(P.BytesMontgomery(), k.PublicKey()) {
		t.Fatal("clamp(e)*G is not the X25519 public key")
	}
	T8, err := new(edwards25519.Point).SetBytes(mustHex(t, "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"))
	if err != nil {
		t.Fatal(err)
	}
	client, ok := x25519DH(&k.priv, Y.BytesMontgomery())
	if !ok {
		t.Fatal("the client's X25519 failed")
	}
	hash := bytes.Repeat([]byte{9}, 32)
	V := randomPoint(t).Bytes()
	naiveDiffers := false
	T := edwards25519.NewIdentityPoint()
	for k8 := range 8 {
		PT := new(edwards25519.Point).Add(P, T)
		for _, hi := range []bool{false, true} {
			E := PT.BytesMontgomery()
			if hi {
				E[31] |= 0x80
			}
			sealed, err := pr.SealToEphemeral(E, hash, shareSealInfo, V)
			if err != nil {
				t.Fatalf("P + %d*T, bit 255 %v: %v", k8, hi, err)
			}
			aead, err := shareSealAEAD(client[:], E, Y.Bytes(), 5, hash, shareSealInfo)
			if err != nil {
				t.Fatal(err)
			}
			var nonce [12]byte
			if got, err := aead.Open(nil, nonce[:], sealed, nil); err != nil || !bytes.Equal(got, V) {
				t.Fatalf("P + %d*T, bit 255 %v: the seal's key is not u(s_i*P): %v", k8, hi, err)
			}
		}
		naive := new(edwards25519.Point).ScalarMult(s, PT).BytesMontgomery()
		naiveDiffers = naiveDiffers || !bytes.Equal(naive, client[:])
		T.Add(T, T8)
	}
	if !naiveDiffers {
		t.Fatal("s*(P+T) is u(s*P) for every T: the test cannot tell a holder that leaks s mod 8")
	}
}
