package fsm

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"maps"
	"regexp"
	"time"
)

// Join tokens admit a node once. An admin creates one (create_join_token)
// with the SHA-256 of a random secret that only the operator and the node
// it is meant for know, and an expiry; an admin's join_node names the
// token and carries its secret, and adds the node only if the token exists,
// has not expired and was never spent; it is spent by that node. The state
// never holds a secret. The log, and a snapshot's entries, keep the secret
// of each join_node: of a token that entry spent or, if it was refused,
// of one only an admin's signed join_node can spend. A
// token stays listed, spent or not, until it expires.

// MaxJoinTokenTTL bounds how long a join token lives.
const MaxJoinTokenTTL = 7 * 24 * time.Hour

var joinTokenIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// JoinToken is a join token as the state keeps it. In create_join_token
// only ID, Hash and ExpiresAt are set; the rest is the state's.
type JoinToken struct {
	ID        string `json:"id"`   // 16 hex digits
	Hash      []byte `json:"hash"` // SHA-256 of the secret
	ExpiresAt int64  `json:"expires_at"`
	CreatedBy string `json:"created_by,omitempty"`
	CreatedAt int64  `json:"created_at,omitempty"`
	SpentBy   string `json:"spent_by,omitempty"` // the node that joined with it
	SpentAt   int64  `json:"spent_at,omitempty"`
	// Key is the Ed25519 public key derived from the secret; a token
	// without one admits only through an admin's join_node.
	Key []byte `json:"key,omitempty"`
}

// AutoJoin adds the node that signed it with a join token's key; a member
// node relays it (signs the entry).
type AutoJoin struct {
	Node  *Node  `json:"node"`
	Token string `json:"token"` // the token's ID
	// TokenSig is by the token's Key, NodeSig by the node's SignKey, both
	// over AutoJoinMessage(Token, Node).
	TokenSig []byte `json:"token_sig"`
	NodeSig  []byte `json:"node_sig"`
}

// AutoJoinMessage is what a joining node signs with the token's key and
// with its own: the token's ID and its node record, so that neither
// signature admits another node, nor the same node with another token.
func AutoJoinMessage(token string, n *Node) []byte {
	rec, _ := json.Marshal(n) // a struct of strings and bytes: cannot fail
	return append([]byte("keyquorum/auto-join/v1\x00"+token+"\x00"), rec...)
}

// JoinNode adds a node that joins with a join token.
type JoinNode struct {
	Node   *Node  `json:"node"`
	Token  string `json:"token"`  // the token's ID
	Secret []byte `json:"secret"` // the token's secret, whose SHA-256 the state holds
}

func (t *transition) createJoinToken(in *JoinToken) *Error {
	if in == nil {
		return errorf(CodeInvalid, "create_join_token needs a token")
	}
	switch {
	case !joinTokenIDPattern.MatchString(in.ID):
		return errorf(CodeInvalid, "a join token's ID is 16 lowercase hex digits")
	case len(in.Hash) != sha256.Size:
		return errorf(CodeInvalid, "a join token's hash is %d bytes", sha256.Size)
	case in.ExpiresAt <= t.now:
		return errorf(CodeInvalid, "join token %s would expire before it is created", in.ID)
	case in.ExpiresAt-t.now > int64(MaxJoinTokenTTL):
		return errorf(CodeInvalid, "a join token lives at most %v", MaxJoinTokenTTL)
	case in.Key != nil && len(in.Key) != ed25519.PublicKeySize:
		return errorf(CodeInvalid, "a join token's key is %d bytes", ed25519.PublicKeySize)
	}
	s := t.s
	if s.JoinTokens[in.ID] != nil {
		return errorf(CodeExists, "join token %s exists", in.ID)
	}
	if s.JoinTokens == nil {
		s.JoinTokens = map[string]*JoinToken{}
	}
	s.JoinTokens[in.ID] = &JoinToken{ID: in.ID, Hash: append([]byte(nil), in.Hash...), ExpiresAt: in.ExpiresAt,
		CreatedBy: t.signer, CreatedAt: t.now, Key: append([]byte(nil), in.Key...)}
	return nil
}

func (t *transition) revokeJoinToken(id string) *Error {
	if t.s.JoinTokens[id] == nil {
		return errorf(CodeNotFound, "join token %q does not exist (or expired)", id)
	}
	delete(t.s.JoinTokens, id)
	return nil
}

// joinNode checks the token before anything else, then adds the node as
// add_node does, and spends the token only if the node was added.
func (t *transition) joinNode(j *JoinNode) *Error {
	if j == nil || j.Node == nil {
		return errorf(CodeInvalid, "join_node needs a node and a token")
	}
	tok, err := t.usableToken(j.Token)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(j.Secret)
	if subtle.ConstantTimeCompare(sum[:], tok.Hash) != 1 {
		return errorf(CodeDenied, "the secret is not join token %s's", tok.ID)
	}
	if err := t.addNode(j.Node); err != nil {
		return err
	}
	tok.SpentBy, tok.SpentAt = j.Node.ID, t.now
	return nil
}

// usableToken is the token id if it exists, was never spent and has not
// expired.
func (t *transition) usableToken(id string) (*JoinToken, *Error) {
	tok := t.s.JoinTokens[id]
	switch {
	case tok == nil:
		return nil, errorf(CodeDenied, "join token %q does not exist: it was never created, was revoked or expired", id)
	case tok.SpentBy != "":
		return nil, errorf(CodeDenied, "join token %s was spent by node %q", tok.ID, tok.SpentBy)
	case t.now >= tok.ExpiresAt:
		return nil, errorf(CodeDenied, "join token %s expired at %s", tok.ID, time.Unix(0, tok.ExpiresAt).UTC().Format(time.RFC3339))
	}
	return tok, nil
}

// autoJoin adds the node that signed the request with the token's key and
// its own, relayed by a member (the entry's signer), and spends the token.
func (t *transition) autoJoin(j *AutoJoin) *Error {
	if j == nil || j.Node == nil {
		return errorf(CodeInvalid, "auto_join needs a node, a token and two signatures")
	}
	if m := t.s.Nodes[t.signer]; m == nil || m.Leaving {
		return errorf(CodeDenied, "auto_join is relayed by a member, not %q", t.signer)
	}
	tok, err := t.usableToken(j.Token)
	if err != nil {
		return err
	}
	if len(tok.Key) != ed25519.PublicKeySize {
		return errorf(CodeDenied, "join token %s has no key: it admits a node only with keyctl cluster join", tok.ID)
	}
	if err := CheckAutoJoin(tok.Key, j); err != nil {
		return err
	}
	if err := t.addNode(j.Node); err != nil {
		return err
	}
	tok.SpentBy, tok.SpentAt = j.Node.ID, t.now
	return nil
}

// CheckAutoJoin checks an auto-join request's two signatures, the token's
// by tokenKey and the node's by the key its record names.
func CheckAutoJoin(tokenKey []byte, j *AutoJoin) *Error {
	if j == nil || j.Node == nil || len(j.Node.SignKey) != ed25519.PublicKeySize || len(tokenKey) != ed25519.PublicKeySize {
		return errorf(CodeInvalid, "auto_join needs a node with a signing key, a token and two signatures")
	}
	msg := AutoJoinMessage(j.Token, j.Node)
	if !ed25519.Verify(tokenKey, msg, j.TokenSig) {
		return errorf(CodeDenied, "the request for node %q is not signed with join token %s's key", j.Node.ID, j.Token)
	}
	if !ed25519.Verify(j.Node.SignKey, msg, j.NodeSig) {
		return errorf(CodeDenied, "the request for node %q is not signed with the node's own key", j.Node.ID)
	}
	return nil
}

// pruneJoinTokens forgets the tokens that have expired.
func (s *State) pruneJoinTokens(now int64) {
	maps.DeleteFunc(s.JoinTokens, func(_ string, tok *JoinToken) bool { return tok.ExpiresAt <= now })
}
