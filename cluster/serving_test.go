package cluster

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"testing"
)

// TestBrowsersGetAnECDSACertificate: a TLS client that offers no Ed25519
// signature (a web browser, for the console) gets an ECDSA certificate,
// the one set or a self-signed one; every other client the node's Ed25519
// certificate.
func TestBrowsersGetAnECDSACertificate(t *testing.T) {
	t.Parallel()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := NewServingCert(key, "n1", func() ([]byte, []byte) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	browser := &tls.ClientHelloInfo{SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256}}
	goClient := &tls.ClientHelloInfo{SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.Ed25519}}
	c, err := sc.GetCertificate(browser)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok || c.Leaf.Subject.CommonName != "n1 console (self-signed)" {
		t.Errorf("a browser got a %T certificate %q", c.PrivateKey, c.Leaf.Subject.CommonName)
	}
	if again, _ := sc.GetCertificate(browser); again != c {
		t.Error("the self-signed browser certificate is made again for every handshake")
	}
	if c, _ := sc.GetCertificate(goClient); !isEd25519(c) {
		t.Error("a client that takes Ed25519 did not get the node's certificate")
	}
	set := &tls.Certificate{Certificate: [][]byte{{1}}}
	sc.SetBrowserCert(set)
	if c, _ := sc.GetCertificate(browser); c != set {
		t.Error("a browser did not get the certificate keyd was given (--console-cert)")
	}
}

func isEd25519(c *tls.Certificate) bool {
	_, ok := c.PrivateKey.(ed25519.PrivateKey)
	return ok
}
