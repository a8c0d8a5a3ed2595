package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/token"
)

// tokenWrite is the entry of cmd with tok bound to it in place of the
// operator's signature, as client.TokenClient makes it.
func (c *testCluster) tokenWrite(tok []byte, cmd *fsm.Command) *fsm.Signed {
	c.t.Helper()
	cmd.Nonce, cmd.IssuedAt = randomBytes(c.t, 16), time.Now().UnixNano()
	payload, err := json.Marshal(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	return &fsm.Signed{Signer: c.opID, Payload: payload, Token: bindRaw(c.t, tok, payload)}
}

// keyStateEverywhere waits until every node applied index, and returns
// the state of key name on each.
func (c *testCluster) keyStateEverywhere(index uint64, name string) map[string]string {
	c.t.Helper()
	states := map[string]string{}
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range c.nodes {
			ok := false
			tn.n.fsm.Read(func(s *fsm.State) {
				if ok = s.Applied >= index; ok {
					if k := s.Keys[name]; k != nil {
						states[tn.id()] = k.State
					}
				}
			})
			if !ok {
				return false, fmt.Sprintf("%s has not applied %d", tn.id(), index)
			}
		}
		return true, ""
	})
	return states
}

// TestTokenWriteVerifiedByEveryReplica: a lying node proposes, through
// Raft, revoke and destroy entries with tokens that do not allow them (it
// skips its own check: Node.Submit proposes as it is); every replica
// refuses each in Apply and keeps the key. An honest token write, through
// another node, revokes the key on every replica, and its replay is
// refused. A forged token sent to a node's token route costs no log write.
func TestTokenWriteVerifiedByEveryReplica(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("app/a", randomBytes(t, 32))
	c.createSecret("app/b", randomBytes(t, 32))
	liar := c.nodes[1]
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forBoth := mintToken(t, c.opID, c.opKey, token.Scope{Prefixes: []string{"app/"}, Flags: []string{token.FlagRevoke, token.FlagDestroy}})
	rebound := c.tokenWrite(forBoth, &fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: "app/b"})
	rebound.Payload = c.tokenWrite(forBoth, &fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: "app/a"}).Payload
	for _, tc := range []struct {
		name string
		sg   *fsm.Signed
		kind Kind
	}{
		{"no revoke flag", c.tokenWrite(mintToken(t, c.opID, c.opKey, token.Scope{Prefixes: []string{"app/"}, Flags: []string{token.FlagDecrypt, token.FlagDestroy}}),
			&fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: "app/a"}), KindTokenLacksCapability},
		{"a token for another key", c.tokenWrite(mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"app/b"}, Flags: token.Flags}),
			&fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: "app/a"}), KindTokenLacksCapability},
		{"not signed by the operator", c.tokenWrite(mintToken(t, c.opID, other, token.Scope{Prefixes: []string{""}, Flags: token.Flags}),
			&fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: "app/a"}), KindUnauthenticated},
		{"bound to another request", rebound, KindUnauthenticated},
		{"expired", c.tokenWrite(restrict(t, forBoth, token.Restriction{ExpiresAt: time.Now().Add(-time.Minute)}),
			&fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: "app/a"}), KindTokenExpired},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		res, err := liar.n.Submit(ctx, tc.sg)
		cancel()
		if KindOf(err) != tc.kind || res == nil {
			t.Fatalf("%s: %v (kind %s), want a refused entry of kind %s", tc.name, err, KindOf(err), tc.kind)
		}
		for id, st := range c.keyStateEverywhere(res.Index, "app/a") {
			if st != fsm.KeyActive {
				t.Errorf("%s: %s shows app/a %s", tc.name, id, st)
			}
		}
	}

	// A forged token at the token route: refused before any log write.
	forged := c.tokenWrite(mintToken(t, c.opID, other, token.Scope{Prefixes: []string{""}, Flags: token.Flags}),
		&fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: "app/a"})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if res, err := c.nodes[0].n.SubmitTokenWrite(ctx, forged); KindOf(err) != KindUnauthenticated || res != nil {
		t.Fatalf("a forged token write: %+v, %v (kind %s)", res, err, KindOf(err))
	}

	// The honest write, through a node that checks it first.
	sg := c.tokenWrite(restrict(t, forBoth, token.Restriction{Flags: []string{token.FlagRevoke}, Keys: []string{"app/a"}}),
		&fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: "app/a"})
	res, err := c.nodes[2].n.SubmitTokenWrite(ctx, sg)
	if err != nil {
		t.Fatal(err)
	}
	for id, st := range c.keyStateEverywhere(res.Index, "app/a") {
		if st != fsm.KeyRevoked {
			t.Errorf("%s shows app/a %s after the token's revoke", id, st)
		}
	}
	replayed := func(err error) bool {
		return KindOf(err) == KindUnauthenticated && strings.Contains(errString(err), "nonce already used")
	}
	if _, err := c.nodes[0].n.SubmitTokenWrite(ctx, sg); !replayed(err) {
		t.Errorf("the same write again through a node: %v (kind %s)", err, KindOf(err))
	}
	if _, err := liar.n.Submit(ctx, sg); !replayed(err) {
		t.Errorf("the same write replayed into the log: %v (kind %s)", err, KindOf(err))
	}
}
