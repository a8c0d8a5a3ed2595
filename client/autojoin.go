package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/confirm"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
)

// ErrOtherCluster is returned by JoinPeer.Join when the node at an address
// is not of the cluster whose CA fingerprint the joining node was given:
// nothing was sent to it.
var ErrOtherCluster = errors.New("not a node of the cluster whose CA fingerprint was given")

// JoinPeer carries a joining node's request (keyd --retry-join) to a
// member's API (cluster.JoinPeer). The zero value is ready to use.
type JoinPeer struct{}

// Join asks the member at addr to admit the node that signed req. It
// first reads the cluster's CA certificate from addr (public) and goes on
// only if its fingerprint is caFingerprint; then it sends req over a
// connection whose certificate must be a node certificate of that CA.
func (JoinPeer) Join(ctx context.Context, addr, caFingerprint string, req *fsm.AutoJoin) (*api.AutoJoinReply, error) {
	base, err := baseURL(addr)
	if err != nil {
		return nil, err
	}
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // only reads the public CA certificate, compared with the fingerprint below
	}}}
	var ca api.ClusterCA
	if err := doJSON(ctx, insecure, http.MethodGet, base+"/v1/bootstrap/ca", nil, &ca); err != nil {
		return nil, err
	}
	fp, err := api.CAFingerprint(ca.CACert)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate from %s: %w", addr, err)
	}
	if !api.SameFingerprint(caFingerprint, fp) {
		return nil, fmt.Errorf("%w: the node at %s has CA fingerprint %s, not %s", ErrOtherCluster, addr, fp, caFingerprint)
	}
	root, err := pki.ParseCertPEM(ca.CACert)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	checkNode := confirm.VerifyNode("", nil, nil)
	var refused error // why the member's certificate was refused, if it was
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is checked below against the pinned CA; any member
		// may admit a node, so its host name does not matter.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				refused = fmt.Errorf("%w: the node at %s: %v", ErrOtherCluster, addr, err)
				return refused
			}
			if err := checkNode(cs); err != nil {
				refused = fmt.Errorf("%w: the node at %s %v", ErrOtherCluster, addr, err)
				return refused
			}
			return nil
		},
	}}}
	var out api.AutoJoinReply
	if err := doJSON(ctx, hc, http.MethodPost, base+"/v1/bootstrap/join", req, &out); err != nil {
		if refused != nil {
			return nil, refused // nothing was sent
		}
		return nil, err
	}
	return &out, nil
}
