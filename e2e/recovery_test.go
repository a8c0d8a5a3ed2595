package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRecoveryKitDrill is drill 2 of docs/disaster-recovery.md with real
// processes and the operators' commands: a cluster founded with a 2-of-3
// recovery kit (keyctl recovery keygen, cluster init --recovery-officer);
// cluster status says the kit is usable; a key and a backup; every node
// lost, data and all. Two officers check their kit shares in the backup
// (keyd recovery open) and deal them to three new nodes an admin planned
// (keyctl recovery plan, keyd recovery deal); the admin signs the rebuild
// (keyctl recovery sign); one officer's deal alone is refused by the new
// nodes; with two, each new node takes the rebuild (keyd recovery
// rebuild), and started, they release the key sealed before the loss.
func TestRecoveryKitDrill(t *testing.T) {
	needBinaries(t)
	work := t.TempDir()
	officerKey := func(i int) string { return filepath.Join(work, "officer"+strconv.Itoa(i)+".key") }
	var flags []string
	for i := 1; i <= 3; i++ {
		r := keyctl(t, baseEnv(), "recovery", "keygen", "--out", officerKey(i))
		if r.code != 0 {
			t.Fatalf("recovery keygen: %v", r)
		}
		lines := strings.Split(strings.TrimSpace(string(r.stdout)), "\n")
		flags = append(flags, "--recovery-officer", "officer"+strconv.Itoa(i)+"="+lines[len(lines)-1])
	}
	flags = append(flags, "--recovery-threshold", "2")
	c := startClusterEnv(t, 3, "KEYQUORUM_INIT_FLAGS="+strings.Join(flags, " "))
	eventually(t, converge, "cluster status shows a usable recovery kit", func() (bool, string) {
		r := c.keyctl(1, "cluster", "status")
		return strings.Contains(string(r.stdout), "recovery kit: 2 of 3 officers rebuild the cluster key (dealt by 3 holders"), string(r.stdout)
	})

	secret := []byte("kept by the recovery officers\n")
	f := filepath.Join(work, "secret")
	if err := os.WriteFile(f, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustKeyctl(1, "key", "create", "s", "--from-file", f)
	backup := filepath.Join(work, "cluster.backup")
	saveBackup(t, c, 2, backup)

	// Every node is lost.
	for i := 1; i <= 3; i++ {
		c.mustScript("kill", strconv.Itoa(i), c.dir)
		if err := os.RemoveAll(filepath.Join(c.dir, "n"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	env := c.env
	keyd := func(args ...string) result { return run(t, 2*time.Minute, env, keydBin, args...) }

	for _, o := range []int{1, 3} {
		r := keyd("recovery", "open", "--backup", backup, "--officer", strconv.Itoa(o), "--officer-key", officerKey(o))
		if r.code != 0 || !strings.Contains(string(r.stdout), "opened and checked: holders 1,2,3") {
			t.Fatalf("keyd recovery open, officer %d: %v", o, r)
		}
	}
	if r := keyd("recovery", "open", "--backup", backup, "--officer", "1", "--officer-key", officerKey(2)); r.code == 0 {
		t.Fatalf("officer 2's key opened officer 1's share: %v", r)
	}

	// Three new nodes, started unjoined on the lost nodes' addresses.
	var nodes []string
	for i := 1; i <= 3; i++ {
		c.mustScript("start", strconv.Itoa(i), c.dir)
		fp := keyd("identity", "--id", "n"+strconv.Itoa(i), "--data-dir", filepath.Join(c.dir, "n"+strconv.Itoa(i)))
		var fingerprint string
		for l := range strings.SplitSeq(string(fp.stdout), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "fingerprint" {
				fingerprint = f[1]
			}
		}
		if fingerprint == "" {
			t.Fatalf("keyd identity: %v", fp)
		}
		nodes = append(nodes, "--node", c.addr(i)+"="+fingerprint)
	}
	plan := filepath.Join(work, "plan.json")
	if r := keyctl(t, env, append([]string{"recovery", "plan", "--holders", "1,2", "--out", plan}, nodes...)...); r.code != 0 {
		t.Fatalf("keyctl recovery plan: %v", r)
	}
	deal := func(o int) string { return filepath.Join(work, "deal"+strconv.Itoa(o)+".json") }
	for _, o := range []int{1, 3} {
		if r := keyd("recovery", "deal", "--backup", backup, "--officer", strconv.Itoa(o), "--officer-key", officerKey(o), "--plan", plan, "--out", deal(o)); r.code != 0 {
			t.Fatalf("keyd recovery deal, officer %d: %v", o, r)
		}
	}
	lone, order := filepath.Join(work, "lone.json"), filepath.Join(work, "order.json")
	if r := keyctl(t, env, "recovery", "sign", "--plan", plan, "--deal", deal(1), "--out", lone); r.code != 0 {
		t.Fatalf("keyctl recovery sign: %v", r)
	}
	if r := keyctl(t, env, "recovery", "sign", "--plan", plan, "--deal", deal(1), "--deal", deal(3), "--out", order); r.code != 0 {
		t.Fatalf("keyctl recovery sign: %v", r)
	}
	for i := 1; i <= 3; i++ {
		c.mustScript("stop", strconv.Itoa(i), c.dir)
	}
	rebuild := func(i int, order string) result {
		return keyd("recovery", "rebuild", "--data-dir", filepath.Join(c.dir, "n"+strconv.Itoa(i)), "--id", "n"+strconv.Itoa(i), "--backup", backup, "--order", order)
	}
	if r := rebuild(1, lone); r.code == 0 || !strings.Contains(r.stderr, "officers") {
		t.Fatalf("a rebuild with one officer's deal: %v", r)
	}
	for i := 1; i <= 3; i++ {
		if r := rebuild(i, order); r.code != 0 || !strings.Contains(string(r.stdout), "rebuilt node n"+strconv.Itoa(i)) {
			t.Fatalf("keyd recovery rebuild on n%d: %v", i, r)
		}
	}
	for i := 1; i <= 3; i++ {
		c.mustScript("start", strconv.Itoa(i), c.dir)
	}
	for i := 1; i <= 3; i++ {
		getEventually(t, c, i, "s", secret, true)
	}
	c.mustKeyctl(1, "key", "create", "after", "--bytes", "16")
}
