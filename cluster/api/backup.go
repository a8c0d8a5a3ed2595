package api

import (
	"encoding/binary"

	"github.com/keyquorum/keyquorum/vocab"
)

// BackupFormat names the encoding of Backup.
const BackupFormat = "keyquorum-backup/1"

// Backup is a backup of a cluster's replicated state, as a node makes it
// (GET /v1/snapshot) and keyctl snapshot save writes it: the state
// machine's snapshot (the last certified checkpoint, with the t partials
// that certify it under the cluster key, and every signed entry applied
// after it), its SHA-256, and the making node's signature over what the
// snapshot gives when replayed.
//
// The checksum finds a damaged file. The certificate and the entries'
// operator and node signatures are what make it trusted: a restore
// replays it through the state machine, which checks each, against the
// cluster key the restoring node pinned; the node's signature binds the
// state reached at Index, so entries left out or edited after the
// checkpoint are found too (unless the signing node is itself the
// forger: then only the certified checkpoint and the signatures hold).
type Backup struct {
	Format     string `json:"format"`
	ClusterID  string `json:"cluster_id"`
	ClusterKey []byte `json:"cluster_key"` // the key the certificate is under (a restore checks its own pin)
	Index      uint64 `json:"index"`       // the applied index the snapshot gives
	Epoch      uint64 `json:"epoch"`       // the key epoch at Index: the shares a restore needs
	StateHash  []byte `json:"state_hash"`  // SHA-256 of the state's encoding at Index (fsm.FSM.Hash)
	Node       string `json:"node"`        // the node that made it
	CreatedAt  int64  `json:"created_at"`  // Unix nanoseconds, the node's clock
	SHA256     []byte `json:"sha256"`      // of Snapshot
	Signature  []byte `json:"signature"`   // Node's Ed25519 signature over BackupMessage
	Snapshot   []byte `json:"snapshot"`    // fsm.Snap's encoding
}

// BackupMessage is what the making node signs of a backup.
func BackupMessage(b *Backup) []byte {
	m := []byte(vocab.LabelBackup + "\x00" + b.ClusterID + "\x00" + b.Node + "\x00")
	m = binary.BigEndian.AppendUint64(m, b.Index)
	m = binary.BigEndian.AppendUint64(m, b.Epoch)
	m = binary.BigEndian.AppendUint64(m, uint64(b.CreatedAt))
	m = append(m, b.ClusterKey...)
	m = append(m, b.StateHash...)
	return append(m, b.SHA256...)
}
