package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// Attacks on joining (issue 9, hole 9): an unjoined node's bootstrap
// endpoint was open, so whoever reached it first started it into a cluster
// of their own; and a node joined on nothing but an admin's word about
// whatever answered at its address.

// strangerStart is a start request from someone with a CA of their own: a
// well-formed certificate for the node's key, from the wrong cluster.
func strangerStart(t *testing.T, tn *testNode, token string) *StartRequest {
	t.Helper()
	ca, err := NewCA("stranger")
	if err != nil {
		t.Fatal(err)
	}
	id := tn.n.Identity()
	cert, err := ca.Issue(ed25519.PublicKey(id.SignKey), RoleNode, id.NodeID, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return &StartRequest{ClusterID: "stranger", CACert: ca.CertPEM, NodeCert: cert, GossipKey: make([]byte, 32), JoinToken: token}
}

// TestAttackStrangerCannotStartAnUnjoinedNode: a stranger who reaches an
// unjoined node first, without its join token or with a wrong one, is
// refused and the node stays unjoined; the operator with the token then
// starts it and it joins.
func TestAttackStrangerCannotStartAnUnjoinedNode(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 1)
	tn := c.addNode()
	wrong, _, _, err := api.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	for name, token := range map[string]string{"no token": "", "a wrong token": wrong} {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err := tn.n.Start(ctx, strangerStart(t, tn, token))
		cancel()
		if KindOf(err) != KindUnauthenticated {
			t.Fatalf("a start with %s: %v, want %s", name, err, KindUnauthenticated)
		}
		if tn.n.Identity().Joined {
			t.Fatalf("a start with %s joined the node", name)
		}
		if _, err := os.Stat(filepath.Join(tn.cfg.DataDir, membershipFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a start with %s wrote the membership file: %v", name, err)
		}
	}
	c.join(tn)
	if _, err := os.Stat(JoinTokenPath(tn.cfg.DataDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the node kept its join token file after joining: %v", err)
	}
}

// TestConfiguredJoinTokenIsRequired: a node started with a join token
// (keyd --join-token) wants that one, writes none of its own, and takes
// no start with the token of another.
func TestConfiguredJoinTokenIsRequired(t *testing.T) {
	t.Parallel()
	token, _, _, err := api.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	c := newEmptyCluster(t)
	c.configure = func(cfg *Config) { cfg.JoinToken = token }
	tn := c.addNode()
	if _, err := os.Stat(JoinTokenPath(tn.cfg.DataDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a node given its token wrote one of its own: %v", err)
	}
	other, _, _, _ := api.NewJoinToken()
	req := c.startRequest(tn)
	req.JoinToken = other
	if err := tn.n.Start(context.Background(), req); KindOf(err) != KindUnauthenticated {
		t.Fatalf("start with another token: %v, want %s", err, KindUnauthenticated)
	}
	if req.JoinToken = token; tn.n.checkJoinToken(req.JoinToken) != nil {
		t.Fatal("the configured token is refused")
	}
}

// TestJoinTokenIsSpentOnceAndExpires: a node joins with join_node and a
// token the cluster holds; the spent token admits no other node, nor does
// an expired one, and neither is left a member.
func TestJoinTokenIsSpentOnceAndExpires(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 1)
	// createToken creates a token that expires ttl from now; the leader
	// refuses it (KindInvalid) if its time for the entry is past that.
	createToken := func(ttl time.Duration) (string, []byte, int64, error) {
		t.Helper()
		_, id, _, err := api.NewJoinToken()
		if err != nil {
			t.Fatal(err)
		}
		secret := randomBytes(t, 32)
		sum := sha256.Sum256(secret)
		exp := time.Now().Add(ttl).UnixNano()
		_, err = c.submit(&fsm.Command{Type: fsm.TypeCreateJoinToken, CreateJoinToken: &fsm.JoinToken{ID: id, Hash: sum[:], ExpiresAt: exp}})
		return id, secret, exp, err
	}
	joinWith := func(tn *testNode, id string, secret []byte) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := tn.n.Start(ctx, c.startRequest(tn)); err != nil {
			t.Fatalf("starting %s: %v", tn.id(), err)
		}
		_, err := c.submit(&fsm.Command{Type: fsm.TypeJoinNode, JoinNode: &fsm.JoinNode{Node: c.nodeRecord(tn), Token: id, Secret: secret}})
		return err
	}
	isMember := func(id string) bool {
		in := false
		c.nodes[0].n.fsm.Read(func(s *fsm.State) { in = s.Nodes[id] != nil })
		return in
	}

	id, secret, _, err := createToken(time.Hour)
	if err != nil {
		t.Fatalf("creating a join token: %v", err)
	}
	n2 := c.addNode()
	if err := joinWith(n2, id, secret); err != nil {
		t.Fatalf("honest join: %v", err)
	}
	c.waitSettled(1)
	if !isMember(n2.id()) {
		t.Fatal("node2 is not a member after its join")
	}

	n3 := c.addNode()
	if err := joinWith(n3, id, secret); KindOf(err) != KindDenied {
		t.Fatalf("join with a spent token: %v, want %s", err, KindDenied)
	}
	if isMember(n3.id()) {
		t.Fatal("a spent token made node3 a member")
	}

	// A token that expires as soon after its creation as the leader's
	// clock allows: the leader judges the entry at its own time for it, after
	// the submission's trip, so a lifetime too short for that trip is
	// refused and the next try doubles it.
	var exp int64
	for ttl := 10 * time.Millisecond; ; ttl *= 2 {
		id, secret, exp, err = createToken(ttl)
		if err == nil {
			break
		}
		if KindOf(err) != KindInvalid || ttl > opTimeout {
			t.Fatalf("creating a join token that lives %v: %v", ttl, err)
		}
	}
	c.waitFor(settleTimeout, func() (bool, string) { return time.Now().UnixNano() > exp, "the token has not expired" })
	n4 := c.addNode()
	if err := joinWith(n4, id, secret); KindOf(err) != KindDenied {
		t.Fatalf("join with an expired token: %v, want %s", err, KindDenied)
	}
	if isMember(n4.id()) {
		t.Fatal("an expired token made node4 a member")
	}
}
