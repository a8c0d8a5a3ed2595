package jepsen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Names of what a run creates. Everything is inside namespaces named
// with nsPrefix, so deleting those namespaces removes all of it.
const (
	nsPrefix  = "kqj-"
	ctlNS     = nsPrefix + "ctl"
	bridgeDev = nsPrefix + "br"
	nodeDev   = "eth0"
)

// DefaultSubnet is the /24 the bridge and the slots use, given as its
// first three octets. Nothing else on a machine should use it: Setup
// refuses to start if the host's namespace has an address in it.
const DefaultSubnet = "10.77.0"

// Network is the namespaces of one run: kqj-ctl with the bridge, and one
// namespace per node slot.
type Network struct {
	Subnet string // first three octets, e.g. "10.77.0"
	Slots  int    // node slots, numbered from 1
}

func slotNS(slot int) string   { return fmt.Sprintf("%ss%d", nsPrefix, slot) }
func slotVeth(slot int) string { return fmt.Sprintf("%sv%d", nsPrefix, slot) }

// BridgeIP is the address of the bridge in kqj-ctl, where clients live.
func (nw *Network) BridgeIP() string { return nw.Subnet + ".1" }

// SlotIP is the address of a slot's eth0.
func (nw *Network) SlotIP(slot int) string { return fmt.Sprintf("%s.%d", nw.Subnet, 10+slot) }

// run runs a command and returns its error with its output.
func run(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// inNS runs a command inside a namespace.
func inNS(ctx context.Context, ns, name string, args ...string) error {
	return run(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// CheckHost reports why this machine cannot run the suite, or nil: it
// needs root, ip, iptables and tc, and a subnet nobody else uses.
func CheckHost(subnet string) error {
	if syscall.Geteuid() != 0 {
		return errors.New("the suite needs root: it creates network namespaces")
	}
	for _, tool := range []string{"ip", "iptables", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the suite needs %s (apt-get install iproute2 iptables): %w", tool, err)
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return err
	}
	_, ours, err := net.ParseCIDR(subnet + ".0/24")
	if err != nil {
		return fmt.Errorf("subnet %q: %w", subnet, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ours.Contains(ipn.IP) {
			return fmt.Errorf("the host already has %s, inside the suite's subnet %s: choose another with -subnet", ipn, ours)
		}
	}
	return nil
}

// ownNamespaces lists the namespaces whose names carry the suite's
// prefix.
func ownNamespaces(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Teardown removes every namespace of the suite, this run's or one a
// crashed run left: it kills the processes inside them (only processes
// the suite started live there), then deletes them, which removes the
// bridge, the veths and every firewall rule and qdisc with them. It
// tolerates a machine with nothing to remove.
func Teardown(ctx context.Context) error {
	names, err := ownNamespaces(ctx)
	if err != nil {
		return err
	}
	// Nodes first, the control namespace (where a stale driver may live)
	// last.
	slices.SortFunc(names, func(a, b string) int {
		return boolInt(a == ctlNS) - boolInt(b == ctlNS)
	})
	var errs []error
	for _, ns := range names {
		for range 50 {
			pids := nsPIDs(ctx, ns)
			if len(pids) == 0 {
				break
			}
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGCONT)
				syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := run(ctx, "ip", "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nsPIDs lists the processes in a namespace.
func nsPIDs(ctx context.Context, ns string) []int {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Setup creates the namespaces, the bridge and the veths. It fails if
// any namespace of the suite exists: call Teardown first.
func (nw *Network) Setup(ctx context.Context) error {
	if names, err := ownNamespaces(ctx); err != nil {
		return err
	} else if len(names) > 0 {
		return fmt.Errorf("namespaces of an earlier run exist (%s): run teardown first", strings.Join(names, ", "))
	}
	steps := [][]string{
		{"netns", "add", ctlNS},
		{"-n", ctlNS, "link", "set", "lo", "up"},
		{"-n", ctlNS, "link", "add", bridgeDev, "type", "bridge"},
		{"-n", ctlNS, "addr", "add", nw.BridgeIP() + "/24", "dev", bridgeDev},
		{"-n", ctlNS, "link", "set", bridgeDev, "up"},
	}
	for slot := 1; slot <= nw.Slots; slot++ {
		ns, veth := slotNS(slot), slotVeth(slot)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ctlNS, "link", "add", veth, "type", "veth", "peer", "name", nodeDev, "netns", ns},
			[]string{"-n", ctlNS, "link", "set", veth, "master", bridgeDev, "up"},
			[]string{"-n", ns, "addr", "add", nw.SlotIP(slot) + "/24", "dev", nodeDev},
			[]string{"-n", ns, "link", "set", nodeDev, "up"},
		)
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			return err
		}
	}
	return nil
}

// Cut makes each slot drop every packet to and from the slots in its
// grudge; client traffic from the bridge is untouched. Links are cut in
// both directions of each pair named on either side.
func (nw *Network) Cut(ctx context.Context, grudge map[int][]int) error {
	pairs := map[[2]int]bool{}
	for a, bs := range grudge {
		for _, b := range bs {
			pairs[[2]int{a, b}], pairs[[2]int{b, a}] = true, true
		}
	}
	var errs []error
	for p := range pairs {
		ns, peer := slotNS(p[0]), nw.SlotIP(p[1])
		errs = append(errs,
			inNS(ctx, ns, "iptables", "-w", "-A", "INPUT", "-s", peer, "-j", "DROP"),
			inNS(ctx, ns, "iptables", "-w", "-A", "OUTPUT", "-d", peer, "-j", "DROP"))
	}
	return errors.Join(errs...)
}

// Mend removes every rule Cut made.
func (nw *Network) Mend(ctx context.Context) error {
	var errs []error
	for slot := 1; slot <= nw.Slots; slot++ {
		errs = append(errs,
			inNS(ctx, slotNS(slot), "iptables", "-w", "-F", "INPUT"),
			inNS(ctx, slotNS(slot), "iptables", "-w", "-F", "OUTPUT"))
	}
	return errors.Join(errs...)
}

// SlowKind is how Slow slows links: "netem" (delay with jitter) where
// the kernel has it, else "tbf" (a rate limit whose queue adds delay).
type SlowKind string

// Slow slows both directions of the given slots' links: netem with the
// delay if the kernel has netem, else tbf at rateKbit. It returns which
// it used.
func (nw *Network) Slow(ctx context.Context, slots []int, delay time.Duration, rateKbit int) (SlowKind, error) {
	kind := SlowKind("netem")
	args := []string{"netem", "delay", fmt.Sprintf("%dms", delay.Milliseconds()), fmt.Sprintf("%dms", delay.Milliseconds()/2)}
	if err := nw.setQdisc(ctx, slots[0], args); err != nil {
		kind = "tbf"
		args = []string{"tbf", "rate", fmt.Sprintf("%dkbit", rateKbit), "burst", "8kb", "latency", "500ms"}
	}
	var errs []error
	for _, s := range slots {
		errs = append(errs, nw.setQdisc(ctx, s, args))
	}
	return kind, errors.Join(errs...)
}

// setQdisc sets the root qdisc of both ends of a slot's veth.
func (nw *Network) setQdisc(ctx context.Context, slot int, qdisc []string) error {
	node := append([]string{"qdisc", "replace", "dev", nodeDev, "root"}, qdisc...)
	bridge := append([]string{"qdisc", "replace", "dev", slotVeth(slot), "root"}, qdisc...)
	if err := inNS(ctx, slotNS(slot), "tc", node...); err != nil {
		return err
	}
	return inNS(ctx, ctlNS, "tc", bridge...)
}

// Unslow removes the qdiscs Slow set. Deleting a root qdisc that is the
// default fails, and that is fine.
func (nw *Network) Unslow(ctx context.Context) {
	for slot := 1; slot <= nw.Slots; slot++ {
		inNS(ctx, slotNS(slot), "tc", "qdisc", "del", "dev", nodeDev, "root")
		inNS(ctx, ctlNS, "tc", "qdisc", "del", "dev", slotVeth(slot), "root")
	}
}
