package jepsen

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// NodeState is one member's own report of itself.
type NodeState struct {
	Node      string   `json:"node"`
	Applied   uint64   `json:"applied"`
	StateHash string   `json:"state_hash"`
	Epoch     uint64   `json:"epoch"`
	Resharing bool     `json:"resharing"`
	Members   []string `json:"members"`
	Err       string   `json:"error,omitempty"`
}

// observe asks every member for its status.
func (d *db) observe(ctx context.Context) []NodeState {
	var out []NodeState
	for _, n := range d.members() {
		ns := NodeState{Node: d.nodeID(n)}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := d.client(n).Status(cctx)
		cancel()
		if err != nil {
			ns.Err = err.Error()
			out = append(out, ns)
			continue
		}
		ns.Applied, ns.Epoch, ns.Resharing = st.Applied, st.Epoch, st.Resharing != nil
		for _, m := range st.Members {
			ns.Members = append(ns.Members, m.ID)
			if m.ID == st.Node {
				ns.StateHash = m.StateHash
			}
		}
		slices.Sort(ns.Members)
		out = append(out, ns)
	}
	return out
}

// converged reports whether every member answered, agrees on the
// members, is not resharing, and has the same applied index and state
// hash as the others.
func converged(states []NodeState, members []string) bool {
	if len(states) == 0 {
		return false
	}
	first := states[0]
	for _, s := range states {
		if s.Err != "" || s.Resharing || s.StateHash == "" || !slices.Equal(s.Members, members) ||
			s.Applied != first.Applied || s.StateHash != first.StateHash || s.Epoch != first.Epoch {
			return false
		}
	}
	return true
}

// converge waits until the members have converged, and reports an
// anomaly with their last states if they do not within limit.
func (d *db) converge(ctx context.Context, rep *Summary, limit time.Duration) {
	deadline := time.Now().Add(limit)
	began := time.Now()
	var states []NodeState
	for {
		var members []string
		for _, n := range d.members() {
			members = append(members, d.nodeID(n))
		}
		slices.Sort(members)
		states = d.observe(ctx)
		if converged(states, members) {
			rep.Final = states
			rep.SettledIn = time.Since(began).Round(time.Millisecond).String()
			d.ev.logf("run: the members agree after %s", rep.SettledIn)
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	rep.Final = states
	var lines []string
	for _, s := range states {
		if s.Err != "" {
			lines = append(lines, fmt.Sprintf("%s: %s", s.Node, s.Err))
			continue
		}
		lines = append(lines, fmt.Sprintf("%s: applied %d hash %.12s epoch %d resharing %v members %v", s.Node, s.Applied, s.StateHash, s.Epoch, s.Resharing, s.Members))
	}
	check := "converge"
	if diverged(states) {
		check = "diverged"
	}
	rep.anomaly(check, "the members did not reach the same applied index and state hash within %v after healing: %s", limit, strings.Join(lines, "; "))
}

// diverged reports two members at the same applied index with different
// state hashes: a safety violation, not slowness.
func diverged(states []NodeState) bool {
	at := map[uint64]string{}
	for _, s := range states {
		if s.Err != "" || s.StateHash == "" {
			continue
		}
		if h, ok := at[s.Applied]; ok && h != s.StateHash {
			return true
		}
		at[s.Applied] = s.StateHash
	}
	return false
}

// logMarkers are what no node's log may contain.
var logMarkers = []string{"panic:", "WARNING: DATA RACE", "fatal error:"}

// scanLogs reports every line of the nodes' logs with a marker.
func scanLogs(dir string, rep *Summary) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			rep.warn("reading %s: %v", f, err)
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for line := 1; sc.Scan(); line++ {
			for _, m := range logMarkers {
				if strings.Contains(sc.Text(), m) {
					rep.anomaly("log", "%s:%d: %s", filepath.Base(f), line, strings.TrimSpace(sc.Text()))
				}
			}
		}
		fh.Close()
	}
}

// checkBounded reports operations that ran into the client's deadline
// while no node was paused and no link slowed: every call is bounded by
// keyd's request timeout, so a node should have answered, if only "no
// quorum" (docs/architecture.md, Consistency).
func checkBounded(rep *Summary, ops []Op, windows []Window, deadline time.Duration) {
	for _, op := range ops {
		if !op.Timeout {
			continue
		}
		excused := slices.ContainsFunc(windows, func(w Window) bool {
			faults := strings.Split(w.Fault, "+")
			return (slices.Contains(faults, NemesisPause) || slices.Contains(faults, NemesisSlow)) && w.Start <= op.Return && w.End >= op.Call
		})
		if !excused {
			rep.anomaly("bounded", "#%d %s %s on %s (%s–%s) got no answer within the client's %v, with no node paused and no link slowed",
				op.Index, op.F, op.Key, op.Node, ms(op.Call), ms(op.Return), deadline)
		}
	}
}
