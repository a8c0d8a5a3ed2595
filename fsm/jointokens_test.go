package fsm_test

import (
	"bytes"
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
