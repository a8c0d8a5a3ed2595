package api

import (
	"errors"
	"fmt"
)

// Kind classifies an error for every protocol: each gateway maps it to its
// own status codes, and it survives node-to-node calls.
type Kind string

// The error kinds.
const (
	KindInvalid         Kind = "invalid"         // the request is malformed
	KindNotFound        Kind = "not_found"       // no such key, node or rule
	KindExists          Kind = "exists"          // the name is taken
	KindDenied          Kind = "denied"          // not allowed, or the key is revoked or expired
	KindUnauthenticated Kind = "unauthenticated" // the signature or certificate is not accepted
	KindConflict        Kind = "conflict"        // a compare-and-swap lost
	KindNoQuorum        Kind = "no_quorum"       // too few nodes answered; nothing happened
	KindUnknownOutcome  Kind = "unknown_outcome" // a write timed out: it may or may not have happened
	KindNotInitialized  Kind = "not_initialized" // the node is not part of a cluster yet
	KindInternal        Kind = "internal"        // a bug or a local failure
	KindClockSkew       Kind = "clock_skew"      // the request's time is too far from the cluster's
	// KindPendingApproval: a machine's release waits for an operator's
	// approval; it is listed as a pending session. Ask again later.
	KindPendingApproval Kind = "pending_approval"
)

// Kinds are all the error kinds, for gateways' tests: every kind needs a
// status of its own in every protocol.
var Kinds = []Kind{KindInvalid, KindNotFound, KindExists, KindDenied, KindUnauthenticated, KindConflict,
	KindNoQuorum, KindUnknownOutcome, KindNotInitialized, KindInternal, KindClockSkew, KindPendingApproval}

// Error is an error with a kind. Its message is safe to show: it never
// carries key material.
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
