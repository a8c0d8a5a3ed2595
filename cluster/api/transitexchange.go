package api

import (
	"crypto/ecdh"
	"errors"
	"fmt"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Transit exchange (docs/transit.md, "Exchange"): X25519 with an x25519
// key by quorum, as a Tang server's exchange. The caller signs a request
// (op exchange) whose items are peers' X25519 public keys u
// (fsm.TransitPoint, Point the 32-byte u) for a version; each holder maps
// u to Q = 8*P itself (shamir.X25519PeerPoint) and answers s_i*Q with a
// DLEQ proof, sealed to the caller, through the path decryptions and
// derivations take; the caller checks, combines s*Q and outputs u(s*Q),
// X25519(k, u) for the key's private key k (OpenTransitExchange).

// X25519Key checks that k is an x25519 key (the caller's metadata).
func X25519Key(k *fsm.Key) error {
	if k.Type != fsm.KeyTypeX25519 || k.Transit() == nil || len(k.Transit().Versions) == 0 || k.ID == "" {
		return &Error{Kind: KindInvalid, Message: fmt.Sprintf("key %q is a %s key, not an %s key: only those exchange", k.Name, k.Type, fsm.KeyTypeX25519)}
	}
	return nil
}

// X25519PublicKey is the X25519 public key (RFC 7748, 32 bytes) of
// version v of x25519 key k: X25519(k, 9), computed from the version's
// edwards25519 public key.
func X25519PublicKey(k *fsm.Key, v uint64) ([]byte, error) {
	if err := X25519Key(k); err != nil {
		return nil, err
	}
	tv := k.Transit().Version(v)
	if tv == nil || tv.Sharing == nil || len(tv.Sharing.Commits) == 0 {
		return nil, &Error{Kind: KindNotFound, Message: fmt.Sprintf("key %q has no version %d", k.Name, v)}
	}
	return shamir.X25519PublicKey(tv.Sharing.Commits[0])
}

// X25519PrivateScalar is the scalar an imported X25519 private key k
// (RFC 7748, 32 bytes, clamped here) is dealt as: clamp(k)/8, so that
// the quorum's exchange is X25519(k, u) (DealTransitSharing deals it).
// The caller erases k and the result.
func X25519PrivateScalar(k []byte) ([]byte, error) {
	s, err := shamir.X25519Scalar(k)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Message: fmt.Sprintf("an X25519 private key is %d bytes", shamir.X25519Size)}
	}
	return s, nil
}

// OpenTransitExchange checks an exchange reply for the items of the
// signed request with payload (op exchange; each item's Point a peer's
// u) against x25519 key k's metadata, combines each item's s*Q and
// returns u(s*Q), the shared secret, as each result's Plaintext. A peer's
// u on the twist, or of low order, is that item's error (invalid), as
// each holder refuses it. A lying holder or coordinator is named as
// OpenTransitDecrypt names it.
func OpenTransitExchange(r *TransitDecryptReply, clusterID string, k *fsm.Key, items []fsm.TransitPoint, payload []byte, ephPriv *ecdh.PrivateKey) ([]TransitResult, error) {
	points := make([]fsm.TransitPoint, len(items))
	refused := make([]*Error, len(items))
	for i, it := range items {
		Q, err := shamir.X25519PeerPoint(it.Point)
		if err != nil {
			refused[i] = &Error{Kind: KindInvalid, Message: fmt.Sprintf("peer public key %d: %v", i, err)}
			continue
		}
		points[i] = fsm.TransitPoint{Version: it.Version, Point: Q}
	}
	return openTransitItems(r, clusterID, k, points, payload, ephPriv, func(i int) *Error {
		if err := X25519Key(k); err != nil {
			return err.(*Error)
		}
		return refused[i]
	}, func(i int, _ *fsm.TransitVersion, K []byte) ([]byte, *Error) {
		u, err := shamir.X25519Output(K)
		if errors.Is(err, shamir.ErrX25519LowOrder) {
			return nil, &Error{Kind: KindInvalid, Message: fmt.Sprintf("peer public key %d: the shared secret is all zeros", i)}
		}
		if err != nil {
			return nil, &Error{Kind: KindInternal, Message: err.Error()}
		}
		return u, nil
	})
}
