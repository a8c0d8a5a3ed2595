package keyquorumv1

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// MachineIDPrefix starts every machine ID.
const MachineIDPrefix = "SHA256:"

// MachineID is the ID of a machine with an Ed25519 public key, as klefki
// spells it: "SHA256:" and the standard base64 of the key's SHA-256.
func MachineID(publicKey []byte) string {
	sum := sha256.Sum256(publicKey)
	return MachineIDPrefix + base64.StdEncoding.EncodeToString(sum[:])
}

// getKeyDomain separates a machine's GetKey signature from any other use
// of the machine's Ed25519 key.
const getKeyDomain = "keyquorum/machine/get-key/v1\x00"

// GetKeySigningInput is what a machine signs with its Ed25519 key for a
// GetKey request: the domain string and a zero byte, then machineID, nonce
// and ephemeralPublicKey each as a 4-byte big-endian length and the bytes,
// then signedAt (Unix nanoseconds) as 8 bytes big-endian. The lengths make
// the encoding unambiguous; the ephemeral key is signed so that no node on
// the way can substitute its own and read the combined key.
func GetKeySigningInput(machineID string, nonce []byte, signedAt int64, ephemeralPublicKey []byte) []byte {
	b := make([]byte, 0, len(getKeyDomain)+12+len(machineID)+len(nonce)+len(ephemeralPublicKey)+8)
	b = append(b, getKeyDomain...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(machineID)))
	b = append(b, machineID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(nonce)))
	b = append(b, nonce...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ephemeralPublicKey)))
	b = append(b, ephemeralPublicKey...)
	return binary.BigEndian.AppendUint64(b, uint64(signedAt))
}
