package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/client"
)

// snapshotSave writes a backup of the cluster into FILE (mode 0600,
// written beside it and renamed, so a cut-off save never leaves half a
// file under the name).
func (c *command) snapshotSave(args []string) error {
	fs := c.flags("snapshot save")
	pos, err := parse(fs, args, "FILE")
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	return saveBackup(ctx, cl, pos[0], c.stdout)
}

func saveBackup(ctx context.Context, cl *client.Client, path string, stdout io.Writer) error {
	b, err := cl.Backup(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "saved a backup of cluster %s at index %d, key epoch %d, into %s (sha256 %s)\n",
		b.ClusterID, b.Index, b.Epoch, path, hex.EncodeToString(b.SHA256))
	return nil
}

// snapshotInspect prints what a backup file holds, without a cluster.
func (c *command) snapshotInspect(args []string) error {
	fs := c.flags("snapshot inspect")
	pos, err := parse(fs, args, "FILE")
	if err != nil {
		return err
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	var pin []byte
	if v := os.Getenv(client.EnvClusterKey); v != "" {
		if pin, err = client.ParseClusterKey(v); err != nil {
			return fmt.Errorf("%s: %w", client.EnvClusterKey, err)
		}
	}
	s, err := client.InspectBackup(data, pin)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	return writeBackupSummary(c.stdout, s)
}

// writeBackupSummary writes the text of keyctl snapshot inspect.
func writeBackupSummary(out io.Writer, s *client.BackupSummary) error {
	key := hex.EncodeToString(s.ClusterKey)
	if s.Pinned {
		key += " (the pinned key)"
	} else {
		key += " (not pinned: set KEYQUORUM_CLUSTER_KEY to check the certificate against your cluster's)"
	}
	fmt.Fprintf(out, "cluster      %s\ncluster key  %s\n", s.ClusterID, key)
	fmt.Fprintf(out, "index        %d\nkey epoch    %d (restoring nodes need their shares of this epoch)\n", s.Index, s.Epoch)
	fmt.Fprintf(out, "made by      %s at %s\nsize         %d bytes, checksum verified\n", s.Node, s.CreatedAt.UTC().Format(time.RFC3339), s.Size)
	cp := s.Checkpoint // InspectBackup refuses a backup without one
	fmt.Fprintf(out, "checkpoint   index %d, key epoch %d, certified by %d partials (t %d), verified\n", cp.Index, cp.Epoch, cp.Partials, cp.Threshold)
	fmt.Fprintf(out, "  keys       %d\n  operators  %d\n  members    %s\n", cp.Keys, cp.Operators, strings.Join(cp.Members, ","))
	_, err := fmt.Fprintf(out, "entries      %d signed entries after the checkpoint (each signature and the signed state they reach are checked at restore)\n", s.Entries)
	return err
}
