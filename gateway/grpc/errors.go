package grpc

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyquorum/keyquorum/cluster"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that
// carries an error's kind; its reason is the kind.
const ErrorDomain = "keyquorum"

// CodeOf maps an error kind to its gRPC status code: the project's one
// table (vocab.Kind.GRPCCode). A lost compare-and-swap (conflict) is
// Aborted, as gRPC's own guide says for a failed test-and-set: the client
// reads again and retries the whole read-modify-write. FailedPrecondition
// is kept for a node that is not in a cluster yet, which no retry fixes.
func CodeOf(k cluster.Kind) codes.Code { return codes.Code(k.GRPCCode()) }

// StatusError converts an error to a gRPC status error. A *cluster.Error
// gets the code of its kind and an ErrorInfo detail with the kind as
// reason, so clients read the same kind as from the REST API. An error
// that already is a gRPC status passes unchanged. A canceled or expired
// context is unknown_outcome: the caller cannot tell whether a write
// happened. Any other error is internal. nil stays nil.
func StatusError(err error) error {
	if err == nil {
		return nil
	}
	var ce *cluster.Error
	switch {
	case errors.As(err, &ce):
	case isStatus(err):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		ce = cluster.Errorf(cluster.KindUnknownOutcome, "the call was canceled or ran out of time (%v): it may or may not have happened", err)
	default:
		ce = &cluster.Error{Kind: cluster.KindInternal, Message: err.Error()}
	}
	st := status.New(CodeOf(ce.Kind), ce.Message)
	withKind, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: string(ce.Kind), Domain: ErrorDomain})
	if derr != nil {
		return st.Err()
	}
	return withKind.Err()
}

// isStatus reports whether err is a gRPC status error itself (not merely
// an error that status.FromError would wrap as Unknown).
func isStatus(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se)
}

// ErrorFromStatus converts an error a client got from a call back into a
// *cluster.Error. With the kind the server attached, that is the kind and
// the status message. Without it the status came from gRPC itself or from
// a proxy, not from keyquorum: a code that means the call was refused as
// such (InvalidArgument, OutOfRange, NotFound, AlreadyExists,
// PermissionDenied, Unauthenticated, Unimplemented, ResourceExhausted)
// maps to the matching definite kind, and every other code to
// unknown_outcome, since the call may have reached the cluster. nil stays
// nil.
func ErrorFromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain && info.GetReason() != "" {
			return &cluster.Error{Kind: cluster.Kind(info.GetReason()), Message: st.Message()}
		}
	}
	kind := cluster.KindUnknownOutcome
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange, codes.Unimplemented, codes.ResourceExhausted:
		kind = cluster.KindInvalid
	case codes.NotFound:
		kind = cluster.KindNotFound
	case codes.AlreadyExists:
		kind = cluster.KindExists
	case codes.PermissionDenied:
		kind = cluster.KindDenied
	case codes.Unauthenticated:
		kind = cluster.KindUnauthenticated
	}
	return &cluster.Error{Kind: kind, Message: st.Code().String() + ": " + st.Message()}
}
