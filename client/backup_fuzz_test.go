package client

import (
	"encoding/json"
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
