package agent

import (
	"errors"
	"fmt"

	"github.com/keyquorum/keyquorum/vocab"
)

// The kinds of an unlock's failure are the project's (package vocab): a
// node's kinds, unchanged, and the kinds a client makes itself
// (vocab.LocalKinds: unreachable, approval_timeout, bad_reply, config).
// Their exit codes are vocab's one table, which keyctl shares.

// ExitCode maps an error of Unlock to keyagent's exit status: 0 for nil,
// the exit code of its kind (vocab.Kind.ExitCode), and vocab.ExitFailure
// for an error without a kind.
func ExitCode(err error) int {
	if err == nil {
		return vocab.ExitOK
	}
	return KindOf(err).ExitCode()
}

// Error is an unlock failure: its kind, the node that answered it (empty
// for the agent's own errors) and a message safe to print. It never holds
// key material.
type Error struct {
	Kind    vocab.Kind
	Server  string
	Message string
	// held: the node held this pending answer until its hold ended.
	held bool
}

func (e *Error) Error() string {
	if e.Server != "" {
		return fmt.Sprintf("%s: %s", e.Server, e.Message)
	}
	return e.Message
}

func errorf(kind vocab.Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err, or vocab.KindInternal if it has none.
func KindOf(err error) vocab.Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return vocab.KindInternal
}

// serverKind converts a kind a node sent: one a node sends
// (vocab.Kind.Sent) stays, any other becomes vocab.KindInternal, and so does a
// kind only a client makes, which no node may claim.
func serverKind(k vocab.Kind) vocab.Kind {
	if k.Sent() {
		return k
	}
	return vocab.KindInternal
}

// retryable reports whether another node, or the same one later, may
// answer differently: the node or the cluster was unavailable, or the
// node's answer could not be trusted.
func retryable(k vocab.Kind) bool {
	switch k {
	case vocab.KindUnreachable, vocab.KindNoQuorum, vocab.KindUnknownOutcome, vocab.KindInternal, vocab.KindBadReply,
		// Kinds that make no sense for an unlock: what a node in a bad
		// state says, like internal.
		vocab.KindNotInitialized, vocab.KindExists, vocab.KindConflict:
		return true
	}
	return false
}

// rank orders the errors of one round: when no node released the key, the
// error reported is the one of highest rank. Refusals that share holders
// decided (after checking the signature themselves) come first, then a
// reply that failed verification, then the cluster's and the network's
// failures.
func rank(k vocab.Kind) int {
	switch k {
	case vocab.KindDenied:
		return 9
	case vocab.KindUnauthenticated:
		return 8
	case vocab.KindNotFound:
		return 7
	case vocab.KindClockSkew:
		return 6
	case vocab.KindInvalid:
		return 5
	case vocab.KindBadReply:
		return 4
	case vocab.KindNoQuorum:
		return 3
	case vocab.KindUnknownOutcome, vocab.KindInternal, vocab.KindNotInitialized, vocab.KindExists, vocab.KindConflict:
		return 2
	case vocab.KindUnreachable:
		return 1
	}
	return 0
}
