package vocab

import (
	"errors"
	"fmt"
)

// Kind classifies an error for every protocol: each gateway maps it to its
// own status codes through the table of status.go, and it survives
// node-to-node calls.
type Kind string

// The kinds a node sends.
const (
	KindInvalid         Kind = "invalid"         // the request is malformed
	KindNotFound        Kind = "not_found"       // no such key, node, rule or machine
	KindExists          Kind = "exists"          // the name is taken
	KindDenied          Kind = "denied"          // not allowed, or the key or machine is revoked or expired
	KindUnauthenticated Kind = "unauthenticated" // the signature, nonce or certificate is not accepted
	KindConflict        Kind = "conflict"        // a compare-and-swap lost, or the cluster's state does not allow it yet
	KindNoQuorum        Kind = "no_quorum"       // too few nodes answered; nothing happened
	KindUnknownOutcome  Kind = "unknown_outcome" // a write timed out: it may or may not have happened
	KindNotInitialized  Kind = "not_initialized" // the node is not part of a cluster yet
	KindInternal        Kind = "internal"        // a bug or a local failure
	KindClockSkew       Kind = "clock_skew"      // the request's time is too far from the cluster's
	// KindPendingApproval: a machine's release waits for an operator's
	// approval; it is listed as a pending session. Ask again later.
	KindPendingApproval Kind = "pending_approval"
	// A capability token's refusals (docs/tokens.md), each its own kind:
	// its life has passed; one of its revocation ids is revoked; a block
	// after its authority states rights (a widening, which grants
	// nothing); it does not carry the capability for that key.
	KindTokenExpired         Kind = "token_expired"
	KindTokenRevoked         Kind = "token_revoked"
	KindTokenWidened         Kind = "token_widened"
	KindTokenLacksCapability Kind = "token_lacks_capability"
	// KindTokenUsedUp: the token's bound on uses is reached.
	KindTokenUsedUp Kind = "token_used_up"
	// A transit ciphertext that does not decrypt, by why (docs/transit.md):
	// its encryptor's proof does not verify for this key, version and
	// context (another key's, version's or context's ciphertext, or its
	// E or proof edited); or its proof verifies but its body does not
	// authenticate (the sealed part was changed).
	KindWrongKey Kind = "wrong_key"
	KindTampered Kind = "tampered"
)

// The kinds a client makes itself (keyagent); no node sends them.
const (
	// KindUnreachable: no node answered within its time (refused,
	// blackholed, TLS failure, bad HTTP).
	KindUnreachable Kind = "unreachable"
	// KindApprovalTimeout: the release was still pending approval when
	// the wait ended.
	KindApprovalTimeout Kind = "approval_timeout"
	// KindBadReply: a node's answer failed verification (a partial with
	// a bad proof, a polynomial that is not the pinned cluster key, a
	// ciphertext that does not open). A node or the path to it lies.
	KindBadReply Kind = "bad_reply"
	// KindConfig: the client's own configuration or key is wrong.
	KindConfig Kind = "config"
)

// Kinds are the kinds a node sends. Every one has a row of its own in
// every table (status.go).
var Kinds = []Kind{KindInvalid, KindNotFound, KindExists, KindDenied, KindUnauthenticated, KindConflict,
	KindNoQuorum, KindUnknownOutcome, KindNotInitialized, KindInternal, KindClockSkew, KindPendingApproval,
	KindTokenExpired, KindTokenRevoked, KindTokenWidened, KindTokenLacksCapability, KindTokenUsedUp,
	KindWrongKey, KindTampered}

// LocalKinds are the kinds a client makes itself. They have an exit code
// and never cross the wire.
var LocalKinds = []Kind{KindUnreachable, KindApprovalTimeout, KindBadReply, KindConfig}

// Sent reports whether k is a kind a node sends (one of Kinds). A client
// that reads a kind from the wire treats any other as KindInternal.
func (k Kind) Sent() bool {
	_, ok := wire[k]
	return ok
}

// Error is an error with a kind, as every protocol carries it. Its message
// is safe to show: it never carries key material.
type Error struct {
	Kind    Kind   `json:"kind"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Errorf makes an Error.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err, KindInternal for errors without one.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// Definite reports whether an error means the operation did not happen.
func Definite(err error) bool { return KindOf(err) != KindUnknownOutcome }

// ErrorReply is the JSON body of every REST answer that is not 200:
// {"error":{"kind":K,"message":M}}.
type ErrorReply struct {
	Error *Error `json:"error"`
}
