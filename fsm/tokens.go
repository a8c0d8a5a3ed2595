package fsm

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"time"
)

// Capability tokens (docs/tokens.md). A token is a Biscuit whose root key
// is a registered operator's: the cluster's package token verifies it,
// and a node injects that check (TokenCheck) where a share holder
// authorizes a request that carries one (AuthorizeTokenRelease), so this
// package stays free of it. The state keeps what a holder needs beyond the
// token: the operators, whose keys are the roots and whose own rules bound
// what their tokens allow, and the revocations. A revocation names one of
// a token's revocation ids; it revokes that token and every token
// restricted or bound from it. Any operator may revoke (a revocation only
// takes away), and revoking an id twice changes nothing. A revocation is
// kept for MaxTokenTTL, longer than any token it can name lives, and then
// forgotten.

// MaxTokenTTL bounds a token's life; package token refuses a token that
// says it lives longer, and keeps the same bound (token.MaxTTL; a test
// checks they agree).
const MaxTokenTTL = 90 * 24 * time.Hour

// revocationIDPattern: a revocation id is a block's Ed25519 signature, hex.
var revocationIDPattern = regexp.MustCompile(`^[0-9a-f]{128}$`)

// RevokedToken is a revocation as the state keeps it; revoke_token sets ID
// only.
type RevokedToken struct {
	ID        string `json:"id"`
	By        string `json:"by,omitempty"`
	At        int64  `json:"at,omitempty"`
	ExpiresAt int64  `json:"expires_at,omitempty"` // when the state forgets it
}

// TokenCheck verifies the capability token of a request (sg.Token) for
// the decoded command, with root the key of the operator the request
// names (sg.Signer), and the state's revocations (revoked).
type TokenCheck func(root ed25519.PublicKey, sg *Signed, cmd *Command, revoked func(id string) bool) (*TokenGrant, *Error)

// TokenGrant is what a verified token says beyond allowing the request:
// its chain of revocation ids, from its authority block to its request
// binding, and the bounds on its uses.
type TokenGrant struct {
	Chain  []string
	Bounds []TokenBound
}

// TokenBound is a bound on a token's uses, set by the block whose
// revocation id is ID.
type TokenBound struct {
	ID  string
	Max int
}

// Bounds on uses (docs/tokens.md). A coordinator records each use of a
// token with a bound, node-signed (token_use: the bound's revocation id
// and the request's nonce), before it asks the holders; a holder answers
// a request only if, at its own read, the request's nonce is among the
// first Max recorded for each bound of the token. Records are only
// appended, so at most Max requests are ever answered. The state machine
// cannot verify the token (it takes no token check), so a compromised
// node can record uses that never were, using a token up: a denial of
// service, as refusing to answer is; it cannot make a holder answer
// beyond the bound.

// MaxTokenUses bounds the records kept per revocation id.
const MaxTokenUses = 10000

// TokenUse records one use of a token with a bound; TokenUses are the
// uses recorded for one revocation id.
type TokenUse struct {
	ID    string `json:"id"`
	Nonce []byte `json:"nonce"`
}

type TokenUses struct {
	Nonces    []string `json:"nonces"` // hex, in log order
	ExpiresAt int64    `json:"expires_at"`
}

func (t *transition) tokenUse(u *TokenUse) *Error {
	if u == nil || !revocationIDPattern.MatchString(u.ID) || len(u.Nonce) < minNonceLen || len(u.Nonce) > 64 {
		return errorf(CodeInvalid, "token_use needs a revocation id and the request's nonce")
	}
	s := t.s
	uses := s.TokenUses[u.ID]
	nonce := hex.EncodeToString(u.Nonce)
	if uses != nil && slices.Contains(uses.Nonces, nonce) {
		return nil
	}
	if uses != nil && len(uses.Nonces) >= MaxTokenUses {
		return errorf(CodeTokenUsedUp, "token %s has %d uses recorded, the most kept", u.ID[:16], MaxTokenUses)
	}
	if s.TokenUses == nil {
		s.TokenUses = map[string]*TokenUses{}
	}
	if uses == nil {
		s.TokenUses[u.ID] = &TokenUses{Nonces: []string{nonce}, ExpiresAt: t.now + int64(MaxTokenTTL)}
		return nil
	}
	uses.Nonces = append(uses.Nonces, nonce)
	return nil
}

// checkUses refuses a request whose use is not among the first each
// bound allows.
func (s *State) checkUses(bounds []TokenBound, nonce []byte) *Error {
	n := hex.EncodeToString(nonce)
	for _, b := range bounds {
		uses := s.TokenUses[b.ID]
		i := -1
		if uses != nil {
			i = slices.Index(uses.Nonces, n)
		}
		switch {
		case i < 0:
			return errorf(CodeConflict, "this use of a token bounded to %d uses is not recorded in the log: its coordinator records it before asking", b.Max)
		case i >= b.Max:
			return errorf(CodeTokenUsedUp, "the token is bounded to %d uses, and this is use %d", b.Max, i+1)
		}
	}
	return nil
}

func (t *transition) revokeToken(r *RevokedToken) *Error {
	if r == nil || !revocationIDPattern.MatchString(r.ID) {
		return errorf(CodeInvalid, "revoke_token needs a revocation id: 128 lowercase hex digits")
	}
	s := t.s
	if s.RevokedTokens[r.ID] != nil {
		return nil
	}
	if s.RevokedTokens == nil {
		s.RevokedTokens = map[string]*RevokedToken{}
	}
	s.RevokedTokens[r.ID] = &RevokedToken{ID: r.ID, By: t.signer, At: t.now, ExpiresAt: t.now + int64(MaxTokenTTL)}
	return nil
}

// TokenRevoked reports whether a revocation id is revoked.
func (s *State) TokenRevoked(id string) bool { return s.RevokedTokens[id] != nil }

// pruneRevokedTokens forgets the revocations that outlived every token
// they could name.
func (s *State) pruneRevokedTokens(now int64) {
	maps.DeleteFunc(s.RevokedTokens, func(_ string, r *RevokedToken) bool { return r.ExpiresAt <= now })
	maps.DeleteFunc(s.TokenUses, func(_ string, u *TokenUses) bool { return u.ExpiresAt <= now })
}

// VerifyTokenRelease is VerifyRelease for a request that carries a
// capability token in place of a signature: a release payload, fresh, from
// a registered operator's token that check accepts. It returns what the
// token says; its uses are checked at the read (AuthorizeTokenRelease),
// after its coordinator recorded them.
func (s *State) VerifyTokenRelease(sg *Signed, now time.Time, check TokenCheck) (*Command, *TokenGrant, *Error) {
	if sg == nil || len(sg.Token) == 0 {
		return nil, nil, errorf(CodeInvalid, "no request with a capability token")
	}
	if len(sg.Signature) != 0 || sg.WebAuthn != nil {
		return nil, nil, errorf(CodeInvalid, "a request carries a capability token or a signature, not both")
	}
	var cmd Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		return nil, nil, errorf(CodeInvalid, "request payload: %v", err)
	}
	if cmd.Type != TypeRelease || cmd.Release == nil {
		return nil, nil, errorf(CodeInvalid, "not a release request")
	}
	if err := checkFresh(&cmd, now.UnixNano()); err != nil {
		return nil, nil, err
	}
	if cmd.Release.Gateway != "" {
		return nil, nil, errorf(CodeInvalid, "a gateway node's release carries no capability token")
	}
	o := s.Operators[sg.Signer]
	if o == nil || len(o.PublicKey) != ed25519.PublicKeySize {
		return nil, nil, errorf(CodeBadSignature, "the capability token's root %q is no registered operator", sg.Signer)
	}
	g, err := check(o.PublicKey, sg, &cmd, s.TokenRevoked)
	if err != nil {
		return nil, nil, err
	}
	return &cmd, g, nil
}

// AuthorizeTokenRelease is AuthorizeRelease for a request that carries a
// capability token: the token (VerifyTokenRelease) and then every rule
// AuthorizeRelease applies to an operator's own request, with the token's
// root operator as the principal, so that a token never allows what its
// operator may not do; and, for a token with a bound on its uses, that
// this request's use is recorded among the first the bound allows.
func (s *State) AuthorizeTokenRelease(sg *Signed, now time.Time, check TokenCheck) (*Command, *Key, []string, *Error) {
	cmd, g, err := s.VerifyTokenRelease(sg, now, check)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := s.checkUses(g.Bounds, cmd.Nonce); err != nil {
		return nil, nil, nil, err
	}
	k, err := s.authorizeVerified(sg, cmd, now)
	if err != nil {
		return nil, nil, nil, err
	}
	return cmd, k, g.Chain, nil
}

// Writes a token authorizes (docs/tokens.md). A log entry of one of these
// types may carry, in place of its signature, a capability token of the
// operator it names (sg.Signer), bound to its payload and sealed
// (token.Bind), as a release request does. Every replica verifies the
// whole chain in Apply (FSM.TokenWrites): from the operator's key in the
// state, at the entry's state-machine time, with the state's revocations;
// then the transition applies every rule the operator's own signed
// command meets, with the operator as the signer, so a token never
// writes what its operator may not. The entry's nonce is the operator's
// (a replay is refused as one of the operator's own commands would be),
// and a bound on uses is counted in Apply itself: the entry is its own
// record.

// WriteTokenCheck verifies the capability token of a log entry (sg.Token)
// for op (OpRevoke, OpDestroy) on the key named key, with root the key of
// the operator sg.Signer, at now (the entry's state-machine time, never a
// clock), with the state's revocations (revoked). It runs in Apply, so it
// must give every replica the same answer: no wall-clock limit, only
// bounds on the work.
type WriteTokenCheck func(root ed25519.PublicKey, sg *Signed, op, key string, now time.Time, revoked func(id string) bool) (*TokenGrant, *Error)

// tokenWriteOp is the operation and key of a command a token may
// authorize, or "" if its type takes no token.
func (s *State) tokenWriteOp(cmd *Command) (op, key string) {
	switch cmd.Type {
	case TypeRevokeKey:
		return OpRevoke, s.KeyName(cmd.RevokeKey)
	case TypeDestroyKey:
		return OpDestroy, s.KeyName(cmd.DestroyKey)
	}
	return "", ""
}

// verifyTokenWrite verifies an entry that carries a capability token in
// place of a signature.
func (f *FSM) verifyTokenWrite(sg *Signed, cmd *Command, now int64) (*TokenGrant, *Error) {
	if f.TokenWrites == nil {
		return nil, errorf(CodeInvalid, "this state machine takes no capability token in the log")
	}
	return f.state.checkTokenWrite(sg, cmd, time.Unix(0, now), f.TokenWrites)
}

func (s *State) checkTokenWrite(sg *Signed, cmd *Command, now time.Time, check WriteTokenCheck) (*TokenGrant, *Error) {
	if len(sg.Signature) != 0 || sg.WebAuthn != nil {
		return nil, errorf(CodeInvalid, "an entry carries a capability token or a signature, not both")
	}
	op, key := s.tokenWriteOp(cmd)
	if op == "" {
		return nil, errorf(CodeInvalid, "a %s command takes no capability token", cmd.Type)
	}
	o := s.Operators[sg.Signer]
	if o == nil || len(o.PublicKey) != ed25519.PublicKeySize {
		return nil, errorf(CodeBadSignature, "the capability token's root %q is no registered operator", sg.Signer)
	}
	return check(o.PublicKey, sg, op, key, now, s.TokenRevoked)
}

// VerifyTokenWrite is what Apply checks of an entry that a token
// authorizes, on this state at now, before the entry is proposed: its
// time, its nonce, its token, and the token's bounds on uses, so that a
// forged token costs no log write. Apply checks it all again, at the
// entry's time, and then the operator's rules.
func (s *State) VerifyTokenWrite(sg *Signed, now time.Time, check WriteTokenCheck) *Error {
	if sg == nil || len(sg.Token) == 0 {
		return errorf(CodeInvalid, "no entry with a capability token")
	}
	var cmd Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		return errorf(CodeInvalid, "command payload: %v", err)
	}
	if err := checkFresh(&cmd, now.UnixNano()); err != nil {
		return err
	}
	if _, seen := s.Nonces[nonceKey(sg.Signer, cmd.Nonce)]; seen {
		return errorf(CodeReplay, "nonce already used by %s", sg.Signer)
	}
	g, err := s.checkTokenWrite(sg, &cmd, now, check)
	if err != nil {
		return err
	}
	return s.checkWriteUses(g.Bounds, cmd.Nonce)
}

// checkWriteUses refuses a token's write past a bound on its uses: the
// entry's nonce must be recorded among the first Max, or there must be
// room for it.
func (s *State) checkWriteUses(bounds []TokenBound, nonce []byte) *Error {
	if len(bounds) != 0 && len(nonce) > 64 {
		return errorf(CodeInvalid, "a bounded token's write needs a nonce of at most 64 bytes, which its use is recorded by")
	}
	n := hex.EncodeToString(nonce)
	for _, b := range bounds {
		uses := s.TokenUses[b.ID]
		if uses == nil {
			continue
		}
		i := slices.Index(uses.Nonces, n)
		if i < 0 {
			i = len(uses.Nonces)
		}
		if i >= b.Max || i >= MaxTokenUses {
			return errorf(CodeTokenUsedUp, "the token is bounded to %d uses, and this is use %d", b.Max, i+1)
		}
	}
	return nil
}

// recordWriteUses records a token write's use under each of its bounds,
// once the write took effect (checkWriteUses made room).
func (t *transition) recordWriteUses(bounds []TokenBound, nonce []byte) {
	for _, b := range bounds {
		_ = t.tokenUse(&TokenUse{ID: b.ID, Nonce: nonce})
	}
}
