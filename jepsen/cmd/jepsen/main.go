// Command jepsen runs keyquorum's partition and chaos suite: real keyd
// processes in network namespaces, faults, workloads and checks (see
// package jepsen and jepsen/README.md). It needs root.
//
//	jepsen run [flags]        one run
//	jepsen campaign [flags]   several runs, one nemesis after another
//	jepsen plan [flags]       print the fault schedule of a seed
//	jepsen teardown           remove what a crashed run left
//
// The exit status is 0 when every run is valid, 1 when a check found an
// anomaly, 2 when a run could not be carried out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/keyquorum/keyquorum/jepsen"
)

const usage = `jepsen runs keyquorum's partition and chaos suite (needs root).

Usage:
  jepsen run [flags]        one run
  jepsen campaign [flags]   several runs, one nemesis after another
  jepsen plan [flags]       print the fault schedule of a seed
  jepsen teardown           remove the namespaces a crashed run left

Run "jepsen run -h" for the flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	code := 0
	switch args[0] {
	case "run", "campaign", "plan":
		code, err = runCommand(ctx, args[0], args[1:], stdout, stderr)
	case "inner":
		code, err = inner(ctx, args[1:], stdout)
	case "teardown":
		err = jepsen.Teardown(ctx)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "jepsen:", err)
		return 2
	}
	return code
}

func runCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("jepsen "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg jepsen.Config
	workloads := fs.String("workloads", strings.Join(jepsen.Workloads, ","), "comma-separated workloads: "+strings.Join(jepsen.Workloads, ", "))
	nemeses := fs.String("nemesis", "", "nemesis of a run ("+strings.Join(jepsen.Nemeses, ", ")+", mixed, none; default mixed), or comma-separated nemeses of a campaign's runs in turn (default each once, then mixed)")
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed of the fault schedule and the workloads' choices (0: from the clock; a campaign's run i uses seed+i)")
	fs.DurationVar(&cfg.Duration, "duration", jepsen.DefaultDuration, "time under faults, per run")
	fs.IntVar(&cfg.Nodes, "nodes", jepsen.DefaultNodes, "cluster size, 3 or 5")
	fs.StringVar(&cfg.Keyd, "keyd", "bin/keyd-race", "keyd binary, built with -race")
	fs.StringVar(&cfg.OutDir, "out", "jepsen/runs/"+time.Now().Format("20060102-150405"), "report directory")
	fs.StringVar(&cfg.Subnet, "subnet", jepsen.DefaultSubnet, "first three octets of the /24 the namespaces use")
	fs.DurationVar(&cfg.HoldMin, "hold-min", jepsen.DefaultHoldMin, "shortest fault")
	fs.DurationVar(&cfg.HoldMax, "hold-max", jepsen.DefaultHoldMax, "longest fault")
	fs.DurationVar(&cfg.QuietMin, "quiet-min", jepsen.DefaultQuietMin, "shortest time between faults")
	fs.DurationVar(&cfg.QuietMax, "quiet-max", jepsen.DefaultQuietMax, "longest time between faults")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", jepsen.DefaultCheckTimeout, "bound on the linearizability check of a run")
	fs.DurationVar(&cfg.SettleTimeout, "settle-timeout", jepsen.DefaultSettleTimeout, "how long the members may take to agree after healing")
	fs.BoolVar(&cfg.HTMLAll, "html-all", false, "write the porcupine visualization of every register key, not only of failed ones")
	fs.IntVar(&cfg.RegisterKeys, "register-keys", jepsen.DefaultRegisterKeys, "register workload: keys")
	fs.IntVar(&cfg.RegisterWorkers, "register-workers", jepsen.DefaultRegisterWorker, "register workload: concurrent clients")
	runs := fs.Int("runs", 30, "campaign: number of runs")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg.Workloads = strings.Split(*workloads, ",")
	self, err := os.Executable()
	if err != nil {
		return 2, err
	}
	switch cmd {
	case "plan":
		if cfg.Seed == 0 {
			return 2, errors.New("plan needs -seed")
		}
		nemesis := *nemeses
		if nemesis == "" {
			nemesis = "mixed"
		}
		for _, s := range jepsen.Plan(cfg.Seed, nemesis, cfg.Duration, cfg.QuietMin, cfg.QuietMax, cfg.HoldMin, cfg.HoldMax) {
			fmt.Fprintln(stdout, s)
		}
		return 0, nil
	case "run":
		cfg.Nemesis = *nemeses
		s, err := jepsen.RunIsolated(ctx, cfg, self, stderr)
		if err != nil {
			return 2, err
		}
		fmt.Fprintln(stdout)
		s.Text(stdout)
		fmt.Fprintf(stdout, "report: %s\n", cfg.OutDir)
		return exitCode(s), nil
	}
	cc := jepsen.CampaignConfig{Base: cfg, Runs: *runs, Seed: cfg.Seed}
	if *nemeses != "" {
		cc.Nemeses = strings.Split(*nemeses, ",")
	}
	c, err := jepsen.Campaign(ctx, cc, self, stderr)
	if c != nil {
		fmt.Fprintln(stdout)
		c.Text(stdout)
		fmt.Fprintf(stdout, "report: %s\n", cfg.OutDir)
	}
	if err != nil {
		return 2, err
	}
	for _, r := range c.Runs {
		if r.Summary == nil || r.Summary.Error != "" {
			return 2, nil
		}
	}
	if !c.Valid {
		return 1, nil
	}
	return 0, nil
}

func exitCode(s *jepsen.Summary) int {
	switch {
	case s.Error != "":
		return 2
	case !s.Valid:
		return 1
	}
	return 0
}

// inner is the half of a run that lives in the control namespace.
func inner(ctx context.Context, args []string, progress io.Writer) (int, error) {
	fs := flag.NewFlagSet("jepsen inner", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file RunIsolated wrote")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	cfg, err := jepsen.LoadConfig(*path)
	if err != nil {
		return 2, err
	}
	s, err := jepsen.RunInner(ctx, cfg, progress)
	if err != nil {
		return 2, err
	}
	return exitCode(s), nil
}
