package vocab

// The one table from a kind to what each protocol says for it. Gateways
// read it through HTTPStatus and GRPCCode, keyctl and keyagent through
// ExitCode; none keeps a table of its own.

// GRPCCode is a gRPC status code, by its number in the gRPC specification
// (google.golang.org/grpc/codes.Code converts it), so that this package
// links no gRPC.
type GRPCCode uint32

// The gRPC codes of the table.
const (
	GRPCUnknown            GRPCCode = 2
	GRPCInvalidArgument    GRPCCode = 3
	GRPCNotFound           GRPCCode = 5
	GRPCAlreadyExists      GRPCCode = 6
	GRPCPermissionDenied   GRPCCode = 7
	GRPCFailedPrecondition GRPCCode = 9
	GRPCAborted            GRPCCode = 10
	GRPCInternal           GRPCCode = 13
	GRPCUnavailable        GRPCCode = 14
	GRPCUnauthenticated    GRPCCode = 16
)

// Exit codes of keyctl and keyagent that belong to no kind.
const (
	ExitOK      = 0 // done (keyagent: the key is on stdout)
	ExitFailure = 1 // refused or failed, for a kind without a code of its own
	ExitUsage   = 2 // the command line is wrong
)

// Exit codes of kinds. They are keyagent's documented codes (docs/boot.md);
// 11 was added for unknown_outcome, which keyctl tells apart.
const (
	ExitNotFound        = 3  // no such key
	ExitUnauthenticated = 4  // the signer is not registered, or its request was refused as replayed or badly signed
	ExitDenied          = 5  // revoked, or not allowed
	ExitClockSkew       = 6  // the clock is too far off
	ExitNoQuorum        = 7  // a node answered but too few share holders did; nothing happened
	ExitUnreachable     = 8  // no node answered at all
	ExitApprovalTimeout = 9  // an approval did not come in time
	ExitBadReply        = 10 // a node's answer failed verification
	ExitUnknownOutcome  = 11 // a write timed out: it may or may not have happened
)

// Codes is a kind's row of the table.
type Codes struct {
	HTTP int      // HTTP status (REST, kxd); 0 for a kind that is never sent
	GRPC GRPCCode // gRPC code; 0 for a kind that is never sent
	Exit int      // exit code of keyctl and keyagent
}

// wire is the table of the kinds a node sends.
//
// A lost compare-and-swap (conflict) is gRPC Aborted, as gRPC's own guide
// says for a failed test-and-set: the client reads again and retries the
// whole read-modify-write. FailedPrecondition is kept for a node that is
// not in a cluster yet, which no retry fixes.
var wire = map[Kind]Codes{
	KindInvalid:         {400, GRPCInvalidArgument, ExitFailure},
	KindNotFound:        {404, GRPCNotFound, ExitNotFound},
	KindExists:          {409, GRPCAlreadyExists, ExitFailure},
	KindDenied:          {403, GRPCPermissionDenied, ExitDenied},
	KindUnauthenticated: {401, GRPCUnauthenticated, ExitUnauthenticated},
	KindConflict:        {409, GRPCAborted, ExitFailure},
	KindNoQuorum:        {503, GRPCUnavailable, ExitNoQuorum},
	KindUnknownOutcome:  {504, GRPCUnknown, ExitUnknownOutcome},
	KindNotInitialized:  {503, GRPCFailedPrecondition, ExitFailure},
	KindInternal:        {500, GRPCInternal, ExitFailure},
	KindClockSkew:       {401, GRPCUnauthenticated, ExitClockSkew},
	KindPendingApproval: {403, GRPCPermissionDenied, ExitApprovalTimeout},
	// A token's refusals are denials, told apart by their kind.
	KindTokenExpired:         {403, GRPCPermissionDenied, ExitDenied},
	KindTokenRevoked:         {403, GRPCPermissionDenied, ExitDenied},
	KindTokenWidened:         {403, GRPCPermissionDenied, ExitDenied},
	KindTokenLacksCapability: {403, GRPCPermissionDenied, ExitDenied},
	KindTokenUsedUp:          {403, GRPCPermissionDenied, ExitDenied},
	// A ciphertext that does not decrypt is bad input, as invalid is,
	// told apart by its kind.
	KindWrongKey: {400, GRPCInvalidArgument, ExitFailure},
	KindTampered: {400, GRPCInvalidArgument, ExitFailure},
}

// local is the table of the kinds a client makes itself: an exit code only.
var local = map[Kind]Codes{
	KindUnreachable:     {Exit: ExitUnreachable},
	KindApprovalTimeout: {Exit: ExitApprovalTimeout},
	KindBadReply:        {Exit: ExitBadReply},
	KindConfig:          {Exit: ExitFailure},
}

// CodesOf returns k's row. A kind of no row is treated as KindInternal.
func CodesOf(k Kind) Codes {
	if c, ok := wire[k]; ok {
		return c
	}
	if c, ok := local[k]; ok {
		return c
	}
	return wire[KindInternal]
}

// HTTPStatus is the HTTP status of a node's error of kind k: 500 for a
// kind no node sends.
func (k Kind) HTTPStatus() int {
	if c, ok := wire[k]; ok {
		return c.HTTP
	}
	return wire[KindInternal].HTTP
}

// GRPCCode is the gRPC code of a node's error of kind k: Internal for a
// kind no node sends.
func (k Kind) GRPCCode() GRPCCode {
	if c, ok := wire[k]; ok {
		return c.GRPC
	}
	return wire[KindInternal].GRPC
}

// ExitCode is the exit code of keyctl and keyagent for an error of kind
// k: ExitFailure for a kind of no row.
func (k Kind) ExitCode() int { return CodesOf(k).Exit }

// ExitCodeOf is the exit code for err: ExitOK for nil, the code of its
// kind for an *Error, ExitFailure for any other error.
func ExitCodeOf(err error) int {
	if err == nil {
		return ExitOK
	}
	return KindOf(err).ExitCode()
}
