package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// TestBackupRetentionDeletesTheOldest: scheduled backups beyond
// --backup-retain are deleted oldest first, by their time, and nothing
// else in the directory is touched.
func TestBackupRetentionDeletesTheOldest(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "keep-me.backup")
	if err := os.WriteFile(other, []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 6, 9, 59, 59, 0, time.UTC)
	var written []string
	for i := range 5 {
		// Index falling while time rises: the names must sort by time.
		b := &api.Backup{Format: api.BackupFormat, Index: uint64(1000 - i*300)}
		p, err := writeBackup(dir, 3, b, start.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, filepath.Base(p))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := append(slices.Clone(written[2:]), "keep-me.backup")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after 5 backups with retain 3: %q, want the newest 3 and the other file: %q", got, want)
	}
	for _, n := range got {
		if strings.HasSuffix(n, ".tmp") {
			t.Errorf("a temporary file was left: %s", n)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, written[4])); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("a backup's mode: %v %v, want 0600", fi, err)
	}
}

func TestBackupFlagsAreChecked(t *testing.T) {
	for _, f := range []backupFlags{{dir: "d", interval: time.Millisecond, retain: 1}, {dir: "d", interval: time.Hour, retain: 0}} {
		if err := f.validate(); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
	if err := (&backupFlags{}).validate(); err != nil {
		t.Errorf("no --backup-dir: %v", err)
	}
}
