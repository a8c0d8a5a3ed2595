package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slowExitEnv makes the test binary a stand-in for a node whose process
// takes a while to finish exiting (a keyd of 800 MiB killed at 100k keys):
// its main thread exits at once, so the process shows as a zombie, while
// another thread keeps the node's port open for slowExitHold after SIGTERM.
const (
	slowExitEnv  = "KEYQUORUM_E2E_SLOW_EXIT_ADDR"
	slowExitHold = 1500 * time.Millisecond
)

func init() {
	if os.Getenv(slowExitEnv) != "" {
		runtime.LockOSThread() // init runs on the main thread: keep main there
	}
}

// slowExit is the stand-in's body: listen, report, let the main thread exit.
func slowExit(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		time.Sleep(slowExitHold)
		ln.Close()
		os.Exit(0)
	}()
	fmt.Println("listening")
	// exit(2), not exit_group(2): only this thread ends, and the process
	// shows as a zombie while its other threads hold the port.
	syscall.Syscall(syscall.SYS_EXIT, 0, 0, 0)
}

// TestClusterStopWaitsForEveryThread: "cluster stop I" (and kill) returns
// only once node I's port is free, so that "cluster start I" right after
// it does not fail with "address already in use". A process whose main
// thread is a zombie while its other threads still exit holds its sockets.
// It runs alone (no t.Parallel): the stand-in listens on a port of the
// ephemeral range that the test frees and binds again, which a parallel
// test's outgoing connection could take in between.
func TestClusterStopWaitsForEveryThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the stand-in node needs Linux's exit(2)")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	node := exec.Command(self, "-test.run=^$")
	node.Env = append(os.Environ(), slowExitEnv+"="+addr)
	out, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- node.Wait() }()
	t.Cleanup(func() {
		node.Process.Kill()
		<-exited
	})
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "listening\n" {
		t.Fatalf("stand-in node: %q", line)
	}
	// Wait for its main thread to be a zombie, as a killed big keyd's is.
	for i := 0; ; i++ {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", node.Process.Pid))
		if _, rest, ok := strings.Cut(string(b), ") "); ok && strings.HasPrefix(rest, "Z") {
			break
		}
		if i == 500 {
			t.Fatalf("the stand-in's main thread did not exit: %s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "n1.pid"), fmt.Appendf(nil, "%d\n", node.Process.Pid), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(baseEnv(), "KEYD=/bin/true", "KEYCTL=/bin/true")
	script := filepath.Join("..", "deploy", "local", "cluster")
	if r := run(t, time.Minute, env, "bash", script, "stop", "1", dir); r.code != 0 {
		t.Fatalf("cluster stop: %v", r)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cluster stop returned while the node still held its port: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(filepath.Join(dir, "n1.pid")); !os.IsNotExist(err) {
		t.Errorf("cluster stop left the pid file: %v", err)
	}
}
