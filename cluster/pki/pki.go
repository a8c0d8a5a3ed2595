// Package pki is the cluster's certificate authority and the certificates
// it issues: nodes and operators carry their role and id as a URI SAN
// "keyquorum:<role>:<id>", on Ed25519 keys. It is pure crypto/x509, so the
// operator's client (package client) issues node and operator
// certificates with it without linking the node (package cluster), which
// checks them.
package pki

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// Roles a certificate of the cluster CA can carry, as a URI SAN
// "keyquorum:<role>:<id>".
const (
	RoleNode     = "node"
	RoleOperator = "operator"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	certValidity = 2 * 365 * 24 * time.Hour
)

// CA is the cluster's certificate authority. It authenticates transport
// only: authorization rests on operator signatures that every share holder
// checks, so a stolen CA key lets its thief connect, not release keys.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     ed25519.PrivateKey
}

// NewCA makes a self-signed CA for a cluster.
func NewCA(clusterID string) (*CA, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "keyquorum CA " + clusterID},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), Key: key}, nil
}

// joinCAValidity bounds the life of a join CA (NewJoinCA).
const joinCAValidity = 2 * 365 * 24 * time.Hour

// NewJoinCA makes the cluster's join CA: an intermediate of ca that may
// sign only end certificates (path length 0). Members hold it to issue the
// certificates of nodes that join by themselves with a join token (keyd
// --retry-join); the root's key stays with the operator. The certificates
// it issues carry it as their chain.
func (ca *CA) NewJoinCA() (*CA, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "keyquorum join CA", OrganizationalUnit: []string{"join"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(joinCAValidity),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), Key: key}, nil
}

// IssueChain is Issue followed by the issuer's own certificate when the
// issuer is not a root (a join CA), so that the PEM is the chain a node
// serves.
func (ca *CA) IssueChain(pub ed25519.PublicKey, role, id string, hosts []string) ([]byte, error) {
	leaf, err := ca.Issue(pub, role, id, hosts)
	if err != nil {
		return nil, err
	}
	if ca.Cert.CheckSignatureFrom(ca.Cert) == nil {
		return leaf, nil
	}
	return append(leaf, ca.CertPEM...), nil
}

// NodeHosts are the names and addresses a node certificate is issued for:
// localhost and the hosts of the node's addresses.
func NodeHosts(addrs ...string) []string {
	hosts := []string{"localhost"}
	seen := map[string]bool{"localhost": true}
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil && !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// LoadCA reads a CA from its PEM certificate and PKCS#8 PEM key.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !key.Public().(ed25519.PublicKey).Equal(cert.PublicKey) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	return &CA{Cert: cert, CertPEM: certPEM, Key: key}, nil
}

// KeyPEM encodes the CA key.
func (ca *CA) KeyPEM() ([]byte, error) { return KeyToPEM(ca.Key) }

// Issue signs a certificate for pub with a role, an ID, and host names or
// IP addresses for its SANs. The certificate serves as client and server.
func (ca *CA) Issue(pub ed25519.PublicKey, role, id string, hosts []string) ([]byte, error) {
	u, err := url.Parse("keyquorum:" + role + ":" + id)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id, OrganizationalUnit: []string{role}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, err
	}
	return pemBlock("CERTIFICATE", der), nil
}

// CertRole returns the role and ID a certificate of the cluster CA
// carries.
func CertRole(cert *x509.Certificate) (role, id string, err error) {
	for _, u := range cert.URIs {
		if u.Scheme != "keyquorum" {
			continue
		}
		role, id, ok := strings.Cut(u.Opaque, ":")
		if ok && role != "" && id != "" {
			return role, id, nil
		}
	}
	return "", "", errors.New("certificate carries no keyquorum role")
}

// SelfSigned makes a certificate for key signed by itself, for a node that
// has not joined a cluster yet.
func SelfSigned(key ed25519.PrivateKey, id string) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id, OrganizationalUnit: []string{"unjoined node"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return pemBlock("CERTIFICATE", der), nil
}

// ParseCertPEM parses the first certificate of a PEM block.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	return x509.ParseCertificate(block.Bytes)
}

// ParseChainPEM parses every certificate of a PEM file, leaf first.
func ParseChainPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q among certificates", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// ParseKeyPEM parses a PKCS#8 PEM Ed25519 private key.
func ParseKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM private key found")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("private key is not Ed25519")
	}
	return ed, nil
}

// KeyToPEM encodes a private key as PKCS#8 PEM.
func KeyToPEM(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}
