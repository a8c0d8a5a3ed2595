package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// composeStatus is what the container test reads of keyctl cluster status
// --json.
type composeStatus struct {
	Leader           string `json:"leader"`
	FailureTolerance int    `json:"failure_tolerance"`
	QuorumTolerance  int    `json:"quorum_tolerance"`
	Members          []struct {
		ID        string `json:"id"`
		RaftState string `json:"raft_state"`
	} `json:"members"`
}

// status is cluster status as the node at addr sees it.
func composeStatusAt(t *testing.T, env []string, addr string) (*composeStatus, result) {
	t.Helper()
	r := keyctl(t, withVar(env, "KEYQUORUM_ADDR", addr), "cluster", "status", "--json")
	if r.code != 0 {
		return nil, r
	}
	var st composeStatus
	if err := json.Unmarshal(r.stdout, &st); err != nil {
		t.Fatalf("cluster status --json: %v: %s", err, r.stdout)
	}
	return &st, r
}

// waitTolerance waits until the node at addr reports the failure and
// quorum tolerances want, and returns its status.
func waitTolerance(t *testing.T, env []string, addr string, failure, quorum int) *composeStatus {
	t.Helper()
	var last string
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		st, r := composeStatusAt(t, env, addr)
		if st == nil {
			last = r.String()
			continue
		}
		if st.FailureTolerance == failure && st.QuorumTolerance == quorum {
			return st
		}
		last = fmt.Sprintf("failure tolerance %d, quorum tolerance %d, members %+v", st.FailureTolerance, st.QuorumTolerance, st.Members)
	}
	t.Fatalf("%s never reported failure tolerance %d and quorum tolerance %d: %s", addr, failure, quorum, last)
	return nil
}

// cutOffPastTolerance is the second fault of the container test, on the
// 3-node compose cluster (t = 2): with every node up the failure tolerance
// is 1; two nodes cut off from the project's network (one more than the
// tolerance) and the node left reports that releases have stopped, and a
// release through it fails fast with a clear "no quorum" (exit 7) and no
// bytes; reconnected at their addresses, the nodes come back, the
// tolerance is 1 again and the same secret is released.
func cutOffPastTolerance(t *testing.T, p *composeProject, env []string, ports map[string]string, secret []byte) {
	t.Helper()
	waitTolerance(t, env, ports["n1"], 1, 1)
	network := p.project + "_kq"
	var kqNet string
	for _, kv := range p.env {
		if v, ok := strings.CutPrefix(kv, "KQ_NET="); ok {
			kqNet = v
		}
	}
	if kqNet == "" {
		t.Fatal("compose.env has no KQ_NET")
	}
	cut := []string{"n2", "n3"}
	for _, n := range cut {
		if out, err := exec.Command("docker", "network", "disconnect", network, p.container(n)).CombinedOutput(); err != nil {
			t.Fatalf("disconnecting %s: %v: %s", n, err, out)
		}
	}
	reconnect := func() {
		for i, n := range cut {
			ip := fmt.Sprintf("%s.%d", kqNet, 12+i)
			if out, err := exec.Command("docker", "network", "connect", "--ip", ip, network, p.container(n)).CombinedOutput(); err != nil {
				t.Errorf("reconnecting %s at %s: %v: %s", n, ip, err, out)
			}
		}
	}
	reconnected := false
	defer func() {
		if !reconnected {
			reconnect()
		}
	}()

	st := waitTolerance(t, env, ports["n1"], -1, -1)
	for _, m := range st.Members {
		if (m.ID == "n2" || m.ID == "n3") && m.RaftState != "unreachable" {
			t.Errorf("n1 reports the cut-off %s as %q, want unreachable", m.ID, m.RaftState)
		}
	}
	start := time.Now()
	r := keyctl(t, withVar(env, "KEYQUORUM_ADDR", ports["n1"]), "key", "get", "app/token")
	if r.code != 7 || len(r.stdout) != 0 || !strings.Contains(r.stderr, "no quorum") {
		t.Fatalf("a release with 2 of 3 nodes cut off: %v; want exit 7 (no quorum), nothing on stdout", r)
	}
	t.Logf("with n2 and n3 cut off, a release through n1 failed in %v (loaded machine: not a measurement): %s",
		time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stderr))

	reconnect()
	reconnected = true
	waitTolerance(t, env, ports["n1"], 1, 1)
	var got result
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if got = keyctl(t, withVar(env, "KEYQUORUM_ADDR", ports["n1"]), "key", "get", "app/token"); got.code == 0 {
			break
		}
	}
	if got.code != 0 || !bytes.Equal(got.stdout, secret) {
		t.Fatalf("no release after the nodes came back: %v", got)
	}
}

// autopilotRemovesACutOffNode is the third fault of the container test:
// with the autopilot on (remove-dead-after 5s), n3 is cut off the
// network for longer than that; the leader removes it, the cluster
// reshares to n1 and n2 keeping t = 2, and releases go on. The failure
// tolerance is 1 before, and 0 after (two holders at t = 2, two voters).
func autopilotRemovesACutOffNode(t *testing.T, p *composeProject, env []string, ports map[string]string, secret []byte) {
	t.Helper()
	waitTolerance(t, env, ports["n1"], 1, 1)
	if r := keyctl(t, env, "cluster", "autopilot", "--remove-dead-after", "5s"); r.code != 0 {
		t.Fatalf("cluster autopilot: %v", r)
	}
	if out, err := exec.Command("docker", "network", "disconnect", p.project+"_kq", p.container("n3")).CombinedOutput(); err != nil {
		t.Fatalf("disconnecting n3: %v: %s", err, out)
	}
	var last string
	removed := false
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && !removed; time.Sleep(time.Second) {
		st, r := composeStatusAt(t, env, ports["n1"])
		if st == nil {
			last = r.String()
			continue
		}
		removed = len(st.Members) == 2
		last = fmt.Sprintf("members %+v", st.Members)
	}
	if !removed {
		t.Fatalf("the autopilot did not remove n3, cut off past remove-dead-after: %s", last)
	}
	waitTolerance(t, env, ports["n1"], 0, 0)
	for _, n := range []string{"n1", "n2"} {
		if r := keyctl(t, withVar(env, "KEYQUORUM_ADDR", ports[n]), "key", "get", "app/token"); r.code != 0 || !bytes.Equal(r.stdout, secret) {
			t.Fatalf("release through %s after the autopilot removed n3: %v", n, r)
		}
	}
}
