package cluster

import (
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// The error kinds are the project's vocabulary (package vocab), named in
// package cluster/api for clients that link no node; these names keep
// cluster's own.

// Kind classifies an error for every protocol (api.Kind).
type Kind = api.Kind

// The error kinds.
const (
	KindInvalid         = api.KindInvalid
	KindNotFound        = api.KindNotFound
	KindExists          = api.KindExists
	KindDenied          = api.KindDenied
	KindUnauthenticated = api.KindUnauthenticated
	KindConflict        = api.KindConflict
	KindNoQuorum        = api.KindNoQuorum
	KindUnknownOutcome  = api.KindUnknownOutcome
	KindNotInitialized  = api.KindNotInitialized
	KindInternal        = api.KindInternal
	KindClockSkew       = api.KindClockSkew
	KindPendingApproval = api.KindPendingApproval
	// A capability token's refusals (docs/tokens.md).
	KindTokenExpired         = api.KindTokenExpired
	KindTokenRevoked         = api.KindTokenRevoked
	KindTokenWidened         = api.KindTokenWidened
	KindTokenLacksCapability = api.KindTokenLacksCapability
	KindTokenUsedUp          = api.KindTokenUsedUp
	KindWrongKey             = api.KindWrongKey
	KindTampered             = api.KindTampered
)

// Kinds are all the error kinds.
var Kinds = api.Kinds

// Error is an error with a kind (api.Error).
type Error = api.Error

// Errorf makes an Error.
func Errorf(kind Kind, format string, args ...any) *Error { return api.Errorf(kind, format, args...) }

// KindOf returns the kind of err, KindInternal for errors without one.
func KindOf(err error) Kind { return api.KindOf(err) }

// Definite reports whether an error means the operation did not happen.
func Definite(err error) bool { return api.Definite(err) }

// fromFSM converts a refusal of the state machine (fsm.Code.Kind).
func fromFSM(e *fsm.Error) *Error {
	if e == nil {
		return nil
	}
	return &Error{Kind: e.Code.Kind(), Message: e.Message}
}
