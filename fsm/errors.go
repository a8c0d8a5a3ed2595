package fsm

import "fmt"

// Code says why the state machine refused a command. The cluster maps each
// code to the error kind its clients see.
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
)

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
