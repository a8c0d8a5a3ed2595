package cluster

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"

	"github.com/keyquorum/keyquorum/cluster/pki"
)

// ServingCert is the certificate a node's gateways serve TLS with: the
// one the cluster CA issued for the node once it has joined, and before
// that a self-signed one for the node's key (what an operator checks by
// the key's fingerprint at init or join). A node has one
// (Node.ServingCert), which the command that runs it passes to every
// gateway; no gateway takes it from another.
type ServingCert struct {
	key        ed25519.PrivateKey
	self       *x509.Certificate
	membership func() (caCert, nodeCert []byte)
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
	return &ServingCert{key: key, self: self, membership: membership}, nil
}

// GetCertificate is the certificate to present now, for
// tls.Config.GetCertificate.
func (c *ServingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
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
