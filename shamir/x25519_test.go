package shamir

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"

	"filippo.io/edwards25519"
)

// x25519Whole is X25519(k, u) the way the quorum computes it, with the
// whole scalar: s = clamp(k)/8, Q = 8*P, u(s*Q).
func x25519Whole(t testing.TB, k, u []byte) ([]byte, error) {
	t.Helper()
	s, err := X25519Scalar(k)
	if err != nil {
		t.Fatal(err)
	}
	Q, err := X25519PeerPoint(u)
	if err != nil {
		return nil, err
	}
	K, err := TransitSharedPoint(s, Q)
	if err != nil {
		t.Fatal(err)
	}
	return X25519Output(K)
}

// rfc7748 are RFC 7748's known answers: section 5.2's two X25519 test
// vectors and section 6.1's Diffie-Hellman (each side's public key from
// its private key, and the shared secret both ways). twist marks the
// second vector of section 5.2, whose u is on the twist: the quorum
// refuses it (no Edwards point), crypto/ecdh gives the RFC's output.
var rfc7748 = []struct {
	name, k, u, out string
	twist           bool
}{
	{"5.2 vector 1", "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
		"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c", "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552", false},
	{"5.2 vector 2", "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
		"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493", "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957", true},
	{"6.1 Alice's public key", "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
		"0900000000000000000000000000000000000000000000000000000000000000", "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", false},
	{"6.1 Bob's public key", "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
		"0900000000000000000000000000000000000000000000000000000000000000", "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", false},
	{"6.1 Alice's shared secret", "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
		"de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", false},
	{"6.1 Bob's shared secret", "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
		"8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", false},
}

// TestX25519KnownAnswers: RFC 7748's known answers, through the mapping
// the quorum uses with the whole scalar.
func TestX25519KnownAnswers(t *testing.T) {
	for _, v := range rfc7748 {
		priv, _ := ecdh.X25519().NewPrivateKey(unhex(t, v.k))
		peer, _ := ecdh.X25519().NewPublicKey(unhex(t, v.u))
		if std, err := priv.ECDH(peer); err != nil || !bytes.Equal(std, unhex(t, v.out)) {
			t.Fatalf("%s: crypto/ecdh gives %x, %v: the vector is mistyped", v.name, std, err)
		}
		got, err := x25519Whole(t, unhex(t, v.k), unhex(t, v.u))
		if v.twist {
			if !errors.Is(err, ErrX25519Twist) {
				t.Errorf("%s: %x, %v; want the twist point refused", v.name, got, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, unhex(t, v.out)) {
			t.Errorf("%s: %x, %v; want %s", v.name, got, err, v.out)
		}
	}
	// The key's X25519 public key from its edwards25519 public key.
	s, _ := X25519Scalar(unhex(t, rfc7748[2].k))
	sc, err := edwards25519.NewScalar().SetCanonicalBytes(s)
	if err != nil {
		t.Fatalf("clamp(k)/8 is not a canonical scalar: %v", err)
	}
	pub, err := X25519PublicKey(new(edwards25519.Point).ScalarBaseMult(sc).Bytes())
	if err != nil || !bytes.Equal(pub, unhex(t, rfc7748[2].out)) {
		t.Fatalf("Alice's X25519 public key from her edwards25519 one: %x, %v", pub, err)
	}
}

// TestX25519MatchesStandardLibrary: for random keys and peers, the
// mapping gives what crypto/ecdh's X25519 gives, or refuses a peer point
// on the twist, which crypto/ecdh would accept.
func TestX25519MatchesStandardLibrary(t *testing.T) {
	onCurve := 0
	for range 64 {
		priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
		peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
		want, err := priv.ECDH(peer.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		got, err := x25519Whole(t, priv.Bytes(), peer.PublicKey().Bytes())
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("X25519: %x, %v; want %x", got, err, want)
		}
		// A random u: on the curve about half the time, on the twist otherwise.
		u := make([]byte, 32)
		rand.Read(u)
		pk, _ := ecdh.X25519().NewPublicKey(u)
		want, werr := priv.ECDH(pk)
		got, err = x25519Whole(t, priv.Bytes(), u)
		switch {
		case errors.Is(err, ErrX25519Twist):
		case err != nil || werr != nil || !bytes.Equal(got, want):
			t.Fatalf("random u %x: %x, %v; want %x, %v", u, got, err, want, werr)
		default:
			onCurve++
		}
	}
	if onCurve == 0 || onCurve == 64 {
		t.Errorf("%d of 64 random u on the curve: the twist check is wrong", onCurve)
	}
}

// TestX25519RefusesBadPeers: u = -1 and twist points (no Edwards point)
// and every low-order point are refused, as are wrong sizes.
func TestX25519RefusesBadPeers(t *testing.T) {
	minusOne := unhex(t, "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	if _, err := X25519PeerPoint(minusOne); !errors.Is(err, ErrX25519Twist) {
		t.Errorf("u = -1: %v", err)
	}
	// u = 2 is on the twist (2^3 + 486662*4 + 2 = 1946658 is not a square mod p).
	two := make([]byte, 32)
	two[0] = 2
	if _, err := X25519PeerPoint(two); !errors.Is(err, ErrX25519Twist) {
		t.Errorf("u = 2: %v", err)
	}
	// The low-order points of RFC 7748's implementations' blocklist
	// (libsodium's): 0, 1, the order-8 points, and p, p+1 (non-canonical 0, 1).
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		if _, err := X25519PeerPoint(unhex(t, h)); !errors.Is(err, ErrX25519LowOrder) {
			t.Errorf("low-order u %s: %v", h, err)
		}
	}
	if _, err := X25519PeerPoint(make([]byte, 31)); err == nil {
		t.Error("a 31-byte u was accepted")
	}
	if _, err := X25519Output(identityPoint.Bytes()); !errors.Is(err, ErrX25519LowOrder) {
		t.Errorf("an all-zero output: %v", err)
	}
}

// FuzzX25519PeerPoint: whatever u a caller sends, the mapping never
// panics, and what it accepts gives crypto/ecdh's X25519 for a fixed key
// (so no u makes a holder multiply a point of the caller's choosing
// other than u's own).
func FuzzX25519PeerPoint(f *testing.F) {
	f.Add(bytes.Repeat([]byte{9}, 1))
	f.Add(make([]byte, 32))
	k := bytes.Repeat([]byte{0x5a}, 32)
	priv, _ := ecdh.X25519().NewPrivateKey(k)
	f.Fuzz(func(t *testing.T, u []byte) {
		Q, err := X25519PeerPoint(u)
		if err != nil {
			return
		}
		pk, err := ecdh.X25519().NewPublicKey(u)
		if err != nil {
			t.Fatalf("u %x accepted here, refused by crypto/ecdh: %v", u, err)
		}
		want, err := priv.ECDH(pk)
		if err != nil {
			t.Fatalf("u %x accepted here; crypto/ecdh: %v", u, err)
		}
		got, err := x25519Whole(t, k, u)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("u %x (Q %x): %x, %v; want %x", u, Q, got, err, want)
		}
	})
}

// BenchmarkX25519PeerPoint is what mapping a peer's u costs each holder
// and the caller per exchanged item, on top of a derivation item's
// partial and proof.
func BenchmarkX25519PeerPoint(b *testing.B) {
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	u := peer.PublicKey().Bytes()
	for b.Loop() {
		if _, err := X25519PeerPoint(u); err != nil {
			b.Fatal(err)
		}
	}
}
