package api

import "github.com/keyquorum/keyquorum/vocab"

// The error kinds are the project's vocabulary (package vocab), which also
// holds the one table of their HTTP statuses, gRPC codes and exit codes;
// these names keep the ones clients and the node have always used.

// Kind classifies an error for every protocol (vocab.Kind).
type Kind = vocab.Kind

// The error kinds a node sends.
const (
	KindInvalid         = vocab.KindInvalid
	KindNotFound        = vocab.KindNotFound
	KindExists          = vocab.KindExists
	KindDenied          = vocab.KindDenied
	KindUnauthenticated = vocab.KindUnauthenticated
	KindConflict        = vocab.KindConflict
	KindNoQuorum        = vocab.KindNoQuorum
	KindUnknownOutcome  = vocab.KindUnknownOutcome
	KindNotInitialized  = vocab.KindNotInitialized
	KindInternal        = vocab.KindInternal
	KindClockSkew       = vocab.KindClockSkew
	KindPendingApproval = vocab.KindPendingApproval
	// A capability token's refusals (docs/tokens.md).
	KindTokenExpired         = vocab.KindTokenExpired
	KindTokenRevoked         = vocab.KindTokenRevoked
	KindTokenWidened         = vocab.KindTokenWidened
	KindTokenLacksCapability = vocab.KindTokenLacksCapability
	KindTokenUsedUp          = vocab.KindTokenUsedUp
	// A transit ciphertext's refusals (docs/transit.md).
	KindWrongKey = vocab.KindWrongKey
	KindTampered = vocab.KindTampered
)

// Kinds are all the error kinds a node sends (vocab.Kinds), for gateways'
// tests.
var Kinds = vocab.Kinds

// Error is an error with a kind (vocab.Error). Its message is safe to
// show: it never carries key material.
type Error = vocab.Error

// Errorf makes an Error.
func Errorf(kind Kind, format string, args ...any) *Error { return vocab.Errorf(kind, format, args...) }

// KindOf returns the kind of err, KindInternal for errors without one.
func KindOf(err error) Kind { return vocab.KindOf(err) }

// Definite reports whether an error means the operation did not happen.
func Definite(err error) bool { return vocab.Definite(err) }
