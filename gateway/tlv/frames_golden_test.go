package tlv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/keyquorum/keyquorum/golden"
	"log/slog"
	"math/big"
	"os"
	"strings"
	"testing"
)

// The golden frames' keys: fixed, so the frames are. The RSA key is a
// test key made once (testdata/rsa-test-key.pem, which serves nothing);
// the ECDSA and Ed25519 keys come from fixed bytes.
type goldenKeys struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	ed  ed25519.PrivateKey
}

func loadGoldenKeys(t *testing.T) *goldenKeys {
	t.Helper()
	b, err := os.ReadFile("testdata/rsa-test-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("testdata/rsa-test-key.pem holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &goldenKeys{rsa: k.(*rsa.PrivateKey), ec: ec, ed: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x43}, 32))}
}

// Lookup finds the golden keys by SKI; the server name "broken.test" is a
// failure of no kind (an internal error).
func (k *goldenKeys) Lookup(_ context.Context, ski, _ []byte, sni string, _ Client) (crypto.Signer, error) {
	if sni == "broken.test" {
		return nil, errors.New("no quorum")
	}
	for _, s := range []crypto.Signer{k.rsa, k.ec, k.ed} {
		if id, _ := SKI(s.Public()); bytes.Equal(id, ski) {
			return s, nil
		}
	}
	return nil, ErrKeyNotFound
}

// answer is the server's reply to one request message, from the same
// code that serves connections (session.handle), with no connection.
func answer(t *testing.T, keys Keys, msg []byte) []byte {
	t.Helper()
	srv := NewServer(keys, slog.New(slog.DiscardHandler))
	sess := srv.newSession(nil, Client{})
	defer sess.cancel()
	h, err := ParseHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	j := newJob(sess, h)
	j.body = append(j.body[:0], msg[HeaderSize:]...)
	sess.handle(j)
	reply := bytes.Clone(j.reply)
	j.release()
	return reply
}

// dump is a hex dump in which a run of identical 16-byte rows (the
// padding) is one "*", as hexdump -C writes it; the last line is the size.
func dump(b []byte) string {
	var out strings.Builder
	var prev []byte
	starred := false
	for off := 0; off < len(b); off += 16 {
		row := b[off:min(off+16, len(b))]
		if prev != nil && bytes.Equal(row, prev) && len(row) == 16 {
			if !starred {
				out.WriteString("*\n")
				starred = true
			}
			continue
		}
		prev, starred = row, false
		fmt.Fprintf(&out, "%08x ", off)
		for i := range 16 {
			if i < len(row) {
				fmt.Fprintf(&out, " %02x", row[i])
			} else {
				out.WriteString("   ")
			}
		}
		out.WriteString("  |")
		for _, c := range row {
			if c < 0x20 || c > 0x7e {
				c = '.'
			}
			out.WriteByte(c)
		}
		out.WriteString("|\n")
	}
	fmt.Fprintf(&out, "%08x\n", len(b))
	return out.String()
}

// TestFramesGolden pins the keyless protocol's frames: for every opcode,
// the request a client sends (all of its items: digest, SNI, client IP,
// SKI, opcode, payload) and, where the operation is deterministic (RSA
// PKCS #1 v1.5 signatures and decryption, Ed25519, ping), the server's
// reply, padded as it sends it. ECDSA and RSA-PSS signatures are
// randomized: their replies are checked by verifying the signature, and
// their requests pinned. The error replies, one per code the server
// answers a request with, are pinned too.
func TestFramesGolden(t *testing.T) {
	k := loadGoldenKeys(t)
	msg := []byte("keyquorum golden frame")
	item := func(signer crypto.Signer, op Op, payload []byte) *Request {
		ski, err := SKI(signer.Public())
		if err != nil {
			t.Fatal(err)
		}
		digest, err := Digest(signer.Public())
		if err != nil {
			t.Fatal(err)
		}
		return &Request{ID: 0x01000000 | uint32(op), Op: op, Digest: digest, SNI: "www.example.com",
			ClientIP: []byte{192, 0, 2, 1}, SKI: ski, Payload: payload}
	}
	digest := func(h crypto.Hash) []byte {
		if h == crypto.MD5SHA1 {
			return bytes.Repeat([]byte{0x36}, 36) // MD5 || SHA-1 of nothing in particular
		}
		d := h.New()
		d.Write(msg)
		return d.Sum(nil)
	}
	ciphertext := rsaCiphertext(k.rsa)
	type frame struct {
		name   string
		req    *Request
		pinned bool                         // the reply is deterministic
		verify func(t *testing.T, r []byte) // else: a check of the reply's result
	}
	var frames []frame
	for i, h := range []crypto.Hash{crypto.MD5SHA1, crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		frames = append(frames, frame{name: (OpRSASignMD5SHA1 + Op(i)).String(), req: item(k.rsa, OpRSASignMD5SHA1+Op(i), digest(h)), pinned: true})
		d := digest(h)
		frames = append(frames, frame{name: (OpECDSASignMD5SHA1 + Op(i)).String(), req: item(k.ec, OpECDSASignMD5SHA1+Op(i), d),
			verify: func(t *testing.T, sig []byte) {
				if !ecdsa.VerifyASN1(&k.ec.PublicKey, d, sig) {
					t.Errorf("the ECDSA signature does not verify")
				}
			}})
	}
	for i, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		d := digest(h)
		frames = append(frames, frame{name: (OpRSAPSSSignSHA256 + Op(i)).String(), req: item(k.rsa, OpRSAPSSSignSHA256+Op(i), d),
			verify: func(t *testing.T, sig []byte) {
				if err := rsa.VerifyPSS(&k.rsa.PublicKey, h, d, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
					t.Errorf("the RSA-PSS signature does not verify: %v", err)
				}
			}})
	}
	frames = append(frames,
		frame{name: OpRSADecrypt.String(), req: item(k.rsa, OpRSADecrypt, ciphertext), pinned: true},
		frame{name: OpRSADecryptRaw.String(), req: item(k.rsa, OpRSADecryptRaw, ciphertext), pinned: true},
		frame{name: OpEd25519Sign.String(), req: item(k.ed, OpEd25519Sign, msg), pinned: true},
		frame{name: OpPing.String(), req: &Request{ID: 7, Op: OpPing, Payload: []byte("are you there")}, pinned: true},
	)
	unknown := item(k.ec, OpECDSASignSHA256, digest(crypto.SHA256))
	unknown.SKI, unknown.Digest = bytes.Repeat([]byte{0xEE}, SKISize), nil
	broken := item(k.ec, OpECDSASignSHA256, digest(crypto.SHA256))
	broken.SNI = "broken.test"
	shortDigest := item(k.ec, OpECDSASignSHA256, digest(crypto.SHA1))
	frames = append(frames,
		frame{name: "error-crypto-failed", req: item(k.ec, OpRSASignSHA256, digest(crypto.SHA256)), pinned: true},
		frame{name: "error-key-not-found", req: unknown, pinned: true},
		frame{name: "error-bad-opcode", req: &Request{ID: 9, Op: 0x99}, pinned: true},
		frame{name: "error-unexpected-opcode", req: &Request{ID: 10, Op: OpResponse, Payload: []byte{}}, pinned: true},
		frame{name: "error-format", req: shortDigest, pinned: true},
		frame{name: "error-internal", req: broken, pinned: true},
	)
	for _, f := range frames {
		t.Run(f.name, func(t *testing.T) {
			req, err := f.req.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			reply := answer(t, k, req)
			resp, err := ParseResponse(reply)
			if err != nil {
				t.Fatalf("the reply does not parse: %v", err)
			}
			if resp.ID != f.req.ID {
				t.Errorf("reply ID %#x, want the request's %#x", resp.ID, f.req.ID)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "request (%s, ID %#x):\n%s", f.req.Op, f.req.ID, dump(req))
			if f.pinned {
				fmt.Fprintf(&b, "reply (%s):\n%s", resp.Op, dump(reply))
			} else {
				if resp.Op != OpResponse {
					t.Fatalf("reply %s %x, want a response", resp.Op, resp.Payload)
				}
				f.verify(t, resp.Payload)
				fmt.Fprintf(&b, "reply (%s): a randomized signature, verified, not pinned\n", resp.Op)
			}
			golden.Check(t, f.name+".txt", []byte(b.String()))
		})
	}
	t.Run("error-version-mismatch", func(t *testing.T) {
		req, _ := (&Request{ID: 11, Op: OpPing}).Marshal()
		req[0] = 2
		golden.Check(t, "error-version-mismatch.txt", []byte("request (ping, major version 2):\n"+dump(req)+"reply:\n"+dump(answer(t, k, req))))
	})
	t.Run("error-read", func(t *testing.T) {
		// Answered when a client ends its side in the middle of a
		// message; made here as the reader makes it.
		golden.Check(t, "error-read.txt", []byte("reply:\n"+dump(appendReply(nil, 12, OpError, []byte{byte(CodeReadError)}))))
	})
}

// rsaCiphertext is a fixed PKCS #1 v1.5 encryption of a TLS premaster
// secret under k: the padding string is fixed bytes instead of random
// ones, so the ciphertext is fixed.
func rsaCiphertext(k *rsa.PrivateKey) []byte {
	size := k.PublicKey.Size()
	secret := sha256.Sum256([]byte("premaster"))
	em := make([]byte, size)
	em[1] = 2
	for i := 2; i < size-len(secret)-1; i++ {
		em[i] = 0xAB
	}
	copy(em[size-len(secret):], secret[:])
	m := new(big.Int).SetBytes(em)
	c := new(big.Int).Exp(m, big.NewInt(int64(k.PublicKey.E)), k.PublicKey.N)
	return c.FillBytes(make([]byte, size))
}
