package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
)

// Nemesis names.
const (
	NemesisPartition     = "partition"
	NemesisIsolateLeader = "isolate-leader"
	NemesisRing          = "ring"
	NemesisKill          = "kill"
	NemesisPause         = "pause"
	NemesisMember        = "member"
	NemesisSlow          = "slow"
	NemesisDiskFull      = "disk-full"
	NemesisSnapshotCrash = "snapshot-crash"
	NemesisRestart       = "rolling-restart"
	NemesisClock         = "clock"
	// NemesisPromotion replaces a member, as NemesisMember does, and
	// strikes while the fresh node waits out its stable period as a
	// non-voter, before the resharing to it starts (docs/autopilot.md):
	// a second fault, always, from
	// overlapping, aimed at the old members once the cluster lists the
	// fresh node as a non-voter.
	NemesisPromotion = "promotion"
)

// Nemeses is every nemesis; "mixed" draws from all of them.
var Nemeses = []string{NemesisPartition, NemesisIsolateLeader, NemesisRing, NemesisKill, NemesisPause, NemesisMember, NemesisSlow,
	NemesisDiskFull, NemesisSnapshotCrash, NemesisRestart, NemesisClock, NemesisPromotion}

// alone are the faults that carry themselves out to the end, with their
// own timing, and take no second fault in a mixed schedule. A schedule
// leaves one at least aloneTakes before the end, so that it does not
// make the run longer.
var alone = []string{NemesisSnapshotCrash, NemesisRestart}

const aloneTakes = 25 * time.Second

// Step is one fault of a schedule, and in mixed schedules sometimes a
// second one at the same time.
type Step struct {
	At       time.Duration `json:"at"`    // when it starts, from the start of the faults
	Fault    string        `json:"fault"` // a nemesis name
	Hold     time.Duration `json:"hold"`  // how long it lasts before it is healed
	Draw     uint64        `json:"draw"`  // the random bits it picks its targets with
	With     string        `json:"with,omitempty"`
	WithDraw uint64        `json:"with_draw,omitempty"`
}

// Name is the fault, with the second one if any: "member+kill".
func (s Step) Name() string {
	if s.With == "" {
		return s.Fault
	}
	return s.Fault + "+" + s.With
}

func (s Step) String() string {
	return fmt.Sprintf("+%5.1fs %-20s hold %4.1fs draw %016x", s.At.Seconds(), s.Name(), s.Hold.Seconds(), s.Draw)
}

// overlapping are the faults a mixed schedule may add to another one; a
// member change with a kill, a pause or a partition during its resharing
// is the interesting case.
var overlapping = []string{NemesisPartition, NemesisIsolateLeader, NemesisKill, NemesisPause, NemesisSlow}

// Streams of the seeded generator: the schedule and each workload draw
// from their own, so adding a workload does not change the schedule.
const (
	streamSchedule = iota + 1
	streamRegister
	streamSet
	streamRevoke
	streamSign
)

func seeded(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}

func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// Plan is the fault schedule of a seed: quiet, fault, quiet, fault ...
// within the duration, each fault ending (by its hold) before the
// duration does. It depends on nothing but its arguments.
func Plan(seed int64, nemesis string, duration, quietMin, quietMax, holdMin, holdMax time.Duration) []Step {
	if nemesis == "none" {
		return nil
	}
	r := seeded(seed, streamSchedule)
	var steps []Step
	at := between(r, quietMin, quietMax)
	for {
		st := Step{At: at, Fault: nemesis}
		if nemesis == "mixed" {
			st.Fault = Nemeses[r.IntN(len(Nemeses))]
			// One fault in three comes with a second one.
			if with := overlapping[r.IntN(len(overlapping))]; r.IntN(3) == 0 && with != st.Fault && !slices.Contains(alone, st.Fault) {
				st.With = with
			}
		}
		if st.Fault == NemesisPromotion {
			st.With = overlapping[r.IntN(len(overlapping))]
		}
		st.Hold = between(r, holdMin, holdMax)
		if at+st.Hold > duration || slices.Contains(alone, st.Fault) && at+aloneTakes > duration {
			return steps
		}
		st.Draw, st.WithDraw = r.Uint64(), r.Uint64()
		if st.With == "" {
			st.WithDraw = 0
		}
		steps = append(steps, st)
		at += st.Hold + between(r, quietMin, quietMax)
	}
}

// Window is a fault as it happened, in run time.
type Window struct {
	Fault  string `json:"fault"`
	Detail string `json:"detail"`
	Start  int64  `json:"start"` // ns since the run began
	End    int64  `json:"end"`
	Err    string `json:"error,omitempty"`
}

// nemesis carries out a schedule on the cluster.
type nemesis struct {
	db    *db
	clock *clock
	seed  int64
	rep   *Summary // for the anomalies a fault checks itself
}

// run carries out the steps, relative to begin (run time), until they
// are done or stop ends; every fault is healed before the next starts
// and before run returns.
func (nm *nemesis) run(stop, hard context.Context, begin int64, steps []Step) []Window {
	var windows []Window
	for i, st := range steps {
		wait := time.Duration(begin + int64(st.At) - nm.clock.now())
		if i > 0 {
			// A fault that ran long (a member change) still leaves the
			// cluster a moment before the next.
			wait = max(wait, time.Second)
		}
		select {
		case <-stop.Done():
			return windows
		case <-time.After(wait):
		}
		takes := st.Hold
		if slices.Contains(alone, st.Fault) {
			takes = aloneTakes
		}
		if end, ok := stop.Deadline(); ok && time.Until(end) < takes {
			// An earlier fault ran long: this one would outlast the run.
			nm.db.ev.logf("nemesis: skipped %s: less than %v left", st.Name(), takes.Round(time.Millisecond))
			continue
		}
		windows = append(windows, nm.step(stop, hard, st))
	}
	return windows
}

// step carries out one step and heals it. A member change runs while the
// step's second fault, if any, comes and goes.
func (nm *nemesis) step(stop, hard context.Context, st Step) Window {
	d := nm.db
	w := Window{Fault: st.Name(), Start: nm.clock.now()}
	var details []string
	var errs []error
	note := func(detail string, err error) {
		details = append(details, detail)
		errs = append(errs, err)
	}
	members := d.members()
	var changed chan error
	if st.Fault == NemesisMember || st.Fault == NemesisPromotion {
		r := rand.New(rand.NewPCG(uint64(nm.seed), st.Draw))
		victim := members[r.IntN(len(members))]
		fresh, ok := d.freeSlot(victim)
		if ok {
			note(fmt.Sprintf("remove %s, join a fresh node in slot %d", d.names([]int{victim}), fresh), nil)
			changed = make(chan error, 1)
			go func() { changed <- d.replace(hard, victim, fresh) }()
			members = slices.DeleteFunc(members, func(n int) bool { return n == victim })
		} else {
			note("member", errors.New("no free slot for a fresh node"))
		}
	} else {
		note(nm.inject(hard, st.Fault, st.Draw, members, st.Hold))
	}
	if st.With != "" {
		if st.Fault == NemesisPromotion && changed != nil {
			note(nm.awaitNonVoter(hard, members, changed))
		} else if changed != nil {
			// Let the removal reach the resharing first.
			r := rand.New(rand.NewPCG(uint64(nm.seed), st.WithDraw))
			select {
			case <-time.After(time.Duration(r.IntN(2000)) * time.Millisecond):
			case <-stop.Done():
			}
		}
		note(nm.inject(hard, st.With, st.WithDraw, members, st.Hold))
	}
	d.ev.logf("nemesis: %s: %s", st.Name(), strings.Join(details, "; "))
	if st.Fault != NemesisMember && !slices.Contains(alone, st.Fault) || st.With != "" {
		select {
		case <-stop.Done():
		case <-time.After(st.Hold):
		}
	}
	if err := d.heal(hard); err != nil {
		errs = append(errs, fmt.Errorf("healing: %w", err))
	}
	if changed != nil {
		errs = append(errs, <-changed)
	}
	w.End = nm.clock.now()
	w.Detail = strings.Join(details, "; ")
	if err := errors.Join(errs...); err != nil {
		w.Err = err.Error()
		d.ev.logf("nemesis: %s: %v", st.Name(), err)
	}
	d.ev.logf("nemesis: healed %s", st.Name())
	return w
}

// awaitNonVoter waits until a member lists the fresh node of a promotion
// step as a non-voter: the window the step's second fault aims at. It
// gives up when the change ends first (the node was promoted, or the
// change failed) or after a minute, and says which.
func (nm *nemesis) awaitNonVoter(ctx context.Context, members []int, changed chan error) (string, error) {
	d := nm.db
	if len(members) == 0 {
		return "no member to watch the promotion through", nil
	}
	old := map[string]bool{}
	for _, n := range members {
		old[d.nodeID(n)] = true
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	seen := make(chan string, 1)
	go func() {
		err := d.waitMembers(ctx, members[0], func(st *cluster.Status) bool {
			for _, m := range st.Members {
				if !old[m.ID] && !m.Leaving && !m.Voter && m.RaftState != "unreachable" {
					select {
					case seen <- m.ID:
					default:
					}
					return true
				}
			}
			return false
		})
		if err != nil {
			cancel()
		}
	}()
	select {
	case id := <-seen:
		return fmt.Sprintf("struck while %s was a non-voter", id), nil
	case err := <-changed:
		// Put the outcome back for step, which waits for it.
		changed <- err
		return "the change ended before a non-voter was seen", nil
	case <-ctx.Done():
		return "no non-voter seen within a minute", nil
	}
}

// inject starts one fault, other than a member change, on members, and
// describes it; the faults that run alone are carried out to the end.
func (nm *nemesis) inject(ctx context.Context, fault string, draw uint64, members []int, hold time.Duration) (string, error) {
	r := rand.New(rand.NewPCG(uint64(nm.seed), draw))
	d := nm.db
	shuffled := slices.Clone(members)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	switch fault {
	case NemesisPartition:
		k := len(shuffled) / 2
		a, b := slices.Clone(shuffled[:k]), slices.Clone(shuffled[k:])
		slices.Sort(a)
		slices.Sort(b)
		grudge := map[int][]int{}
		for _, x := range a {
			grudge[x] = b
		}
		return "partition " + d.names(a) + " | " + d.names(b), d.nw.Cut(ctx, grudge)
	case NemesisIsolateLeader:
		l, ok := d.leader(ctx)
		if !ok || !slices.Contains(members, l) {
			l = shuffled[0]
		}
		others := slices.DeleteFunc(slices.Clone(members), func(x int) bool { return x == l })
		how := "leader"
		if !ok {
			how = "no leader known; isolated"
		}
		return fmt.Sprintf("%s %s from %s", how, d.names([]int{l}), d.names(others)), d.nw.Cut(ctx, map[int][]int{l: others})
	case NemesisRing:
		grudge, desc := ring(shuffled)
		return desc(d.names), d.nw.Cut(ctx, grudge)
	case NemesisKill, NemesisPause:
		victims, which := nm.targets(ctx, r, shuffled)
		for _, v := range victims {
			if fault == NemesisKill {
				d.kill(v)
			} else {
				d.pause(v)
			}
		}
		return fmt.Sprintf("%s %s %s", fault, which, d.names(victims)), nil
	case NemesisSlow:
		delay := time.Duration(50+r.IntN(150)) * time.Millisecond
		rate := []int{128, 256, 512}[r.IntN(3)]
		kind, err := d.nw.Slow(ctx, members, delay, rate)
		if kind == "netem" {
			return fmt.Sprintf("slow: netem delay %v ±%v on %s", delay, delay/2, d.names(members)), err
		}
		return fmt.Sprintf("slow: tbf %dkbit (no netem in this kernel) on %s", rate, d.names(members)), err
	case NemesisDiskFull:
		return nm.diskFull(r, members)
	case NemesisSnapshotCrash:
		return nm.snapshotCrash(ctx, r, members, hold)
	case NemesisRestart:
		return nm.rollingRestart(ctx, r, members)
	case NemesisClock:
		return nm.clockAhead(r, members)
	}
	return fault, fmt.Errorf("unknown fault %q", fault)
}

// targets picks the nodes a kill or a pause hits: one node, the leader,
// a majority, or all of them, as Jepsen's node targets do.
func (nm *nemesis) targets(ctx context.Context, r *rand.Rand, shuffled []int) ([]int, string) {
	var victims []int
	which := ""
	switch r.IntN(4) {
	case 0:
		victims, which = shuffled[:1], "one"
	case 1:
		if l, ok := nm.db.leader(ctx); ok {
			victims, which = []int{l}, "leader"
		} else {
			victims, which = shuffled[:1], "one (no leader known)"
		}
	case 2:
		victims, which = shuffled[:len(shuffled)/2+1], "majority"
	default:
		victims, which = shuffled, "all"
	}
	victims = slices.Clone(victims)
	slices.Sort(victims)
	return victims, which
}

// ring cuts links so that every node still sees a majority, but no two
// see the same one. Nodes are in the shuffled order around a circle and
// keep the links to their nearest neighbours. With three nodes that
// leaves every link, so instead the link between two of them is cut and
// the third is a bridge: each of the two sees a different majority.
func ring(order []int) (map[int][]int, func(func([]int) string) string) {
	n := len(order)
	grudge := map[int][]int{}
	if n == 3 {
		grudge[order[1]] = []int{order[2]}
		return grudge, func(names func([]int) string) string {
			return fmt.Sprintf("bridge %s between %s and %s (their link cut)", names(order[:1]), names(order[1:2]), names(order[2:3]))
		}
	}
	keep := n / 2 / 2 // neighbours each side: 1 of 5 each side gives 3 of 5
	if keep < 1 {
		keep = 1
	}
	for i, x := range order {
		for j, y := range order {
			dist := (j - i + n) % n
			dist = min(dist, n-dist)
			if dist > keep {
				grudge[x] = append(grudge[x], y)
			}
		}
	}
	return grudge, func(names func([]int) string) string {
		return "ring " + names(order)
	}
}

// names renders slots as their node IDs.
func (d *db) names(slots []int) string {
	var ids []string
	for _, n := range slots {
		ids = append(ids, d.nodeID(n))
	}
	return "{" + strings.Join(ids, " ") + "}"
}
