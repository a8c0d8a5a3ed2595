package shamir

import "errors"

// Sentinel errors. Functions wrap them with fmt.Errorf("...: %w") and add
// the node index or the field that was wrong; no error ever contains secret
// bytes. Test with errors.Is.
var (
	// ErrInvalidPoint: an encoding that is not 32 bytes, not on the curve,
	// not canonical, the identity, of small order, or outside the
	// prime-order subgroup.
	ErrInvalidPoint = errors.New("shamir: invalid point")
	// ErrInvalidScalar: a scalar that is not 32 bytes, not canonical
	// (>= the group order), or zero where zero is not allowed.
	ErrInvalidScalar = errors.New("shamir: invalid scalar")
	// ErrInvalidIndex: index 0 (indexes are 1-based x-coordinates).
	ErrInvalidIndex = errors.New("shamir: invalid share index")
	// ErrDuplicateIndex: the same index appears twice where indexes must
	// be distinct.
	ErrDuplicateIndex = errors.New("shamir: duplicate share index")
	// ErrBadProof: a partial decryption whose DLEQ proof does not verify.
	ErrBadProof = errors.New("shamir: bad proof")
	// ErrNotEnoughPartials: fewer valid partials than the threshold.
	ErrNotEnoughPartials = errors.New("shamir: not enough valid partials")
	// ErrDecrypt: authenticated decryption failed (wrong key, tampered
	// ciphertext or associated data).
	ErrDecrypt = errors.New("shamir: decryption failed")
	// ErrBadDeal: a deal that is malformed: wrong threshold, a share
	// missing, duplicated or addressed to a non-recipient, a ciphertext of
	// the wrong size, or (reshare) Commits[0] not the dealer's public share.
	ErrBadDeal = errors.New("shamir: bad deal")
	// ErrBadShare: a (sub-)share that does not match its commitments.
	ErrBadShare = errors.New("shamir: share does not match commitments")
	// ErrBadThreshold: a threshold below 1 or above the number of
	// participants.
	ErrBadThreshold = errors.New("shamir: bad threshold")
)
