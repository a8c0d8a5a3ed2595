package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/gateway/tlv"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// TestFROSTSignCLI: an Ed25519 key imported from a PEM file with keyctl
// (dealt in FROST shares on the client) signs by quorum through every
// node of a real 3-node cluster; every signature verifies with
// crypto/ed25519 under the PEM's public key and with keyctl key verify; a
// tampered message does not; key show says the key is never assembled.
func TestFROSTSignCLI(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemFile, msgFile, badFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "msg"), filepath.Join(dir, "bad")
	msg := []byte("release 1.2.3\n")
	for f, b := range map[string][]byte{pemFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), msgFile: msg, badFile: []byte("release 1.2.4\n")} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.mustKeyctl(1, "key", "create", "release-signing", "--type", "ed25519-frost", "--from-file", pemFile)
	if show := string(c.mustKeyctl(2, "key", "show", "release-signing").stdout); !strings.Contains(show, "FROST shares") || !strings.Contains(show, "never assembled") {
		t.Errorf("key show does not say the key is in FROST shares and never assembled:\n%s", show)
	}
	for i := 1; i <= 3; i++ {
		out := strings.TrimSpace(string(c.mustKeyctl(i, "key", "sign", "release-signing", "--in", msgFile).stdout))
		sig, err := base64.StdEncoding.DecodeString(out)
		if err != nil {
			t.Fatalf("node %d printed %q, not base64: %v", i, out, err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatalf("node %d: the signature does not verify with crypto/ed25519", i)
		}
		c.mustKeyctl(i%3+1, "key", "verify", "release-signing", "--signature", out, "--in", msgFile)
		if r := c.keyctl(i%3+1, "key", "verify", "release-signing", "--signature", out, "--in", badFile); r.code == 0 {
			t.Fatalf("keyctl key verify accepted the signature for another message: %v", r)
		}
	}

	// gRPC: Sign and Verify, over TCP and QUIC.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, quic := range []bool{false, true} {
		gc := keyquorumv1.NewClusterServiceClient(c.grpcConn(2, quic, true))
		resp, err := gc.Sign(ctx, &keyquorumv1.SignRequest{Request: c.operatorSign(&fsm.Command{Type: fsm.TypeRelease,
			Release: &fsm.ReleaseRequest{Key: "release-signing", Op: fsm.OpSign, Message: msg}})})
		if err != nil || !ed25519.Verify(pub, msg, resp.GetSignature()) || len(resp.GetSigners()) != 2 {
			t.Fatalf("gRPC Sign (quic %v): %v %v", quic, err, resp)
		}
		vr, err := gc.Verify(ctx, &keyquorumv1.VerifyRequest{Key: "release-signing", Message: msg, Signature: resp.GetSignature()})
		if err != nil || !vr.GetValid() {
			t.Fatalf("gRPC Verify of a good signature (quic %v): %v %v", quic, err, vr)
		}
		vr, err = gc.Verify(ctx, &keyquorumv1.VerifyRequest{Key: "release-signing", Message: []byte("other"), Signature: resp.GetSignature()})
		if err != nil || vr.GetValid() || vr.GetError() == "" {
			t.Fatalf("gRPC Verify of another message (quic %v): %v %v", quic, err, vr)
		}
	}
}

// TestTLVSignsEd25519ByQuorum: the Keyless SSL gateway of every node of a
// real cluster signs with an ed25519-frost key by quorum, over TCP and
// QUIC: no node holds the key, and the signature verifies with
// crypto/ed25519; after a revoke the key is refused.
func TestTLVSignsEd25519ByQuorum(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(dir, "ed.pem")
	writeFile(t, pemFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	c.mustKeyctl(1, "key", "create", "tls/ed", "--type", "ed25519-frost", "--from-file", pemFile,
		"--gateway", "tlv", "--client-cert", c.envValue("KEYQUORUM_CLIENT_CERT"))
	ski, err := tlv.SKI(pub)
	if err != nil {
		t.Fatal(err)
	}
	conf := c.tlsConfig(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	msg := []byte("a TLS 1.3 CertificateVerify input")
	for i := 1; i <= 3; i++ {
		for _, quic := range []bool{false, true} {
			var conn *tlv.Conn
			if quic {
				conn, err = tlv.DialQUIC(ctx, c.gatewayAddr(i, "tlv"), conf.Clone())
			} else {
				conn, err = tlv.Dial(ctx, c.gatewayAddr(i, "tlv"), conf.Clone())
			}
			if err != nil {
				t.Fatalf("node %d (quic %v): dial: %v", i, quic, err)
			}
			resp, err := conn.Do(ctx, &tlv.Request{Op: tlv.OpEd25519Sign, SKI: ski, Payload: msg})
			if err != nil || resp.Err() != nil || !ed25519.Verify(pub, msg, resp.Payload) {
				t.Fatalf("node %d (quic %v): ed25519 sign by quorum: %v %v", i, quic, err, resp)
			}
			conn.Close()
		}
	}
	c.mustKeyctl(1, "key", "revoke", "tls/ed")
	conn, err := tlv.Dial(ctx, c.gatewayAddr(2, "tlv"), conf.Clone())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	eventually(t, 10*time.Second, "the revoked key to be refused on node 2", func() (bool, string) {
		_, err := conn.Do(ctx, &tlv.Request{Op: tlv.OpEd25519Sign, SKI: ski, Payload: msg})
		var e *tlv.Error
		return errors.As(err, &e) && e.Code == tlv.CodeKeyNotFound, fmt.Sprint(err)
	})
}

// TestThresholdRSASignCLI: an RSA key imported from a PEM file with
// keyctl as an rsa-threshold key (dealt in Shoup shares on the client)
// signs by quorum through every node of a real 3-node cluster, with PKCS
// #1 v1.5 (the default) and PSS as keyctl key sign --padding asks; every
// signature verifies with crypto/rsa and with keyctl key verify under its
// padding only; gRPC Sign and Verify take the padding too.
func TestThresholdRSASignCLI(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	dir := t.TempDir()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemFile, msgFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "msg")
	msg := []byte("release 2.0.0\n")
	digest := sha256.Sum256(msg)
	for f, b := range map[string][]byte{pemFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), msgFile: msg} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.mustKeyctl(1, "key", "create", "rsa-signing", "--type", "rsa-threshold", "--from-file", pemFile)
	verify := func(padding string, sig []byte) error {
		if padding == fsm.PaddingPSS {
			return rsa.VerifyPSS(&priv.PublicKey, crypto.SHA256, digest[:], sig, nil)
		}
		return rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, digest[:], sig)
	}
	for i := 1; i <= 3; i++ {
		for _, padding := range []string{fsm.PaddingPKCS1v15, fsm.PaddingPSS} {
			args := []string{"key", "sign", "rsa-signing", "--in", msgFile}
			other := fsm.PaddingPSS
			if padding == fsm.PaddingPSS {
				args, other = append(args, "--padding", padding), fsm.PaddingPKCS1v15
			}
			out := strings.TrimSpace(string(c.mustKeyctl(i, args...).stdout))
			sig, err := base64.StdEncoding.DecodeString(out)
			if err != nil {
				t.Fatalf("node %d printed %q, not base64: %v", i, out, err)
			}
			if err := verify(padding, sig); err != nil {
				t.Fatalf("node %d: the %s signature does not verify with crypto/rsa: %v", i, padding, err)
			}
			c.mustKeyctl(i%3+1, "key", "verify", "rsa-signing", "--signature", out, "--in", msgFile, "--padding", padding)
			if r := c.keyctl(i%3+1, "key", "verify", "rsa-signing", "--signature", out, "--in", msgFile, "--padding", other); r.code == 0 {
				t.Fatalf("keyctl key verify accepted the %s signature as %s: %v", padding, other, r)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gc := keyquorumv1.NewClusterServiceClient(c.grpcConn(2, false, true))
	resp, err := gc.Sign(ctx, &keyquorumv1.SignRequest{Request: c.operatorSign(&fsm.Command{Type: fsm.TypeRelease,
		Release: &fsm.ReleaseRequest{Key: "rsa-signing", Op: fsm.OpSign, Message: msg, Padding: fsm.PaddingPSS}})})
	if err != nil || verify(fsm.PaddingPSS, resp.GetSignature()) != nil {
		t.Fatalf("gRPC Sign with PSS: %v %v", err, resp)
	}
	vr, err := gc.Verify(ctx, &keyquorumv1.VerifyRequest{Key: "rsa-signing", Message: msg, Signature: resp.GetSignature(), Padding: fsm.PaddingPSS})
	if err != nil || !vr.GetValid() {
		t.Fatalf("gRPC Verify of a good PSS signature: %v %v", err, vr)
	}
	vr, err = gc.Verify(ctx, &keyquorumv1.VerifyRequest{Key: "rsa-signing", Message: msg, Signature: resp.GetSignature()})
	if err != nil || vr.GetValid() || vr.GetError() == "" {
		t.Fatalf("gRPC Verify of a PSS signature as PKCS #1 v1.5: %v %v", err, vr)
	}
}

// TestAssembledECDSASignCLI: ECDSA P-256 keys stay assembled (no practical
// threshold scheme): an ECDSA key imported from a PEM file signs through
// every node of a real 3-node cluster with keyctl key sign, and over gRPC
// (TCP and QUIC); each signature verifies with crypto/ecdsa under the
// PEM's public key and with keyctl key verify and gRPC Verify, and a
// tampered message does not. key show says where the key is whole: on the
// node that coordinates a signature, for the key's assemble_ttl, and lists
// the nodes that hold it now.
func TestAssembledECDSASignCLI(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemFile, msgFile, badFile := filepath.Join(dir, "ec.pem"), filepath.Join(dir, "msg"), filepath.Join(dir, "bad")
	msg := []byte("firmware 4.2\n")
	writeFile(t, pemFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	writeFile(t, msgFile, msg)
	writeFile(t, badFile, []byte("firmware 4.3\n"))
	c.mustKeyctl(1, "key", "create", "fw-signing", "--type", "ecdsa", "--from-file", pemFile, "--assemble-ttl", "10m")
	digest := sha256.Sum256(msg)
	for i := 1; i <= 3; i++ {
		out := strings.TrimSpace(string(c.mustKeyctl(i, "key", "sign", "fw-signing", "--in", msgFile).stdout))
		sig, err := base64.StdEncoding.DecodeString(out)
		if err != nil {
			t.Fatalf("node %d printed %q, not base64: %v", i, out, err)
		}
		if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig) {
			t.Fatalf("node %d: the signature does not verify with crypto/ecdsa", i)
		}
		c.mustKeyctl(i%3+1, "key", "verify", "fw-signing", "--signature", out, "--in", msgFile)
		if r := c.keyctl(i%3+1, "key", "verify", "fw-signing", "--signature", out, "--in", badFile); r.code == 0 {
			t.Fatalf("keyctl key verify accepted the signature for another message: %v", r)
		}
	}
	show := string(c.mustKeyctl(2, "key", "show", "fw-signing").stdout)
	for _, want := range []string{"assembled: ECDSA has no practical threshold scheme", "coordinating a key sign", "up to 10m0s", "in memory: "} {
		if !strings.Contains(show, want) {
			t.Errorf("key show does not say %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, "in memory: on no node") {
		t.Errorf("key show lists no node holding the key after three signatures with a 10m assemble_ttl:\n%s", show)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, quic := range []bool{false, true} {
		gc := keyquorumv1.NewClusterServiceClient(c.grpcConn(2, quic, true))
		resp, err := gc.Sign(ctx, &keyquorumv1.SignRequest{Request: c.operatorSign(&fsm.Command{Type: fsm.TypeRelease,
			Release: &fsm.ReleaseRequest{Key: "fw-signing", Op: fsm.OpSign, Message: msg}})})
		if err != nil || !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], resp.GetSignature()) {
			t.Fatalf("gRPC Sign (quic %v): %v %v", quic, err, resp)
		}
		vr, err := gc.Verify(ctx, &keyquorumv1.VerifyRequest{Key: "fw-signing", Message: msg, Signature: resp.GetSignature()})
		if err != nil || !vr.GetValid() {
			t.Fatalf("gRPC Verify of a good signature (quic %v): %v %v", quic, err, vr)
		}
		vr, err = gc.Verify(ctx, &keyquorumv1.VerifyRequest{Key: "fw-signing", Message: []byte("other"), Signature: resp.GetSignature()})
		if err != nil || vr.GetValid() || vr.GetError() == "" {
			t.Fatalf("gRPC Verify of another message (quic %v): %v %v", quic, err, vr)
		}
	}
}
