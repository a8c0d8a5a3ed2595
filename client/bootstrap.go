package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
)

// The operator's side of forming a cluster. A node that has not joined
// serves a self-signed certificate for its own key, and the client takes
// that key only if it is the identity the node reports (the TLS handshake
// proves the node holds it). Before anything is issued, the operator
// vouches for that key: its fingerprint must be the one keyd printed on
// the node's machine (JoinOptions). The node takes the start only with the
// join token it was started with, and the cluster admits it only with a
// join token it holds, which the join spends.

// ErrFingerprintMismatch is returned when the node at an address has
// another identity than the fingerprint the operator gave: nothing was
// issued to it.
var ErrFingerprintMismatch = errors.New("identity fingerprint mismatch")

// JoinOptions are how the operator vouches for the node at an address.
type JoinOptions struct {
	// Token is the join token the node was started with (keyd
	// --join-token, or the one it wrote to its data directory). To join a
	// cluster it must be a token the cluster holds (CreateJoinToken,
	// AddJoinToken): the join spends it.
	Token string
	// Fingerprint is the node's identity fingerprint as keyd printed it at
	// start, or "keyd identity" prints it (api.Fingerprint).
	Fingerprint string
	// Confirm, when Fingerprint is empty, is shown the node's identity and
	// returns nil to admit it (keyctl asks on a terminal). It is called
	// before anything is issued.
	Confirm func(id *api.Identity, fingerprint string) error
	// AutoJoin, for InitCluster only, gives the cluster a join CA (an
	// intermediate of its CA) that members keep, so that nodes started
	// with a join token and --retry-join join by themselves
	// (docs/join.md). The CA's own key stays in the credentials.
	AutoJoin bool
	// Recovery, for InitCluster only, asks for a recovery kit: the
	// holders deal the cluster key's shares to these officers, k of whom
	// rebuild it if fewer than t nodes survive (docs/disaster-recovery.md).
	Recovery *fsm.RecoveryKitRequest
}

// vouch checks the operator's word for the node's identity before anything
// is issued to it.
func (o *JoinOptions) vouch(addr string, id *api.Identity) error {
	if o.Token == "" {
		return errors.New("the join token the node was started with is needed (keyd --join-token, or the node's data directory's join-token file)")
	}
	fp := api.Fingerprint(id.SignKey)
	switch {
	case o.Fingerprint != "":
		return checkFingerprint(addr, id, o.Fingerprint)
	case o.Confirm != nil:
		return o.Confirm(id, fp)
	}
	return fmt.Errorf("the node at %s (%q) has identity fingerprint %s: give the fingerprint keyd printed on its machine to admit it", addr, id.NodeID, fp)
}

// checkFingerprint checks a node's identity against the fingerprint the
// operator typed.
func checkFingerprint(addr string, id *api.Identity, want string) error {
	if fp := api.Fingerprint(id.SignKey); !api.SameFingerprint(want, fp) {
		return fmt.Errorf("%w: the node at %s (%q) has identity fingerprint %s, not %s; nothing was issued to it",
			ErrFingerprintMismatch, addr, id.NodeID, fp, want)
	}
	return nil
}

// unjoinedClient talks to a node before it has a CA certificate. It
// accepts the node's self-signed certificate only if that certificate's
// key is the one the node reports as its identity, and returns it.
func unjoinedClient() (*http.Client, *ed25519.PublicKey) {
	var seen ed25519.PublicKey
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // checked against the identity below, which the operator vouches for (JoinOptions)
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

func nodeRecord(id *api.Identity) *fsm.Node {
	return &fsm.Node{ID: id.NodeID, RaftAddr: id.RaftAddr, APIAddr: id.APIAddr, GossipAddr: id.GossipAddr,
		SignKey: id.SignKey, EncKey: id.EncKey}
}

// InitCluster founds a cluster on the node at addr: it makes the CA, the
// first (admin) operator's key and certificate and the gossip key, and
// starts the node, which must have been started with opts.Token. With one
// initial node, the credentials come back with the cluster key pinned. The
// cluster key is made by a DKG among the first
// initialNodes members, once they have joined (at once if initialNodes is
// 1). The returned credentials are everything the operator needs; keep
// the CA key safe.
func InitCluster(ctx context.Context, addr, operatorName string, initialNodes int, opts JoinOptions) (*Credentials, *api.Identity, error) {
	if initialNodes < 1 || initialNodes > fsm.MaxNodes {
		return nil, nil, fmt.Errorf("the initial cluster size must be 1 to %d nodes, got %d", fsm.MaxNodes, initialNodes)
	}
	id, err := FetchIdentity(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	if err := opts.vouch(addr, id); err != nil {
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
	nodeCert, err := ca.Issue(ed25519.PublicKey(id.SignKey), pki.RoleNode, id.NodeID, pki.NodeHosts(id.APIAddr, id.RaftAddr))
	if err != nil {
		return nil, nil, err
	}
	init, err := signAs(creds, &fsm.Command{Type: fsm.TypeInit, Init: &fsm.Init{
		ClusterID: clusterID, CACert: ca.CertPEM,
		Operator:     &fsm.Operator{ID: opID, Name: operatorName, PublicKey: opPub},
		Node:         nodeRecord(id),
		InitialNodes: initialNodes,
		Recovery:     opts.Recovery,
	}})
	if err != nil {
		return nil, nil, err
	}
	req := &api.StartRequest{ClusterID: clusterID, CACert: ca.CertPEM, NodeCert: nodeCert, GossipKey: gossip, JoinToken: opts.Token, Init: init}
	if opts.AutoJoin {
		join, err := ca.NewJoinCA()
		if err != nil {
			return nil, nil, err
		}
		if req.JoinCAKey, err = join.KeyPEM(); err != nil {
			return nil, nil, err
		}
		req.JoinCACert = join.CertPEM
	}
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

// JoinNode admits the unjoined node at addr to the cluster c talks to.
// The node must have the identity opts vouch for and have been started
// with opts.Token, a join token the cluster holds; nothing is issued
// before both are checked. JoinNode issues the node's certificate, starts
// it, commits the join_node that spends the token, and waits until the
// cluster has reshared to include it. The join that completes the first
// key pins it in c's credentials.
func (c *Client) JoinNode(ctx context.Context, addr string, opts JoinOptions) (*api.Identity, error) {
	if len(c.creds.CAKey) == 0 || len(c.creds.GossipKey) == 0 {
		return nil, errors.New("joining a node needs the CA key and the gossip key (KEYQUORUM_CA_KEY, KEYQUORUM_GOSSIP_KEY)")
	}
	ca, err := pki.LoadCA(c.creds.CACert, c.creds.CAKey)
	if err != nil {
		return nil, err
	}
	tokenID, secret, err := api.ParseJoinToken(opts.Token)
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
	if err := opts.vouch(addr, id); err != nil {
		return nil, err
	}
	if err := c.usableToken(ctx, tokenID); err != nil {
		return nil, err
	}
	// The new node's state is empty until Raft gives it one, so it takes
	// its first snapshot from whoever holds a node certificate of the CA
	// and reaches it: it checks that snapshot against the cluster key
	// sent here, the one this operator pinned (or pins now, confirmed by
	// t members), and takes no state certified under another.
	if len(st.PublicKey) > 0 {
		if err := c.pinFirstKey(ctx); err != nil {
			return nil, fmt.Errorf("pinning the cluster key for the new node: %w", err)
		}
	}
	nodeCert, err := ca.Issue(ed25519.PublicKey(id.SignKey), pki.RoleNode, id.NodeID, pki.NodeHosts(id.APIAddr, id.RaftAddr))
	if err != nil {
		return nil, err
	}
	req := &api.StartRequest{ClusterID: st.ClusterID, CACert: c.creds.CACert, NodeCert: nodeCert, GossipKey: c.creds.GossipKey, JoinToken: opts.Token,
		ClusterKey: slices.Clone(c.creds.ClusterKey)}
	if err := startNode(ctx, addr, id, req); err != nil {
		return nil, fmt.Errorf("starting node %q: %w", id.NodeID, err)
	}
	join := &fsm.JoinNode{Node: nodeRecord(id), Token: tokenID, Secret: secret}
	if _, err := c.submit(ctx, "/v1/nodes/join", &fsm.Command{Type: fsm.TypeJoinNode, JoinNode: join}); err != nil {
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

// usableToken checks, before anything is issued, that the cluster holds
// the join token, unspent and unexpired. The join_node that spends it is
// checked again by every replica.
func (c *Client) usableToken(ctx context.Context, id string) error {
	tokens, err := c.JoinTokens(ctx)
	if err != nil {
		return err
	}
	for _, t := range tokens {
		switch {
		case t.ID != id:
		case t.SpentBy != "":
			return &Error{Kind: api.KindDenied, Message: fmt.Sprintf("join token %s was spent by node %q", id, t.SpentBy)}
		case time.Now().UnixNano() >= t.ExpiresAt:
			return &Error{Kind: api.KindDenied, Message: fmt.Sprintf("join token %s expired at %s", id, time.Unix(0, t.ExpiresAt).UTC().Format(time.RFC3339))}
		default:
			return nil
		}
	}
	return &Error{Kind: api.KindDenied, Message: fmt.Sprintf("the cluster holds no join token %s: it was never created (keyctl cluster token create), was revoked or expired", id)}
}

// waitMember waits until the node is a member, a Raft voter (the leader
// promotes a new member after its stable period, and only then reshares
// the key to it), and the cluster key is settled for the new member set: reshared past epoch `after`, or, before
// the first key, still waiting for its initial members (or made, if this
// was the last of them).
func (c *Client) waitMember(ctx context.Context, nodeID string, after uint64) error {
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Resharing == nil && slices.ContainsFunc(st.Members, func(m api.MemberStatus) bool { return m.ID == nodeID && m.Voter }) {
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
