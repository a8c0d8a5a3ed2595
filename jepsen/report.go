package jepsen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Summary is a run's report; summary.json holds it and summary.txt says
// it in words.
type Summary struct {
	Seed      int64    `json:"seed"`
	Nemesis   string   `json:"nemesis"`
	Workloads []string `json:"workloads"`
	Nodes     int      `json:"nodes"`
	Duration  string   `json:"duration"`
	Keyd      string   `json:"keyd"`
	Reproduce string   `json:"reproduce"`

	Started time.Time `json:"started"`
	Wall    string    `json:"wall"`

	Ops      map[string]*Counts `json:"ops"` // by workload, and "all"
	Schedule []Step             `json:"schedule"`
	Faults   []Window           `json:"faults"`

	Linearizable map[string]string `json:"linearizable,omitempty"` // register key -> Ok, Illegal or Unknown
	Set          *SetSummary       `json:"set,omitempty"`
	Revoke       *RevokeSummary    `json:"revoke,omitempty"`
	Sign         *RevokeSummary    `json:"sign,omitempty"` // successful releases are signatures
	Final        []NodeState       `json:"final,omitempty"`
	SettledIn    string            `json:"settled_in,omitempty"`
	SlowStop     []string          `json:"slow_stop,omitempty"` // nodes SIGTERM did not stop in time

	Anomalies []Anomaly `json:"anomalies"`
	Warnings  []string  `json:"warnings,omitempty"`
	Error     string    `json:"error,omitempty"` // the run could not be carried out
	Valid     bool      `json:"valid"`

	mu sync.Mutex
}

// Counts are a workload's operations by outcome.
type Counts struct {
	Total   int `json:"total"`
	OK      int `json:"ok"`
	Fail    int `json:"fail"`
	Unknown int `json:"unknown"`
}

// SetSummary is what the set workload found after healing.
type SetSummary struct {
	Acknowledged   int `json:"acknowledged"`
	Refused        int `json:"refused"`
	UnknownPresent int `json:"unknown_present"` // creations of unknown outcome that happened
	Releases       int `json:"releases"`        // releases made by the final check
}

// RevokeSummary is what the revoke workload saw.
type RevokeSummary struct {
	Keys               int `json:"keys"`
	SuccessfulReleases int `json:"successful_releases"`
	LateReleases       int `json:"late_releases"`
}

// Anomaly is a check that failed.
type Anomaly struct {
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

// At most this many anomalies of one check are kept; the rest are
// counted.
const anomaliesPerCheck = 20

func (s *Summary) anomaly(check, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.Anomalies {
		if a.Check == check {
			n++
		}
	}
	switch {
	case n < anomaliesPerCheck:
		s.Anomalies = append(s.Anomalies, Anomaly{Check: check, Detail: fmt.Sprintf(format, args...)})
	case n == anomaliesPerCheck:
		s.Anomalies = append(s.Anomalies, Anomaly{Check: check, Detail: "more anomalies of this check were left out"})
	}
}

func (s *Summary) warn(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Warnings = append(s.Warnings, fmt.Sprintf(format, args...))
}

// count fills Ops from the history.
func (s *Summary) count(ops []Op) {
	s.Ops = map[string]*Counts{"all": {}}
	for _, op := range ops {
		c := s.Ops[op.Workload]
		if c == nil {
			c = &Counts{}
			s.Ops[op.Workload] = c
		}
		for _, c := range []*Counts{c, s.Ops["all"]} {
			c.Total++
			switch op.Outcome {
			case OK:
				c.OK++
			case Fail:
				c.Fail++
			case Unknown:
				c.Unknown++
			}
		}
	}
}

// faultAnnotations marks the fault windows in porcupine's visualization.
func faultAnnotations(windows []Window) []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, w := range windows {
		details := w.Detail
		if w.Err != "" {
			details += " (" + w.Err + ")"
		}
		out = append(out, porcupine.Annotation{Tag: "nemesis", Start: w.Start, End: w.End,
			Description: w.Fault, Details: details, BackgroundColor: "#ffd6cc"})
	}
	return out
}

// write writes summary.json and summary.txt into dir.
func (s *Summary) write(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "summary.txt"))
	if err != nil {
		return err
	}
	s.Text(f)
	return f.Close()
}

// Text writes the summary in words.
func (s *Summary) Text(w io.Writer) {
	verdict := "VALID"
	switch {
	case s.Error != "":
		verdict = "ERROR"
	case !s.Valid:
		verdict = "INVALID"
	}
	fmt.Fprintf(w, "%s  seed %d, nemesis %s, workloads %s, %d nodes, %s under faults, %s wall\n",
		verdict, s.Seed, s.Nemesis, strings.Join(s.Workloads, ","), s.Nodes, s.Duration, s.Wall)
	fmt.Fprintf(w, "reproduce: %s\n", s.Reproduce)
	if s.Error != "" {
		fmt.Fprintf(w, "error: %s\n", s.Error)
	}
	fmt.Fprintf(w, "\noperations: total, ok / fail / unknown\n")
	for _, name := range slices.Sorted(maps.Keys(s.Ops)) {
		c := s.Ops[name]
		fmt.Fprintf(w, "  %-9s %6d  %6d / %5d / %4d\n", name, c.Total, c.OK, c.Fail, c.Unknown)
	}
	byFault := map[string]int{}
	for _, f := range s.Faults {
		for _, name := range strings.Split(f.Fault, "+") {
			byFault[name]++
		}
	}
	fmt.Fprintf(w, "\nfaults injected: %d", len(s.Faults))
	for _, k := range slices.Sorted(maps.Keys(byFault)) {
		fmt.Fprintf(w, "  %s×%d", k, byFault[k])
	}
	fmt.Fprintln(w)
	for _, f := range s.Faults {
		fmt.Fprintf(w, "  %8s – %8s  %-20s %s", ms(f.Start), ms(f.End), f.Fault, f.Detail)
		if f.Err != "" {
			fmt.Fprintf(w, "  ERROR: %s", f.Err)
		}
		fmt.Fprintln(w)
	}
	if len(s.Linearizable) > 0 {
		fmt.Fprintf(w, "\nlinearizability (porcupine):")
		for _, k := range slices.Sorted(maps.Keys(s.Linearizable)) {
			fmt.Fprintf(w, "  %s %s", k, s.Linearizable[k])
		}
		fmt.Fprintln(w)
	}
	if st := s.Set; st != nil {
		fmt.Fprintf(w, "set: %d acknowledged, %d refused, %d of unknown outcome present, %d final releases\n",
			st.Acknowledged, st.Refused, st.UnknownPresent, st.Releases)
	}
	if rv := s.Revoke; rv != nil {
		fmt.Fprintf(w, "revoke: %d keys, %d successful releases, %d after an acknowledged revocation\n", rv.Keys, rv.SuccessfulReleases, rv.LateReleases)
	}
	if sg := s.Sign; sg != nil {
		fmt.Fprintf(w, "sign: %d keys, %d signatures, %d after an acknowledged revocation\n", sg.Keys, sg.SuccessfulReleases, sg.LateReleases)
	}
	if len(s.Final) > 0 {
		fmt.Fprintf(w, "final state (settled in %s):\n", s.SettledIn)
		for _, n := range s.Final {
			if n.Err != "" {
				fmt.Fprintf(w, "  %-6s %s\n", n.Node, n.Err)
				continue
			}
			fmt.Fprintf(w, "  %-6s applied %d  hash %.16s  epoch %d\n", n.Node, n.Applied, n.StateHash, n.Epoch)
		}
	}
	if len(s.SlowStop) > 0 {
		fmt.Fprintf(w, "did not stop within the shutdown timeout on SIGTERM: %v\n", s.SlowStop)
	}
	fmt.Fprintf(w, "\nanomalies: %d\n", len(s.Anomalies))
	for _, a := range s.Anomalies {
		fmt.Fprintf(w, "  [%s] %s\n", a.Check, a.Detail)
	}
	for _, m := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", m)
	}
}
