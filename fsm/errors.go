package fsm

import (
	"fmt"

	"github.com/keyquorum/keyquorum/vocab"
)

// Code says why the state machine refused a command, more finely than the
// error kinds clients see: Kind maps it to its kind.
type Code string

// The refusal codes.
const (
	CodeInvalid      Code = "invalid"       // the command is malformed
	CodeNotFound     Code = "not_found"     // the named key, node, rule or operator does not exist
	CodeExists       Code = "exists"        // the name is taken
	CodeDenied       Code = "denied"        // the signer may not do this
	CodeBadSignature Code = "bad_signature" // the signature does not verify, or the signer is unknown
	CodeReplay       Code = "replay"        // the nonce was seen
	CodeClockSkew    Code = "clock_skew"    // the command is too old or too new for the cluster's clock
	CodePending      Code = "pending"       // a machine's release waits for an operator's approval
	CodeConflict     Code = "conflict"      // a compare-and-swap or state precondition failed
	CodeState        Code = "state"         // the command does not fit the cluster's current state
	// A capability token's refusals (tokens.go), each of its own kind.
	CodeTokenExpired         Code = "token_expired"
	CodeTokenRevoked         Code = "token_revoked"
	CodeTokenWidened         Code = "token_widened"
	CodeTokenLacksCapability Code = "token_lacks_capability"
	CodeTokenUsedUp          Code = "token_used_up"
)

// Codes are all the refusal codes.
var Codes = []Code{CodeInvalid, CodeNotFound, CodeExists, CodeDenied, CodeBadSignature, CodeReplay,
	CodeClockSkew, CodePending, CodeConflict, CodeState,
	CodeTokenExpired, CodeTokenRevoked, CodeTokenWidened, CodeTokenLacksCapability, CodeTokenUsedUp}

// Kind is the error kind clients see for a refusal of code c: a bad
// signature and a replay are both unauthenticated, a command that does not
// fit the state is a conflict. A code of no kind is internal.
func (c Code) Kind() vocab.Kind {
	switch c {
	case CodeInvalid:
		return vocab.KindInvalid
	case CodeNotFound:
		return vocab.KindNotFound
	case CodeExists:
		return vocab.KindExists
	case CodeDenied:
		return vocab.KindDenied
	case CodeBadSignature, CodeReplay:
		return vocab.KindUnauthenticated
	case CodeClockSkew:
		return vocab.KindClockSkew
	case CodePending:
		return vocab.KindPendingApproval
	case CodeConflict, CodeState:
		return vocab.KindConflict
	case CodeTokenExpired:
		return vocab.KindTokenExpired
	case CodeTokenRevoked:
		return vocab.KindTokenRevoked
	case CodeTokenWidened:
		return vocab.KindTokenWidened
	case CodeTokenLacksCapability:
		return vocab.KindTokenLacksCapability
	case CodeTokenUsedUp:
		return vocab.KindTokenUsedUp
	}
	return vocab.KindInternal
}

// Error is a refusal. Its message names what was wrong and never carries
// key material.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
