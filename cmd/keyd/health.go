package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// runHealth is "keyd health": it exits 0 when the node at --api-addr
// answers on its API with its identity, over TLS with the identity's key,
// and with the node ID given (if one is). It reads the same flags and
// KEYQUORUM_* variables as keyd, so a container's HEALTHCHECK runs it with
// no argument. It does not need the data directory, and it touches
// nothing.
func runHealth(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keyd health", flag.ContinueOnError)
	addr := fs.String("api-addr", "127.0.0.1:8740", "host:port of the node's HTTPS API (an unspecified host, 0.0.0.0 or [::], means this host)")
	id := fs.String("id", "", "node ID the node must answer with (any when empty)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnvAndFile(fs, ""); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ident, err := probeNode(ctx, *addr, *id)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, describe(ident))
	return nil
}

// describe says in one line what a node that answered is doing.
func describe(id *api.Identity) string {
	if id.Joined {
		return fmt.Sprintf("node %s answers on %s, in a cluster", id.NodeID, id.APIAddr)
	}
	return fmt.Sprintf("node %s answers on %s, not in a cluster yet (waiting for keyctl cluster init or join)", id.NodeID, id.APIAddr)
}

// localDialAddr is the address to reach a node listening on addr from the
// same host: an unspecified host (0.0.0.0, [::], empty) becomes loopback.
func localDialAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("API address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port), nil
}

// probeNode asks the node at addr for its identity (GET
// /v1/bootstrap/identity, which a node serves joined or not) and checks
// that it served TLS with that identity's key and, if wantID is not empty,
// that it is that node. It proves that a keyd answers there, not that it
// can release: that needs a quorum, which one node cannot vouch for.
func probeNode(ctx context.Context, addr, wantID string) (*api.Identity, error) {
	dial, err := localDialAddr(addr)
	if err != nil {
		return nil, err
	}
	var seen ed25519.PublicKey
	// The node's certificate is self-signed before it joins and of a CA
	// this command does not have after; the key it proves it holds is
	// checked against the identity it returns instead.
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // the peer's key is checked in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the node presented no certificate")
			}
			k, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
			if !ok {
				return errors.New("the node's certificate is not for an Ed25519 key")
			}
			seen = k
			return nil
		},
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+dial+"/v1/bootstrap/identity", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no node answers at %s: %w", dial, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("node at %s: %w", dial, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node at %s answered %s", dial, resp.Status)
	}
	var id api.Identity
	if err := json.Unmarshal(body, &id); err != nil {
		return nil, fmt.Errorf("node at %s answered with no identity: %w", dial, err)
	}
	if len(id.SignKey) != ed25519.PublicKeySize || !bytes.Equal(seen, id.SignKey) {
		return nil, fmt.Errorf("node at %s serves TLS with a key that is not its identity key", dial)
	}
	if wantID != "" && id.NodeID != wantID {
		return nil, fmt.Errorf("node at %s is %q, not %q", dial, id.NodeID, wantID)
	}
	return &id, nil
}
