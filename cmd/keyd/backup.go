package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
)

// backupFlags are the scheduled backups' flags.
type backupFlags struct {
	dir      string
	interval time.Duration
	retain   int
}

func (f *backupFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dir, "backup-dir", "", "directory for scheduled backups (off when empty); restore one with keyd snapshot restore")
	fs.DurationVar(&f.interval, "backup-interval", time.Hour, "time between scheduled backups")
	fs.IntVar(&f.retain, "backup-retain", 24, "scheduled backups kept in --backup-dir; the oldest are deleted")
}

func (f *backupFlags) validate() error {
	if f.dir == "" {
		return nil
	}
	if f.interval < time.Second {
		return fmt.Errorf("--backup-interval must be at least 1s, got %v", f.interval)
	}
	if f.retain < 1 {
		return fmt.Errorf("--backup-retain must be at least 1, got %d", f.retain)
	}
	return nil
}

// Scheduled backups are named keyquorum-TIME-INDEX.backup, TIME in UTC
// with a fixed width, so that their names sort as their times.
const (
	backupPrefix = "keyquorum-"
	backupSuffix = ".backup"
	backupTime   = "20060102T150405.000000000Z"
)

// scheduleBackups makes a backup every interval until ctx ends, keeping
// the newest retain. A node without a cluster key yet makes none.
func scheduleBackups(ctx context.Context, n *cluster.Node, f backupFlags, log *slog.Logger) {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		log.Error("scheduled backups", "dir", f.dir, "err", err)
		return
	}
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := n.MakeBackup()
		if err != nil {
			if cluster.KindOf(err) == cluster.KindNotInitialized {
				log.Debug("no scheduled backup yet", "err", err)
			} else {
				log.Error("scheduled backup", "err", err)
			}
			continue
		}
		path, err := writeBackup(f.dir, f.retain, b, time.Now())
		if err != nil {
			log.Error("scheduled backup", "dir", f.dir, "err", err)
			continue
		}
		log.Info("scheduled backup", "file", path, "index", b.Index, "epoch", b.Epoch)
	}
}

// writeBackup writes b into dir under the name of its time, then deletes
// the oldest scheduled backups beyond retain. Other files in dir are left
// alone.
func writeBackup(dir string, retain int, b *api.Backup, now time.Time) (string, error) {
	data, err := json.Marshal(b)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s%s-%d%s", backupPrefix, now.UTC().Format(backupTime), b.Index, backupSuffix)
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return path, err
	}
	var ours []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, backupPrefix) && strings.HasSuffix(n, backupSuffix) {
			ours = append(ours, n)
		}
	}
	slices.Sort(ours)
	var errs []error
	for _, old := range ours[:max(0, len(ours)-retain)] {
		errs = append(errs, os.Remove(filepath.Join(dir, old)))
	}
	return path, errors.Join(errs...)
}

// runSnapshot runs "keyd snapshot restore".
func runSnapshot(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "restore" {
		return errors.New(`usage: keyd snapshot restore --data-dir DIR [--id ID] FILE`)
	}
	fs := flag.NewFlagSet("keyd snapshot restore", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "the stopped node's data directory, whose Raft data was lost (required)")
	id := fs.String("id", "", "node ID, as keyd is given it (default: the host name)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("keyd snapshot restore needs one backup FILE")
	}
	if err := applyEnvAndFile(fs, ""); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("--data-dir is required")
	}
	if *id == "" {
		host, err := os.Hostname()
		if err != nil {
			return err
		}
		*id = host
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	info, err := cluster.RestoreBackup(*dataDir, *id, data)
	if err != nil {
		return err
	}
	cp := "no certified checkpoint"
	if info.Checkpoint > 0 {
		cp = fmt.Sprintf("certified checkpoint %d", info.Checkpoint)
	}
	fmt.Fprintf(stdout, "restored node %s of cluster %s to index %d, key epoch %d: %d keys, members %s (%s and %d signed entries verified; made by %s at %s)\nstart keyd on it; the members restored from the newest backup bring the others up to it\n",
		*id, info.ClusterID, info.Index, info.Epoch, info.Keys, strings.Join(info.Members, ","), cp, info.Entries, info.Node, info.CreatedAt.UTC().Format(time.RFC3339))
	return nil
}
