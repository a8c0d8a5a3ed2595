package vocab

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// UnlockPath is the REST path of a machine's unlock: the body is an
// fsm.Signed release request signed by the machine key, the answer an
// UnlockReply or an ErrorReply.
const UnlockPath = "/v1/machine/unlock"

// UnlockReply is a node's answer to a machine's unlock: the key's
// ciphertext under the cluster key (R, Sealed), the public polynomial of
// the epoch, and one partial decryption per share holder that answered,
// each sealed to the request's ephemeral key. The node that relays it
// cannot open the partials; the agent checks each proof and combines.
type UnlockReply struct {
	ClusterID string          `json:"cluster_id"`
	Key       string          `json:"key"`
	Version   uint64          `json:"version"`
	Epoch     uint64          `json:"epoch"`
	Threshold int             `json:"threshold"`
	Poly      [][]byte        `json:"poly"`
	R         []byte          `json:"r"`
	Sealed    []byte          `json:"sealed"`
	Partials  []SealedPartial `json:"partials"`
}

// SealedPartial is a share holder's partial decryption (the JSON of a
// shamir.Partial) sealed with shamir.SealX25519 to the request's
// ephemeral X25519 key, with fsm.PartialSealInfo(context, Index) as info:
// R is the holder's one-time X25519 public key, Sealed the
// ChaCha20-Poly1305 output. In share mode (the request's seal "share")
// R is empty and Sealed is the holder's value alone, sealed with its
// share (shamir.Prover.SealToEphemeral).
type SealedPartial struct {
	Index  uint32 `json:"index"`
	Node   string `json:"node,omitempty"` // the holder, for the client's errors
	R      []byte `json:"r"`
	Sealed []byte `json:"sealed"`
}

// PrincipalID is the ID shown to users for an Ed25519 public key (a machine
// or an operator): the hex of the first 16 bytes of its SHA-256.
func PrincipalID(publicKey []byte) string {
	sum := sha256.Sum256(publicKey)
	return hex.EncodeToString(sum[:16])
}

// KlefkiIDPrefix starts a machine's ID as klefki's wire spells it.
const KlefkiIDPrefix = "SHA256:"

// KlefkiMachineID is the ID of a machine as klefki's gRPC protocol spells
// and signs it: "SHA256:" and the standard base64 of the key's SHA-256.
// Only the gRPC MachineService speaks it; users are shown PrincipalID.
func KlefkiMachineID(publicKey []byte) string {
	sum := sha256.Sum256(publicKey)
	return KlefkiIDPrefix + base64.StdEncoding.EncodeToString(sum[:])
}

// IsKlefkiMachineID reports whether id is in klefki's form (it may still
// name no machine).
func IsKlefkiMachineID(id string) bool {
	b64, ok := strings.CutPrefix(id, KlefkiIDPrefix)
	if !ok {
		return false
	}
	sum, err := base64.StdEncoding.DecodeString(b64)
	return err == nil && len(sum) == sha256.Size
}

// SameMachine reports whether id, in either form, names the machine with
// publicKey. Commands that take a machine ID accept both forms with it.
func SameMachine(id string, publicKey []byte) bool {
	if strings.HasPrefix(id, KlefkiIDPrefix) {
		return id == KlefkiMachineID(publicKey)
	}
	return id == PrincipalID(publicKey)
}

// A machine whose unlock waits for an approval asks the node to hold the
// request until an operator decides, with the Prefer header's wait
// preference (RFC 7240, section 4.3): "Prefer: wait=25" (seconds). A node
// that held the request says so in its answer with "Preference-Applied:
// wait=25"; one that did not (too many held, or an older node) omits it,
// and the machine asks again after its backoff.
const (
	PreferHeader            = "Prefer"
	PreferenceAppliedHeader = "Preference-Applied"
)

// WaitPreference is the value of a Prefer or Preference-Applied header
// asking to wait d (whole seconds, at least 1).
func WaitPreference(d time.Duration) string {
	return "wait=" + strconv.FormatInt(max(int64(d/time.Second), 1), 10)
}

// ParseWaitPreference reads the wait preference of a Prefer header value
// (several preferences may be given, separated by commas, each with
// parameters after a semicolon): the duration, or 0 if there is none or it
// is not a number of seconds. It is at most maxWait.
func ParseWaitPreference(header string, maxWait time.Duration) time.Duration {
	for pref := range strings.SplitSeq(header, ",") {
		pref, _, _ = strings.Cut(pref, ";")
		name, value, ok := strings.Cut(strings.TrimSpace(pref), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
			continue
		}
		secs, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(value), `"`), 10, 32)
		if err != nil {
			return 0
		}
		return min(time.Duration(secs)*time.Second, maxWait)
	}
	return 0
}
