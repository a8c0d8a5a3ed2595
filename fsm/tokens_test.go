package fsm_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

var revocationID = strings.Repeat("ab", 64)

func revokeTokenCmd(id string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRevokeToken, RevokeToken: &fsm.RevokedToken{ID: id}}
}

func TestRevokeTokenTransition(t *testing.T) {
	runTransition(t, []transitionCase{
		{name: "an operator revokes an id", setup: ready, by: op, cmd: revokeTokenCmd(revocationID),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				r := h.state().RevokedTokens[revocationID]
				if r == nil || r.By != op.ID || r.ExpiresAt != h.at.Add(fsm.MaxTokenTTL).UnixNano() {
					t.Fatalf("revocation %+v", r)
				}
			}},
		{name: "an id that is not 64 hex bytes", setup: ready, by: op, cmd: revokeTokenCmd("abcd"), code: fsm.CodeInvalid},
		{name: "upper-case hex", setup: ready, by: op, cmd: revokeTokenCmd(strings.ToUpper(revocationID)), code: fsm.CodeInvalid},
		{name: "no revocation", setup: ready, by: op, cmd: &fsm.Command{Type: fsm.TypeRevokeToken}, code: fsm.CodeInvalid},
		{name: "unsigned", setup: ready, entry: unsigned(op, revokeTokenCmd(revocationID)), code: fsm.CodeBadSignature},
	})
}

// A revocation is kept for MaxTokenTTL, then forgotten with the other
// pruned state.
func TestRevokedTokenForgottenAfterMaxTTL(t *testing.T) {
	h := newHarness(t)
	ready(h)
	h.must(op, revokeTokenCmd(revocationID))
	h.must(op, revokeTokenCmd(revocationID)) // twice: nothing changes
	if !stateRevoked(h, revocationID) {
		t.Fatal("not revoked")
	}
	h.at = h.at.Add(fsm.MaxTokenTTL + time.Hour)
	h.must(op, revokeTokenCmd(strings.Repeat("cd", 64)))
	if stateRevoked(h, revocationID) {
		t.Fatal("a revocation outlived MaxTokenTTL")
	}
}

func stateRevoked(h *harness, id string) (revoked bool) {
	h.f.Read(func(s *fsm.State) { revoked = s.TokenRevoked(id) })
	return revoked
}

// tokenCheck is a stand-in for package token: it accepts a token whose
// bytes name the key and the operator's public key, and refuses revoked ids.
func tokenCheck(root ed25519.PublicKey, sg *fsm.Signed, cmd *fsm.Command, revoked func(string) bool) (*fsm.TokenGrant, *fsm.Error) {
	if revoked(revocationID) {
		return nil, &fsm.Error{Code: fsm.CodeDenied, Message: "revoked"}
	}
	if !bytes.Equal(sg.Token, append([]byte(cmd.Release.Key+"|"), root...)) {
		return nil, &fsm.Error{Code: fsm.CodeDenied, Message: "the token does not allow this"}
	}
	return &fsm.TokenGrant{Chain: []string{revocationID}}, nil
}

func tokenRequest(h *harness, p principal, c *fsm.Command, tokenFor string) *fsm.Signed {
	sg := h.signed(p, c)
	sg.Signature = nil
	sg.Token = append([]byte(tokenFor+"|"), p.pub()...)
	return sg
}

// The token's root operator's own rules bound what a token allows; the
// rules of AuthorizeRelease hold for a token's request as for a signed one.
func TestAuthorizeTokenRelease(t *testing.T) {
	for _, tc := range []struct {
		name     string
		by       principal
		cmd      *fsm.Command
		tokenFor string
		change   func(sg *fsm.Signed)
		revoke   bool
		code     fsm.Code
	}{
		{name: "allowed by token and rule", by: getter, cmd: releaseCmd("db/x", fsm.OpGet), tokenFor: "db/x"},
		{name: "the token is for another key", by: getter, cmd: releaseCmd("db/x", fsm.OpGet), tokenFor: "db/other", code: fsm.CodeDenied},
		{name: "the operator's rules do not allow it", by: reader, cmd: releaseCmd("db/x", fsm.OpGet), tokenFor: "db/x", code: fsm.CodeDenied},
		{name: "a key no rule names", by: getter, cmd: releaseCmd("web/x", fsm.OpGet), tokenFor: "web/x", code: fsm.CodeDenied},
		{name: "a revoked key", by: admin, cmd: releaseCmd("db/revoked", fsm.OpGet), tokenFor: "db/revoked", code: fsm.CodeDenied},
		{name: "revoked", by: getter, cmd: releaseCmd("db/x", fsm.OpGet), tokenFor: "db/x", revoke: true, code: fsm.CodeDenied},
		{name: "a token and a signature", by: getter, cmd: releaseCmd("db/x", fsm.OpGet), tokenFor: "db/x",
			change: func(sg *fsm.Signed) { sg.Signature = make([]byte, 64) }, code: fsm.CodeInvalid},
		{name: "an unknown root", by: getter, cmd: releaseCmd("db/x", fsm.OpGet), tokenFor: "db/x",
			change: func(sg *fsm.Signed) { sg.Signer = "nobody" }, code: fsm.CodeBadSignature},
		{name: "a gateway's release", by: getter, cmd: with(releaseCmd("db/x", fsm.OpGet), func(c *fsm.Command) { c.Release.Gateway = "kxd"; c.Release.Ephemeral = nil }),
			tokenFor: "db/x", code: fsm.CodeInvalid},
		{name: "no ephemeral key", by: getter, cmd: with(releaseCmd("db/x", fsm.OpGet), withoutEphemeral), tokenFor: "db/x", code: fsm.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			releaseState(h)
			if tc.revoke {
				h.must(op, revokeTokenCmd(revocationID))
			}
			sg := tokenRequest(h, tc.by, tc.cmd, tc.tokenFor)
			if tc.change != nil {
				tc.change(sg)
			}
			var (
				ids []string
				err *fsm.Error
			)
			h.f.Read(func(s *fsm.State) { _, _, ids, err = s.AuthorizeTokenRelease(sg, h.at, tokenCheck) })
			if got := codeOf(&fsm.Result{Error: err}); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, err, tc.code)
			}
			if err == nil && (len(ids) != 1 || ids[0] != revocationID) {
				t.Fatalf("chain %v", ids)
			}
			// The signature path refuses a request with a token.
			if _, _, e := authorize(h, sg, h.at); e == nil {
				t.Fatal("a token request was authorized as signed")
			}
		})
	}
}

func tokenUseCmd(id string, nonce []byte) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeTokenUse, TokenUse: &fsm.TokenUse{ID: id, Nonce: nonce}}
}

var useNonce = bytes.Repeat([]byte{7}, 16)

func TestTokenUseTransition(t *testing.T) {
	runTransition(t, []transitionCase{
		{name: "a node records a use", setup: ready, by: node(1), cmd: tokenUseCmd(revocationID, useNonce),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if u := h.state().TokenUses[revocationID]; u == nil || len(u.Nonces) != 1 {
					t.Fatalf("uses %+v", u)
				}
			}},
		{name: "an operator does not", setup: ready, by: admin, cmd: tokenUseCmd(revocationID, useNonce), code: fsm.CodeBadSignature},
		{name: "a bad revocation id", setup: ready, by: node(1), cmd: tokenUseCmd("ab", useNonce), code: fsm.CodeInvalid},
		{name: "a short nonce", setup: ready, by: node(1), cmd: tokenUseCmd(revocationID, []byte{1}), code: fsm.CodeInvalid},
	})
}

// boundedCheck is tokenCheck for a token bounded to max uses.
func boundedCheck(max int) fsm.TokenCheck {
	return func(root ed25519.PublicKey, sg *fsm.Signed, cmd *fsm.Command, revoked func(string) bool) (*fsm.TokenGrant, *fsm.Error) {
		g, err := tokenCheck(root, sg, cmd, revoked)
		if err != nil {
			return nil, err
		}
		g.Bounds = []fsm.TokenBound{{ID: revocationID, Max: max}}
		return g, nil
	}
}

// TestTokenUsesBounded: a request of a token bounded to 2 uses is
// authorized only once its use is recorded, and only if it is among the
// first 2 recorded; recording the same use again changes nothing.
func TestTokenUsesBounded(t *testing.T) {
	h := newHarness(t)
	releaseState(h)
	var reqs []*fsm.Signed
	for range 3 {
		reqs = append(reqs, tokenRequest(h, getter, releaseCmd("db/x", fsm.OpGet), "db/x"))
	}
	authorizeAt := func(sg *fsm.Signed) *fsm.Error {
		var err *fsm.Error
		h.f.Read(func(s *fsm.State) { _, _, _, err = s.AuthorizeTokenRelease(sg, h.at, boundedCheck(2)) })
		return err
	}
	nonceOf := func(sg *fsm.Signed) []byte {
		var c fsm.Command
		if err := json.Unmarshal(sg.Payload, &c); err != nil {
			t.Fatal(err)
		}
		return c.Nonce
	}
	if err := authorizeAt(reqs[0]); codeOf(&fsm.Result{Error: err}) != fsm.CodeConflict {
		t.Fatalf("a use not recorded: %v", err)
	}
	// Verification alone (before the read) does not look at uses.
	h.f.Read(func(s *fsm.State) {
		if _, _, err := s.VerifyTokenRelease(reqs[0], h.at, boundedCheck(2)); err != nil {
			t.Fatalf("verify before the use is recorded: %v", err)
		}
	})
	for i, sg := range reqs {
		h.must(node(1), tokenUseCmd(revocationID, nonceOf(sg)))
		h.must(node(1), tokenUseCmd(revocationID, nonceOf(sg))) // again (another entry): nothing changes
		err := authorizeAt(sg)
		if i < 2 && err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
		if i == 2 && codeOf(&fsm.Result{Error: err}) != fsm.CodeTokenUsedUp {
			t.Fatalf("use 3 of 2: %v", err)
		}
	}
	if n := len(h.state().TokenUses[revocationID].Nonces); n != 3 {
		t.Fatalf("%d uses recorded, want 3", n)
	}
}
