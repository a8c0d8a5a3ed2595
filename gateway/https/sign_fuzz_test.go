package https

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// signingKeys stands in for a node's keys for /v1/verify: it knows one
// key of each type that signs, with the private keys the seeds sign with,
// and refuses everything else as refusingService does.
type signingKeys struct {
	refusingService
	keys map[string]*fsm.Key
}

func (s signingKeys) Key(_ context.Context, _, name string) (*fsm.Key, error) {
	if k := s.keys[name]; k != nil {
		return k, nil
	}
	return nil, cluster.Errorf(cluster.KindNotFound, "key %q does not exist", name)
}

// recordingSigner is the SignService behind /v1/sign: it records what
// reaches it and refuses it.
type recordingSigner struct {
	mu  sync.Mutex
	got []*fsm.Signed
}

func (r *recordingSigner) Sign(_ context.Context, sg *fsm.Signed) (*api.Signature, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, sg)
	return nil, cluster.Errorf(cluster.KindDenied, "refused")
}

// FuzzSignVerifyBodies feeds arbitrary bodies to POST /v1/sign and POST
// /v1/verify. Every answer is 200 or an error body with a kind, nothing
// panics; /v1/sign hands the node only a release command signed by the
// caller's operator ID; /v1/verify answers valid only for a signature
// the standard library's verifier accepts under the named key's public
// key (crypto/ed25519, crypto/rsa PKCS #1 v1.5 or PSS over SHA-256,
// crypto/ecdsa over SHA-256).
func FuzzSignVerifyBodies(f *testing.F) {
	op := &fsm.Operator{ID: "op", Name: "fuzz", Admin: true}
	msg := []byte("message")
	digest := sha256.Sum256(msg)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pkix := func(pub any) []byte {
		b, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	keys := map[string]*fsm.Key{
		"ed":    {Name: "ed", Type: fsm.KeyTypeFROST, KeyDetail: &fsm.KeyDetail{Public: pkix(edPub)}},
		"rsa":   {Name: "rsa", Type: fsm.KeyTypeRSAThreshold, KeyDetail: &fsm.KeyDetail{Public: pkix(&rsaPriv.PublicKey)}},
		"ecdsa": {Name: "ecdsa", Type: fsm.KeyTypeECDSA, KeyDetail: &fsm.KeyDetail{Public: pkix(&ecPriv.PublicKey)}},
	}
	pkcs1, _ := rsa.SignPKCS1v15(rand.Reader, rsaPriv, crypto.SHA256, digest[:])
	pss, _ := rsa.SignPSS(rand.Reader, rsaPriv, crypto.SHA256, digest[:], nil)
	ecSig, _ := ecdsa.SignASN1(rand.Reader, ecPriv, digest[:])
	for _, v := range []api.VerifyRequest{
		{Key: "ed", Message: msg, Signature: ed25519.Sign(edPriv, msg)},
		{Key: "rsa", Message: msg, Signature: pkcs1},
		{Key: "rsa", Message: msg, Signature: pss, Padding: fsm.PaddingPSS},
		{Key: "ecdsa", Message: msg, Signature: ecSig},
		{Key: "ecdsa", Message: msg, Signature: ecSig, Padding: fsm.PaddingPSS},
		{Key: "none", Message: msg},
	} {
		b, _ := json.Marshal(v)
		f.Add(b)
	}
	_, opKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, cmd := range []*fsm.Command{
		{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "ed", Op: fsm.OpSign, Message: msg}},
		{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: "x"}},
	} {
		for _, signer := range []string{op.ID, "another"} {
			sg, err := fsm.Sign(signer, opKey, cmd)
			if err != nil {
				f.Fatal(err)
			}
			b, _ := json.Marshal(sg)
			f.Add(b)
		}
	}
	f.Add([]byte(`{"signer":"op","payload":"bnVsbA==","signature":""}`))
	f.Add([]byte(`null`))

	_, key, _ := ed25519.GenerateKey(nil)
	svc := signingKeys{refusingService{id: cluster.Identity{NodeID: "fuzz"}}, keys}
	cert, err := cluster.NewServingCert(key, "fuzz", svc.Membership)
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewServer(svc, cert, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	signer := &recordingSigner{}
	handlers := map[string]http.HandlerFunc{"sign": s.sign(signer), "verify": s.verify}
	f.Fuzz(func(t *testing.T, body []byte) {
		for name, h := range handlers {
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			req = req.WithContext(context.WithValue(req.Context(), principalKey{}, op))
			w := httptest.NewRecorder()
			h(w, req)
			if w.Code != http.StatusOK {
				var e client.ErrorReply
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Kind == "" {
					t.Fatalf("%s: status %d with body %q: want an error with a kind", name, w.Code, w.Body.String())
				}
				continue
			}
			if name != "verify" {
				t.Fatalf("%s answered 200 from a service that refuses: %q", name, w.Body.String())
			}
			var rep api.VerifyReply
			if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
				t.Fatalf("verify answered %q: %v", w.Body.String(), err)
			}
			if rep.Valid != (rep.Error == "") {
				t.Fatalf("verify answered valid %v with error %q", rep.Valid, rep.Error)
			}
			if rep.Valid {
				var v api.VerifyRequest
				if err := json.Unmarshal(body, &v); err != nil {
					t.Fatalf("verify answered valid for a body that does not parse: %v", err)
				}
				if !stdlibVerifies(keys[v.Key], v) {
					t.Fatalf("verify answered valid for %+v, which the standard library refuses", v)
				}
			}
		}
		signer.mu.Lock()
		defer signer.mu.Unlock()
		for _, sg := range signer.got {
			var cmd fsm.Command
			if sg.Signer != op.ID || json.Unmarshal(sg.Payload, &cmd) != nil || cmd.Type != fsm.TypeRelease {
				t.Fatalf("/v1/sign handed the node %+v: not a release signed by the caller %s", sg, op.ID)
			}
		}
		signer.got = nil
	})
}

// stdlibVerifies checks v with the standard library alone.
func stdlibVerifies(k *fsm.Key, v api.VerifyRequest) bool {
	if k == nil {
		return false
	}
	pub, err := x509.ParsePKIXPublicKey(k.Public())
	if err != nil {
		return false
	}
	digest := sha256.Sum256(v.Message)
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		return v.Padding == "" && ed25519.Verify(pub, v.Message, v.Signature)
	case *rsa.PublicKey:
		if v.Padding == fsm.PaddingPSS {
			return rsa.VerifyPSS(pub, crypto.SHA256, digest[:], v.Signature, nil) == nil
		}
		return (v.Padding == "" || v.Padding == fsm.PaddingPKCS1v15) && rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], v.Signature) == nil
	case *ecdsa.PublicKey:
		return v.Padding == "" && ecdsa.VerifyASN1(pub, digest[:], v.Signature)
	}
	return false
}
