package fsm_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

var tokenSecret = bytes.Repeat([]byte{0x5e}, 32)

func createTokenCmd(id string, ttl time.Duration, at time.Time) *fsm.Command {
	sum := sha256.Sum256(tokenSecret)
	return &fsm.Command{Type: fsm.TypeCreateJoinToken, CreateJoinToken: &fsm.JoinToken{ID: id, Hash: sum[:], ExpiresAt: at.Add(ttl).UnixNano()}}
}

func joinNodeCmd(n *fsm.Node, id string, secret []byte) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeJoinNode, JoinNode: &fsm.JoinNode{Node: n, Token: id, Secret: secret}}
}

const tokenID = "0123456789abcdef"

// TestJoinTokenAdmitsOneNodeOnce: an admin's join_node with a token's
// secret adds the node and spends the token; the same token cannot admit
// another node.
func TestJoinTokenAdmitsOneNodeOnce(t *testing.T) {
	h := newHarness(t)
	ready(h)
	h.must(admin, createTokenCmd(tokenID, time.Hour, h.at))
	h.must(admin, joinNodeCmd(nodeSpec(2), tokenID, tokenSecret))
	s := h.state()
	if s.Nodes[node(2).ID] == nil {
		t.Fatal("node-2 is not a member after join_node")
	}
	if tok := s.JoinTokens[tokenID]; tok == nil || tok.SpentBy != node(2).ID || tok.CreatedBy != admin.ID {
		t.Fatalf("token after the join: %+v, want spent by node-2 and created by the admin", tok)
	}
	before := h.snapshot()
	res := h.do(admin, joinNodeCmd(nodeSpec(3), tokenID, tokenSecret))
	if codeOf(res) != fsm.CodeDenied {
		t.Fatalf("a spent token admitted another node: %v", res.Error)
	}
	assertUnchanged(t, before, h.snapshot(), "applied")
}

// TestJoinTokenRefusals: a token that is wrong, expired, revoked or never
// created admits no node, and a non-admin may not create one.
func TestJoinTokenRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h *harness)
		by    principal
		cmd   func(h *harness) *fsm.Command
		want  fsm.Code
	}{
		{"wrong secret", func(h *harness) { h.must(admin, createTokenCmd(tokenID, time.Hour, h.at)) }, admin,
			func(h *harness) *fsm.Command { return joinNodeCmd(nodeSpec(2), tokenID, bytes.Repeat([]byte{1}, 32)) }, fsm.CodeDenied},
		{"no secret", func(h *harness) { h.must(admin, createTokenCmd(tokenID, time.Hour, h.at)) }, admin,
			func(h *harness) *fsm.Command { return joinNodeCmd(nodeSpec(2), tokenID, nil) }, fsm.CodeDenied},
		{"expired", func(h *harness) {
			h.must(admin, createTokenCmd(tokenID, time.Minute, h.at))
			h.at = h.at.Add(2 * time.Minute)
		}, admin, func(h *harness) *fsm.Command { return joinNodeCmd(nodeSpec(2), tokenID, tokenSecret) }, fsm.CodeDenied},
		{"revoked", func(h *harness) {
			h.must(admin, createTokenCmd(tokenID, time.Hour, h.at))
			h.must(admin, &fsm.Command{Type: fsm.TypeRevokeJoinToken, RevokeJoinToken: tokenID})
		}, admin, func(h *harness) *fsm.Command { return joinNodeCmd(nodeSpec(2), tokenID, tokenSecret) }, fsm.CodeDenied},
		{"never created", func(h *harness) {}, admin,
			func(h *harness) *fsm.Command { return joinNodeCmd(nodeSpec(2), tokenID, tokenSecret) }, fsm.CodeDenied},
		{"join by a non-admin", func(h *harness) { h.must(admin, createTokenCmd(tokenID, time.Hour, h.at)) }, op,
			func(h *harness) *fsm.Command { return joinNodeCmd(nodeSpec(2), tokenID, tokenSecret) }, fsm.CodeDenied},
		{"create by a non-admin", func(h *harness) {}, op,
			func(h *harness) *fsm.Command { return createTokenCmd(tokenID, time.Hour, h.at) }, fsm.CodeDenied},
		{"create past the longest life", func(h *harness) {}, admin,
			func(h *harness) *fsm.Command { return createTokenCmd(tokenID, fsm.MaxJoinTokenTTL+time.Minute, h.at) }, fsm.CodeInvalid},
		{"create already expired", func(h *harness) {}, admin,
			func(h *harness) *fsm.Command { return createTokenCmd(tokenID, -time.Second, h.at) }, fsm.CodeInvalid},
		{"create a taken ID", func(h *harness) { h.must(admin, createTokenCmd(tokenID, time.Hour, h.at)) }, admin,
			func(h *harness) *fsm.Command { return createTokenCmd(tokenID, time.Hour, h.at) }, fsm.CodeExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ready(h)
			tc.setup(h)
			before := h.snapshot()
			res := h.do(tc.by, tc.cmd(h))
			if codeOf(res) != tc.want {
				t.Fatalf("got %v, want %s", res.Error, tc.want)
			}
			assertUnchanged(t, before, h.snapshot(), "applied")
		})
	}
}

// TestJoinTokensAreForgottenWhenExpired: expired tokens leave the state,
// so it does not grow with them.
func TestJoinTokensAreForgottenWhenExpired(t *testing.T) {
	h := newHarness(t)
	ready(h)
	h.must(admin, createTokenCmd(tokenID, time.Minute, h.at))
	h.at = h.at.Add(5 * time.Minute)
	h.must(admin, putRuleCmd("r", op.ID, "db/*", fsm.OpRead)) // an operator's command moves the clock
	if tok := h.state().JoinTokens[tokenID]; tok != nil {
		t.Fatalf("expired token still in the state: %+v", tok)
	}
}

// tokenKey stands for the Ed25519 key a join token's secret derives.
var tokenKey = seededKey(0x7a)

func createKeyedTokenCmd(id string, ttl time.Duration, at time.Time) *fsm.Command {
	c := createTokenCmd(id, ttl, at)
	c.CreateJoinToken.Key = tokenKey.Public().(ed25519.PublicKey)
	return c
}

// autoJoinCmd is node i's request to join with token id, signed with the
// token's key and node i's own.
func autoJoinCmd(i int, id string) *fsm.Command {
	n := nodeSpec(i)
	msg := fsm.AutoJoinMessage(id, n)
	return &fsm.Command{Type: fsm.TypeAutoJoin, AutoJoin: &fsm.AutoJoin{Node: n, Token: id,
		TokenSig: ed25519.Sign(tokenKey, msg), NodeSig: ed25519.Sign(node(i).Key, msg)}}
}

// TestAutoJoinAdmitsTheSigningNodeOnce: a member relays a node's request
// signed with a token's key and the node's own; the node is added and the
// token spent, so the same request, or the token for another node, admits
// nothing more.
func TestAutoJoinAdmitsTheSigningNodeOnce(t *testing.T) {
	h := newHarness(t)
	ready(h)
	h.must(admin, createKeyedTokenCmd(tokenID, time.Hour, h.at))
	h.must(node(1), autoJoinCmd(2, tokenID))
	s := h.state()
	if s.Nodes[node(2).ID] == nil || s.JoinTokens[tokenID].SpentBy != node(2).ID {
		t.Fatalf("after auto_join: node-2 member %v, token %+v", s.Nodes[node(2).ID] != nil, s.JoinTokens[tokenID])
	}
	before := h.snapshot()
	if res := h.do(node(1), autoJoinCmd(3, tokenID)); codeOf(res) != fsm.CodeDenied {
		t.Fatalf("a spent token admitted another node: %v", res.Error)
	}
	assertUnchanged(t, before, h.snapshot(), "applied")
}

// TestAutoJoinRefusals: the attacks on auto_join. A member (or whoever
// relays) that saw one node's request cannot turn it into the admission of
// another node; a token without a key, a request not signed by the node
// itself, and a relay that is not a member admit nothing.
func TestAutoJoinRefusals(t *testing.T) {
	keyed := func(h *harness) { h.must(admin, createKeyedTokenCmd(tokenID, time.Hour, h.at)) }
	for _, tc := range []struct {
		name  string
		setup func(h *harness)
		by    principal
		cmd   func() *fsm.Command
		want  fsm.Code
	}{
		{"the request's node record replaced", keyed, node(1), func() *fsm.Command {
			c := autoJoinCmd(2, tokenID)
			c.AutoJoin.Node = nodeSpec(3) // node-3's record with node-2's signatures
			return c
		}, fsm.CodeDenied},
		{"an address changed", keyed, node(1), func() *fsm.Command {
			c := autoJoinCmd(2, tokenID)
			c.AutoJoin.Node.APIAddr = "10.9.9.9:8443"
			return c
		}, fsm.CodeDenied},
		{"the node's signature by another key", keyed, node(1), func() *fsm.Command {
			c := autoJoinCmd(2, tokenID)
			c.AutoJoin.NodeSig = ed25519.Sign(node(3).Key, fsm.AutoJoinMessage(tokenID, c.AutoJoin.Node))
			return c
		}, fsm.CodeDenied},
		{"the token's signature by another key", keyed, node(1), func() *fsm.Command {
			c := autoJoinCmd(2, tokenID)
			c.AutoJoin.TokenSig = ed25519.Sign(node(1).Key, fsm.AutoJoinMessage(tokenID, c.AutoJoin.Node))
			return c
		}, fsm.CodeDenied},
		{"a token without a key", func(h *harness) { h.must(admin, createTokenCmd(tokenID, time.Hour, h.at)) }, node(1),
			func() *fsm.Command { return autoJoinCmd(2, tokenID) }, fsm.CodeDenied},
		{"an expired token", func(h *harness) {
			h.must(admin, createKeyedTokenCmd(tokenID, time.Minute, h.at))
			h.at = h.at.Add(2 * time.Minute)
		}, node(1), func() *fsm.Command { return autoJoinCmd(2, tokenID) }, fsm.CodeDenied},
		{"relayed by a node that is not a member", keyed, node(4),
			func() *fsm.Command { return autoJoinCmd(2, tokenID) }, fsm.CodeBadSignature},
		{"relayed by an admin operator", keyed, admin,
			func() *fsm.Command { return autoJoinCmd(2, tokenID) }, fsm.CodeBadSignature},
		{"a key of the wrong size", func(h *harness) {}, admin, func() *fsm.Command {
			c := createKeyedTokenCmd(tokenID, time.Hour, t0)
			c.CreateJoinToken.Key = c.CreateJoinToken.Key[:31]
			return c
		}, fsm.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ready(h)
			tc.setup(h)
			before := h.snapshot()
			res := h.do(tc.by, tc.cmd())
			if codeOf(res) != tc.want {
				t.Fatalf("got %v, want %s", res.Error, tc.want)
			}
			assertUnchanged(t, before, h.snapshot(), "applied")
		})
	}
}
