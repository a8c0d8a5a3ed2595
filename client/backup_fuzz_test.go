package client

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// FuzzInspectBackup: a backup comes from a node's answer (keyctl snapshot
// save) or a file; no input panics InspectBackup, and none it accepts
// fails its checksum.
func FuzzInspectBackup(f *testing.F) {
	good, _ := json.Marshal(&api.Backup{Format: api.BackupFormat, SHA256: make([]byte, 32), Snapshot: []byte(`{"version":1,"entries":[]}`)})
	f.Add(good, []byte(nil))
	f.Add([]byte(`{"format":"keyquorum-backup/1","snapshot":"e30="}`), []byte{1})
	f.Add([]byte(`{}`), []byte(nil))
	f.Fuzz(func(t *testing.T, data, pin []byte) {
		if len(pin) == 0 {
			pin = nil
		}
		s, err := InspectBackup(data, pin)
		if err != nil {
			return
		}
		var b api.Backup
		if json.Unmarshal(data, &b) != nil || s.Size != len(b.Snapshot) {
			t.Fatalf("accepted %q as a backup of %d bytes", data, s.Size)
		}
	})
}

// TestInspectRefusesABackupWithoutACertifiedCheckpoint: a backup whose
// snapshot has no certified checkpoint is a history anyone could have
// written (a founding entry of their own); no node restores it, and
// inspect says so rather than summarize it.
func TestInspectRefusesABackupWithoutACertifiedCheckpoint(t *testing.T) {
	snap := []byte(`{"version":3,"entries":[]}`)
	sum := sha256.Sum256(snap)
	data, _ := json.Marshal(&api.Backup{Format: api.BackupFormat, SHA256: sum[:], Snapshot: snap})
	if _, err := InspectBackup(data, nil); err == nil || !strings.Contains(err.Error(), "no certified checkpoint") {
		t.Fatalf("InspectBackup of a backup without a certified checkpoint: %v, want a refusal saying so", err)
	}
}
