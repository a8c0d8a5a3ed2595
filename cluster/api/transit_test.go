package api

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// transitTestKey is a transit key's metadata with one version dealt
// 2-of-3 here, and the version's shares.
func transitTestKey(t testing.TB) (*fsm.Key, []*shamir.Share) {
	t.Helper()
	secret, err := shamir.RandomSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	poly, shares, err := shamir.DealKey(rand.Reader, secret, 2, []uint32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	fk := &fsm.FROSTKey{Threshold: 2, Epoch: 1, Commits: poly.Commits}
	return &fsm.Key{ID: "id:0123456789abcdef0123456789abcdef", Name: "enc/a", Type: fsm.KeyTypeTransit, Version: 1, State: fsm.KeyActive,
		KeyDetail: &fsm.KeyDetail{Transit: &fsm.TransitKey{Cipher: shamir.CipherAES256GCM, MinDecryptionVersion: 1,
			Versions: []fsm.TransitVersion{{Version: 1, Sharing: fk}}}}}, shares
}

// TestTransitCiphertextFormat: "kq:v<version>:<base64>" round-trips, and
// anything else is refused with a reason.
func TestTransitCiphertextFormat(t *testing.T) {
	k, _ := transitTestKey(t)
	s, err := TransitEncrypt(rand.Reader, k, []byte("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := ParseTransitCiphertext(s)
	if err != nil || ct.Version != 1 || ct.String() != s || !strings.HasPrefix(s, "kq:v1:") {
		t.Fatalf("%q: %+v, %v", s, ct, err)
	}
	for _, bad := range []string{"", "vault:v1:AAAA", "kq:v0:" + s[6:], "kq:v01:" + s[6:], "kq:v1", "kq:vx:AAAA", "kq:v1:!!!", "kq:v1:AAAA",
		"kq:v1:" + strings.Repeat("A", 64)} {
		if _, err := ParseTransitCiphertext(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	// The layout: E, the proof (R, z), the nonce and the AEAD output; the
	// proof verifies for the key's ID, the version and the context.
	raw, _ := base64.StdEncoding.DecodeString(s[len("kq:v1:"):])
	if len(raw) != shamir.PointSize+shamir.TransitProofSize+shamir.TransitOverhead+len("hello") ||
		!bytes.Equal(raw[:32], ct.E) || !bytes.Equal(raw[32:96], ct.Proof) || !bytes.Equal(raw[96:], ct.Sealed) {
		t.Fatalf("the layout: %d bytes", len(raw))
	}
	if err := shamir.VerifyTransitProof(TransitBinding(k.ID, 1, nil), ct.E, ct.Proof); err != nil {
		t.Fatalf("the ciphertext's proof: %v", err)
	}
	if shamir.VerifyTransitProof(TransitBinding(k.ID, 1, []byte("ctx")), ct.E, ct.Proof) == nil {
		t.Fatal("the proof verifies for another context")
	}
	// The format before the proof (E || nonce || AEAD output) is refused
	// as such, and so is a proof that is not one's encoding.
	old := "kq:v1:" + base64.StdEncoding.EncodeToString(append(bytes.Clone(ct.E), ct.Sealed...))
	if _, err := ParseTransitCiphertext(old); err == nil || !strings.Contains(err.Error(), "format changed") {
		t.Errorf("a ciphertext of the format before the proof: %v", err)
	}
	noProof := "kq:v1:" + base64.StdEncoding.EncodeToString(append(append(bytes.Clone(ct.E), make([]byte, 64)...), ct.Sealed...))
	if _, err := ParseTransitCiphertext(noProof); err == nil || !strings.Contains(err.Error(), "format changed") {
		t.Errorf("a ciphertext with zeros for a proof: %v", err)
	}
	// A context longer than a decryption request carries is refused.
	if _, err := TransitEncrypt(rand.Reader, k, []byte("x"), make([]byte, fsm.MaxDeriveContext+1)); KindOf(err) != KindInvalid {
		t.Errorf("a long context: %v", err)
	}
	// A derived key needs a context; another takes none.
	if _, err := TransitEncrypt(rand.Reader, k, []byte("x"), []byte("ctx")); KindOf(err) != KindInvalid {
		t.Errorf("a context for a key that is not derived: %v", err)
	}
	k.Transit().Derived = true
	if _, err := TransitEncrypt(rand.Reader, k, []byte("x"), nil); KindOf(err) != KindInvalid {
		t.Errorf("no context for a derived key: %v", err)
	}
}

// FuzzParseTransitCiphertext: ciphertexts come from callers: a parse
// never panics, and what parses prints back as it was.
func FuzzParseTransitCiphertext(f *testing.F) {
	k, _ := transitTestKey(f)
	s, _ := TransitEncrypt(rand.Reader, k, []byte("seed"), nil)
	f.Add(s)
	f.Add("kq:v1:")
	f.Add("kq:v18446744073709551615:AAAA")
	ct, _ := ParseTransitCiphertext(s)
	f.Add("kq:v1:" + base64.StdEncoding.EncodeToString(append(bytes.Clone(ct.E), ct.Sealed...))) // before the proof
	f.Add("kq:v1:" + base64.StdEncoding.EncodeToString(append(append(bytes.Clone(ct.E), make([]byte, 64)...), ct.Sealed...)))
	f.Fuzz(func(t *testing.T, s string) {
		ct, err := ParseTransitCiphertext(s)
		if err != nil {
			return
		}
		if ct.String() != s {
			t.Fatalf("%q parses and prints as %q", s, ct.String())
		}
		if len(ct.E) != shamir.PointSize || shamir.ValidateTransitProof(ct.Proof) != nil || len(ct.Sealed) < shamir.TransitOverhead {
			t.Fatalf("%q parses to a point of %d bytes, a proof of %d, sealed bytes of %d", s, len(ct.E), len(ct.Proof), len(ct.Sealed))
		}
	})
}

// FuzzOpenTransitDecrypt: the reply a coordinator relays is untrusted:
// whatever it holds, opening it never panics and never yields a
// plaintext for an answer that is not the holders'.
func FuzzOpenTransitDecrypt(f *testing.F) {
	k, _ := transitTestKey(f)
	s, _ := TransitEncrypt(rand.Reader, k, []byte("seed"), nil)
	ct, _ := ParseTransitCiphertext(s)
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	seed, _ := json.Marshal(TransitDecryptReply{ClusterID: "c", Key: "enc/a", Epoch: 1, Threshold: 2,
		Partials: []SealedPartial{{Index: 1, R: make([]byte, 32), Sealed: make([]byte, 40)}, {Index: 2, R: eph.PublicKey().Bytes(), Sealed: []byte("x")}}})
	f.Add(seed, s)
	f.Add([]byte(`{"cluster_id":"c","key":"enc/a","partials":[]}`), "kq:v1:")
	f.Fuzz(func(t *testing.T, b []byte, cts string) {
		var r TransitDecryptReply
		if json.Unmarshal(b, &r) != nil {
			return
		}
		item := ct
		if parsed, err := ParseTransitCiphertext(cts); err == nil {
			item = parsed
		}
		res, err := OpenTransitDecrypt(&r, "c", k, []*TransitCiphertext{item}, [][]byte{nil}, []byte("payload"), eph)
		if err == nil && res[0].Plaintext != nil {
			t.Fatalf("a made-up reply opened: %q", res[0].Plaintext)
		}
	})
}

// TestOpenTransitDecryptNamesBadAnswers: holders' answers made here open;
// one whose partial is another's is named by its share.
func TestOpenTransitDecryptNamesBadAnswers(t *testing.T) {
	k, shares := transitTestKey(t)
	s, _ := TransitEncrypt(rand.Reader, k, []byte("attack at dawn"), nil)
	ct, _ := ParseTransitCiphertext(s)
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	payload := []byte("signed request")
	answer := func(sh *shamir.Share, lie bool) SealedPartial {
		p, err := shamir.ComputePartial(rand.Reader, sh, ct.E, TransitDecryptContext("c", "enc/a", 1, payload, 0))
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
	r := &TransitDecryptReply{ClusterID: "c", Key: "enc/a", Epoch: 1, Threshold: 2, Partials: []SealedPartial{answer(shares[0], false), answer(shares[2], false)}}
	res, err := OpenTransitDecrypt(r, "c", k, []*TransitCiphertext{ct}, [][]byte{nil}, payload, eph)
	if err != nil || string(res[0].Plaintext) != "attack at dawn" {
		t.Fatalf("honest answers: %+v, %v", res, err)
	}
	r.Partials[1] = answer(shares[2], true)
	_, err = OpenTransitDecrypt(r, "c", k, []*TransitCiphertext{ct}, [][]byte{nil}, payload, eph)
	bad, ok := err.(BadAnswers)
	if !ok || len(bad) != 1 || bad[3] == "" {
		t.Fatalf("a lying holder: %v; want share 3 named", err)
	}
}

// TestOpenTransitDecryptBatchNamesTheItem: a batch whose holders send
// their proofs' commitments (checked all at once) opens every item; when
// one holder puts in one item the partial of another item (a valid proof,
// of another point and context), the batch fails and the caller names
// that holder and that item.
func TestOpenTransitDecryptBatchNamesTheItem(t *testing.T) {
	k, shares := transitTestKey(t)
	const n = 20
	var cts []*TransitCiphertext
	for i := range n {
		s, _ := TransitEncrypt(rand.Reader, k, []byte{'m', byte(i)}, nil)
		ct, _ := ParseTransitCiphertext(s)
		cts = append(cts, ct)
	}
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	payload := []byte("signed request")
	answer := func(sh *shamir.Share, moved int) SealedPartial {
		pr, err := shamir.NewProver(sh)
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Erase()
		items := make([]TransitItemPartial, n)
		for i := range items {
			if items[i].Partial, err = pr.Compute(rand.Reader, cts[i].E, TransitDecryptContext("c", "enc/a", 1, payload, i)); err != nil {
				t.Fatal(err)
			}
		}
		if moved >= 0 {
			items[moved] = items[moved-1]
		}
		b, _ := json.Marshal(items)
		sealed, err := shamir.SealX25519(rand.Reader, eph.PublicKey().Bytes(), fsm.PartialSealInfo(TransitDecryptContext("c", "enc/a", 1, payload, -1), sh.Index), b)
		if err != nil {
			t.Fatal(err)
		}
		return SealedPartial{Index: sh.Index, Node: "n", R: sealed.R, Sealed: sealed.Sealed}
	}
	ctxs := make([][]byte, n)
	r := &TransitDecryptReply{ClusterID: "c", Key: "enc/a", Epoch: 1, Threshold: 2, Partials: []SealedPartial{answer(shares[0], -1), answer(shares[2], -1)}}
	res, err := OpenTransitDecrypt(r, "c", k, cts, ctxs, payload, eph)
	if err != nil {
		t.Fatalf("honest answers: %v", err)
	}
	for i, x := range res {
		if x.Error != nil || !bytes.Equal(x.Plaintext, []byte{'m', byte(i)}) {
			t.Fatalf("item %d: %q, %v", i, x.Plaintext, x.Error)
		}
	}
	r.Partials[1] = answer(shares[2], 13)
	_, err = OpenTransitDecrypt(r, "c", k, cts, ctxs, payload, eph)
	bad, ok := err.(BadAnswers)
	if !ok || len(bad) != 1 || !strings.Contains(bad[3], "item 13") {
		t.Fatalf("a holder lying in item 13: %v; want share 3 named for item 13", err)
	}
}
