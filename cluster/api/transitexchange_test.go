package api

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// x25519TestKey is an x25519 key dealt 2-of-3 from the X25519 private
// key priv, and its shares.
func x25519TestKey(t testing.TB, priv []byte) (*fsm.Key, []*shamir.Share) {
	t.Helper()
	s, err := X25519PrivateScalar(priv)
	if err != nil {
		t.Fatal(err)
	}
	poly, shares, err := shamir.DealKey(rand.Reader, s, 2, []uint32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	fk := &fsm.FROSTKey{Threshold: 2, Epoch: 1, Commits: poly.Commits}
	return &fsm.Key{ID: "id:0123456789abcdef0123456789abcdef", Name: "dh/a", Type: fsm.KeyTypeX25519, Version: 1, State: fsm.KeyActive,
		KeyDetail: &fsm.KeyDetail{Transit: &fsm.TransitKey{MinDecryptionVersion: 1, Versions: []fsm.TransitVersion{{Version: 1, Sharing: fk}}}}}, shares
}

// exchangeAnswer is holder sh's sealed answer to an exchange request
// with payload for items, as a holder makes it; lie replaces its
// partials with another point.
func exchangeAnswer(t testing.TB, k *fsm.Key, sh *shamir.Share, eph *ecdh.PrivateKey, payload []byte, items []fsm.TransitPoint, lie bool) SealedPartial {
	t.Helper()
	ans := make([]TransitItemPartial, len(items))
	for i, it := range items {
		Q, err := shamir.X25519PeerPoint(it.Point)
		if err != nil {
			ans[i].Error = &Error{Kind: KindInvalid, Message: err.Error()}
			continue
		}
		p, err := shamir.ComputePartial(rand.Reader, sh, Q, TransitDecryptContext("c", k.Name, 1, payload, i))
		if err != nil {
			t.Fatal(err)
		}
		if lie {
			p.Value = k.Transit().Latest().Sharing.Commits[0]
		}
		ans[i].Partial = p
	}
	b, _ := json.Marshal(ans)
	sealed, err := shamir.SealX25519(rand.Reader, eph.PublicKey().Bytes(), fsm.PartialSealInfo(TransitDecryptContext("c", k.Name, 1, payload, -1), sh.Index), b)
	if err != nil {
		t.Fatal(err)
	}
	return SealedPartial{Index: sh.Index, Node: "n", R: sealed.R, Sealed: sealed.Sealed}
}

func unhexT(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpenTransitExchangeKnownAnswers: a key dealt from RFC 7748
// section 6.1's Alice's private key shows her public key, and holders'
// answers for Bob's public key combine to their shared secret; section
// 5.2's first vector too; a twist u fails alone; a lying holder is
// named.
func TestOpenTransitExchangeKnownAnswers(t *testing.T) {
	alice := unhexT(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	k, shares := x25519TestKey(t, alice)
	pub, err := X25519PublicKey(k, 1)
	if want := unhexT(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"); err != nil || !bytes.Equal(pub, want) {
		t.Fatalf("Alice's public key: %x, %v; want %x", pub, err, want)
	}
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	payload := []byte("signed request")
	twist := unhexT(t, "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493")
	items := []fsm.TransitPoint{
		{Version: 1, Point: unhexT(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")},
		{Version: 1, Point: twist},
		{Version: 1, Point: make([]byte, 32)},
	}
	r := &TransitDecryptReply{ClusterID: "c", Key: k.Name, Epoch: 1, Threshold: 2,
		Partials: []SealedPartial{exchangeAnswer(t, k, shares[0], eph, payload, items, false), exchangeAnswer(t, k, shares[2], eph, payload, items, false)}}
	res, err := OpenTransitExchange(r, "c", k, items, payload, eph)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhexT(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"); res[0].Error != nil || !bytes.Equal(res[0].Plaintext, want) {
		t.Errorf("the shared secret: %x, %v; want %x", res[0].Plaintext, res[0].Error, want)
	}
	for i := 1; i < 3; i++ {
		if res[i].Error == nil || res[i].Error.Kind != KindInvalid || res[i].Plaintext != nil {
			t.Errorf("item %d (a twist or low-order u): %+v; want invalid", i, res[i])
		}
	}
	// RFC 7748 5.2, vector 1.
	k, shares = x25519TestKey(t, unhexT(t, "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"))
	items = items[:1]
	items[0].Point = unhexT(t, "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
	r.Partials = []SealedPartial{exchangeAnswer(t, k, shares[1], eph, payload, items, false), exchangeAnswer(t, k, shares[2], eph, payload, items, false)}
	res, err = OpenTransitExchange(r, "c", k, items, payload, eph)
	if want := unhexT(t, "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"); err != nil || !bytes.Equal(res[0].Plaintext, want) {
		t.Errorf("RFC 7748 5.2 vector 1: %+v, %v; want %x", res, err, want)
	}
	r.Partials[0] = exchangeAnswer(t, k, shares[1], eph, payload, items, true)
	_, err = OpenTransitExchange(r, "c", k, items, payload, eph)
	if bad, ok := err.(BadAnswers); !ok || len(bad) != 1 || bad[2] == "" {
		t.Fatalf("a lying holder: %v; want share 2 named", err)
	}
	// A transit key does not exchange, an x25519 key does not encrypt.
	tk, _ := transitTestKey(t)
	if _, err := OpenTransitExchange(r, "c", tk, items, payload, eph); err == nil {
		t.Error("a transit key's reply opened as an exchange")
	}
	if _, err := TransitEncrypt(rand.Reader, k, []byte("x"), nil); KindOf(err) != KindInvalid {
		t.Errorf("encrypting to an x25519 key: %v; want invalid", err)
	}
}

// FuzzOpenTransitExchange: an exchange's reply is untrusted as a
// decryption's is: opening whatever it holds never panics and never
// yields a shared secret from answers that are not the holders'.
func FuzzOpenTransitExchange(f *testing.F) {
	k, _ := x25519TestKey(f, bytes.Repeat([]byte{7}, 32))
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	seed, _ := json.Marshal(TransitDecryptReply{ClusterID: "c", Key: "dh/a", Epoch: 1, Threshold: 2,
		Partials: []SealedPartial{{Index: 1, R: make([]byte, 32), Sealed: make([]byte, 40)}, {Index: 2, R: eph.PublicKey().Bytes(), Sealed: []byte("x")}}})
	f.Add(seed, []byte{9})
	f.Fuzz(func(t *testing.T, b, u []byte) {
		var r TransitDecryptReply
		if json.Unmarshal(b, &r) != nil {
			return
		}
		items := []fsm.TransitPoint{{Version: 1, Point: append(bytes.Clone(u), make([]byte, 32)...)[:32]}}
		res, err := OpenTransitExchange(&r, "c", k, items, []byte("payload"), eph)
		if err == nil && res[0].Plaintext != nil {
			t.Fatalf("a made-up reply gave the shared secret %x", res[0].Plaintext)
		}
	})
}
