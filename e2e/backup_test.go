package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSnapshotDrillRaftDataLost is drill 1 of docs/disaster-recovery.md
// with real processes: the Raft data of every node is lost, their
// identities and shares are intact. keyctl snapshot save made a backup,
// keyd's scheduled backups made others (keeping --backup-retain of them);
// keyd snapshot restore puts one back on each node, and the cluster
// serves the same keys.
func TestSnapshotDrillRaftDataLost(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	secret := []byte("survives the loss of every Raft log\n")
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustKeyctl(1, "key", "create", "s", "--from-file", f)
	c.mustKeyctl(2, "key", "create", "other", "--bytes", "32")
	other := c.mustKeyctl(3, "key", "get", "other").stdout

	backup := filepath.Join(t.TempDir(), "cluster.backup")
	save := saveBackup(t, c, 2, backup)
	if !strings.Contains(string(save.stdout), "saved a backup of cluster") {
		t.Errorf("snapshot save printed %q", save.stdout)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the backup file: %v %v, want mode 0600", fi, err)
	}
	// inspect needs no cluster: run it with every node stopped, below.

	// Scheduled backups on node 1: every second, the newest 2 kept.
	sched := filepath.Join(t.TempDir(), "scheduled")
	c.mustScript("stop", "1", c.dir)
	c.keydEnv = []string{"KEYQUORUM_BACKUP_DIR=" + sched, "KEYQUORUM_BACKUP_INTERVAL=1s", "KEYQUORUM_BACKUP_RETAIN=2"}
	c.mustScript("start", "1", c.dir)
	c.keydEnv = nil
	var names []string
	eventually(t, 2*time.Minute, "node 1 writes scheduled backups and keeps 2", func() (bool, string) {
		entries, _ := os.ReadDir(sched)
		names = names[:0]
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".backup") {
				names = append(names, e.Name())
			}
		}
		if len(names) > 2 {
			t.Fatalf("more scheduled backups than --backup-retain 2: %v", names)
		}
		// Two, and the first of them not the first ever written: one
		// was deleted.
		return len(names) == 2 && c.logsContain("scheduled backup") && deletedOne(c, names), strings.Join(names, " ")
	})
	slices.Sort(names)
	scheduled := filepath.Join(sched, names[len(names)-1])

	for i := 1; i <= 3; i++ {
		c.mustScript("kill", strconv.Itoa(i), c.dir)
	}
	env := c.env
	inspect := keyctl(t, env, "snapshot", "inspect", backup)
	if inspect.code != 0 {
		t.Fatalf("snapshot inspect with no node running: %v", inspect)
	}
	for _, want := range []string{"checksum verified", "(the pinned key)", "key epoch    1", "entries"} {
		if !strings.Contains(string(inspect.stdout), want) {
			t.Errorf("snapshot inspect does not say %q:\n%s", want, inspect.stdout)
		}
	}
	damaged := filepath.Join(t.TempDir(), "damaged.backup")
	b, _ := os.ReadFile(backup)
	i := bytes.Index(b, []byte(`"snapshot":"`)) + 20
	b[i] ^= 'A' ^ 'B'
	if b[i] == '"' || b[i] == '\\' {
		b[i] = 'C'
	}
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := keyctl(t, env, "snapshot", "inspect", damaged); r.code == 0 || !strings.Contains(r.stderr, "checksum") && !strings.Contains(r.stderr, "not a keyquorum backup") {
		t.Errorf("snapshot inspect of a damaged file: %v", r)
	}

	// Every node's Raft data is lost.
	for i := 1; i <= 3; i++ {
		if err := os.RemoveAll(filepath.Join(c.dir, "n"+strconv.Itoa(i), "raft")); err != nil {
			t.Fatal(err)
		}
	}
	restore := func(i int, file string) result {
		return run(t, time.Minute, baseEnv(), keydBin, "snapshot", "restore", "--data-dir", filepath.Join(c.dir, "n"+strconv.Itoa(i)), "--id", "n"+strconv.Itoa(i), file)
	}
	if r := restore(1, damaged); r.code == 0 {
		t.Fatalf("keyd snapshot restore took a damaged backup: %v", r)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.dir, "n1", "raft")); len(entries) != 0 {
		t.Fatalf("a refused restore left files in n1/raft")
	}
	for i, file := range map[int]string{1: scheduled, 2: backup, 3: backup} {
		if r := restore(i, file); r.code != 0 || !strings.Contains(string(r.stdout), "restored node n"+strconv.Itoa(i)) {
			t.Fatalf("keyd snapshot restore on n%d: %v", i, r)
		}
	}
	for i := 1; i <= 3; i++ {
		c.mustScript("start", strconv.Itoa(i), c.dir)
	}
	for i := 1; i <= 3; i++ {
		getEventually(t, c, i, "s", secret, true)
		getEventually(t, c, i, "other", other, true)
	}
	c.mustKeyctl(1, "key", "create", "after", "--bytes", "16")
}

// deletedOne reports whether the scheduled backups in names are not the
// first two node 1 wrote: its log names each one it wrote.
func deletedOne(c *localCluster, names []string) bool {
	b, err := os.ReadFile(filepath.Join(c.dir, "n1.log"))
	if err != nil {
		return false
	}
	return strings.Count(string(b), "msg=\"scheduled backup\"") > len(names)
}

// saveBackup runs keyctl snapshot save FILE on node i. Right after the
// cluster key is made its first checkpoint may not be certified yet, and
// save says to try again (a backup then would not restore): an operator's
// script retries, as this does.
func saveBackup(t *testing.T, c *localCluster, i int, file string) result {
	t.Helper()
	var save result
	eventually(t, 30*time.Second, "snapshot save once the first checkpoint is certified", func() (bool, string) {
		save = c.keyctl(i, "snapshot", "save", file)
		if save.code != 0 && strings.Contains(string(save.stderr), "not certified yet") {
			return false, save.String()
		}
		return true, ""
	})
	if save.code != 0 {
		t.Fatalf("snapshot save on node %d: %v", i, save)
	}
	return save
}
