package keyquorumv1

import "github.com/keyquorum/keyquorum/fsm"

// MachineIDPrefix starts every machine ID.
const MachineIDPrefix = fsm.KlefkiIDPrefix

// MachineID is the ID of a machine with an Ed25519 public key, as klefki
// spells it: "SHA256:" and the standard base64 of the key's SHA-256.
func MachineID(publicKey []byte) string { return fsm.KlefkiID(publicKey) }

// GetKeySigningInput is what a machine signs with its Ed25519 key for a
// GetKey request: the domain string "keyquorum/machine/get-key/v1" and a
// zero byte, then machineID, nonce and ephemeralPublicKey each as a 4-byte
// big-endian length and the bytes, then signedAt (Unix nanoseconds) as 8
// bytes big-endian. The lengths make the encoding unambiguous; the
// ephemeral key is signed so that no node on the way can substitute its
// own and read the combined key. It is fsm.GetKeySigningInput: every
// replica checks the same bytes when a node logs the request.
func GetKeySigningInput(machineID string, nonce []byte, signedAt int64, ephemeralPublicKey []byte) []byte {
	return fsm.GetKeySigningInput(machineID, nonce, signedAt, ephemeralPublicKey)
}
