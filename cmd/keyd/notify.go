package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// systemd's service notification protocol (sd_notify(3)), written here
// rather than taken from a library: one datagram of "KEY=VALUE" lines to
// the unix socket $NOTIFY_SOCKET names. keyd sends READY=1 once its API
// answers (and, for a node in a cluster, after Raft has opened its log and
// started, which NewNode does before the API is served), WATCHDOG=1 every
// half of $WATCHDOG_USEC while its API still answers, and STOPPING=1 when
// it shuts down. Without $NOTIFY_SOCKET, nothing is sent.

// notifier sends state lines to the service manager.
type notifier struct {
	addr *net.UnixAddr
}

// notifierFrom returns the notifier of $NOTIFY_SOCKET as getenv reads it,
// or nil when there is none (keyd not run by systemd with Type=notify).
// A name beginning with "@" is in the abstract namespace.
func notifierFrom(getenv func(string) string) (*notifier, error) {
	path := getenv("NOTIFY_SOCKET")
	switch {
	case path == "":
		return nil, nil
	case !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@"):
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q is neither a path nor an abstract socket name", path)
	}
	// Go maps a leading "@" to the abstract namespace's NUL byte.
	return &notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}, nil
}

// send sends one datagram of state lines.
func (n *notifier) send(state string) error {
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify socket %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify socket %s: %w", n.addr.Name, err)
	}
	return nil
}

// watchdogInterval is how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC, if it is set and $WATCHDOG_PID, when set, is pid; 0
// when there is no watchdog.
func watchdogInterval(getenv func(string) string, pid int) (time.Duration, error) {
	usec := getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, nil
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return 0, nil // the watchdog is another process's
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC=%q is not a positive number of microseconds", usec)
	}
	return time.Duration(u) * time.Microsecond / 2, nil
}

// probe reports whether the node answers, with a line for STATUS=.
type probe func(ctx context.Context) (status string, err error)

// serveSystemd tells the service manager when the node is ready and keeps
// its watchdog fed while the node answers, until ctx ends. It returns
// at once when keyd does not run under a service manager that listens.
// A probe that fails is logged; the watchdog is then not fed, so that
// systemd restarts a node whose API hangs (WatchdogSec).
func serveSystemd(ctx context.Context, getenv func(string) string, pid int, check probe, log *slog.Logger) error {
	n, err := notifierFrom(getenv)
	if err != nil || n == nil {
		return err
	}
	interval, err := watchdogInterval(getenv, pid)
	if err != nil {
		return err
	}
	// Ready: the first time the API answers.
	retry := 50 * time.Millisecond
	var status string
	for {
		status, err = checkWithin(ctx, check, time.Second)
		if err == nil {
			break
		}
		log.Debug("not ready yet", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
		retry = min(2*retry, time.Second)
	}
	if err := n.send("READY=1\nSTATUS=" + status); err != nil {
		return err
	}
	if interval == 0 {
		return nil
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// A probe must answer well within the interval, or the ping
		// that follows it is late.
		status, err := checkWithin(ctx, check, interval/2)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("watchdog: the node's API does not answer; not notifying systemd", "err", err)
			continue
		}
		if err := n.send("WATCHDOG=1\nSTATUS=" + status); err != nil {
			log.Warn("watchdog", "err", err)
		}
	}
}

func checkWithin(ctx context.Context, check probe, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return check(ctx)
}

// notifyStopping tells the service manager that keyd is shutting down;
// without $NOTIFY_SOCKET it does nothing.
func notifyStopping(getenv func(string) string) error {
	n, err := notifierFrom(getenv)
	if err != nil || n == nil {
		return err
	}
	return n.send("STOPPING=1")
}
