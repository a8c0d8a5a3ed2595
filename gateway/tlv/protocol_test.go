package tlv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"reflect"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	ski := bytes.Repeat([]byte{4}, SKISize)
	digest := bytes.Repeat([]byte{1}, DigestSize)
	msg := rawMsg(1, 0xDEADBEEF,
		item{TagDigest, digest},
		item{TagSNI, []byte("example.com")},
		item{TagClientIP, []byte{192, 0, 2, 1}},
		item{TagSKI, ski},
		item{0x77, []byte("unknown")},
		opItem(OpECDSASignSHA256),
		item{TagPayload, []byte("payload")},
		item{TagPadding, make([]byte, 50)},
	)
	msg[1] = 7 // any minor version
	r, err := ParseRequest(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := &Request{ID: 0xDEADBEEF, Op: OpECDSASignSHA256, Digest: digest, SNI: "example.com", ClientIP: []byte{192, 0, 2, 1}, SKI: ski, Payload: []byte("payload")}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("parsed %+v, want %+v", r, want)
	}
	again, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ParseRequest(again)
	if err != nil || !reflect.DeepEqual(r2, want) {
		t.Fatalf("round trip: %+v, %v", r2, err)
	}

	for name, tc := range map[string]struct {
		msg  []byte
		code Code
	}{
		"short header":       {[]byte{1, 0, 0}, CodeFormatError},
		"length mismatch":    {append(rawMsg(1, 1, opItem(OpPing)), 0), CodeFormatError},
		"major 2":            {rawMsg(2, 1, opItem(OpPing)), CodeVersionMismatch},
		"no opcode":          {rawMsg(1, 1, item{TagPayload, nil}), CodeFormatError},
		"repeated SNI":       {rawMsg(1, 1, item{TagSNI, []byte("a")}, item{TagSNI, []byte("a")}, opItem(OpPing)), CodeFormatError},
		"IPv6 of 15 bytes":   {rawMsg(1, 1, item{TagClientIP, make([]byte, 15)}, opItem(OpPing)), CodeFormatError},
		"digest of 33 bytes": {rawMsg(1, 1, item{TagDigest, make([]byte, 33)}, opItem(OpPing)), CodeFormatError},
	} {
		_, err := ParseRequest(tc.msg)
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code || e.Reason == "" {
			t.Errorf("%s: %v, want %v with a reason", name, err, tc.code)
		}
	}
}

func TestRequestTooLong(t *testing.T) {
	r := &Request{Op: OpPing, Payload: make([]byte, MaxBody)}
	if _, err := r.Marshal(); err == nil {
		t.Fatal("a request longer than the length field can say was encoded")
	}
	r.Payload = make([]byte, MaxBody-7) // opcode item 4, payload item header 3
	if _, err := r.Marshal(); err != nil {
		t.Fatal(err)
	}
}

func TestAppendReplySizes(t *testing.T) {
	for n := range 1100 {
		msg := appendReply(nil, 1, OpPong, make([]byte, n))
		unpadded := HeaderSize + 4 + 3 + n
		want := unpadded
		if unpadded+3 <= PaddedSize {
			want = PaddedSize
		}
		if len(msg) != want {
			t.Fatalf("payload %d: reply of %d bytes, want %d", n, len(msg), want)
		}
		resp, err := ParseResponse(msg)
		if err != nil || resp.ID != 1 || resp.Op != OpPong || len(resp.Payload) != n {
			t.Fatalf("payload %d: %+v, %v", n, resp, err)
		}
	}
}

// spkiBits extracts the subject public key bit string from a DER
// SubjectPublicKeyInfo, independently of SKI.
func spkiBits(t *testing.T, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var spki struct {
		Algorithm asn1.RawValue
		Key       asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		t.Fatal(err)
	}
	return spki.Key.Bytes
}

func TestSKIAndDigest(t *testing.T) {
	ks := getKeys()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, pub := range map[string]any{
		"RSA":     ks.rsa.signer.Public(),
		"P-256":   ks.ec.signer.Public(),
		"P-384":   p384.Public(),
		"Ed25519": ks.ed.signer.Public(),
	} {
		ski, err := SKI(pub)
		if err != nil {
			t.Fatal(err)
		}
		want := sha1.Sum(spkiBits(t, pub))
		if !bytes.Equal(ski, want[:]) {
			t.Errorf("%s: SKI %x, want %x", name, ski, want)
		}
		digest, err := Digest(pub)
		if err != nil {
			t.Fatal(err)
		}
		var hexOf string
		switch k := pub.(type) {
		case *rsa.PublicKey:
			hexOf = fmt.Sprintf("%X", k.N) // the modulus's top bit is set: no leading zero
		case *ecdsa.PublicKey:
			//lint:ignore SA1019 the compressed point, computed apart from the code under test
			hexOf = fmt.Sprintf("%X", elliptic.MarshalCompressed(k.Curve, k.X, k.Y))
		case ed25519.PublicKey:
			hexOf = strings.ToUpper(fmt.Sprintf("%x", []byte(k)))
		}
		if wantD := sha256.Sum256([]byte(hexOf)); !bytes.Equal(digest, wantD[:]) {
			t.Errorf("%s: digest %x, want %x", name, digest, wantD)
		}
	}
	if _, err := SKI("a string"); err == nil {
		t.Error("SKI of a string")
	}
	if _, err := Digest(&rsa.PublicKey{}); err == nil {
		t.Error("Digest of an empty RSA key")
	}
}

// TestRawRSAWithoutCRT checks the exponentiation path used when a key has
// no precomputed CRT values.
func TestRawRSAWithoutCRT(t *testing.T) {
	k := getKeys().rsa.signer.(*rsa.PrivateKey)
	bare := &rsa.PrivateKey{PublicKey: k.PublicKey, D: k.D}
	m := make([]byte, k.Size())
	rand.Read(m[1:])
	c := new(big.Int).Exp(new(big.Int).SetBytes(m), big.NewInt(int64(k.E)), k.N).FillBytes(make([]byte, k.Size()))
	for name, key := range map[string]*rsa.PrivateKey{"CRT": k, "no CRT": bare} {
		got, err := decryptRawRSA(key, c)
		if err != nil || !bytes.Equal(got, m) {
			t.Errorf("%s: %x, %v", name, got, err)
		}
	}
}

// fuzzKeys finds the test keys by SKI or digest, and nothing else.
type fuzzKeys struct{ *testKeys }

func (k fuzzKeys) Lookup(_ context.Context, ski, digest []byte, _ string, _ Client) (crypto.Signer, error) {
	e := k.bySKI[string(ski)]
	if e == nil {
		e = k.byDigest[string(digest)]
	}
	if e == nil {
		return nil, ErrKeyNotFound
	}
	return e.signer, nil
}

// FuzzParseRequest checks that the parser never panics, that what it
// accepts encodes and parses back to the same request, that its errors
// carry a protocol code, and that the server's handling of the same bytes
// always yields a well-formed reply with the request's ID.
func FuzzParseRequest(f *testing.F) {
	ks := getKeys()
	d32 := make([]byte, 32)
	for _, m := range [][]byte{
		rawMsg(1, 1, opItem(OpPing), item{TagPayload, []byte("ping")}),
		rawMsg(1, 2, item{TagSKI, ks.ec.ski}, opItem(OpECDSASignSHA256), item{TagPayload, d32}),
		rawMsg(1, 3, item{TagDigest, ks.rsa.digest}, item{TagSNI, []byte("a.example")}, item{TagClientIP, make([]byte, 16)}, opItem(OpRSASignSHA256), item{TagPayload, d32}),
		rawMsg(1, 4, item{TagSKI, ks.rsa.ski}, opItem(OpRSADecryptRaw), item{TagPayload, make([]byte, 256)}),
		rawMsg(1, 5, item{TagSKI, ks.ed.ski}, opItem(OpEd25519Sign), item{TagPayload, []byte("message")}, item{TagPadding, make([]byte, 20)}),
		rawMsg(2, 6, opItem(OpPing)),
		rawMsg(1, 7, opItem(OpPing), opItem(OpPing)),
		rawMsg(1, 8, item{0x99, []byte("x")}),
		{1, 0, 0, 4, 0, 0, 0, 9, 0x11, 0, 9, 0xF1},
		{},
	} {
		f.Add(m)
	}
	h := &Server{keys: fuzzKeys{newTestKeys()}, log: slog.New(slog.DiscardHandler)}
	sess := &session{srv: h, ctx: context.Background()}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := ParseRequest(msg)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != CodeFormatError && e.Code != CodeVersionMismatch) {
				t.Fatalf("error %v without a format or version code", err)
			}
		} else {
			again, err := r.Marshal()
			if err != nil {
				t.Fatalf("a parsed request does not encode: %v", err)
			}
			r2, err := ParseRequest(again)
			if err != nil {
				t.Fatalf("an encoded request does not parse: %v", err)
			}
			if !reflect.DeepEqual(r, r2) {
				t.Fatalf("round trip changed %+v into %+v", r, r2)
			}
		}
		ParseResponse(msg)

		// The server's path over the same bytes, as its reader frames them.
		hdr, err := ParseHeader(msg)
		if err != nil {
			return
		}
		body := msg[HeaderSize:]
		if len(body) > int(hdr.Length) {
			body = body[:hdr.Length]
		}
		hdr.Length = uint16(len(body))
		j := &job{sess: sess, hdr: hdr, body: body}
		sess.handle(j)
		resp, err := ParseResponse(j.reply)
		if err != nil {
			t.Fatalf("the server's reply does not parse: %v", err)
		}
		if resp.ID != hdr.ID {
			t.Fatalf("reply ID %d for request %d", resp.ID, hdr.ID)
		}
		if code := codeOf(resp.Err()); code == CodeInternalError {
			t.Fatal("internal error: the server panicked")
		}
		if len(j.reply) < PaddedSize-2 {
			t.Fatalf("reply of %d bytes is not padded", len(j.reply))
		}
	})
}
