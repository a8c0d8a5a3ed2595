package tlv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"
)

var transports = []string{"tcp", "quic"}

var signHashes = []crypto.Hash{crypto.MD5SHA1, crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512}

// digestOf hashes msg the way a TLS terminator would before asking.
func digestOf(h crypto.Hash, msg []byte) []byte {
	if h == crypto.MD5SHA1 {
		m := md5.Sum(msg)
		s := sha1.Sum(msg)
		return append(m[:], s[:]...)
	}
	w := h.New()
	w.Write(msg)
	return w.Sum(nil)
}

func codeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestConformance runs the protocol suite over TCP+TLS and over QUIC.
func TestConformance(t *testing.T) {
	h := newHarness(t)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) { conformance(t, h, tr) })
	}
}

func conformance(t *testing.T, h *harness, tr string) {
	ks := getKeys()
	pki := getPKI()
	c := h.dial(t, tr, &pki.clientA)
	ctx := ctxT(t)
	msg := []byte("the handshake transcript")

	do := func(t *testing.T, req *Request) []byte {
		t.Helper()
		resp, err := c.Do(ctx, req)
		if err != nil {
			t.Fatalf("%v: %v", req.Op, err)
		}
		if resp.Op != OpResponse {
			t.Fatalf("%v: reply opcode %v, want %v", req.Op, resp.Op, OpResponse)
		}
		return resp.Payload
	}

	t.Run("RSASign", func(t *testing.T) {
		pub := ks.rsa.signer.Public().(*rsa.PublicKey)
		for i, hash := range signHashes {
			d := digestOf(hash, msg)
			sig := do(t, &Request{Op: OpRSASignMD5SHA1 + Op(i), SKI: ks.rsa.ski, Digest: ks.rsa.digest, Payload: d})
			if err := rsa.VerifyPKCS1v15(pub, hash, d, sig); err != nil {
				t.Errorf("%v: signature does not verify: %v", OpRSASignMD5SHA1+Op(i), err)
			}
		}
	})
	t.Run("RSAPSSSign", func(t *testing.T) {
		pub := ks.rsa.signer.Public().(*rsa.PublicKey)
		for i, hash := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			d := digestOf(hash, msg)
			sig := do(t, &Request{Op: OpRSAPSSSignSHA256 + Op(i), SKI: ks.rsa.ski, Payload: d})
			// The salt must be exactly as long as the hash.
			if err := rsa.VerifyPSS(pub, hash, d, sig, &rsa.PSSOptions{SaltLength: hash.Size()}); err != nil {
				t.Errorf("%v: signature does not verify: %v", OpRSAPSSSignSHA256+Op(i), err)
			}
		}
	})
	t.Run("ECDSASign", func(t *testing.T) {
		pub := ks.ec.signer.Public().(*ecdsa.PublicKey)
		for i, hash := range signHashes {
			d := digestOf(hash, msg)
			sig := do(t, &Request{Op: OpECDSASignMD5SHA1 + Op(i), SKI: ks.ec.ski, Payload: d})
			if !ecdsa.VerifyASN1(pub, d, sig) {
				t.Errorf("%v: signature does not verify", OpECDSASignMD5SHA1+Op(i))
			}
		}
	})
	t.Run("Ed25519Sign", func(t *testing.T) {
		sig := do(t, &Request{Op: OpEd25519Sign, SKI: ks.ed.ski, Payload: msg})
		if !ed25519.Verify(ks.ed.signer.Public().(ed25519.PublicKey), msg, sig) {
			t.Error("signature does not verify")
		}
	})
	t.Run("RSADecrypt", func(t *testing.T) {
		secret := []byte("48 bytes of TLS 1.2 premaster secret, or so ...")
		//lint:ignore SA1019 the client's side of keyless's PKCS #1 v1.5 decrypt
		ct, err := rsa.EncryptPKCS1v15(rand.Reader, ks.rsa.signer.Public().(*rsa.PublicKey), secret)
		if err != nil {
			t.Fatal(err)
		}
		if got := do(t, &Request{Op: OpRSADecrypt, SKI: ks.rsa.ski, Payload: ct}); !bytes.Equal(got, secret) {
			t.Errorf("decrypted %q, want %q", got, secret)
		}
	})
	t.Run("RSADecryptRaw", func(t *testing.T) {
		pub := ks.rsa.signer.Public().(*rsa.PublicKey)
		size := (pub.N.BitLen() + 7) / 8
		for _, key := range []*testKey{ks.rsa, ks.rawRSA} {
			// A message with leading zero bytes, which must be kept.
			m := make([]byte, size)
			rand.Read(m[3:])
			c := new(big.Int).Exp(new(big.Int).SetBytes(m), big.NewInt(int64(pub.E)), pub.N)
			got := do(t, &Request{Op: OpRSADecryptRaw, SKI: key.ski, Payload: c.FillBytes(make([]byte, size))})
			if !bytes.Equal(got, m) {
				t.Errorf("raw decrypt gave %x, want %x", got, m)
			}
		}
		if ks.rawRSA.signer.(*rawSigner).calls.Load() == 0 {
			t.Error("the key's own RawDecrypter was not used")
		}
	})
	t.Run("Ping", func(t *testing.T) {
		for _, p := range [][]byte{{}, []byte("hello"), bytes.Repeat([]byte{0xAB}, 3000)} {
			if err := c.Ping(ctx, p); err != nil {
				t.Errorf("ping of %d bytes: %v", len(p), err)
			}
		}
		// A ping without a payload item is answered with an empty one.
		resp, err := c.Do(ctx, &Request{Op: OpPing})
		if err != nil || resp.Op != OpPong || len(resp.Payload) != 0 {
			t.Errorf("ping without payload: %v, %v", resp, err)
		}
	})
	t.Run("LookupBySKIOrDigest", func(t *testing.T) {
		pub := ks.ec.signer.Public().(*ecdsa.PublicKey)
		d := digestOf(crypto.SHA256, msg)
		for name, req := range map[string]*Request{
			"SKI":    {Op: OpECDSASignSHA256, SKI: ks.ec.ski, Payload: d},
			"digest": {Op: OpECDSASignSHA256, Digest: ks.ec.digest, Payload: d},
			"both":   {Op: OpECDSASignSHA256, SKI: ks.ec.ski, Digest: ks.ec.digest, Payload: d},
		} {
			if sig := do(t, req); !ecdsa.VerifyASN1(pub, d, sig) {
				t.Errorf("by %s: signature does not verify", name)
			}
		}
		// An RSA key by digest only too.
		d = digestOf(crypto.SHA256, msg)
		sig := do(t, &Request{Op: OpRSASignSHA256, Digest: ks.rsa.digest, Payload: d})
		if err := rsa.VerifyPKCS1v15(ks.rsa.signer.Public().(*rsa.PublicKey), crypto.SHA256, d, sig); err != nil {
			t.Error(err)
		}
	})
	t.Run("ClientIdentityReachesKeys", func(t *testing.T) {
		do(t, &Request{Op: OpECDSASignSHA256, SKI: ks.ec.ski, SNI: "record.test", Payload: make([]byte, 32)})
		got := h.keys.last.Load()
		if got == nil || got.Cert == nil || got.Cert.Subject.CommonName != "edge-a" || got.Addr == nil {
			t.Fatalf("Keys saw client %+v, want edge-a with an address", got)
		}
	})
	t.Run("ErrorCodes", func(t *testing.T) { errorCodes(t, h, tr, c) })
	t.Run("MalformedKeepsConnection", func(t *testing.T) { malformed(t, h, tr) })
	t.Run("ReadError", func(t *testing.T) {
		s := h.raw(t, tr)
		hdr := rawMsg(1, 77, item{TagPayload, make([]byte, 97)}) // announces 100 bytes
		s.send(t, hdr[:HeaderSize+10])
		if err := s.closeWrite(); err != nil {
			t.Fatal(err)
		}
		resp, _ := s.mustRecv(t)
		if resp.ID != 77 || codeOf(resp.Err()) != CodeReadError {
			t.Fatalf("reply %+v, want a read error for ID 77", resp)
		}
		if _, _, err := s.recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the read error: %v, want the end of the stream", err)
		}
	})
	t.Run("BodyTooLongCloses", func(t *testing.T) {
		s := h.raw(t, tr)
		hdr := []byte{1, 0, 0, 0, 0, 0, 0, 9}
		binary.BigEndian.PutUint16(hdr[2:], DefaultMaxBody+1)
		s.send(t, hdr)
		resp, _ := s.mustRecv(t)
		if resp.ID != 9 || codeOf(resp.Err()) != CodeFormatError {
			t.Fatalf("reply %+v, want a format error for ID 9", resp)
		}
		if _, _, err := s.recv(); err == nil {
			t.Fatal("the connection stays open after a body longer than the maximum")
		}
	})
	t.Run("Pipelining", func(t *testing.T) { pipelining(t, h, tr) })
	t.Run("OutOfOrder", func(t *testing.T) {
		s := h.raw(t, tr)
		d := digestOf(crypto.SHA256, msg)
		slow := rawMsg(1, 1, item{TagSNI, []byte("slow.test")}, item{TagSKI, ks.ec.ski}, opItem(OpECDSASignSHA256), item{TagPayload, d})
		ping := rawMsg(1, 2, opItem(OpPing), item{TagPayload, []byte("fast")})
		s.send(t, slow, ping)
		<-h.keys.entered // request 1 is held in Lookup
		first, _ := s.mustRecv(t)
		if first.ID != 2 || first.Op != OpPong {
			t.Fatalf("first reply %+v, want the pong of request 2", first)
		}
		h.keys.release <- struct{}{}
		second, _ := s.mustRecv(t)
		if second.ID != 1 || second.Op != OpResponse || !ecdsa.VerifyASN1(ks.ec.signer.Public().(*ecdsa.PublicKey), d, second.Payload) {
			t.Fatalf("second reply %+v, want the signature of request 1", second)
		}
	})
	t.Run("Padding", func(t *testing.T) {
		s := h.raw(t, tr)
		// Reply size for a ping of n bytes: 8 + 4 + 3 + n, padded to 1024
		// when a padding item (3 bytes and up) fits.
		for _, tc := range []struct{ payload, size int }{
			{0, PaddedSize}, {1006, PaddedSize}, {1007, 1022}, {1008, 1023}, {1009, 1024}, {2000, 2015},
		} {
			s.send(t, rawMsg(1, uint32(tc.payload), opItem(OpPing), item{TagPayload, make([]byte, tc.payload)}))
			resp, n := s.mustRecv(t)
			if resp.Op != OpPong || len(resp.Payload) != tc.payload || n != tc.size {
				t.Errorf("ping of %d bytes: reply %v of %d bytes, want a pong of %d", tc.payload, resp.Op, n, tc.size)
			}
		}
		s.send(t, rawMsg(1, 5, item{TagSKI, ks.ec.ski}, opItem(OpECDSASignSHA256), item{TagPayload, make([]byte, 32)}))
		if resp, n := s.mustRecv(t); resp.Op != OpResponse || n != PaddedSize {
			t.Errorf("signature reply %v of %d bytes, want %d", resp.Op, n, PaddedSize)
		}
		s.send(t, rawMsg(1, 6, opItem(0x77)))
		if resp, n := s.mustRecv(t); resp.Op != OpError || n != PaddedSize {
			t.Errorf("error reply %v of %d bytes, want %d", resp.Op, n, PaddedSize)
		}
	})
	t.Run("UnknownTagsIgnored", func(t *testing.T) {
		s := h.raw(t, tr)
		d := digestOf(crypto.SHA384, msg)
		s.send(t, rawMsg(1, 42,
			item{0x05, []byte{10, 0, 0, 1}}, // server IP
			item{0x06, []byte("cert-id")},   // certificate ID
			item{TagPadding, make([]byte, 10)},
			item{TagSKI, ks.ec.ski},
			item{0x13, []byte("custom")},
			item{0x15, []byte{1, 2, 3}}, // a Jaeger span
			opItem(OpECDSASignSHA384),
			item{0x99, nil},
			item{0x99, []byte("twice")},
			item{TagPayload, d},
			item{TagPadding, make([]byte, 100)},
		))
		resp, _ := s.mustRecv(t)
		if resp.ID != 42 || resp.Op != OpResponse || !ecdsa.VerifyASN1(ks.ec.signer.Public().(*ecdsa.PublicKey), d, resp.Payload) {
			t.Fatalf("reply %+v, want a signature", resp)
		}
	})
}

// errorCodes checks every error code the server answers to well-framed
// requests, and that the connection goes on afterwards.
func errorCodes(t *testing.T, h *harness, tr string, c *Conn) {
	ks := getKeys()
	ctx := ctxT(t)
	d32 := make([]byte, 32)
	rsaPub := ks.rsa.signer.Public().(*rsa.PublicKey)
	size := (rsaPub.N.BitLen() + 7) / 8
	// A ciphertext below n whose decryption is no PKCS #1 v1.5 block.
	badPadding := new(big.Int).Exp(big.NewInt(12345), big.NewInt(int64(rsaPub.E)), rsaPub.N).FillBytes(make([]byte, size))

	cases := []struct {
		name string
		req  Request
		want Code
	}{
		// 0x01: the key cannot do it, or the operation fails.
		{"ECDSA opcode on an RSA key", Request{Op: OpECDSASignSHA256, SKI: ks.rsa.ski, Payload: d32}, CodeCryptoFailed},
		{"RSA opcode on an ECDSA key", Request{Op: OpRSASignSHA256, SKI: ks.ec.ski, Payload: d32}, CodeCryptoFailed},
		{"PSS opcode on an Ed25519 key", Request{Op: OpRSAPSSSignSHA256, SKI: ks.ed.ski, Payload: d32}, CodeCryptoFailed},
		{"Ed25519 opcode on an ECDSA key", Request{Op: OpEd25519Sign, SKI: ks.ec.ski, Payload: []byte("m")}, CodeCryptoFailed},
		{"ECDSA opcode on an Ed25519 key", Request{Op: OpECDSASignSHA256, SKI: ks.ed.ski, Payload: d32}, CodeCryptoFailed},
		{"RSA decrypt on an ECDSA key", Request{Op: OpRSADecrypt, SKI: ks.ec.ski, Payload: make([]byte, size)}, CodeCryptoFailed},
		{"raw decrypt on an Ed25519 key", Request{Op: OpRSADecryptRaw, SKI: ks.ed.ski, Payload: make([]byte, size)}, CodeCryptoFailed},
		{"RSA decrypt of a bad padding", Request{Op: OpRSADecrypt, SKI: ks.rsa.ski, Payload: badPadding}, CodeCryptoFailed},
		{"raw decrypt of c >= n", Request{Op: OpRSADecryptRaw, SKI: ks.rsa.ski, Payload: bytes.Repeat([]byte{0xFF}, size)}, CodeCryptoFailed},
		{"decrypt with a key that is no Decrypter", Request{Op: OpRSADecrypt, SKI: ks.opaqueRSA.ski, Payload: badPadding}, CodeCryptoFailed},
		{"raw decrypt with a key that cannot", Request{Op: OpRSADecryptRaw, SKI: ks.opaqueRSA.ski, Payload: badPadding}, CodeCryptoFailed},
		{"a signer that fails", Request{Op: OpECDSASignSHA256, SKI: ks.failing.ski, Payload: d32}, CodeCryptoFailed},
		// The C server's answer, which its test client checks ("RSA raw
		// decrypt with bad data": 257 zero bytes for a 2048-bit key).
		{"raw decrypt of one byte more than the modulus", Request{Op: OpRSADecryptRaw, SKI: ks.rsa.ski, Payload: make([]byte, size+1)}, CodeCryptoFailed},
		{"ciphertext shorter than the modulus", Request{Op: OpRSADecrypt, SKI: ks.rsa.ski, Payload: badPadding[1:]}, CodeCryptoFailed},
		{"raw ciphertext longer than the modulus", Request{Op: OpRSADecryptRaw, SKI: ks.rsa.ski, Payload: append([]byte{0}, badPadding...)}, CodeCryptoFailed},
		// 0x02
		{"unknown SKI and digest", Request{Op: OpECDSASignSHA256, SKI: madeUpID("nobody", SKISize), Digest: madeUpID("nobody", DigestSize), Payload: d32}, CodeKeyNotFound},
		{"no key identifier", Request{Op: OpECDSASignSHA256, Payload: d32}, CodeKeyNotFound},
		// 0x05
		{"opcode 0x00", Request{Op: 0x00, Payload: d32}, CodeBadOpcode},
		{"opcode 0x09", Request{Op: 0x09, SKI: ks.rsa.ski, Payload: d32}, CodeBadOpcode},
		{"RPC opcode 0x23", Request{Op: 0x23, Payload: d32}, CodeBadOpcode},
		{"custom function opcode 0x24", Request{Op: 0x24, Payload: d32}, CodeBadOpcode},
		{"opcode 0x38", Request{Op: 0x38, SKI: ks.rsa.ski, Payload: d32}, CodeBadOpcode},
		// 0x06
		{"response opcode", Request{Op: OpResponse, Payload: d32}, CodeUnexpectedOpcode},
		{"pong opcode", Request{Op: OpPong, Payload: d32}, CodeUnexpectedOpcode},
		{"error opcode", Request{Op: OpError, Payload: []byte{1}}, CodeUnexpectedOpcode},
		// 0x07
		{"sign without payload", Request{Op: OpECDSASignSHA256, SKI: ks.ec.ski}, CodeFormatError},
		{"decrypt without payload", Request{Op: OpRSADecrypt, SKI: ks.rsa.ski}, CodeFormatError},
		{"Ed25519 without payload", Request{Op: OpEd25519Sign, SKI: ks.ed.ski}, CodeFormatError},
		{"SHA-256 digest of 31 bytes", Request{Op: OpECDSASignSHA256, SKI: ks.ec.ski, Payload: d32[:31]}, CodeFormatError},
		{"SHA-384 digest of 32 bytes", Request{Op: OpRSASignSHA384, SKI: ks.rsa.ski, Payload: d32}, CodeFormatError},
		{"MD5SHA1 digest of 32 bytes", Request{Op: OpRSASignMD5SHA1, SKI: ks.rsa.ski, Payload: d32}, CodeFormatError},
		{"PSS SHA-512 digest of 32 bytes", Request{Op: OpRSAPSSSignSHA512, SKI: ks.rsa.ski, Payload: d32}, CodeFormatError},
		// 0x08
		{"Keys fails", Request{Op: OpECDSASignSHA256, SKI: ks.ec.ski, SNI: "broken.test", Payload: d32}, CodeInternalError},
		{"Keys panics", Request{Op: OpECDSASignSHA256, SKI: ks.ec.ski, SNI: "panic.test", Payload: d32}, CodeInternalError},
	}
	for _, tc := range cases {
		resp, err := c.Do(ctx, &tc.req)
		if got := codeOf(err); got != tc.want || resp == nil || resp.Op != OpError {
			t.Errorf("%s: got %v (%v), want %v", tc.name, err, resp, tc.want)
		}
		if err := c.Ping(ctx, []byte(tc.name)); err != nil {
			t.Fatalf("after %s, ping: %v", tc.name, err)
		}
	}

	// 0x02 again: a client the key is refused to sees "key not found".
	restricted := &Request{Op: OpECDSASignSHA256, SKI: ks.restricted.ski, Payload: d32}
	if _, err := c.Do(ctx, restricted); err != nil {
		t.Fatalf("edge-a may use the restricted key: %v", err)
	}
	b := h.dial(t, tr, &getPKI().clientB)
	if _, err := b.Do(ctx, restricted); codeOf(err) != CodeKeyNotFound {
		t.Errorf("edge-b asking for the restricted key: %v, want key not found", err)
	}

	// 0x04: another major version, on a raw stream.
	s := h.raw(t, tr)
	for i, major := range []byte{0, 2, 0xFF} {
		id := uint32(100 + i)
		s.send(t, rawMsg(major, id, item{TagSKI, ks.ec.ski}, opItem(OpECDSASignSHA256), item{TagPayload, d32}))
		resp, _ := s.mustRecv(t)
		if resp.ID != id || codeOf(resp.Err()) != CodeVersionMismatch {
			t.Errorf("major version %d: reply %+v, want a version mismatch", major, resp)
		}
	}
}

// malformed sends malformed requests on one raw stream, each followed by a
// ping: each gets a format error and the ping its pong.
func malformed(t *testing.T, h *harness, tr string) {
	ks := getKeys()
	d32 := make([]byte, 32)
	withBody := func(id uint32, body []byte) []byte {
		m := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(m[2:], uint16(len(body)))
		binary.BigEndian.PutUint32(m[4:], id)
		return append(m, body...)
	}
	longItem := rawMsg(1, 0, item{TagSKI, ks.ec.ski}, opItem(OpECDSASignSHA256), item{TagPayload, d32})
	binary.BigEndian.PutUint16(longItem[len(longItem)-32-2:], 33) // the payload claims one byte more than there is
	cases := []struct {
		name string
		msg  []byte
	}{
		{"item longer than the message", withBody(1, longItem[HeaderSize:])},
		{"duplicate opcode", rawMsg(1, 2, item{TagSKI, ks.ec.ski}, opItem(OpECDSASignSHA256), opItem(OpECDSASignSHA256), item{TagPayload, d32})},
		{"duplicate SKI", rawMsg(1, 3, item{TagSKI, ks.ec.ski}, item{TagSKI, ks.ec.ski}, opItem(OpECDSASignSHA256), item{TagPayload, d32})},
		{"duplicate payload", rawMsg(1, 4, item{TagSKI, ks.ec.ski}, opItem(OpECDSASignSHA256), item{TagPayload, d32}, item{TagPayload, d32})},
		{"no opcode", rawMsg(1, 5, item{TagSKI, ks.ec.ski}, item{TagPayload, d32})},
		{"empty body", rawMsg(1, 6)},
		{"SKI of 19 bytes", rawMsg(1, 7, item{TagSKI, ks.ec.ski[:19]}, opItem(OpECDSASignSHA256), item{TagPayload, d32})},
		{"digest of 31 bytes", rawMsg(1, 8, item{TagDigest, ks.ec.digest[:31]}, opItem(OpECDSASignSHA256), item{TagPayload, d32})},
		{"opcode of 2 bytes", rawMsg(1, 9, item{TagSKI, ks.ec.ski}, item{TagOpcode, []byte{byte(OpECDSASignSHA256), 0}}, item{TagPayload, d32})},
		{"empty opcode", rawMsg(1, 10, item{TagOpcode, nil})},
		{"client IP of 5 bytes", rawMsg(1, 11, item{TagClientIP, []byte{1, 2, 3, 4, 5}}, opItem(OpPing))},
		{"truncated item header", withBody(12, []byte{byte(TagOpcode), 0})},
		{"a lone tag byte after a good item", withBody(13, append(rawMsg(1, 0, opItem(OpPing))[HeaderSize:], 0x20))},
	}
	s := h.raw(t, tr)
	for i, tc := range cases {
		id := binary.BigEndian.Uint32(tc.msg[4:8])
		pingID := uint32(1000 + i)
		s.send(t, tc.msg, rawMsg(1, pingID, opItem(OpPing), item{TagPayload, []byte(tc.name)}))
		got := map[uint32]*Response{}
		for range 2 {
			resp, _ := s.mustRecv(t)
			got[resp.ID] = resp
		}
		if r := got[id]; r == nil || codeOf(r.Err()) != CodeFormatError {
			t.Errorf("%s: reply %+v, want a format error for ID %d", tc.name, r, id)
		}
		if r := got[pingID]; r == nil || r.Op != OpPong || string(r.Payload) != tc.name {
			t.Errorf("%s: the ping after it got %+v", tc.name, r)
		}
	}
}

// pipelining sends many requests in one write and checks every reply by
// its ID, then does the same through Conn from many goroutines.
func pipelining(t *testing.T, h *harness, tr string) {
	ks := getKeys()
	ecPub := ks.ec.signer.Public().(*ecdsa.PublicKey)
	rsaPub := ks.rsa.signer.Public().(*rsa.PublicKey)
	const n = 300
	type sent struct {
		op     Op
		digest []byte
	}
	want := map[uint32]sent{}
	var msgs [][]byte
	for i := range n {
		id := uint32(0x10000 + i*7919) // not in order of sending either
		d := digestOf(crypto.SHA256, fmt.Appendf(nil, "message %d", i))
		switch i % 4 {
		case 0, 1:
			msgs = append(msgs, rawMsg(1, id, item{TagSKI, ks.ec.ski}, opItem(OpECDSASignSHA256), item{TagPayload, d}))
			want[id] = sent{OpECDSASignSHA256, d}
		case 2:
			msgs = append(msgs, rawMsg(1, id, opItem(OpPing), item{TagPayload, d}))
			want[id] = sent{OpPing, d}
		case 3:
			if i%20 == 3 {
				msgs = append(msgs, rawMsg(1, id, item{TagSKI, ks.rsa.ski}, opItem(OpRSAPSSSignSHA256), item{TagPayload, d}))
				want[id] = sent{OpRSAPSSSignSHA256, d}
			} else {
				msgs = append(msgs, rawMsg(1, id, opItem(0x42)))
				want[id] = sent{0x42, nil}
			}
		}
	}
	s := h.raw(t, tr)
	s.send(t, msgs...)
	inOrder := true
	prev := -1
	for range n {
		resp, _ := s.mustRecv(t)
		w, ok := want[resp.ID]
		if !ok {
			t.Fatalf("reply for ID %#x, which was not asked or was answered twice", resp.ID)
		}
		delete(want, resp.ID)
		idx := int(resp.ID-0x10000) / 7919
		inOrder = inOrder && idx > prev
		prev = idx
		switch w.op {
		case OpECDSASignSHA256:
			if resp.Op != OpResponse || !ecdsa.VerifyASN1(ecPub, w.digest, resp.Payload) {
				t.Errorf("ID %#x: reply %v is not the signature of its digest", resp.ID, resp.Op)
			}
		case OpRSAPSSSignSHA256:
			if resp.Op != OpResponse || rsa.VerifyPSS(rsaPub, crypto.SHA256, w.digest, resp.Payload, nil) != nil {
				t.Errorf("ID %#x: reply %v is not the signature of its digest", resp.ID, resp.Op)
			}
		case OpPing:
			if resp.Op != OpPong || !bytes.Equal(resp.Payload, w.digest) {
				t.Errorf("ID %#x: pong does not echo its payload", resp.ID)
			}
		default:
			if codeOf(resp.Err()) != CodeBadOpcode {
				t.Errorf("ID %#x: %v, want bad opcode", resp.ID, resp.Err())
			}
		}
	}
	t.Logf("%d pipelined replies, in the order sent: %v", n, inOrder)

	// Through the client, from many goroutines at once.
	c := h.dial(t, tr, &getPKI().clientA)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				d := digestOf(crypto.SHA256, fmt.Appendf(nil, "goroutine %d request %d", g, i))
				resp, err := c.Do(ctx, &Request{Op: OpECDSASignSHA256, SKI: ks.ec.ski, Payload: d})
				if err != nil {
					errs <- err
					return
				}
				if !ecdsa.VerifyASN1(ecPub, d, resp.Payload) {
					errs <- fmt.Errorf("goroutine %d request %d: a signature of another digest", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestClientCertificateRequired checks that a client without a certificate,
// or with one of another CA, is refused at the TLS layer, and that TLS 1.2
// works with the suites keyless clients use.
func TestClientCertificateRequired(t *testing.T) {
	h := newHarness(t)
	pki := getPKI()
	ctx := ctxT(t)
	for _, tr := range transports {
		for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "another CA": &pki.untrusted} {
			t.Run(tr+"/"+name, func(t *testing.T) {
				cfg := clientConfig(nil)
				if cert != nil {
					// Send it even though the server names another CA.
					cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
				}
				var (
					c   *Conn
					err error
				)
				if tr == "quic" {
					c, err = DialQUIC(ctx, h.quicAddr, cfg)
				} else {
					c, err = Dial(ctx, h.tcpAddr, cfg)
				}
				if err == nil {
					// With TLS 1.3 the client finishes its handshake first;
					// the refusal arrives with the first read.
					err = c.Ping(ctx, []byte("let me in"))
					c.Close()
				}
				if err == nil {
					t.Fatal("a client without a valid certificate got an answer")
				}
				t.Logf("refused: %v", err)
			})
		}
	}
	t.Run("tcp/TLS 1.2", func(t *testing.T) {
		cfg := clientConfig(&pki.clientA)
		cfg.MaxVersion = tls.VersionTLS12
		tc, err := tls.Dial("tcp", h.tcpAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.ConnectionState().CipherSuite; got != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
			t.Errorf("cipher suite %s, want ECDHE-ECDSA-AES256-GCM-SHA384", tls.CipherSuiteName(got))
		}
		c := NewConn(tc)
		defer c.Close()
		if err := c.Ping(ctx, []byte("tls 1.2")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("tcp/TLS 1.2 with AES-128 only", func(t *testing.T) {
		cfg := clientConfig(&pki.clientA)
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		if tc, err := tls.Dial("tcp", h.tcpAddr, cfg); err == nil {
			tc.Close()
			t.Fatal("a TLS 1.2 handshake without an AES-256 suite succeeded")
		}
	})
}

// TestGarbage feeds garbage to live connections: well-framed messages with
// random bodies must each get a reply and leave the connection answering
// pings; unframed bytes must not stop the server.
func TestGarbage(t *testing.T) {
	h := newHarness(t)
	rng := mrand.New(mrand.NewPCG(1, 2))
	tags := []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x11, 0x12, 0x13, 0x20, 0x77}
	for _, tr := range transports {
		t.Run(tr+"/framed", func(t *testing.T) {
			s := h.raw(t, tr)
			const n = 400
			var msgs [][]byte
			for i := range n {
				var body []byte
				for range rng.IntN(8) {
					tag := tags[rng.IntN(len(tags))]
					l := rng.IntN(40)
					if tag == 0x11 && rng.IntN(2) == 0 {
						l = 1
					}
					claimed := l
					if rng.IntN(10) == 0 {
						claimed = l + rng.IntN(100) // an item longer than what follows
					}
					body = append(body, tag, byte(claimed>>8), byte(claimed))
					for range l {
						body = append(body, byte(rng.Uint32()))
					}
				}
				if rng.IntN(5) == 0 {
					body = append(body, byte(rng.Uint32())) // a stray byte
				}
				major := byte(1)
				if rng.IntN(10) == 0 {
					major = byte(rng.Uint32())
				}
				m := []byte{major, byte(rng.Uint32()), 0, 0, 0, 0, 0, 0}
				binary.BigEndian.PutUint16(m[2:], uint16(len(body)))
				binary.BigEndian.PutUint32(m[4:], uint32(i))
				msgs = append(msgs, append(m, body...))
			}
			msgs = append(msgs, rawMsg(1, n, opItem(OpPing), item{TagPayload, []byte("still there?")}))
			s.send(t, msgs...)
			seen := map[uint32]bool{}
			for range n + 1 {
				resp, _ := s.mustRecv(t)
				if seen[resp.ID] || resp.ID > n {
					t.Fatalf("unexpected reply ID %d", resp.ID)
				}
				seen[resp.ID] = true
				if resp.ID == n && (resp.Op != OpPong || string(resp.Payload) != "still there?") {
					t.Fatalf("the ping after the garbage got %+v", resp)
				}
				if resp.Op == OpError && codeOf(resp.Err()) == CodeInternalError {
					t.Errorf("ID %d: internal error: the server panicked", resp.ID)
				}
			}
		})
		t.Run(tr+"/unframed", func(t *testing.T) {
			for round := range 5 {
				s := h.raw(t, tr)
				junk := make([]byte, 1+rng.IntN(5000))
				for i := range junk {
					junk[i] = byte(rng.Uint32())
				}
				// The server may close the stream before all of it is
				// written (a header announcing a body over the maximum).
				s.w.Write(junk)
				s.closeWrite()
				for {
					if _, _, err := s.recv(); err != nil {
						break // the end: the server answered what it could frame
					}
				}
				c := h.dial(t, tr, &getPKI().clientA)
				if err := c.Ping(ctxT(t), []byte("after junk")); err != nil {
					t.Fatalf("round %d: a new connection after junk: %v", round, err)
				}
			}
		})
	}
}

// TestShutdown checks that Shutdown answers the requests already read and
// that a forced Shutdown cancels a stuck Lookup.
func TestShutdown(t *testing.T) {
	ks := getKeys()
	for _, tr := range transports {
		t.Run(tr+"/graceful", func(t *testing.T) {
			h := newHarness(t)
			c := h.dial(t, tr, &getPKI().clientA)
			ctx := ctxT(t)
			if err := c.Ping(ctx, nil); err != nil {
				t.Fatal(err)
			}
			d := make([]byte, 32)
			replied := make(chan error, 1)
			go func() {
				resp, err := c.Do(ctx, &Request{Op: OpECDSASignSHA256, SKI: ks.ec.ski, SNI: "slow.test", Payload: d})
				if err == nil && !ecdsa.VerifyASN1(ks.ec.signer.Public().(*ecdsa.PublicKey), d, resp.Payload) {
					err = errors.New("bad signature")
				}
				if err == nil {
					// The server closes the stream after the last reply: our
					// client sees it and closes its side (QUIC: the connection).
					c.Close()
				}
				replied <- err
			}()
			<-h.keys.entered
			shut := make(chan error, 1)
			go func() { shut <- h.srv.Shutdown(ctx) }()
			h.keys.release <- struct{}{}
			if err := <-replied; err != nil {
				t.Fatalf("the request in flight during Shutdown: %v", err)
			}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			h.shutDown = true
			for range 2 {
				if err := <-h.served; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}
			if _, err := Dial(ctx, h.tcpAddr, clientConfig(&getPKI().clientA)); err == nil {
				t.Error("a new connection after Shutdown was accepted")
			}
		})
		t.Run(tr+"/forced", func(t *testing.T) {
			h := newHarness(t)
			c := h.dial(t, tr, &getPKI().clientA)
			replied := make(chan error, 1)
			go func() {
				_, err := c.Do(ctxT(t), &Request{Op: OpECDSASignSHA256, SKI: ks.ec.ski, SNI: "slow.test", Payload: make([]byte, 32)})
				replied <- err
			}()
			<-h.keys.entered
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := h.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Shutdown with an ended context: %v, want context.Canceled", err)
			}
			h.shutDown = true
			// The Lookup saw its context end; the client gets an error or
			// a reply saying so, never a signature.
			if err := <-replied; err == nil {
				t.Fatal("a request stuck in Lookup succeeded after a forced Shutdown")
			}
		})
	}
}

// TestPaddedRSADecryptAnswersTheBlock: with WithPaddedRSADecrypt, opcode
// 0x01 answers the whole PKCS #1 v1.5 block, as gokeyless' server does
// and gokeyless' Go client expects (it removes the padding itself); the
// default answers the unpadded plaintext (TestConformance), as the C
// server does and its client expects.
func TestPaddedRSADecryptAnswersTheBlock(t *testing.T) {
	h := newHarness(t, WithPaddedRSADecrypt())
	c := h.dial(t, "tcp", &getPKI().clientA)
	ks := getKeys()
	pub := ks.rsa.signer.Public().(*rsa.PublicKey)
	secret := []byte("48 bytes of TLS 1.2 premaster secret, or so ...")
	//lint:ignore SA1019 the client's side of keyless's PKCS #1 v1.5 decrypt
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, secret)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(context.Background(), &Request{Op: OpRSADecrypt, SKI: ks.rsa.ski, Payload: ct})
	if err != nil {
		t.Fatal(err)
	}
	em := resp.Payload
	if len(em) != pub.Size() || em[0] != 0 || em[1] != 2 || !bytes.HasSuffix(em, append([]byte{0}, secret...)) {
		t.Fatalf("answered %x, want the padded block of %q", em, secret)
	}
	if got, err := pkcs1v15Unpad(em); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("the client's unpadding gives %q, %v", got, err)
	}
}
