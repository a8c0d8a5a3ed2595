package jepsen

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Ports every node uses on its own address.
const (
	apiPort    = 8740
	raftPort   = 8741
	gossipPort = 8742
)

// proc is one keyd process, started in its slot's namespace.
type proc struct {
	slot     int
	id       string
	cmd      *exec.Cmd
	log      *os.File
	done     chan struct{} // closed when the process has exited
	expected atomic.Bool   // the suite killed or stopped it
	state    *os.ProcessState
}

// startKeyd starts keyd in a slot's namespace with its data directory,
// appending its output to logPath, and waits until its API port accepts
// connections.
// exited, if not nil, is called when the process exits.
// clockFile is the file the clock nemesis writes the node's clock offset
// to (honoured only by keyd built with -tags keyquorum_clock_offset).
func startKeyd(ctx context.Context, nw *Network, keyd string, slot int, id, dataDir, logPath, clockFile string, requestTimeout time.Duration, exited func(*proc)) (*proc, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	ip := nw.SlotIP(slot)
	fmt.Fprintf(lf, "=== jepsen: starting %s in %s at %s ===\n", id, slotNS(slot), time.Now().Format(time.RFC3339Nano))
	// ip execs keyd in place, so the process ip starts is keyd itself and
	// signals reach it directly.
	cmd := exec.Command("ip", "netns", "exec", slotNS(slot), keyd,
		"--id", id, "--data-dir", dataDir,
		"--api-addr", fmt.Sprintf("%s:%d", ip, apiPort),
		"--raft-addr", fmt.Sprintf("%s:%d", ip, raftPort),
		"--gossip-addr", fmt.Sprintf("%s:%d", ip, gossipPort),
		"--request-timeout", requestTimeout.String(),
		// Small and frequent snapshots, so lagging and restarted nodes
		// catch up by installing one while the nemesis works (Raft's
		// defaults, 8192 entries checked every 2 minutes, would never
		// snapshot in a run this short).
		"--snapshot-threshold", "64", "--trailing-logs", "16", "--snapshot-interval", "2s")
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(keydEnv(), envClockOffsetFile+"="+clockFile)
	// Its own process group: a Ctrl-C meant for the suite must not reach
	// the nodes before the suite has healed and checked them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	fmt.Fprintf(lf, "=== jepsen: %s is pid %d ===\n", id, cmd.Process.Pid)
	p := &proc{slot: slot, id: id, cmd: cmd, log: lf, done: make(chan struct{})}
	go func() {
		state, _ := cmd.Process.Wait()
		fmt.Fprintf(lf, "=== jepsen: %s exited: %v at %s ===\n", id, state, time.Now().Format(time.RFC3339Nano))
		lf.Close()
		p.state = state
		close(p.done)
		if exited != nil {
			exited(p)
		}
	}()
	if err := waitPort(ctx, fmt.Sprintf("%s:%d", ip, apiPort), 30*time.Second, p.done); err != nil {
		p.kill()
		return nil, fmt.Errorf("node %s: %w (see %s)", id, err, logPath)
	}
	return p, nil
}

// envClockOffsetFile is cluster.EnvTestClockOffsetFile, which exists only
// in the build with the clock hook.
const envClockOffsetFile = "KEYQUORUM_TEST_CLOCK_OFFSET_FILE"

// keydEnv is this process's environment without KEYQUORUM_ variables,
// with the race detector told to report every race and carry on.
func keydEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYQUORUM_") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	return append(env, "GORACE=halt_on_error=0")
}

// waitPort waits until addr accepts TCP connections.
func waitPort(ctx context.Context, addr string, limit time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before opening %s", addr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("did not open %s within %v", addr, limit)
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) signal(sig syscall.Signal) {
	if p.alive() {
		p.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (p *proc) kill() {
	p.expected.Store(true)
	p.signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to stop with SIGTERM (after a SIGCONT, in case it
// is paused) and kills it if it has not exited within limit. It reports
// whether it stopped by itself.
func (p *proc) stop(limit time.Duration) bool {
	p.expected.Store(true)
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(limit):
		p.kill()
		return false
	}
}
