package shamir

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/vocab"
)

// hashToPointDomain separates HashToPoint's hashes from every other use of
// SHA-512 in the project.
const hashToPointDomain = vocab.LabelHashToPoint + "\x00"

// maxHashToPointTries bounds the search. Each try succeeds with
// probability about 1/2, so the bound is never reached in practice.
const maxHashToPointTries = 256

// HashToPoint maps (label, msg) to a point of the prime-order subgroup
// whose discrete logarithm to the base G nobody knows: try-and-increment,
// SHA-512(domain, len(label), label, len(msg), msg, counter) whose first 32
// bytes are decoded as an edwards25519 point, multiplied by the cofactor 8
// (which lands in the prime-order subgroup), retried on a failed decoding
// or the identity. Partials s_i*HashToPoint(...) with DLEQ proofs
// (ComputePartial, VerifyPartial) then act as threshold signature shares on
// msg: producing t of them for a message no honest holder signed needs t
// shares. label names the use (e.g. "keyquorum checkpoint v1"); inputs are
// public, so the variable time of the search leaks nothing.
func HashToPoint(label string, msg []byte) ([]byte, error) {
	var head [16]byte
	binary.BigEndian.PutUint64(head[:8], uint64(len(label)))
	binary.BigEndian.PutUint64(head[8:], uint64(len(msg)))
	for ctr := uint32(0); ctr < maxHashToPointTries; ctr++ {
		h := sha512.New()
		h.Write([]byte(hashToPointDomain))
		h.Write(head[:8])
		h.Write([]byte(label))
		h.Write(head[8:])
		h.Write(msg)
		h.Write(binary.BigEndian.AppendUint32(nil, ctr))
		sum := h.Sum(nil)
		p, err := new(edwards25519.Point).SetBytes(sum[:32])
		if err != nil {
			continue
		}
		p.MultByCofactor(p)
		if p.Equal(identityPoint) == 1 {
			continue
		}
		return p.Bytes(), nil
	}
	return nil, errors.New("shamir: hash to point found no point")
}
