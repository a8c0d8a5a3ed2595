package jepsen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CampaignConfig is several runs. Run i has seed Seed+i and the nemesis
// Nemeses[i % len(Nemeses)], or without Nemeses the default rotation:
// each nemesis once, then three mixed schedules, and again; the other
// settings are Base's.
type CampaignConfig struct {
	Base    Config
	Runs    int
	Seed    int64 // 0 picks one from the clock
	Nemeses []string
}

// nemesis is run i's nemesis.
func (cc *CampaignConfig) nemesis(i int) string {
	rotation := cc.Nemeses
	if len(rotation) == 0 {
		rotation = append(slices.Clone(Nemeses), "mixed", "mixed", "mixed")
	}
	return rotation[i%len(rotation)]
}

// CampaignSummary is the campaign's report.
type CampaignSummary struct {
	Seed  int64         `json:"seed"`
	Runs  []CampaignRun `json:"runs"`
	Wall  string        `json:"wall"`
	Valid bool          `json:"valid"`
}

// CampaignRun is one run of a campaign.
type CampaignRun struct {
	Dir     string   `json:"dir"`
	Summary *Summary `json:"summary,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Campaign carries out the runs one after the other, each in its own
// directory under Base.OutDir, and writes campaign.txt and campaign.json
// there.
func Campaign(ctx context.Context, cc CampaignConfig, self string, progress io.Writer) (*CampaignSummary, error) {
	if cc.Seed == 0 {
		cc.Seed = time.Now().UnixNano() % 1_000_000_000
	}
	if cc.Runs <= 0 {
		cc.Runs = 1
	}
	began := time.Now()
	out := &CampaignSummary{Seed: cc.Seed, Valid: true}
	for i := range cc.Runs {
		if ctx.Err() != nil {
			break
		}
		cfg := cc.Base
		cfg.Seed = cc.Seed + int64(i)
		cfg.Nemesis = cc.nemesis(i)
		cfg.OutDir = filepath.Join(cc.Base.OutDir, fmt.Sprintf("%02d-%s-%d", i+1, cfg.Nemesis, cfg.Seed))
		fmt.Fprintf(progress, "=== run %d of %d: seed %d, nemesis %s → %s\n", i+1, cc.Runs, cfg.Seed, cfg.Nemesis, cfg.OutDir)
		s, err := RunIsolated(ctx, cfg, self, progress)
		r := CampaignRun{Dir: cfg.OutDir, Summary: s}
		if err != nil {
			r.Error = err.Error()
		}
		if err != nil || s == nil || !s.Valid {
			out.Valid = false
		}
		out.Runs = append(out.Runs, r)
		if s != nil {
			fmt.Fprintf(progress, "=== run %d: %s", i+1, summaryLine(s))
		}
	}
	out.Wall = time.Since(began).Round(time.Second).String()
	if len(out.Runs) < cc.Runs {
		out.Valid = false
	}
	return out, out.write(cc.Base.OutDir)
}

func (c *CampaignSummary) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "campaign.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "campaign.txt"))
	if err != nil {
		return err
	}
	c.Text(f)
	return f.Close()
}

// Text writes the campaign's table.
func (c *CampaignSummary) Text(w io.Writer) {
	verdict := "VALID"
	if !c.Valid {
		verdict = "INVALID"
	}
	fmt.Fprintf(w, "%s  campaign seed %d, %d runs, %s wall\n\n", verdict, c.Seed, len(c.Runs), c.Wall)
	fmt.Fprintf(w, "%-3s %-8s %-11s %-14s %7s %7s %7s %6s %9s %8s  %s\n", "#", "verdict", "seed", "nemesis", "ops", "ok", "unknown", "faults", "anomalies", "wall", "dir")
	var ops, ok, unknown, faults, anomalies int
	for i, r := range c.Runs {
		s := r.Summary
		if s == nil {
			fmt.Fprintf(w, "%-3d %-8s %s\n", i+1, "ERROR", r.Error)
			continue
		}
		v := "valid"
		switch {
		case s.Error != "":
			v = "ERROR"
		case !s.Valid:
			v = "INVALID"
		}
		all := s.Ops["all"]
		if all == nil {
			all = &Counts{}
		}
		fmt.Fprintf(w, "%-3d %-8s %-11d %-14s %7d %7d %7d %6d %9d %8s  %s\n", i+1, v, s.Seed, s.Nemesis, all.Total, all.OK, all.Unknown, len(s.Faults), len(s.Anomalies), s.Wall, filepath.Base(r.Dir))
		ops, ok, unknown, faults, anomalies = ops+all.Total, ok+all.OK, unknown+all.Unknown, faults+len(s.Faults), anomalies+len(s.Anomalies)
		for _, a := range s.Anomalies {
			fmt.Fprintf(w, "      [%s] %s\n", a.Check, strings.TrimSpace(a.Detail))
		}
		if s.Error != "" {
			fmt.Fprintf(w, "      error: %s\n", s.Error)
		}
	}
	fmt.Fprintf(w, "%-3s %-8s %-11s %-14s %7d %7d %7d %6d %9d\n", "", "total", "", "", ops, ok, unknown, faults, anomalies)
	type tally struct{ runs, valid int }
	by := map[string]*tally{}
	for _, r := range c.Runs {
		if r.Summary == nil {
			continue
		}
		t := by[r.Summary.Nemesis]
		if t == nil {
			t = &tally{}
			by[r.Summary.Nemesis] = t
		}
		t.runs++
		if r.Summary.Valid {
			t.valid++
		}
	}
	fmt.Fprintf(w, "\nby nemesis: runs, valid\n")
	for _, name := range slices.Sorted(maps.Keys(by)) {
		fmt.Fprintf(w, "  %-16s %3d %3d\n", name, by[name].runs, by[name].valid)
	}
}
