package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// composeProject is a cluster deploy/compose/cluster formed in dir.
type composeProject struct {
	t       *testing.T
	dir     string
	env     []string // base environment with dir/compose.env
	project string
}

// needDocker skips unless this machine can run the compose project: root,
// a Docker engine that answers, and docker-compose (the v1 CLI, Debian's
// package; the engine's "docker compose" plugin is not what this uses).
func needDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs containers; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("the compose test needs root (the Docker engine's socket); run it as root: make deploy-test")
	}
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the compose test needs %s, which is not installed (Debian: apt-get install docker.io docker-compose)", tool)
		}
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers: %v: %s", err, bytes.TrimSpace(out))
	}
}

// readEnvFile reads KEY=VALUE lines.
func readEnvFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(l, "=") {
			out = append(out, l)
		}
	}
	return out
}

func (p *composeProject) compose(args ...string) result {
	p.t.Helper()
	return run(p.t, 2*time.Minute, p.env, "docker-compose", args...)
}

func (p *composeProject) mustCompose(args ...string) string {
	p.t.Helper()
	r := p.compose(args...)
	if r.code != 0 {
		p.t.Fatalf("%v", r)
	}
	return string(r.stdout)
}

// container is the ID of node's container.
func (p *composeProject) container(node string) string {
	p.t.Helper()
	return strings.TrimSpace(p.mustCompose("ps", "-q", node))
}

// waitHealthy waits until the engine reports node's container healthy,
// which its HEALTHCHECK (keyd health) decides.
func (p *composeProject) waitHealthy(node string) {
	p.t.Helper()
	id := p.container(node)
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out, err := exec.Command("docker", "inspect", "--format", "{{.State.Health.Status}}", id).Output()
		if err != nil {
			p.t.Fatalf("docker inspect %s: %v", node, err)
		}
		if last = strings.TrimSpace(string(out)); last == "healthy" {
			return
		}
	}
	p.t.Fatalf("container %s is %q, not healthy, after 60 s", node, last)
}

// leftovers are the project's volumes and networks still on the engine.
func (p *composeProject) leftovers() string {
	var out []string
	for _, kind := range []string{"volume", "network", "container"} {
		args := []string{kind, "ls", "-q", "--filter", "label=com.docker.compose.project=" + p.project}
		if kind == "container" {
			args = []string{"ps", "-aq", "--filter", "label=com.docker.compose.project=" + p.project}
		}
		b, _ := exec.Command("docker", args...).Output()
		if s := strings.TrimSpace(string(b)); s != "" {
			out = append(out, kind+"s: "+strings.ReplaceAll(s, "\n", " "))
		}
	}
	return strings.Join(out, "; ")
}

// TestComposeClusterSurvivesAKilledContainer: make image, then
// deploy/compose/cluster up 3 forms a cluster of containers in one
// command; keyctl on this host creates and releases a key through a
// published port; the leader's container is killed and a key is still
// released through another node, and the failure tolerance goes from 1 to
// 0; restarted, it is healthy again and releases, and the tolerance is 1
// again; two nodes cut off from the network stop releases with "no quorum"
// until they are back (cutOffPastTolerance); with the autopilot on, a node
// cut off past its period is removed and releases go on
// (autopilotRemovesACutOffNode); down removes the containers, the network
// and the volumes.
func TestComposeClusterSurvivesAKilledContainer(t *testing.T) {
	t.Parallel()
	needDocker(t)
	hostNetwork.Lock() // compose makes and removes networks: see hostNetwork
	defer hostNetwork.Unlock()
	needBinaries(t)
	image := "keyquorum:e2e"
	if r := run(t, 5*time.Minute, os.Environ(), "make", "-C", root, "image", "IMAGE="+image); r.code != 0 {
		t.Fatalf("make image: %v", r)
	}
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Config.User}} {{.Config.Healthcheck.Test}} {{.Config.Volumes}}", image).Output(); err != nil ||
		!strings.HasPrefix(string(out), "65532:65532 [CMD /usr/local/bin/keyd health") || !strings.Contains(string(out), "/var/lib/keyquorum") {
		t.Fatalf("image config %q (%v): want user 65532, keyd health as its health check, a volume at /var/lib/keyquorum", out, err)
	}

	dir := t.TempDir()
	p := &composeProject{t: t, dir: dir, project: fmt.Sprintf("kqe2e%d", os.Getpid())}
	scriptEnv := append(baseEnv(), "KEYQUORUM_IMAGE="+image, "KQ_PROJECT="+p.project,
		fmt.Sprintf("KQ_NET=172.29.%d", 100+os.Getpid()%100), fmt.Sprintf("KQ_PORT_BASE=%d", freeBase(t)))
	script := filepath.Join(root, "deploy", "compose", "cluster")
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(dir, "compose.env")); err != nil {
			return
		}
		if t.Failed() {
			r := run(t, time.Minute, p.env, "docker-compose", "logs", "--no-color", "--tail", "40")
			t.Logf("logs:\n%s", r.stdout)
		}
		if r := run(t, 2*time.Minute, scriptEnv, "bash", script, "down", dir); r.code != 0 {
			t.Errorf("cluster down: %v", r)
		}
		if left := p.leftovers(); left != "" {
			t.Errorf("left on the engine after down: %s", left)
		}
	})

	start := time.Now()
	if r := run(t, 3*time.Minute, scriptEnv, "bash", script, "up", "3", dir); r.code != 0 {
		t.Fatalf("cluster up: %v", r)
	}
	t.Logf("cluster up 3 took %v", time.Since(start).Round(time.Millisecond))
	p.env = append(baseEnv(), readEnvFile(t, filepath.Join(dir, "compose.env"))...)
	for _, n := range []string{"n1", "n2", "n3"} {
		p.waitHealthy(n)
	}

	envsh, err := os.ReadFile(filepath.Join(dir, "env.sh"))
	if err != nil {
		t.Fatal(err)
	}
	env := baseEnv()
	for k, v := range parseExports(string(envsh)) {
		env = withVar(env, k, v)
	}
	ports := map[string]string{}
	for _, kv := range p.env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "KQ_PORT_N") {
			ports["n"+strings.TrimPrefix(k, "KQ_PORT_N")] = "localhost:" + v
		}
	}

	secret := []byte("a secret kept by containers\n")
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := keyctl(t, env, "key", "create", "app/token", "--from-file", secretFile); r.code != 0 {
		t.Fatalf("key create: %v", r)
	}
	release := func(node string) result {
		return keyctl(t, withVar(env, "KEYQUORUM_ADDR", ports[node]), "key", "get", "app/token")
	}
	if r := release("n1"); r.code != 0 || !bytes.Equal(r.stdout, secret) {
		t.Fatalf("release: %v", r)
	}

	// Kill the leader's container.
	st := keyctl(t, env, "cluster", "status")
	leader := ""
	if f := strings.Fields(string(st.stdout)); st.code == 0 && len(f) > 3 && f[2] == "leader" {
		leader = f[3]
	}
	if ports[leader] == "" {
		t.Fatalf("no leader in %v", st)
	}
	other := "n1"
	if leader == "n1" {
		other = "n2"
	}
	// The failure tolerance, before and after: 1 with all three up (t =
	// 2), 0 with the leader's container killed, 1 again when it is back.
	waitTolerance(t, env, ports[other], 1, 1)
	p.mustCompose("kill", leader)
	// Until the others elect a leader, a release says no quorum (exit 7).
	releasedBy := func(node string) {
		t.Helper()
		var r result
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if r = release(node); r.code == 0 {
				if !bytes.Equal(r.stdout, secret) {
					t.Fatalf("released through %s: %q, want the secret", node, r.stdout)
				}
				return
			}
		}
		t.Fatalf("no release through %s: %v", node, r)
	}
	releasedBy(other)
	t.Logf("released through %s with the leader %s killed", other, leader)
	waitTolerance(t, env, ports[other], 0, 0)

	p.mustCompose("start", leader)
	p.waitHealthy(leader)
	releasedBy(leader)
	waitTolerance(t, env, ports[other], 1, 1)

	cutOffPastTolerance(t, p, env, ports, secret)
	autopilotRemovesACutOffNode(t, p, env, ports, secret)

	if r := run(t, 2*time.Minute, scriptEnv, "bash", script, "down", dir); r.code != 0 {
		t.Fatalf("cluster down: %v", r)
	}
	if left := p.leftovers(); left != "" {
		t.Fatalf("left on the engine after down: %s", left)
	}
}

// TestComposeFilesAreValid: both compose files (3 and 5 nodes) parse with
// the docker-compose this machine has, with the cluster script's settings.
func TestComposeFilesAreValid(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
	}
	needBinaries(t) // for root
	for _, n := range []int{3, 5} {
		file := filepath.Join(root, "deploy", "compose", fmt.Sprintf("compose-%d.yml", n))
		r := run(t, time.Minute, append(baseEnv(), "KQ_DIR="+t.TempDir()), "docker-compose", "-f", file, "config", "--services")
		if r.code != 0 {
			t.Fatalf("compose-%d.yml: %v", n, r)
		}
		services := strings.Fields(string(r.stdout))
		if len(services) != n+1 {
			t.Errorf("compose-%d.yml has services %v, want n1..n%d and keyctl", n, services, n)
		}
	}
}
