package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
)

// notifySocket is a service manager's notification socket: a real unix
// datagram socket in a temporary directory.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
	path string
}

func newNotifySocket(t *testing.T) *notifySocket {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{t: t, conn: c, path: path}
}

// next reads the next datagram, failing the test if none comes in a
// generous bound (a hung notifier, not a slow one).
func (s *notifySocket) next() string {
	s.t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	if err != nil {
		s.t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// pending is a datagram already queued, or "" when none is.
func (s *notifySocket) pending() string {
	s.conn.SetReadDeadline(time.Now())
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestNotifyReadyAndWatchdogFromARealNode: a keyd node (unjoined, on
// loopback) under a service manager sends READY=1 once its API answers,
// with a status line saying what it waits for, then WATCHDOG=1 again and
// again at half of WATCHDOG_USEC, over a real unix datagram socket.
func TestNotifyReadyAndWatchdogFromARealNode(t *testing.T) {
	ports, err := cluster.FreeLoopbackPorts(3)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := nodeFlags{id: "n1", dataDir: t.TempDir(), apiAddr: ports[0], raftAddr: ports[1], gossipAddr: ports[2],
		requestTimeout: cluster.DefaultRequestTimeout}
	r, err := startNode(f, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.shutdown() })

	sock := newNotifySocket(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	check := func(ctx context.Context) (string, error) {
		id, err := probeNode(ctx, f.apiAddr, f.id)
		if err != nil {
			return "", err
		}
		return describe(id), nil
	}
	go func() {
		done <- serveSystemd(ctx, env(map[string]string{
			"NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": strconv.Itoa(os.Getpid()),
		}), os.Getpid(), check, log)
	}()
	ready := sock.next()
	if !strings.HasPrefix(ready, "READY=1\nSTATUS=node n1 answers") || !strings.Contains(ready, "not in a cluster yet") {
		t.Fatalf("first notification %q, want READY=1 with the node's status", ready)
	}
	for i := 0; i < 3; i++ {
		if got := sock.next(); !strings.HasPrefix(got, "WATCHDOG=1\n") {
			t.Fatalf("notification %d after ready: %q, want WATCHDOG=1", i+1, got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestNoReadyOrWatchdogWhileTheAPIDoesNotAnswer: nothing is sent before
// the first answer, and a probe that fails feeds no watchdog (so systemd
// restarts a node whose API hangs); the pings resume when it answers.
func TestNoReadyOrWatchdogWhileTheAPIDoesNotAnswer(t *testing.T) {
	sock := newNotifySocket(t)
	calls := make(chan chan error) // each probe waits for the test's verdict
	check := func(ctx context.Context) (string, error) {
		verdict := make(chan error)
		select {
		case calls <- verdict:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		select {
		case err := <-verdict:
			if err != nil {
				return "", err
			}
			return "up", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// A long watchdog: each probe has a generous bound, and the test
		// decides every probe's outcome.
		done <- serveSystemd(ctx, env(map[string]string{"NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "200000"}),
			os.Getpid(), check, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	down := errors.New("connection refused")
	// The probe runs in turn with the sends, so once the next probe has
	// started, whatever the previous outcome sent is already queued.
	answer := func(err error) { (<-calls) <- err }
	answer(down)
	answer(down)
	<-calls <- nil // answers: READY=1
	if got := sock.next(); got != "READY=1\nSTATUS=up" {
		t.Fatalf("got %q, want READY=1", got)
	}
	answer(down) // the API hangs: no ping
	v := <-calls // the next probe has started
	if got := sock.pending(); got != "" {
		t.Fatalf("sent %q after a probe failed", got)
	}
	v <- nil
	if got := sock.next(); got != "WATCHDOG=1\nSTATUS=up" {
		t.Fatalf("got %q, want WATCHDOG=1 once the API answers again", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNotifyEnvironment(t *testing.T) {
	if n, err := notifierFrom(env(nil)); n != nil || err != nil {
		t.Fatalf("no NOTIFY_SOCKET: %v, %v; want nothing to notify", n, err)
	}
	if _, err := notifierFrom(env(map[string]string{"NOTIFY_SOCKET": "relative"})); err == nil {
		t.Fatal("a relative NOTIFY_SOCKET was taken")
	}
	for _, c := range []struct {
		env  map[string]string
		want time.Duration
	}{
		{map[string]string{}, 0},
		{map[string]string{"WATCHDOG_USEC": "30000000"}, 15 * time.Second},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 15 * time.Second},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 0}, // another process's
	} {
		got, err := watchdogInterval(env(c.env), 7)
		if err != nil || got != c.want {
			t.Errorf("%v: %v, %v; want %v", c.env, got, err, c.want)
		}
	}
	if _, err := watchdogInterval(env(map[string]string{"WATCHDOG_USEC": "soon"}), 7); err == nil || !strings.Contains(err.Error(), "WATCHDOG_USEC") {
		t.Fatalf("bad WATCHDOG_USEC: %v", err)
	}
}

// TestHealthChecksTheNodeAnswers: keyd health succeeds against a running
// node (with its ID or none), and fails when another node answers or
// nothing does.
func TestHealthChecksTheNodeAnswers(t *testing.T) {
	ports, err := cluster.FreeLoopbackPorts(4)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := nodeFlags{id: "n1", dataDir: t.TempDir(), apiAddr: ports[0], raftAddr: ports[1], gossipAddr: ports[2],
		requestTimeout: cluster.DefaultRequestTimeout}
	r, err := startNode(f, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.shutdown() })
	var out strings.Builder
	if err := runHealth([]string{"--api-addr", ports[0], "--id", "n1"}, &out); err != nil || !strings.Contains(out.String(), "node n1 answers") {
		t.Fatalf("health of a running node: %v, %q", err, out.String())
	}
	t.Setenv("KEYQUORUM_API_ADDR", ports[0]) // as in the container
	if err := runHealth(nil, io.Discard); err != nil {
		t.Fatalf("health from the environment: %v", err)
	}
	if err := runHealth([]string{"--api-addr", ports[0], "--id", "n2"}, io.Discard); err == nil || !strings.Contains(err.Error(), `"n1", not "n2"`) {
		t.Fatalf("health with another node's ID: %v", err)
	}
	if err := runHealth([]string{"--api-addr", ports[3], "--timeout", "2s"}, io.Discard); err == nil || !strings.Contains(err.Error(), "no node answers") {
		t.Fatalf("health with nothing listening: %v", err)
	}
}

func TestLocalDialAddr(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0:8740": "127.0.0.1:8740", "[::]:8740": "[::1]:8740", ":8740": "127.0.0.1:8740", "10.0.0.1:8740": "10.0.0.1:8740"} {
		if got, err := localDialAddr(in); err != nil || got != want {
			t.Errorf("%s: %s, %v; want %s", in, got, err, want)
		}
	}
}
