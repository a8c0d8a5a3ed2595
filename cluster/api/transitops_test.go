package api

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// TestTransitHMACKnownAnswer: the MAC over a derived key is standard
// HMAC (RFC 4231 test case 2 for HMAC-SHA256), in the kq:vN: form, and
// the form parses back; malformed ones are refused with a reason.
func TestTransitHMACKnownAnswer(t *testing.T) {
	mac, err := TransitHMAC(shamir.DeriveSHA256, []byte("Jefe"), 3, []byte("what do ya want for nothing?"))
	if err != nil {
		t.Fatal(err)
	}
	v, sum, err := ParseTransitHMAC(mac)
	want, _ := hex.DecodeString("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
	if err != nil || v != 3 || !bytes.Equal(sum, want) || !strings.HasPrefix(mac, "kq:v3:") {
		t.Fatalf("%q: %d %x %v; want version 3, %x", mac, v, sum, err, want)
	}
	for _, bad := range []string{"", "vault:v1:AAAA", "kq:v0:AAAA", "kq:v1", "kq:v1:!!", "kq:v1:" + strings.Repeat("A", 100)} {
		if _, _, err := ParseTransitHMAC(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	if _, err := TransitHMACSize("md5"); err == nil {
		t.Error("an unknown hmac algorithm was accepted")
	}
	if !bytes.Equal(TransitHMACContext("sha2-256", []byte("c"))[:len("keyquorum/transit/hmac/v1")], []byte("keyquorum/transit/hmac/v1")) {
		t.Error("the MAC key's context is not tagged")
	}
}

// TestTransitSignatureForm: an ed25519-frost key's signature verifies in
// the kq:vN: form only for its input, its key and its version; another
// key type is refused.
func TestTransitSignatureForm(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	k := &fsm.Key{Name: "sign/a", Type: fsm.KeyTypeFROST, Version: 2, KeyDetail: &fsm.KeyDetail{Public: der}}
	sig := TransitSignature(&Signature{Version: 2, Signature: ed25519.Sign(priv, []byte("msg"))})
	if !strings.HasPrefix(sig, "kq:v2:") || TransitVerify(k, []byte("msg"), sig) != nil {
		t.Fatalf("%q does not verify", sig)
	}
	if TransitVerify(k, []byte("other"), sig) == nil {
		t.Error("another input verified")
	}
	if TransitVerify(k, []byte("msg"), "kq:v1:"+sig[6:]) == nil {
		t.Error("another version verified")
	}
	if err := TransitVerify(&fsm.Key{Name: "enc/a", Type: fsm.KeyTypeTransit}, []byte("msg"), sig); KindOf(err) != KindInvalid {
		t.Errorf("a transit key as a signing key: %v", err)
	}
}

// FuzzParseTransitSignature: signatures and HMACs come from callers: a
// parse never panics, and what parses prints back as it was.
func FuzzParseTransitSignature(f *testing.F) {
	f.Add("kq:v1:" + strings.Repeat("A", 86) + "==")
	f.Add("kq:v2:AAAA")
	f.Add("kq:v18446744073709551615:")
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func(string) (uint64, []byte, error){ParseTransitSignature, ParseTransitHMAC} {
			v, b, err := parse(s)
			if err == nil && formatVersioned(v, b) != s {
				t.Fatalf("%q parses and prints as %q", s, formatVersioned(v, b))
			}
		}
	})
}

// FuzzOpenTransitDerive: a derivation's reply is untrusted as a
// decryption's is: opening whatever it holds never panics and never
// yields a key from answers that are not the holders'.
func FuzzOpenTransitDerive(f *testing.F) {
	k, _ := transitTestKey(f)
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	seed, _ := json.Marshal(TransitDecryptReply{ClusterID: "c", Key: "enc/a", Epoch: 1, Threshold: 2,
		Partials: []SealedPartial{{Index: 1, R: make([]byte, 32), Sealed: make([]byte, 40)}, {Index: 2, R: eph.PublicKey().Bytes(), Sealed: []byte("x")}}})
	f.Add(seed)
	items := []fsm.TransitDerivation{{Version: 1, Context: []byte("ctx")}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r TransitDecryptReply
		if json.Unmarshal(b, &r) != nil {
			return
		}
		res, err := OpenTransitDerive(&r, "c", k, items, shamir.DeriveSHA256, 32, []byte("payload"), eph)
		if err == nil && res[0].Plaintext != nil {
			t.Fatalf("a made-up reply derived %x", res[0].Plaintext)
		}
	})
}

// TestOpenTransitDeriveMatchesWhole: holders' answers made here combine
// to the derivation computed with the whole scalar; a lying one is named.
func TestOpenTransitDeriveMatchesWhole(t *testing.T) {
	k, shares := transitTestKey(t)
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	payload := []byte("signed request")
	items := []fsm.TransitDerivation{{Version: 1, Context: []byte("tenant-1")}}
	bind := TransitDeriveBinding(k.ID, 1, items[0].Context)
	X, err := shamir.TransitDerivePoint(bind)
	if err != nil {
		t.Fatal(err)
	}
	answer := func(sh *shamir.Share, lie bool) SealedPartial {
		p, err := shamir.ComputePartial(rand.Reader, sh, X, TransitDecryptContext("c", "enc/a", 1, payload, 0))
		if err != nil {
			t.Fatal(err)
		}
		if lie {
			p.Value = k.Transit().Latest().Sharing.Commits[0]
		}
		b, _ := json.Marshal([]TransitItemPartial{{Partial: p}})
		sealed, err := shamir.SealX25519(rand.Reader, eph.PublicKey().Bytes(), fsm.PartialSealInfo(TransitDecryptContext("c", "enc/a", 1, payload, -1), sh.Index), b)
		if err != nil {
			t.Fatal(err)
		}
		return SealedPartial{Index: sh.Index, Node: "n", R: sealed.R, Sealed: sealed.Sealed}
	}
	r := &TransitDecryptReply{ClusterID: "c", Key: "enc/a", Epoch: 1, Threshold: 2, Partials: []SealedPartial{answer(shares[0], false), answer(shares[1], false)}}
	res, err := OpenTransitDerive(r, "c", k, items, shamir.DeriveSHA512, 64, payload, eph)
	if err != nil || res[0].Error != nil {
		t.Fatalf("honest answers: %+v, %v", res, err)
	}
	parts := map[uint32][]byte{}
	for _, sh := range shares[1:] {
		p, _ := shamir.ComputePartial(rand.Reader, sh, X, []byte("whole"))
		parts[p.Index] = p.Value
	}
	K, _ := shamir.CombinePoints(parts, 2)
	want, _ := shamir.TransitDeriveOutput(shamir.DeriveSHA512, K, X, k.Transit().Latest().Sharing.Commits[0], bind, 64)
	if !bytes.Equal(res[0].Plaintext, want) {
		t.Fatalf("derived %x; the shares give %x", res[0].Plaintext, want)
	}
	r.Partials[1] = answer(shares[1], true)
	_, err = OpenTransitDerive(r, "c", k, items, shamir.DeriveSHA256, 32, payload, eph)
	if bad, ok := err.(BadAnswers); !ok || len(bad) != 1 || bad[2] == "" {
		t.Fatalf("a lying holder: %v; want share 2 named", err)
	}
}
