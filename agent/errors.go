package agent

import (
	"errors"
	"fmt"
)

// Kind classifies why an unlock failed. The kinds a node sends are the
// server's error kinds, unchanged; the others are the agent's own.
type Kind string

// Kinds a node answers with.
const (
	KindPendingApproval Kind = "pending_approval" // the release waits for an operator's approval
	KindNotFound        Kind = "not_found"        // no key of that name
	KindUnauthenticated Kind = "unauthenticated"  // the machine is not registered, or the signature or nonce was refused
	KindDenied          Kind = "denied"           // the machine is revoked, or may not fetch this key
	KindClockSkew       Kind = "clock_skew"       // the machine's clock is too far from the cluster's
	KindNoQuorum        Kind = "no_quorum"        // too few share holders answered
	KindUnknownOutcome  Kind = "unknown_outcome"  // the node could not tell what happened
	KindInvalid         Kind = "invalid"          // the node refused the request as malformed
	KindInternal        Kind = "internal"         // a node failed, or answered a kind this agent does not know
)

// Kinds of the agent's own.
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
	// KindConfig: the agent's own configuration or machine key is wrong.
	KindConfig Kind = "config"
)

// Exit codes of keyagent, one per reason an operator acts on differently.
const (
	ExitOK              = 0
	ExitFailure         = 1  // config, invalid request, internal or unknown-outcome errors
	ExitUsage           = 2  // bad command line
	ExitNotFound        = 3  // wrong key name
	ExitUnauthenticated = 4  // machine not registered (or its request was refused as replayed or badly signed)
	ExitDenied          = 5  // machine revoked, or not allowed this key
	ExitClockSkew       = 6  // clock too far off
	ExitNoQuorum        = 7  // a node answered but too few share holders did
	ExitUnreachable     = 8  // no node answered at all
	ExitApprovalTimeout = 9  // approval did not come within --wait
	ExitBadReply        = 10 // a node's answer failed verification
)

// ExitCode maps an error of Unlock to keyagent's exit status: 0 for nil,
// and ExitFailure for an error without a Kind.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	switch KindOf(err) {
	case KindNotFound:
		return ExitNotFound
	case KindUnauthenticated:
		return ExitUnauthenticated
	case KindDenied:
		return ExitDenied
	case KindClockSkew:
		return ExitClockSkew
	case KindNoQuorum:
		return ExitNoQuorum
	case KindUnreachable:
		return ExitUnreachable
	case KindApprovalTimeout:
		return ExitApprovalTimeout
	case KindBadReply:
		return ExitBadReply
	}
	return ExitFailure
}

// Error is an unlock failure: its kind, the node that answered it (empty
// for the agent's own errors) and a message safe to print. It never holds
// key material.
type Error struct {
	Kind    Kind
	Server  string
	Message string
}

func (e *Error) Error() string {
	if e.Server != "" {
		return fmt.Sprintf("%s: %s", e.Server, e.Message)
	}
	return e.Message
}

func errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err, or KindInternal if it has none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// serverKind converts a kind a node sent; kinds this agent does not know
// (and "pending_approval" is known) become KindInternal.
func serverKind(k string) Kind {
	switch kind := Kind(k); kind {
	case KindPendingApproval, KindNotFound, KindUnauthenticated, KindDenied, KindClockSkew,
		KindNoQuorum, KindUnknownOutcome, KindInvalid, KindInternal:
		return kind
	}
	return KindInternal
}

// retryable reports whether another node, or the same one later, may
// answer differently: the node or the cluster was unavailable, or the
// node's answer could not be trusted.
func retryable(k Kind) bool {
	switch k {
	case KindUnreachable, KindNoQuorum, KindUnknownOutcome, KindInternal, KindBadReply:
		return true
	}
	return false
}

// rank orders the errors of one round: when no node released the key, the
// error reported is the one of highest rank. Refusals that share holders
// decided (after checking the signature themselves) come first, then a
// reply that failed verification, then the cluster's and the network's
// failures.
func rank(k Kind) int {
	switch k {
	case KindDenied:
		return 9
	case KindUnauthenticated:
		return 8
	case KindNotFound:
		return 7
	case KindClockSkew:
		return 6
	case KindInvalid:
		return 5
	case KindBadReply:
		return 4
	case KindNoQuorum:
		return 3
	case KindUnknownOutcome, KindInternal:
		return 2
	case KindUnreachable:
		return 1
	}
	return 0
}
