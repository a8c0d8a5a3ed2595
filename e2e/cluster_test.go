package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/vocab"
)

// converge bounds how long the cluster may take to elect a leader, catch
// up a restarted node or spread gossip. Generous: the machine is shared.
const converge = 90 * time.Second

var versionLine = regexp.MustCompile(`(?m)^version:\s+(\d+)\s*$`)

// shownVersion is the version "key show" prints.
func shownVersion(t *testing.T, r result) int {
	t.Helper()
	m := versionLine.FindSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("key show printed no version line: %v", r)
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

// getEventually polls "key get name" on node i until it succeeds, and
// fails the test unless it then returns want. While the cluster elects a
// leader a get may say "no quorum" (exit 7); with restarted set, a node
// that has just restarted may fail in other ways until it has caught up
// (see TestRestartedNodeWithoutQuorumSaysNoQuorum). Any other failure is
// final.
func getEventually(t *testing.T, c *localCluster, i int, name string, want []byte, restarted bool) {
	t.Helper()
	seen := map[string]bool{}
	eventually(t, converge, fmt.Sprintf("key get %s on node %d succeeds", name, i), func() (bool, string) {
		r := c.keyctl(i, "key", "get", name)
		switch {
		case r.code == 0:
			if !bytes.Equal(r.stdout, want) {
				t.Fatalf("node %d released different bytes for %s: got %x, want %x", i, name, r.stdout, want)
			}
			return true, ""
		case r.hung:
		case r.code == vocab.ExitNoQuorum || restarted:
			if len(r.stdout) != 0 {
				t.Fatalf("node %d failed but wrote to stdout: %v", i, r)
			}
			if !seen[r.stderr] {
				seen[r.stderr] = true
				t.Logf("node %d, while the cluster converges: %v", i, r)
			}
			return false, r.String()
		}
		t.Fatalf("node %d: %v", i, r)
		return false, ""
	})
}

func TestLocalClusterSurvivesNodeLoss(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	c.mustKeyctl(1, "key", "create", "s", "--bytes", "64")
	c.mustKeyctl(1, "key", "create", "kept", "--bytes", "32")

	want := c.mustKeyctl(1, "key", "get", "s").stdout
	if len(want) != 64 {
		t.Fatalf("key get s returned %d bytes, want 64 (--bytes 64)", len(want))
	}
	wantKept := c.mustKeyctl(1, "key", "get", "kept").stdout
	if len(wantKept) != 32 {
		t.Fatalf("key get kept returned %d bytes, want 32", len(wantKept))
	}
	for i := 1; i <= 3; i++ {
		if got := c.mustKeyctl(i, "key", "get", "s").stdout; !bytes.Equal(got, want) {
			t.Fatalf("node %d released %x, node 1 released %x", i, got, want)
		}
	}
	if v := shownVersion(t, c.mustKeyctl(1, "key", "show", "s")); v != 1 {
		t.Errorf("key show s: version %d, want 1", v)
	}

	// One node down of three: a quorum (t=2) remains.
	c.mustScript("kill", "1", c.dir)
	for i := 2; i <= 3; i++ {
		getEventually(t, c, i, "s", want, false)
	}

	// Two down: node 3 alone must say "no quorum" (exit 7), and say it
	// rather than hang.
	c.mustScript("kill", "2", c.dir)
	r := run(t, 60*time.Second, c.nodeEnv(3), keyctlBin, "key", "get", "s")
	switch {
	case r.hung:
		t.Fatalf("key get on a node without quorum did not return: %v", r)
	case r.code != vocab.ExitNoQuorum || !strings.Contains(r.stderr, "no quorum"):
		t.Fatalf("key get on a node without quorum: want exit 7 and \"no quorum\", got %v", r)
	case len(r.stdout) != 0:
		t.Fatalf("key get without quorum wrote to stdout: %v", r)
	}

	// Both back with their data: the same bytes, and the other key too.
	c.mustScript("start", "1", c.dir)
	c.mustScript("start", "2", c.dir)
	for i := 1; i <= 3; i++ {
		getEventually(t, c, i, "s", want, true)
	}
	list := c.mustKeyctl(3, "key", "list")
	if !regexp.MustCompile(`(?m)^kept\s+id:[0-9a-f]{32}\s+secret\s+1\s+active\s`).Match(list.stdout) {
		t.Errorf("key list after the restarts does not list kept as an active secret, version 1: %v", list)
	}
	for i := 1; i <= 3; i++ {
		getEventually(t, c, i, "kept", wantKept, true)
	}
}

// TestRestartedNodeWithoutQuorumSaysNoQuorum restarts one node of three
// while the other two stay down. Until it hears from a leader, its state
// machine has not replayed the log, so it cannot know anything; it must
// say "no quorum" (exit 7), as "key list" does, and not answer a definite
// error about a key or operator that exists.
// (The API once authenticated the operator against the node's local, not
// yet replayed state, and answered "unauthenticated".)
func TestRestartedNodeWithoutQuorumSaysNoQuorum(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	c.mustKeyctl(1, "key", "create", "s", "--bytes", "32")
	for i := 1; i <= 3; i++ {
		c.mustScript("kill", strconv.Itoa(i), c.dir)
	}
	c.mustScript("start", "1", c.dir)
	for _, args := range [][]string{{"key", "list"}, {"key", "show", "s"}, {"key", "get", "s"}} {
		r := run(t, 60*time.Second, c.nodeEnv(1), keyctlBin, args...)
		checkOneLineError(t, r)
		if r.code != vocab.ExitNoQuorum || !strings.Contains(r.stderr, "no quorum") {
			t.Errorf("restarted node alone: want exit 7 and \"no quorum\", got %v", r)
		}
	}
}

func TestRevokeHonouredEverywhere(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	c.mustKeyctl(1, "key", "create", "doomed", "--bytes", "32")
	for i := 1; i <= 3; i++ {
		if r := c.mustKeyctl(i, "key", "get", "doomed"); len(r.stdout) != 32 {
			t.Fatalf("node %d released %d bytes before the revoke, want 32", i, len(r.stdout))
		}
	}
	c.mustKeyctl(1, "key", "revoke", "doomed")
	// Linearizable: once the revoke is acknowledged, no release that
	// starts afterwards succeeds, on any node. So no polling here.
	for i := 1; i <= 3; i++ {
		r := c.keyctl(i, "key", "get", "doomed")
		if r.code != vocab.ExitDenied || !strings.Contains(r.stderr, "denied") {
			t.Errorf("node %d after the revoke: want exit 5 and \"denied\", got %v", i, r)
		}
		if len(r.stdout) != 0 {
			t.Errorf("node %d released %d bytes of a revoked key", i, len(r.stdout))
		}
	}
	if r := c.mustKeyctl(2, "key", "show", "doomed"); !regexp.MustCompile(`(?m)^state:\s+revoked\s*$`).Match(r.stdout) {
		t.Errorf("key show after the revoke does not say revoked: %v", r)
	}
}

// status is what "keyctl cluster status" printed, parsed.
type status struct {
	leader    string
	epoch     int
	n, t      int
	node      string
	members   []member
	resharing bool
	diverged  []string // the DIVERGED lines: members whose history is not the leader's
}

type member struct{ id, state, health string }

var statusHeader = regexp.MustCompile(`^cluster \S+\s+leader (\S+)\s+key epoch (\d+)\s+n (\d+)\s+t (\d+)\s+\(as seen by (\S+) at index \d+\)$`)

func parseStatus(out string) (*status, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	m := statusHeader.FindStringSubmatch(lines[0])
	if m == nil {
		return nil, fmt.Errorf("unexpected first line %q", lines[0])
	}
	st := &status{leader: m[1], node: m[5]}
	st.epoch, _ = strconv.Atoi(m[2])
	st.n, _ = strconv.Atoi(m[3])
	st.t, _ = strconv.Atoi(m[4])
	// The table's columns are found by their names in its header.
	stateCol, healthCol := -1, -1
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, "resharing:"):
			st.resharing = true
		case strings.HasPrefix(l, "failure tolerance:"), strings.HasPrefix(l, "autopilot:"), strings.HasPrefix(l, "recovery kit:"):
		case strings.HasPrefix(l, "DIVERGED:"):
			st.diverged = append(st.diverged, l)
		case len(f) > 0 && f[0] == "NODE":
			stateCol, healthCol = slices.Index(f, "STATE"), slices.Index(f, "HEALTH")
			if stateCol < 0 || healthCol < 0 {
				return nil, fmt.Errorf("unexpected table header %q", l)
			}
		case stateCol >= 0 && len(f) > max(stateCol, healthCol):
			st.members = append(st.members, member{id: f[0], state: f[stateCol], health: f[healthCol]})
		default:
			return nil, fmt.Errorf("unexpected line %q", l)
		}
	}
	return st, nil
}

func TestClusterStatus(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	for i := 1; i <= 3; i++ {
		var st *status
		eventually(t, converge, fmt.Sprintf("node %d sees 3 members alive and a leader", i), func() (bool, string) {
			r := c.keyctl(i, "cluster", "status")
			if r.code != 0 {
				return false, r.String()
			}
			var err error
			if st, err = parseStatus(string(r.stdout)); err != nil {
				t.Fatalf("cluster status on node %d: %v in\n%s", i, err, r.stdout)
			}
			if len(st.diverged) != 0 {
				t.Fatalf("cluster status on node %d: an honest cluster reports a diverged member:\n%s", i, r.stdout)
			}
			leaders := 0
			for _, m := range st.members {
				if m.health != "alive" {
					return false, string(r.stdout)
				}
				if m.state == "leader" {
					leaders++
				}
			}
			return len(st.members) == 3 && st.leader != "(none)" && leaders == 1, string(r.stdout)
		})
		if st.node != fmt.Sprintf("n%d", i) {
			t.Errorf("node %d: status says it was answered by %s", i, st.node)
		}
		if st.n != 3 || st.t != 2 {
			t.Errorf("node %d: n %d t %d, want n 3 t 2", i, st.n, st.t)
		}
		if st.epoch < 1 {
			t.Errorf("node %d: key epoch %d, want >= 1 (the DKG of the three initial nodes)", i, st.epoch)
		}
		ids := map[string]bool{}
		leaderIsMember := false
		for _, m := range st.members {
			ids[m.id] = true
			if m.id == st.leader {
				leaderIsMember = true
				if m.state != "leader" {
					t.Errorf("node %d: leader %s is listed in state %s", i, st.leader, m.state)
				}
			}
		}
		if !ids["n1"] || !ids["n2"] || !ids["n3"] {
			t.Errorf("node %d: members %v, want n1 n2 n3", i, st.members)
		}
		if !leaderIsMember {
			t.Errorf("node %d: leader %s is not a member", i, st.leader)
		}
	}
}

// TestKeydDisablesCoreDumps: a node's memory holds shares and, during a
// release, partial results; the README promises keyd keeps them out of
// core dumps.
func TestKeydDisablesCoreDumps(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	pid, err := os.ReadFile(filepath.Join(c.dir, "n1.pid"))
	if err != nil {
		t.Fatal(err)
	}
	limits, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(line, "Max core file size") {
			if f := strings.Fields(line); len(f) < 6 || f[4] != "0" || f[5] != "0" {
				t.Fatalf("keyd's core file limit is not 0: %q", line)
			}
			return
		}
	}
	t.Fatalf("no core file size line in /proc/PID/limits:\n%s", limits)
}
