package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RunInner carries out one run inside kqj-ctl (see RunIsolated): it forms
// the cluster, runs the workloads under the nemesis, heals, checks, and
// writes the report into cfg.OutDir. progress receives the run's event
// log as it happens. The error is for a run that could not be carried
// out; anomalies are in the summary.
func RunInner(ctx context.Context, cfg Config, progress io.Writer) (*Summary, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	logDir := filepath.Join(cfg.OutDir, "logs")
	dataRoot := filepath.Join(cfg.OutDir, "data")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	evf, err := os.Create(filepath.Join(cfg.OutDir, "events.log"))
	if err != nil {
		return nil, err
	}
	defer evf.Close()
	clk := &clock{start: time.Now()}
	ev := &events{clock: clk, w: io.MultiWriter(evf, progress)}
	rep := &Summary{Seed: cfg.Seed, Nemesis: cfg.Nemesis, Workloads: cfg.Workloads, Nodes: cfg.Nodes,
		Duration: cfg.Duration.String(), Keyd: cfg.Keyd, Started: clk.start, Reproduce: reproduce(&cfg)}
	rep.Schedule = Plan(cfg.Seed, cfg.Nemesis, cfg.Duration, cfg.QuietMin, cfg.QuietMax, cfg.HoldMin, cfg.HoldMax)
	ev.logf("run: seed %d, nemesis %s, workloads %v, %v under faults; %d faults planned", cfg.Seed, cfg.Nemesis, cfg.Workloads, cfg.Duration, len(rep.Schedule))

	nw := &Network{Subnet: cfg.Subnet, Slots: cfg.Nodes + 1}
	d := newDB(&cfg, nw, ev, dataRoot, logDir)
	defer d.killAll()
	h := newHistory(clk, cfg.OpTimeout)
	e := &env{cfg: &cfg, db: d, h: h}

	finish := func(runErr error) (*Summary, error) {
		d.reportExits(rep)
		ops := h.snapshot()
		rep.count(ops)
		rep.Wall = time.Since(clk.start).Round(time.Millisecond).String()
		if runErr != nil {
			rep.Error = runErr.Error()
		}
		rep.Valid = rep.Error == "" && len(rep.Anomalies) == 0
		if err := d.unmountAll(!rep.Valid); err != nil {
			rep.warn("unmounting the data disks: %v", err)
		}
		if f, err := os.Create(filepath.Join(cfg.OutDir, "history.jsonl")); err == nil {
			writeJSONLines(f, ops)
			f.Close()
		}
		if err := rep.write(cfg.OutDir); err != nil {
			return rep, err
		}
		if rep.Valid {
			os.RemoveAll(dataRoot) // the logs and the history are kept
		}
		ev.logf("run: %s", strings.SplitN(summaryLine(rep), "\n", 2)[0])
		return rep, nil
	}

	if err := d.form(ctx); err != nil {
		d.stopAll(5 * time.Second)
		return finish(fmt.Errorf("forming the cluster: %w", err))
	}
	reg := newRegister(e)
	set := &set{e: e}
	rev := &revoke{e: e}
	sig := &revoke{e: e, sign: true}
	if cfg.has(WorkloadRegister) {
		if err := reg.setup(ctx); err != nil {
			d.stopAll(5 * time.Second)
			return finish(err)
		}
	}

	// The faults and the workloads run for Duration; then the workers
	// finish the operations they have begun (each bounded by OpTimeout).
	stop, stopNow := context.WithTimeout(ctx, cfg.Duration)
	defer stopNow()
	begin := clk.now()
	ev.logf("run: workloads start")
	var wg sync.WaitGroup
	if cfg.has(WorkloadRegister) {
		wg.Go(func() { reg.run(stop, ctx) })
	}
	if cfg.has(WorkloadSet) {
		wg.Go(func() { set.run(stop, ctx) })
	}
	if cfg.has(WorkloadRevoke) {
		wg.Go(func() { rev.run(stop, ctx) })
	}
	if cfg.has(WorkloadSign) {
		wg.Go(func() { sig.run(stop, ctx) })
	}
	nm := &nemesis{db: d, clock: clk, seed: cfg.Seed, rep: rep}
	rep.Faults = nm.run(stop, ctx, begin, rep.Schedule)
	<-stop.Done()
	ev.logf("run: faults over; waiting for the workers' last operations")
	wg.Wait()
	if ctx.Err() != nil {
		d.stopAll(5 * time.Second)
		return finish(errors.New("interrupted"))
	}

	ev.logf("run: healing")
	if err := d.heal(ctx); err != nil {
		rep.warn("healing: %v", err)
	}
	d.converge(ctx, rep, cfg.SettleTimeout)
	ev.logf("run: final reads")
	ops := h.snapshot()
	if cfg.has(WorkloadSet) {
		set.final(ctx, rep, ops)
	}
	if cfg.has(WorkloadRevoke) {
		rev.final(ctx, rep, ops)
		rev.check(rep, ops)
	}
	if cfg.has(WorkloadSign) {
		sig.final(ctx, rep, ops)
		sig.check(rep, ops)
	}
	checkBounded(rep, ops, rep.Faults, cfg.OpTimeout)
	ev.logf("run: stopping the nodes")
	rep.SlowStop = d.stopAll(15 * time.Second)
	for _, id := range rep.SlowStop {
		rep.anomaly("stop", "node %s did not stop within 15 s of SIGTERM and was killed", id)
	}
	scanLogs(logDir, rep)
	if cfg.has(WorkloadRegister) {
		ev.logf("run: checking linearizability")
		reg.check(rep, ops, rep.Faults)
	}
	return finish(nil)
}

// summaryLine is the summary's first lines.
func summaryLine(s *Summary) string {
	var b strings.Builder
	s.Text(&b)
	return b.String()
}

// reproduce is the command that runs the same schedule again.
func reproduce(c *Config) string {
	cmd := fmt.Sprintf("jepsen run -seed %d -nemesis %s -workloads %s -duration %s -nodes %d",
		c.Seed, c.Nemesis, strings.Join(c.Workloads, ","), c.Duration, c.Nodes)
	if c.RegisterKeys != DefaultRegisterKeys || c.RegisterWorkers != DefaultRegisterWorker {
		cmd += fmt.Sprintf(" -register-keys %d -register-workers %d", c.RegisterKeys, c.RegisterWorkers)
	}
	return cmd
}

// lockPath serializes runs on a machine: they share the namespace names.
const lockPath = "/run/keyquorum-jepsen.lock"

// ErrBusy is returned when another run holds the machine.
var ErrBusy = errors.New("another jepsen run is using this machine")

// lockMachine takes the machine's run lock, or fails with ErrBusy.
func lockMachine() (unlock func(), err error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (%s is locked)", ErrBusy, lockPath)
	}
	return func() { f.Close() }, nil
}

// RunIsolated carries out one run: it checks the host, removes what an
// earlier run left, creates the namespaces, runs self (the jepsen
// binary) with "inner -config FILE" inside kqj-ctl, and tears everything
// down, whatever happened. Cancelling ctx asks the inner run to stop.
func RunIsolated(ctx context.Context, cfg Config, self string, progress io.Writer) (*Summary, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := CheckHost(cfg.Subnet); err != nil {
		return nil, err
	}
	unlock, err := lockMachine()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(cfg.OutDir)
	if err != nil {
		return nil, err
	}
	cfg.OutDir = abs
	if cfg.Keyd, err = filepath.Abs(cfg.Keyd); err != nil {
		return nil, err
	}
	if err := Teardown(context.Background()); err != nil {
		return nil, fmt.Errorf("removing an earlier run's namespaces: %w", err)
	}
	nw := &Network{Subnet: cfg.Subnet, Slots: cfg.Nodes + 1}
	defer func() {
		if err := Teardown(context.Background()); err != nil {
			fmt.Fprintf(progress, "jepsen: teardown: %v\n", err)
		}
	}()
	if err := nw.Setup(context.Background()); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(cfg.OutDir, "config.json")
	b, err := json.MarshalIndent(&cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(cfg.OutDir, "summary.json"))
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ctlNS, self, "inner", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = progress, progress
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Minute
	runErr := cmd.Run()
	b, err = os.ReadFile(filepath.Join(cfg.OutDir, "summary.json"))
	if err != nil {
		return nil, fmt.Errorf("the inner run wrote no summary (%v): %w", runErr, err)
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadConfig reads a configuration RunIsolated wrote.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}
