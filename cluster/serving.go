package cluster

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster/pki"
)

// ServingCert is the certificate a node's gateways serve TLS with: the
// one the cluster CA issued for the node once it has joined, and before
// that a self-signed one for the node's key (what an operator checks by
// the key's fingerprint at init or join). A node has one
// (Node.ServingCert), which the command that runs it passes to every
// gateway; no gateway takes it from another.
//
// Web browsers cannot verify an Ed25519 certificate: to a TLS client that
// does not offer Ed25519 signatures, the node serves its browser
// certificate instead (SetBrowserCert: the one keyd was given for its
// console), or else a self-signed ECDSA P-256 certificate it makes once,
// which a browser warns about. Nothing but the console's pages is meant
// for such a client: operators, machines and nodes all use Ed25519.
type ServingCert struct {
	key        ed25519.PrivateKey
	self       *x509.Certificate
	membership func() (caCert, nodeCert []byte)
	id         string

	mu      sync.Mutex
	browser *tls.Certificate
}

// NewServingCert makes the serving certificate of the node with ID id and
// Ed25519 key key; membership is the node's Membership, whose node
// certificate it serves once there is one.
func NewServingCert(key ed25519.PrivateKey, id string, membership func() (caCert, nodeCert []byte)) (*ServingCert, error) {
	pemSelf, err := SelfSigned(key, id)
	if err != nil {
		return nil, err
	}
	self, err := ParseCertPEM(pemSelf)
	if err != nil {
		return nil, err
	}
	return &ServingCert{key: key, self: self, membership: membership, id: id}, nil
}

// SetBrowserCert sets the certificate served to TLS clients that do not
// take Ed25519 (web browsers, for the console).
func (c *ServingCert) SetBrowserCert(cert *tls.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.browser = cert
}

// browserCert is the browser certificate, made self-signed on first use
// when none was set.
func (c *ServingCert) browserCert() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.browser != nil {
		return c.browser, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: c.id + " console (self-signed)"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", c.id}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c.browser = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return c.browser, nil
}

// GetCertificate is the certificate to present now, for
// tls.Config.GetCertificate.
func (c *ServingCert) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello != nil && len(hello.SignatureSchemes) > 0 && !slices.Contains(hello.SignatureSchemes, tls.Ed25519) {
		return c.browserCert()
	}
	chain := []*x509.Certificate{c.self}
	if _, nodeCert := c.membership(); nodeCert != nil {
		var err error
		if chain, err = pki.ParseChainPEM(nodeCert); err != nil {
			return nil, err
		}
	}
	return tlsCertificate(chain, c.key), nil
}

// tlsCertificate is a chain (leaf first: the node's certificate, then the
// join CA's if it issued it) with the node's key.
func tlsCertificate(chain []*x509.Certificate, key ed25519.PrivateKey) *tls.Certificate {
	out := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out
}
