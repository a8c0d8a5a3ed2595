package jepsen

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Defaults of a run.
const (
	DefaultNodes          = 3
	DefaultDuration       = 60 * time.Second
	DefaultOpTimeout      = 15 * time.Second
	DefaultRequestTimeout = 3 * time.Second
	DefaultSettleTimeout  = 2 * time.Minute
	DefaultCheckTimeout   = 2 * time.Minute
	DefaultQuietMin       = 3 * time.Second
	DefaultQuietMax       = 6 * time.Second
	DefaultHoldMin        = 5 * time.Second
	DefaultHoldMax        = 10 * time.Second
	DefaultRegisterKeys   = 2
	DefaultRegisterWorker = 8
	DefaultSetWorkers     = 1
	DefaultSetInterval    = 150 * time.Millisecond
)

// Workload names.
const (
	WorkloadRegister = "register"
	WorkloadSet      = "set"
	WorkloadRevoke   = "revoke"
	WorkloadSign     = "sign"
)

// Workloads is every workload, in the order a run starts them.
var Workloads = []string{WorkloadRegister, WorkloadSet, WorkloadRevoke, WorkloadSign}

// Config is one run. The zero values of durations and counts take the
// defaults above; Keyd and OutDir are required.
type Config struct {
	// Seed picks the fault schedule and the workloads' choices; the same
	// seed gives the same schedule. 0 picks a seed from the clock.
	Seed int64 `json:"seed"`
	// Nemesis is a nemesis name (see Nemeses), "mixed" for a random
	// schedule of all of them, or "none".
	Nemesis string `json:"nemesis"`
	// Workloads run side by side on their own keys.
	Workloads []string `json:"workloads"`
	// Duration is the time the workloads run under the nemesis.
	Duration time.Duration `json:"duration"`
	// Nodes is the cluster's size, 3 or 5.
	Nodes int `json:"nodes"`
	// Keyd is the keyd binary, built with -race.
	Keyd string `json:"keyd"`
	// OutDir receives the report, the history and the nodes' logs.
	OutDir string `json:"out_dir"`
	// Subnet is the first three octets of the run's /24.
	Subnet string `json:"subnet"`

	// Quiet and hold bound the random time between faults and the time a
	// fault lasts.
	QuietMin time.Duration `json:"quiet_min"`
	QuietMax time.Duration `json:"quiet_max"`
	HoldMin  time.Duration `json:"hold_min"`
	HoldMax  time.Duration `json:"hold_max"`

	// OpTimeout bounds one client operation; an operation that runs out
	// of it has an unknown outcome.
	OpTimeout time.Duration `json:"op_timeout"`
	// RequestTimeout is keyd's --request-timeout.
	RequestTimeout time.Duration `json:"request_timeout"`
	// SettleTimeout bounds the wait, after healing, for every node to
	// reach the same applied index and state hash.
	SettleTimeout time.Duration `json:"settle_timeout"`
	// CheckTimeout bounds the linearizability check.
	CheckTimeout time.Duration `json:"check_timeout"`

	RegisterKeys    int           `json:"register_keys"`
	RegisterWorkers int           `json:"register_workers"`
	SetWorkers      int           `json:"set_workers"`
	SetInterval     time.Duration `json:"set_interval"`

	// HTMLAll writes the porcupine visualization of every register key,
	// not only of those that failed the check.
	HTMLAll bool `json:"html_all"`
}

func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// fill sets defaults and checks the configuration.
func (c *Config) fill() error {
	orDefault(&c.Nemesis, "mixed")
	if len(c.Workloads) == 0 {
		c.Workloads = slices.Clone(Workloads)
	}
	orDefault(&c.Duration, DefaultDuration)
	orDefault(&c.Nodes, DefaultNodes)
	orDefault(&c.Subnet, DefaultSubnet)
	orDefault(&c.QuietMin, DefaultQuietMin)
	orDefault(&c.QuietMax, DefaultQuietMax)
	orDefault(&c.HoldMin, DefaultHoldMin)
	orDefault(&c.HoldMax, DefaultHoldMax)
	orDefault(&c.OpTimeout, DefaultOpTimeout)
	orDefault(&c.RequestTimeout, DefaultRequestTimeout)
	orDefault(&c.SettleTimeout, DefaultSettleTimeout)
	orDefault(&c.CheckTimeout, DefaultCheckTimeout)
	orDefault(&c.RegisterKeys, DefaultRegisterKeys)
	orDefault(&c.RegisterWorkers, DefaultRegisterWorker)
	orDefault(&c.SetWorkers, DefaultSetWorkers)
	orDefault(&c.SetInterval, DefaultSetInterval)
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano() % 1_000_000_000
	}
	var errs []error
	if c.Keyd == "" {
		errs = append(errs, errors.New("the keyd binary is required"))
	}
	if c.OutDir == "" {
		errs = append(errs, errors.New("the output directory is required"))
	}
	if c.Nodes != 3 && c.Nodes != 5 {
		errs = append(errs, fmt.Errorf("nodes must be 3 or 5, not %d", c.Nodes))
	}
	if c.Nemesis != "mixed" && c.Nemesis != "none" && !slices.Contains(Nemeses, c.Nemesis) {
		errs = append(errs, fmt.Errorf("nemesis %q is none of %s, mixed, none", c.Nemesis, strings.Join(Nemeses, ", ")))
	}
	for _, w := range c.Workloads {
		if !slices.Contains(Workloads, w) {
			errs = append(errs, fmt.Errorf("workload %q is none of %s", w, strings.Join(Workloads, ", ")))
		}
	}
	if c.QuietMin > c.QuietMax || c.HoldMin > c.HoldMax {
		errs = append(errs, errors.New("quiet and hold minimums must not exceed their maximums"))
	}
	if c.OpTimeout <= 3*c.RequestTimeout {
		errs = append(errs, fmt.Errorf("the client's op timeout (%v) must exceed three request timeouts (%v): a compare-and-swap is a read, a release and a write", c.OpTimeout, c.RequestTimeout))
	}
	return errors.Join(errs...)
}

// has reports whether the run includes a workload.
func (c *Config) has(workload string) bool { return slices.Contains(c.Workloads, workload) }
