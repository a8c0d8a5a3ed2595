package api

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// exportTestKey is a 2-of-3 exportable transit key, its scalar and shares.
func exportTestKey(t testing.TB) (*fsm.Key, []byte, []*shamir.Share) {
	t.Helper()
	secret, err := shamir.RandomSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	poly, shares, err := shamir.DealKey(rand.Reader, secret, 2, []uint32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	fk := &fsm.FROSTKey{Threshold: 2, Epoch: 4, Commits: poly.Commits}
	return &fsm.Key{ID: "id:0123456789abcdef0123456789abcdef", Name: "enc/a", Type: fsm.KeyTypeTransit, Version: 1, State: fsm.KeyActive,
		KeyDetail: &fsm.KeyDetail{Transit: &fsm.TransitKey{Cipher: shamir.CipherAES256GCM, Exportable: true,
			Versions: []fsm.TransitVersion{{Version: 1, Sharing: fk}}}}}, secret, shares
}

// sealExportShare seals sh as a holder answers an export.
func sealExportShare(t testing.TB, eph *ecdh.PrivateKey, payload []byte, sh *shamir.Share, value []byte) SealedPartial {
	t.Helper()
	base := TransitExportContext("c", "enc/a", 4, 1, payload)
	ct, err := shamir.SealX25519(rand.Reader, eph.PublicKey().Bytes(), fsm.PartialSealInfo(base, sh.Index), value)
	if err != nil {
		t.Fatal(err)
	}
	return SealedPartial{Index: sh.Index, Node: "n", R: ct.R, Sealed: ct.Sealed}
}

// TestOpenTransitExport: t holders' shares, sealed as holders seal them,
// combine to the scalar dealt; a share off the commitments is named
// alone; a share sealed for another request, epoch or version does not
// open; fewer than t give no scalar.
func TestOpenTransitExport(t *testing.T) {
	k, secret, shares := exportTestKey(t)
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	payload := []byte("signed request")
	rep := &TransitDecryptReply{ClusterID: "c", Key: "enc/a", Epoch: 4, Threshold: 2}
	for _, i := range []int{0, 2} {
		rep.Partials = append(rep.Partials, sealExportShare(t, eph, payload, shares[i], shares[i].Value))
	}
	got, err := OpenTransitExport(rep, "c", k, 1, payload, eph)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("OpenTransitExport = %x, %v; want the dealt scalar", got, err)
	}
	// The reply's epoch is the coordinator's word, and is not used.
	rep.Epoch = 9
	if got, err := OpenTransitExport(rep, "c", k, 1, payload, eph); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("with a changed epoch in the reply: %v", err)
	}
	other, _ := shamir.RandomSecret(rand.Reader)
	lying := &TransitDecryptReply{ClusterID: "c", Key: "enc/a", Partials: []SealedPartial{
		sealExportShare(t, eph, payload, shares[0], shares[0].Value),
		sealExportShare(t, eph, payload, shares[1], other),
	}}
	_, err = OpenTransitExport(lying, "c", k, 1, payload, eph)
	var bad BadAnswers
	if !errors.As(err, &bad) || len(bad) != 1 || bad[2] == "" {
		t.Fatalf("a lying holder: %v; want share 2 named alone", err)
	}
	if _, err := OpenTransitExport(rep, "c", k, 1, []byte("another request"), eph); !errors.As(err, &bad) || len(bad) != 2 {
		t.Fatalf("another request's shares: %v; want both named", err)
	}
	rep.Partials = rep.Partials[:1]
	if got, err := OpenTransitExport(rep, "c", k, 1, payload, eph); KindOf(err) != KindNoQuorum || got != nil {
		t.Fatalf("one share of 2: %v; want no_quorum", err)
	}
	if _, err := OpenTransitExport(rep, "c", k, 2, payload, eph); KindOf(err) != KindNotFound {
		t.Fatalf("a version the key does not have: %v; want not_found", err)
	}
}

// TestWrapTransitKeyPEM: a wrapping key as Vault's transit/wrapping_key
// gives it (PEM, PKIX) and its private half (PKCS #8 or #1) wrap and
// unwrap a scalar; another length of material, a key too small, and
// anything not PEM are refused.
func TestWrapTransitKeyPEM(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkix, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pub, err := ParseWrappingKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}))
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(priv)
	for _, block := range []*pem.Block{{Type: "PRIVATE KEY", Bytes: pkcs8}, {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)}} {
		p, err := ParseWrappingPrivateKey(pem.EncodeToMemory(block))
		if err != nil {
			t.Fatalf("%s: %v", block.Type, err)
		}
		scalar, _ := shamir.RandomSecret(rand.Reader)
		wrapped, err := WrapTransitKey(rand.Reader, pub, scalar)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnwrapTransitKey(p, wrapped+"\n")
		if err != nil || !bytes.Equal(got, scalar) {
			t.Fatalf("%s: %x, %v", block.Type, got, err)
		}
	}
	blob, _ := shamir.WrapRSAAES(rand.Reader, pub, make([]byte, 16))
	if _, err := UnwrapTransitKey(priv, string(pemless(blob))); err == nil {
		t.Error("16 bytes of key material were taken as a transit key")
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	spkix, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	for what, b := range map[string][]byte{
		"a 1024-bit key": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spkix}),
		"not PEM":        []byte("not a key"),
		"a certificate":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
	} {
		if _, err := ParseWrappingKey(b); err == nil {
			t.Errorf("%s was taken as a wrapping key", what)
		}
	}
}

func pemless(b []byte) []byte {
	w, _ := json.Marshal(b) // base64 in quotes
	return w[1 : len(w)-1]
}

// FuzzOpenTransitExport: a made-up export reply from a coordinator is
// refused, never combined, never a panic.
func FuzzOpenTransitExport(f *testing.F) {
	k, _, shares := exportTestKey(f)
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	good := sealExportShare(f, eph, []byte("payload"), shares[0], shares[0].Value)
	seed, _ := json.Marshal(TransitDecryptReply{ClusterID: "c", Key: "enc/a", Epoch: 4, Threshold: 2,
		Partials: []SealedPartial{good, {Index: 2, R: eph.PublicKey().Bytes(), Sealed: []byte("x")}}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r TransitDecryptReply
		if json.Unmarshal(b, &r) != nil {
			return
		}
		if got, err := OpenTransitExport(&r, "c", k, 1, []byte("payload"), eph); err == nil || got != nil {
			t.Fatalf("a made-up reply combined to %x", got)
		}
	})
}

// FuzzUnwrapTransitKey: wrapped keys and wrapping keys from anywhere are
// unwrapped or refused, never a panic.
func FuzzUnwrapTransitKey(f *testing.F) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	scalar, _ := shamir.RandomSecret(rand.Reader)
	wrapped, _ := WrapTransitKey(rand.Reader, &priv.PublicKey, scalar)
	f.Add(wrapped)
	f.Add("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := UnwrapTransitKey(priv, s); err == nil && len(m) != shamir.ScalarSize {
			t.Fatalf("unwrapped %d bytes", len(m))
		}
		ParseWrappingKey([]byte(s))
		ParseWrappingPrivateKey([]byte(s))
	})
}
