package fsm

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/keyquorum/keyquorum/vocab"
)

// The byte strings that bind a secret's ciphertext and a release's proofs
// to their cluster, key and request. Clients that seal or combine (keyctl,
// keyagent) and the nodes must agree on them, so they live here, beside
// the commands they bind.

// SealInfo is the HKDF info that binds a secret's ciphertext to its
// cluster and name.
func SealInfo(clusterID, name string) []byte {
	return []byte(vocab.LabelSecret + "\x00" + clusterID + "\x00" + name)
}

// ReleaseContext binds a partial's proof to one release request (its
// signed payload), key version and epoch.
func ReleaseContext(clusterID, name string, version, epoch uint64, payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(vocab.LabelRelease + "\x00" + clusterID + "\x00" + name + "\x00"))
	h.Write(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, version), epoch))
	h.Write(payload)
	return h.Sum(nil)
}

// PartialSealInfo is the HKDF info of a partial a holder seals to a
// client's ephemeral key (client-side combine), for the release whose
// ReleaseContext is context, from the holder of share index.
func PartialSealInfo(context []byte, index uint32) []byte {
	info := append([]byte(vocab.LabelPartial+"\x00"), context...)
	return binary.BigEndian.AppendUint32(info, index)
}
