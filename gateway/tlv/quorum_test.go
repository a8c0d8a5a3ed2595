package tlv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"testing"

	tssrsa "github.com/cloudflare/circl/tss/rsa"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// quorumNode is a node whose rsa-threshold key "edge" is dealt 2-of-3
// here: ThresholdRSA combines two holders' shares as the cluster does
// (cluster's own tests run the real quorum), and nothing on the gateway
// side ever sees d.
type quorumNode struct {
	fakeNode
	shares []tssrsa.KeyShare
	pub    *rsa.PublicKey
	down   bool // no quorum
	calls  int
}

func (q *quorumNode) ThresholdRSA(ctx context.Context, gateway, name string, input []byte, client string) ([]byte, error) {
	q.calls++
	if q.down {
		return nil, cluster.Errorf(cluster.KindNoQuorum, "1 of the 2 share holders needed answered")
	}
	if gateway != fsm.GatewayTLV || name != "edge" || len(input) != q.pub.Size() || new(big.Int).SetBytes(input).Cmp(q.pub.N) >= 0 {
		return nil, cluster.Errorf(cluster.KindInvalid, "bad input")
	}
	var ss []tssrsa.SignShare
	for _, ks := range q.shares[1:] {
		s, err := ks.Sign(rand.Reader, q.pub, input, false)
		if err != nil {
			return nil, err
		}
		ss = append(ss, s)
	}
	return tssrsa.CombineSignShares(q.pub, 3, 2, ss, input)
}

func newQuorumNode(t *testing.T) (*quorumNode, []byte) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	shares, err := tssrsa.Deal(rand.Reader, 3, 2, priv, false)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ski, err := SKI(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	q := &quorumNode{shares: shares, pub: &priv.PublicKey}
	q.fakeNode = fakeNode{keys: map[string]*fsm.Key{"edge": {Name: "edge", Type: fsm.KeyTypeRSAThreshold, State: fsm.KeyActive, Version: 1,
		KeyDetail: &fsm.KeyDetail{Public: pub, Access: &fsm.Access{Gateways: []string{fsm.GatewayTLV}, ClientCerts: [][]byte{getPKI().clientA.Leaf.Raw}}, RSA: &fsm.RSAThresholdKey{Threshold: 2, Shares: make([]fsm.RSAShare, 3)}}}},
		applied: make(chan struct{})}
	return q, ski
}

// TestThresholdRSAKeyServesEveryRSAOpcode: an rsa-threshold key signs
// (PKCS #1 v1.5 with every hash, PSS) and decrypts (0x01 unpadded, 0x08
// raw) through the server's operations, by quorum, and is never held: no
// release is asked and nothing is reported held.
func TestThresholdRSAKeyServesEveryRSAOpcode(t *testing.T) {
	q, ski := newQuorumNode(t)
	keys := NewClusterKeys(q)
	t.Cleanup(keys.Close)
	lan := Client{Cert: getPKI().clientA.Leaf, Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4000}}
	signer, err := keys.Lookup(context.Background(), ski, nil, "", lan)
	if err != nil {
		t.Fatal(err)
	}
	for op := OpRSASignMD5SHA1; op <= OpRSASignSHA512; op++ {
		h := ops[op].opts.HashFunc()
		digest := make([]byte, h.Size())
		rand.Read(digest)
		sig, err := perform(ops[op], signer, digest)
		if err != nil {
			t.Fatalf("%v: %v", op, err)
		}
		if err := rsa.VerifyPKCS1v15(q.pub, h, digest, sig); err != nil {
			t.Errorf("%v: the signature does not verify: %v", op, err)
		}
	}
	for _, op := range []Op{OpRSAPSSSignSHA256, OpRSAPSSSignSHA384, OpRSAPSSSignSHA512} {
		pss := ops[op].opts.(*rsa.PSSOptions)
		digest := make([]byte, pss.Hash.Size())
		rand.Read(digest)
		sig, err := perform(ops[op], signer, digest)
		if err != nil {
			t.Fatalf("%v: %v", op, err)
		}
		if err := rsa.VerifyPSS(q.pub, pss.Hash, digest, sig, pss); err != nil {
			t.Errorf("%v: the signature does not verify: %v", op, err)
		}
	}
	secret := bytes.Repeat([]byte{0x03, 0x03, 0x42}, 16)
	//lint:ignore SA1019 the client's side of keyless's PKCS #1 v1.5 decrypt
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, q.pub, secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := perform(ops[OpRSADecrypt], signer, ct)
	if err != nil || !bytes.Equal(got, secret) {
		t.Errorf("decrypt: %x, %v; want the unpadded %x", got, err, secret)
	}
	raw, err := perform(ops[OpRSADecryptRaw], signer, ct)
	if err != nil || raw[0] != 0 || raw[1] != 2 || !bytes.HasSuffix(raw, secret) || len(raw) != q.pub.Size() {
		t.Errorf("raw decrypt: %x, %v", raw, err)
	}
	if _, err := perform(ops[OpRSADecryptRaw], signer, make([]byte, q.pub.Size()+1)); codeOf(err) != CodeCryptoFailed {
		t.Errorf("raw decrypt of a ciphertext longer than the modulus: %v, want crypto failed", err)
	}
	if _, err := perform(ops[OpRSADecryptRaw], signer, bytes.Repeat([]byte{0xFF}, q.pub.Size())); codeOf(err) != CodeCryptoFailed {
		t.Errorf("raw decrypt of c >= n: %v, want crypto failed", err)
	}
	if q.releaseCount() != 0 || len(q.reported()) != 0 {
		t.Errorf("a threshold key was released (%d) or held (%v)", q.releaseCount(), q.reported())
	}
	q.down = true
	digest := sha256.Sum256([]byte("no quorum"))
	if _, err := perform(ops[OpRSASignSHA256], signer, digest[:]); codeOf(err) != CodeInternalError {
		t.Errorf("without a quorum: %v, want internal error", err)
	}
}

// TestPKCS1v15Unpad: the block's shape is checked, and only the message
// comes out.
func TestPKCS1v15Unpad(t *testing.T) {
	block := func(ps int, msg string) []byte {
		b := append([]byte{0, 2}, bytes.Repeat([]byte{0x5A}, ps)...)
		return append(append(b, 0), msg...)
	}
	cases := []struct {
		name string
		em   []byte
		want string
		ok   bool
	}{
		{"eight padding bytes", block(8, "secret"), "secret", true},
		{"an empty message", block(20, ""), "", true},
		{"seven padding bytes", block(7, "secret"), "", false},
		{"first byte not zero", append([]byte{1}, block(10, "x")[1:]...), "", false},
		{"block type 1", append([]byte{0, 1}, block(10, "x")[2:]...), "", false},
		{"no separator", append([]byte{0, 2}, bytes.Repeat([]byte{7}, 30)...), "", false},
		{"too short", []byte{0, 2, 1, 0}, "", false},
	}
	for _, tc := range cases {
		got, err := pkcs1v15Unpad(tc.em)
		if tc.ok != (err == nil) || string(got) != tc.want {
			t.Errorf("%s: %q, %v", tc.name, got, err)
		}
		var e *Error
		if err != nil && (!errors.As(err, &e) || e.Code != CodeCryptoFailed) {
			t.Errorf("%s: %v is not a crypto failure", tc.name, err)
		}
	}
}

var _ crypto.Decrypter = (*quorumRSA)(nil)
