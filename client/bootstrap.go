package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
)

// The operator's side of forming a cluster. A node that has not joined
// serves a self-signed certificate for its own key; the operator's tool
// takes the key it sees there (trust on first use, with its fingerprint
// shown to the operator), issues the node a certificate from the cluster
// CA, and starts it.

// unjoinedClient talks to a node before it has a CA certificate. It
// accepts the node's self-signed certificate only if that certificate's
// key is the one the node reports as its identity, and returns it.
func unjoinedClient() (*http.Client, *ed25519.PublicKey) {
	var seen ed25519.PublicKey
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // trust on first use: checked against the identity below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("node sent no certificate")
			}
			k, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
			if !ok {
				return errors.New("node certificate key is not Ed25519")
			}
			seen = k
			return nil
		},
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}, &seen
}

// FetchIdentity asks a node that has not joined for its identity.
func FetchIdentity(ctx context.Context, addr string) (*api.Identity, error) {
	base, err := baseURL(addr)
	if err != nil {
		return nil, err
	}
	hc, seen := unjoinedClient()
	var id api.Identity
	if err := doJSON(ctx, hc, http.MethodGet, base+"/v1/bootstrap/identity", nil, &id); err != nil {
		return nil, err
	}
	if !seen.Equal(ed25519.PublicKey(id.SignKey)) {
		return nil, fmt.Errorf("node at %s presents a TLS key that is not its identity key", addr)
	}
	if id.Joined {
		return nil, &Error{Kind: api.KindConflict, Message: fmt.Sprintf("node %q at %s is already in a cluster", id.NodeID, addr)}
	}
	return &id, nil
}

func startNode(ctx context.Context, addr string, id *api.Identity, req *api.StartRequest) error {
	base, err := baseURL(addr)
	if err != nil {
		return err
	}
	hc, seen := unjoinedClient()
	if err := doJSON(ctx, hc, http.MethodPost, base+"/v1/bootstrap/start", req, nil); err != nil {
		return err
	}
	if !seen.Equal(ed25519.PublicKey(id.SignKey)) {
		return fmt.Errorf("node at %s changed its key between identity and start", addr)
	}
	return nil
}

// nodeHosts are the names and addresses a node certificate is issued for.
func nodeHosts(id *api.Identity) []string {
	hosts := []string{"localhost"}
	seen := map[string]bool{"localhost": true}
	for _, a := range []string{id.APIAddr, id.RaftAddr} {
		if h, _, err := net.SplitHostPort(a); err == nil && !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return hosts
}

func nodeRecord(id *api.Identity) *fsm.Node {
	return &fsm.Node{ID: id.NodeID, RaftAddr: id.RaftAddr, APIAddr: id.APIAddr, GossipAddr: id.GossipAddr,
		SignKey: id.SignKey, EncKey: id.EncKey}
}

// InitCluster founds a cluster on the node at addr: it makes the CA, the
// first (admin) operator's key and certificate and the gossip key, and
// starts the node. With one initial node, the credentials come back with
// the cluster key pinned. The cluster key is made by a DKG among the first
// initialNodes members, once they have joined (at once if initialNodes is
// 1). The returned credentials are everything the operator needs; keep
// the CA key safe.
func InitCluster(ctx context.Context, addr, operatorName string, initialNodes int) (*Credentials, *api.Identity, error) {
	if initialNodes < 1 || initialNodes > fsm.MaxNodes {
		return nil, nil, fmt.Errorf("the initial cluster size must be 1 to %d nodes, got %d", fsm.MaxNodes, initialNodes)
	}
	id, err := FetchIdentity(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	idBytes := make([]byte, 8)
	gossip := make([]byte, 32)
	if _, err := rand.Read(idBytes); err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(gossip); err != nil {
		return nil, nil, err
	}
	clusterID := hex.EncodeToString(idBytes)
	ca, err := pki.NewCA(clusterID)
	if err != nil {
		return nil, nil, err
	}
	opPub, opKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	opID := fsm.PrincipalID(opPub)
	opCert, err := ca.Issue(opPub, pki.RoleOperator, opID, nil)
	if err != nil {
		return nil, nil, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, nil, err
	}
	creds := &Credentials{CACert: ca.CertPEM, CAKey: caKey, GossipKey: gossip, Cert: opCert, Key: opKey, OperatorID: opID}
	nodeCert, err := ca.Issue(ed25519.PublicKey(id.SignKey), pki.RoleNode, id.NodeID, nodeHosts(id))
	if err != nil {
		return nil, nil, err
	}
	init, err := signAs(creds, &fsm.Command{Type: fsm.TypeInit, Init: &fsm.Init{
		ClusterID: clusterID, CACert: ca.CertPEM,
		Operator:     &fsm.Operator{ID: opID, Name: operatorName, PublicKey: opPub},
		Node:         nodeRecord(id),
		InitialNodes: initialNodes,
	}})
	if err != nil {
		return nil, nil, err
	}
	req := &api.StartRequest{ClusterID: clusterID, CACert: ca.CertPEM, NodeCert: nodeCert, GossipKey: gossip, Init: init}
	if err := startNode(ctx, addr, id, req); err != nil {
		return nil, nil, fmt.Errorf("starting node %q: %w", id.NodeID, err)
	}
	c, err := NewClient(addr, creds)
	if err != nil {
		return nil, nil, err
	}
	if err := c.waitMember(ctx, id.NodeID, 0); err != nil {
		return nil, nil, err
	}
	if err := c.pinFirstKey(ctx); err != nil {
		return nil, nil, fmt.Errorf("pinning the cluster key: %w", err)
	}
	return creds, id, nil
}

// JoinNode admits the unjoined node at addr to the cluster c talks to:
// it issues the node's certificate, starts it, commits the signed
// add_node, and waits until the cluster has reshared to include it. The
// join that completes the first key pins it in c's credentials.
func (c *Client) JoinNode(ctx context.Context, addr string) (*api.Identity, error) {
	if len(c.creds.CAKey) == 0 || len(c.creds.GossipKey) == 0 {
		return nil, errors.New("joining a node needs the CA key and the gossip key (KEYQUORUM_CA_KEY, KEYQUORUM_GOSSIP_KEY)")
	}
	ca, err := pki.LoadCA(c.creds.CACert, c.creds.CAKey)
	if err != nil {
		return nil, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	id, err := FetchIdentity(ctx, addr)
	if err != nil {
		return nil, err
	}
	nodeCert, err := ca.Issue(ed25519.PublicKey(id.SignKey), pki.RoleNode, id.NodeID, nodeHosts(id))
	if err != nil {
		return nil, err
	}
	req := &api.StartRequest{ClusterID: st.ClusterID, CACert: c.creds.CACert, NodeCert: nodeCert, GossipKey: c.creds.GossipKey}
	if err := startNode(ctx, addr, id, req); err != nil {
		return nil, fmt.Errorf("starting node %q: %w", id.NodeID, err)
	}
	if _, err := c.submit(ctx, "/v1/nodes", &fsm.Command{Type: fsm.TypeAddNode, AddNode: nodeRecord(id)}); err != nil {
		return nil, fmt.Errorf("adding node %q: %w", id.NodeID, err)
	}
	if err := c.waitMember(ctx, id.NodeID, st.Epoch); err != nil {
		return nil, err
	}
	if err := c.pinFirstKey(ctx); err != nil {
		return nil, fmt.Errorf("pinning the cluster key: %w", err)
	}
	return id, nil
}

// waitMember waits until the node is a member and the cluster key is
// settled for the new member set: reshared past epoch `after`, or, before
// the first key, still waiting for its initial members (or made, if this
// was the last of them).
func (c *Client) waitMember(ctx context.Context, nodeID string, after uint64) error {
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Resharing == nil && slices.ContainsFunc(st.Members, func(m api.MemberStatus) bool { return m.ID == nodeID }) {
			if st.Epoch > after || st.Epoch == 0 && len(st.Members) < st.InitialNodes {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("the cluster is at key epoch %d with %d members, resharing %v", st.Epoch, len(st.Members), st.Resharing != nil)
			}
			return fmt.Errorf("waiting for node %s to join: %w", nodeID, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
