package cluster

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/netip"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/token"
)

// Capability tokens on the release path (docs/tokens.md). A request
// carries either its signer's signature or, in its place, a capability
// token of the operator it names (fsm.Signed.Token), bound to its payload
// and sealed by the caller (token.Bind). authorizeRequest is the one check
// of a release request that every node makes, as the coordinator and as a
// share holder, on its own state and clock: the holder verifies the whole
// token chain itself, from the operator's key; the coordinator that relays
// it proves nothing. New quorum operations call it too, and name the
// capability their operation needs in tokenFlags.

// tokenFlags maps a release operation to the capability flag a token
// needs for it. An operation missing here takes no token.
var tokenFlags = map[string]string{
	fsm.OpGet:  token.FlagDecrypt, // the quorum opens the sealed secret to the caller
	fsm.OpCAS:  token.FlagImport,  // new material replaces the secret
	fsm.OpSign: token.FlagSign,
	// Transit (docs/transit.md): the quorum decrypts ciphertexts, or
	// derives keys (hmac rides on derive), for the caller alone.
	fsm.OpDecrypt: token.FlagDecrypt,
	fsm.OpDerive:  token.FlagDerive,
	// A transit key's wrapped export: Keyvault's import capability covers
	// both directions (import deals on the client and needs no quorum).
	fsm.OpExport: token.FlagImport,
	// An x25519 key's exchange (a Tang key's is a gateway node's, which
	// carries no token).
	fsm.OpExchange: token.FlagExchange,
}

// TokenFlag is the capability flag a token needs for a release operation,
// or "" if the operation takes no token.
func TokenFlag(op string) string { return tokenFlags[op] }

// writeTokenFlags maps a write to the log that a token may authorize
// (fsm.WriteTokenCheck) to the capability flag it needs. A write missing
// here takes no token.
var writeTokenFlags = map[string]string{
	fsm.OpRevoke:  token.FlagRevoke,
	fsm.OpDestroy: token.FlagDestroy,
}

// WriteTokenCheck is the state machine's check of a log entry that a
// token authorizes (fsm.FSM.TokenWrites), the same on every replica: the
// whole chain from the operator's key, bound to the entry's payload, at
// the entry's time, with the state's revocations and no caller address
// (a token restricted to a network writes nothing), evaluated with no
// time limit (token.Request.Replicated).
func WriteTokenCheck(root ed25519.PublicKey, sg *fsm.Signed, op, key string, now time.Time, revoked func(string) bool) (*fsm.TokenGrant, *fsm.Error) {
	flag := writeTokenFlags[op]
	if flag == "" {
		return nil, &fsm.Error{Code: fsm.CodeInvalid, Message: "a " + op + " takes no capability token"}
	}
	return verifyToken(sg.Token, root, token.Request{Operator: sg.Signer, Flag: flag, Key: key,
		Payload: sg.Payload, Now: now, Replicated: true}, revoked)
}

// verifyToken verifies a token for req with package token and returns
// what the state machine records of it: its chain of revocation ids and
// its bounds on uses.
func verifyToken(tok []byte, root ed25519.PublicKey, req token.Request, revoked func(string) bool) (*fsm.TokenGrant, *fsm.Error) {
	v, err := token.Verify(tok, root, req, revoked)
	if err != nil {
		return nil, &fsm.Error{Code: tokenErrorCode(err), Message: err.Error()}
	}
	g := &fsm.TokenGrant{Chain: v.RevocationIDs}
	for _, b := range v.UseBounds {
		g.Bounds = append(g.Bounds, fsm.TokenBound{ID: b.ID, Max: b.Max})
	}
	return g, nil
}

// authorizeRequest authorizes a release request on s at now: signed
// (fsm.State.AuthorizeRelease) or with a capability token
// (fsm.State.AuthorizeTokenRelease). caller is the address of the client
// as the node that terminated its connection reported it (zero if none),
// which a token restricted to a network is checked against. basis is what
// allowed it, for the audit log: for a token, its chain of revocation ids
// and the root operator's grant.
func authorizeRequest(s *fsm.State, sg *fsm.Signed, now time.Time, caller netip.Addr) (*fsm.Command, *fsm.Key, string, *fsm.Error) {
	if sg == nil || len(sg.Token) == 0 {
		cmd, k, e := s.AuthorizeRelease(sg, now)
		if e != nil {
			return nil, nil, "", e
		}
		return cmd, k, s.ReleaseBasis(sg.Signer, cmd.Release), nil
	}
	cmd, k, ids, e := s.AuthorizeTokenRelease(sg, now, tokenCheck(now, caller))
	if e != nil {
		return nil, nil, "", e
	}
	return cmd, k, "token:" + token.Short(ids) + " " + s.ReleaseBasis(sg.Signer, cmd.Release), nil
}

// verifyRequest is authorizeRequest's first part, which needs no read
// index: the signature, or the token.
func verifyRequest(s *fsm.State, sg *fsm.Signed, now time.Time, caller netip.Addr) *fsm.Error {
	if sg == nil || len(sg.Token) == 0 {
		_, e := s.VerifyRelease(sg, now)
		return e
	}
	_, _, e := s.VerifyTokenRelease(sg, now, tokenCheck(now, caller))
	return e
}

// tokenCheck verifies a request's token with package token.
func tokenCheck(now time.Time, caller netip.Addr) fsm.TokenCheck {
	return func(root ed25519.PublicKey, sg *fsm.Signed, cmd *fsm.Command, revoked func(string) bool) (*fsm.TokenGrant, *fsm.Error) {
		flag := TokenFlag(cmd.Release.Op)
		if flag == "" {
			return nil, &fsm.Error{Code: fsm.CodeInvalid, Message: "a " + cmd.Release.Op + " release takes no capability token"}
		}
		return verifyToken(sg.Token, root, token.Request{Operator: sg.Signer, Flag: flag, Key: cmd.Release.Key,
			Payload: sg.Payload, Now: now, Caller: caller}, revoked)
	}
}

// tokenErrorCode is the refusal code of a token's error: each refusal of
// the token itself has its own kind.
func tokenErrorCode(err error) fsm.Code {
	switch {
	case errors.Is(err, token.ErrMalformed):
		return fsm.CodeInvalid
	case errors.Is(err, token.ErrForged), errors.Is(err, token.ErrUnbound):
		return fsm.CodeBadSignature
	case errors.Is(err, token.ErrExpired):
		return fsm.CodeTokenExpired
	case errors.Is(err, token.ErrRevoked):
		return fsm.CodeTokenRevoked
	case errors.Is(err, token.ErrWidened):
		return fsm.CodeTokenWidened
	}
	return fsm.CodeTokenLacksCapability
}

type callerKey struct{}

// WithCaller records in ctx the address of the client whose request a
// gateway passes on (the peer of the connection it terminated), which
// a capability token restricted to a network is checked against.
func WithCaller(ctx context.Context, addr netip.Addr) context.Context {
	return context.WithValue(ctx, callerKey{}, addr)
}

// callerOf is the address WithCaller recorded, or the zero address.
func callerOf(ctx context.Context) netip.Addr {
	a, _ := ctx.Value(callerKey{}).(netip.Addr)
	return a
}

// parseCaller reads the caller address a coordinator relays; a bad one is
// no address (a token restricted to a network then refuses).
func parseCaller(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

func callerString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// CheckTokenRequest is a gateway's check of a request that a capability
// token authorizes, before it passes it on with the caller's address
// (WithCaller): a release command that carries a token. The token itself
// is verified by every node that acts on the request, this one included.
func CheckTokenRequest(sg *fsm.Signed) error {
	if sg == nil || len(sg.Token) == 0 {
		return Errorf(KindUnauthenticated, "this call takes a request with a capability token")
	}
	var cmd struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil || cmd.Type != fsm.TypeRelease {
		return Errorf(KindInvalid, "this call takes a %q command with a capability token", fsm.TypeRelease)
	}
	return nil
}

// CheckTokenWrite is a gateway's check of an entry that a capability
// token authorizes (SubmitTokenWrite): a command of type typ with a token.
func CheckTokenWrite(sg *fsm.Signed, typ string) error {
	if sg == nil || len(sg.Token) == 0 {
		return Errorf(KindUnauthenticated, "this call takes a command with a capability token")
	}
	var cmd struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil || cmd.Type != typ {
		return Errorf(KindInvalid, "this call takes a %q command with a capability token", typ)
	}
	return nil
}

// recordTokenUses records in the log the use of a request whose token has
// bounds on its uses (token.Restriction.MaxUses), before the coordinator's
// read: every node then authorizes the request only if its use is among
// the first each bound allows (fsm/tokens.go). The token is verified on
// this node's state first, so that no forged token costs a log write; a
// malformed one records nothing, and its authorization says why.
func (n *Node) recordTokenUses(ctx context.Context, sg *fsm.Signed) error {
	if sg == nil || len(sg.Token) == 0 {
		return nil
	}
	bounds, err := token.UseBounds(sg.Token)
	if err != nil || len(bounds) == 0 {
		return nil
	}
	// Only a token this node verifies is worth a log write: anyone can
	// send one with a bound.
	if err := n.verifyLocally(ctx, sg); err != nil {
		return err
	}
	var cmd fsm.Command
	if json.Unmarshal(sg.Payload, &cmd) != nil {
		return nil
	}
	for _, b := range bounds {
		use, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeTokenUse, TokenUse: &fsm.TokenUse{ID: b.ID, Nonce: cmd.Nonce}})
		if err != nil {
			return err
		}
		if _, err := n.submit(ctx, use); err != nil {
			return err
		}
	}
	return nil
}

// TokenWriteService submits the log entries a capability token authorizes
// in place of a signature (fsm.FSM.TokenWrites). *Node implements it.
type TokenWriteService interface {
	SubmitTokenWrite(ctx context.Context, sg *fsm.Signed) (*fsm.Result, error)
}

var _ TokenWriteService = (*Node)(nil)

// SubmitTokenWrite proposes an entry that carries a capability token in
// place of its signature (revoke_key, destroy_key). It verifies the token
// on this node's state first, so that a forged token costs no log write;
// every replica verifies it again in Apply, at the entry's time, and
// applies the operator's rules.
func (n *Node) SubmitTokenWrite(ctx context.Context, sg *fsm.Signed) (*fsm.Result, error) {
	if sg == nil || len(sg.Token) == 0 {
		return nil, Errorf(KindUnauthenticated, "this call takes a command with a capability token")
	}
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	at := now()
	if e := n.checkLocally(ctx, func(s *fsm.State) *fsm.Error { return s.VerifyTokenWrite(sg, at, WriteTokenCheck) }); e != nil {
		return nil, fromFSM(e)
	}
	return n.Submit(ctx, sg)
}
