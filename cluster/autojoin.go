package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
)

// Auto-join: a node started with a join token and --retry-join addresses
// joins by itself, with no operator at a keyboard (docs/join.md).
//
// The joining node asks each address in turn, until one admits it, then
// again after a backoff. It trusts an answer only from a node whose
// certificate chains to the CA whose fingerprint it was given
// (Config.JoinCAFingerprint; the JoinPeer checks it before it sends
// anything), so that whoever answers at an address, or forged the DNS
// answer that led there, can neither start it into another cluster nor
// learn its request. The request (fsm.AutoJoin) is its node record signed
// with the token's key (api.JoinTokenKey) and with its own identity key:
// the token's secret never leaves the node, and the request admits this
// node with this token only, so even a compromised member that receives
// it cannot admit a node of its own with it.
//
// The member checks both signatures against its applied state before it
// proposes anything (a flood of forged requests costs the cluster no
// write), relays the request as an auto_join it signs, which every replica
// checks again, then issues the node's certificate with the cluster's join
// CA and answers with what an operator's start request would carry. The
// join CA is an intermediate the operator gave the cluster at init
// (keyctl cluster init --auto-join); the root CA's key stays with the
// operator. A member without a join CA admits no node this way.
//
// A node that is in a cluster never asks (its membership is on its disk),
// so a restart does not rejoin; a node whose answer was lost asks again,
// and a member that finds it a member already, with the same key, by the
// same token, answers again without a new entry.

// JoinPeer carries a joining node's requests to a member's API: the
// client package's, over HTTPS, in keyd. It must send nothing to a node
// whose certificate does not chain to the CA with the fingerprint given.
type JoinPeer interface {
	Join(ctx context.Context, addr, caFingerprint string, req *fsm.AutoJoin) (*api.AutoJoinReply, error)
}

// AutoJoinService is the member's side of auto-join. *Node implements it.
type AutoJoinService interface {
	// ClusterCA is the cluster's CA certificate, for a joining node to
	// compare with the fingerprint it was given.
	ClusterCA() (*api.ClusterCA, error)
	// AutoJoin admits the node that signed req (see above).
	AutoJoin(ctx context.Context, req *fsm.AutoJoin) (*api.AutoJoinReply, error)
}

var _ AutoJoinService = (*Node)(nil)

// ClusterCA answers GET /v1/bootstrap/ca.
func (n *Node) ClusterCA() (*api.ClusterCA, error) {
	rt, err := n.joined()
	if err != nil {
		return nil, err
	}
	return &api.ClusterCA{ClusterID: rt.m.ClusterID, CACert: rt.m.CACert}, nil
}

// checkJoinCA checks that a membership's join CA is an intermediate of its
// CA, with its key.
func checkJoinCA(m *membership) error {
	ca, err := LoadCA(m.JoinCACert, m.JoinCAKey)
	if err != nil {
		return err
	}
	root, err := ParseCertPEM(m.CACert)
	if err != nil {
		return err
	}
	if err := ca.Cert.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("not issued by the cluster CA: %v", err)
	}
	return nil
}

// AutoJoin admits a node that joins by itself.
func (n *Node) AutoJoin(ctx context.Context, req *fsm.AutoJoin) (*api.AutoJoinReply, error) {
	rt, err := n.joined()
	if err != nil {
		return nil, err
	}
	if len(rt.m.JoinCAKey) == 0 {
		return nil, Errorf(KindConflict, "node %q has no join CA, so it admits no node by itself: the cluster was founded without --auto-join, or this node joined by keyctl; ask another member", n.id.NodeID)
	}
	ca, err := LoadCA(rt.m.JoinCACert, rt.m.JoinCAKey)
	if err != nil {
		return nil, err
	}
	if req == nil || req.Node == nil {
		return nil, Errorf(KindInvalid, "a join request needs a node, a token and two signatures")
	}
	// Checked against this node's state first: a forged request costs no
	// entry. The replicas check it again when they apply it.
	var (
		ferr    *fsm.Error
		already bool
	)
	n.fsm.Read(func(s *fsm.State) {
		tok := s.JoinTokens[req.Token]
		if tok == nil {
			ferr = &fsm.Error{Code: fsm.CodeDenied, Message: fmt.Sprintf("join token %q does not exist: it was never created, was revoked or expired", req.Token)}
			return
		}
		if ferr = fsm.CheckAutoJoin(tok.Key, req); ferr != nil {
			return
		}
		m := s.Nodes[req.Node.ID]
		already = m != nil && tok.SpentBy == m.ID && ed25519.PublicKey(m.SignKey).Equal(ed25519.PublicKey(req.Node.SignKey))
	})
	if ferr != nil {
		return nil, fromFSM(ferr)
	}
	if !already {
		sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeAutoJoin, AutoJoin: req})
		if err != nil {
			return nil, err
		}
		if _, err := n.submit(ctx, sg); err != nil {
			return nil, err
		}
		n.log.Info("admitted a node that joined with a join token", "peer", req.Node.ID, "token", req.Token)
	}
	cert, err := ca.IssueChain(ed25519.PublicKey(req.Node.SignKey), RoleNode, req.Node.ID, pki.NodeHosts(req.Node.APIAddr, req.Node.RaftAddr))
	if err != nil {
		return nil, err
	}
	clusterKey := rt.m.ClusterKey
	if len(clusterKey) == 0 {
		n.fsm.Read(func(s *fsm.State) { clusterKey = s.PublicKey() })
	}
	return &api.AutoJoinReply{ClusterID: rt.m.ClusterID, CACert: rt.m.CACert, NodeCert: cert, GossipKey: rt.m.GossipKey,
		ClusterKey: clusterKey, JoinCACert: rt.m.JoinCACert, JoinCAKey: rt.m.JoinCAKey}, nil
}

// joinRequest is this node's request to join with the token: its record
// signed with the token's key and its own.
func (n *Node) joinRequest(token string) (*fsm.AutoJoin, error) {
	tokenID, secret, err := api.ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	key := api.JoinTokenKey(secret)
	clear(secret)
	id := n.Identity()
	rec := &fsm.Node{ID: id.NodeID, RaftAddr: id.RaftAddr, APIAddr: id.APIAddr, GossipAddr: id.GossipAddr, SignKey: id.SignKey, EncKey: id.EncKey}
	msg := fsm.AutoJoinMessage(tokenID, rec)
	return &fsm.AutoJoin{Node: rec, Token: tokenID, TokenSig: ed25519.Sign(key, msg), NodeSig: ed25519.Sign(n.id.SignKey, msg)}, nil
}

// enterAdmitted checks a member's answer and enters the cluster with it.
func (n *Node) enterAdmitted(r *api.AutoJoinReply) error {
	if err := checkAdmitted(r, n.cfg.JoinCAFingerprint, n.id.NodeID, n.id.SignKey.Public().(ed25519.PublicKey)); err != nil {
		return err
	}
	return n.enter(&membership{ClusterID: r.ClusterID, CACert: r.CACert, NodeCert: r.NodeCert, GossipKey: r.GossipKey,
		ClusterKey: r.ClusterKey, JoinCACert: r.JoinCACert, JoinCAKey: r.JoinCAKey})
}

// checkAdmitted checks a member's answer to a join request: the CA must
// be the one of the fingerprint, and the node certificate node id's, for
// key, chained to it.
func checkAdmitted(r *api.AutoJoinReply, fingerprint, id string, key ed25519.PublicKey) error {
	fp, err := api.CAFingerprint(r.CACert)
	if err != nil {
		return fmt.Errorf("the CA certificate: %v", err)
	}
	if !api.SameFingerprint(fingerprint, fp) {
		return fmt.Errorf("the answer names CA %s, not %s", fp, fingerprint)
	}
	root, err := ParseCertPEM(r.CACert)
	if err != nil {
		return err
	}
	chain, err := pki.ParseChainPEM(r.NodeCert)
	if err != nil {
		return fmt.Errorf("node certificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	certID, err := checkRole(chain, roots, x509.ExtKeyUsageServerAuth, RoleNode)
	if err != nil {
		return fmt.Errorf("node certificate: %v", err)
	}
	if k, ok := chain[0].PublicKey.(ed25519.PublicKey); certID != id || !ok || !k.Equal(key) {
		return fmt.Errorf("the node certificate is node %q's, for another key or another node", certID)
	}
	return nil
}

// startRetryJoin runs the retry-join loop until the node is in a cluster
// or shuts down.
func (n *Node) startRetryJoin() {
	ctx, cancel := context.WithCancel(context.Background())
	n.stopJoining = cancel
	n.joining.Add(1)
	go func() {
		defer n.joining.Done()
		n.retryJoin(ctx)
	}()
}

func (n *Node) retryJoin(ctx context.Context) {
	req, err := n.joinRequest(n.cfg.JoinToken)
	if err != nil {
		n.log.Error("retry-join: the join token", "err", err)
		return
	}
	wait := time.Second
	for round := 1; ; round++ {
		if n.runtime() != nil {
			return // started by an operator meanwhile
		}
		why := n.joinRound(ctx, req)
		if why == nil {
			n.log.Info("joined the cluster by retry-join", "round", round)
			return
		}
		n.log.Info("retry-join: not admitted yet", "round", round, "why", why, "next", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(2*wait, n.cfg.RetryJoinBackoff)
	}
}

// joinRound asks every address once, and returns nil once one admitted
// the node and it entered the cluster.
func (n *Node) joinRound(ctx context.Context, req *fsm.AutoJoin) error {
	addrs, errs := resolveRetryJoin(ctx, net.DefaultResolver, n.cfg.RetryJoin)
	for _, addr := range addrs {
		if addr == n.cfg.APIAddr {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout+5*time.Second)
		reply, err := n.cfg.JoinPeer.Join(actx, addr, n.cfg.JoinCAFingerprint, req)
		cancel()
		if err == nil {
			if err = n.enterAdmitted(reply); err == nil || KindOf(err) == KindConflict && n.runtime() != nil {
				return nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	if len(errs) == 0 {
		return errors.New("no address to ask")
	}
	return errors.Join(errs...)
}

// Resolver is what retry-join needs of DNS (*net.Resolver).
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// resolveRetryJoin turns retry-join entries into API addresses, in order,
// without repeats: "host:port" for each address host resolves to (an IP
// stands for itself), "srv:NAME" for each SRV target of NAME and its port.
// DNS only says where to ask: what answers there is trusted only by its
// certificate (JoinPeer).
func resolveRetryJoin(ctx context.Context, r Resolver, entries []string) (addrs []string, errs []error) {
	seen := map[string]bool{}
	add := func(host string, port string) {
		a := net.JoinHostPort(host, port)
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	hostAddrs := func(host, port string) {
		if net.ParseIP(host) != nil {
			add(host, port)
			return
		}
		ips, err := r.LookupHost(ctx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolving %s: %w", host, err))
			return
		}
		for _, ip := range ips {
			add(ip, port)
		}
	}
	for _, e := range entries {
		if name, ok := strings.CutPrefix(e, "srv:"); ok {
			_, srvs, err := r.LookupSRV(ctx, "", "", name)
			if err != nil {
				errs = append(errs, fmt.Errorf("SRV records of %s: %w", name, err))
				continue
			}
			for _, s := range srvs {
				hostAddrs(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port)))
			}
			continue
		}
		host, port, err := net.SplitHostPort(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("retry-join address %q: %w", e, err))
			continue
		}
		hostAddrs(host, port)
	}
	return addrs, errs
}
