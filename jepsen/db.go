package jepsen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
)

// clock gives the run's timestamps: nanoseconds since the run began, on
// the monotonic clock. Every operation and fault window uses it.
type clock struct{ start time.Time }

func (c *clock) now() int64 { return int64(time.Since(c.start)) }

// events is the run's log of what the suite did, with timestamps.
type events struct {
	clock *clock
	mu    sync.Mutex
	w     io.Writer
}

func (e *events) logf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(e.w, "[%8.3fs] %s\n", time.Duration(e.clock.now()).Seconds(), fmt.Sprintf(format, args...))
}

// slot is a place a node can run: a namespace with an address. A slot
// keeps its address when a fresh node replaces the one it held.
type slot struct {
	n      int
	id     string // the node it holds, "" if none
	gen    int    // how many nodes it has held
	member bool   // its node is a member of the cluster
	proc   *proc  // nil while no process runs
	paused bool
}

// db is the cluster under test: its slots, processes and an operator's
// credentials.
type db struct {
	cfg      *Config
	nw       *Network
	ev       *events
	dataRoot string
	logDir   string

	mu         sync.Mutex
	slots      []*slot // slots[i] is slot i+1
	creds      *client.Credentials
	clients    map[int]*client.Client
	unexpected []*proc         // exits the suite did not cause
	mounted    map[string]bool // data directories on their own tmpfs (disk.go)
	full       map[int]bool    // slots whose disk the disk-full nemesis filled
	ahead      map[string]bool // nodes whose clock the clock nemesis moved
}

func newDB(cfg *Config, nw *Network, ev *events, dataRoot, logDir string) *db {
	d := &db{cfg: cfg, nw: nw, ev: ev, dataRoot: dataRoot, logDir: logDir, clients: map[int]*client.Client{},
		mounted: map[string]bool{}, full: map[int]bool{}, ahead: map[string]bool{}}
	for i := 1; i <= nw.Slots; i++ {
		d.slots = append(d.slots, &slot{n: i})
	}
	return d
}

func (d *db) slot(n int) *slot { return d.slots[n-1] }

func (d *db) apiAddr(n int) string { return fmt.Sprintf("%s:%d", d.nw.SlotIP(n), apiPort) }

func (d *db) logPath(id string) string { return filepath.Join(d.logDir, id+".log") }

func (d *db) dataDir(id string) string { return filepath.Join(d.dataRoot, id) }

// clockPath is the node's clock offset file (the clock nemesis), beside
// its data directory and not on its data disk.
func (d *db) clockPath(id string) string { return filepath.Join(d.dataRoot, id+".clock") }

// members lists the slots whose nodes are members, in slot order.
func (d *db) members() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int
	for _, s := range d.slots {
		if s.member {
			out = append(out, s.n)
		}
	}
	return out
}

// nodeID is the node a slot holds.
func (d *db) nodeID(n int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.slot(n).id
}

// slotOf finds the member slot holding a node.
func (d *db) slotOf(id string) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.slots {
		if s.member && s.id == id {
			return s.n, true
		}
	}
	return 0, false
}

// client is a client of a slot's node. The cluster's CA stays the same
// when a fresh node takes the slot, so one client serves every node it
// holds.
func (d *db) client(n int) *client.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.clients[n]; c != nil {
		return c
	}
	c, err := client.NewClient(d.apiAddr(n), d.creds)
	if err != nil {
		// The credentials were checked when the cluster was formed.
		panic(fmt.Sprintf("jepsen: client of slot %d: %v", n, err))
	}
	d.clients[n] = c
	return c
}

// start starts a slot's node process, a fresh node if the slot holds
// none.
func (d *db) start(ctx context.Context, n int) error {
	d.mu.Lock()
	s := d.slot(n)
	if s.proc != nil && s.proc.alive() {
		d.mu.Unlock()
		return nil
	}
	if s.id == "" {
		s.gen++
		s.id = fmt.Sprintf("n%d", n)
		if s.gen > 1 {
			s.id = fmt.Sprintf("n%d-%d", n, s.gen)
		}
	}
	id := s.id
	d.mu.Unlock()
	if err := d.mountData(ctx, d.dataDir(id)); err != nil {
		return fmt.Errorf("the data disk of %s: %w", id, err)
	}
	p, err := startKeyd(ctx, d.nw, d.cfg.Keyd, n, id, d.dataDir(id), d.logPath(id), d.clockPath(id), d.cfg.RequestTimeout, d.exited)
	if err != nil {
		return err
	}
	d.mu.Lock()
	s.proc, s.paused = p, false
	d.mu.Unlock()
	return nil
}

// exited notes a node's exit; one the suite did not cause (a crash, or
// a signal from outside) is reported.
func (d *db) exited(p *proc) {
	if p.expected.Load() {
		return
	}
	d.ev.logf("UNEXPECTED: node %s exited by itself: %v", p.id, p.state)
	d.mu.Lock()
	d.unexpected = append(d.unexpected, p)
	d.mu.Unlock()
}

// form starts the first nodes and forms the cluster: init on slot 1 for
// the first key to be made among all of them, then a join for each other
// node. It gives up at once if a node exits.
func (d *db) form(ctx context.Context) error {
	ctx, cancel := context.WithTimeoutCause(ctx, 5*time.Minute, errors.New("forming the cluster took more than 5 minutes"))
	defer cancel()
	died, cancelDied := context.WithCancelCause(ctx)
	defer cancelDied(nil)
	for n := 1; n <= d.cfg.Nodes; n++ {
		if err := d.start(ctx, n); err != nil {
			return err
		}
		p := d.slot(n).proc
		go func() {
			select {
			case <-p.done:
				cancelDied(fmt.Errorf("node %s exited while the cluster was forming: %v", p.id, p.state))
			case <-died.Done():
			}
		}()
	}
	ctx = died
	opts, err := d.vouch(1)
	if err != nil {
		return err
	}
	creds, id, err := client.InitCluster(ctx, d.apiAddr(1), "jepsen", d.cfg.Nodes, opts)
	if err != nil {
		return fmt.Errorf("cluster init on %s: %w (%v)", d.apiAddr(1), err, context.Cause(ctx))
	}
	d.mu.Lock()
	d.creds = creds
	d.slot(1).member = true
	d.mu.Unlock()
	d.ev.logf("cluster %s founded on %s", id.NodeID, d.apiAddr(1))
	for n := 2; n <= d.cfg.Nodes; n++ {
		if err := d.joinNode(ctx, d.client(1), n); err != nil {
			return fmt.Errorf("joining %s: %w (%v)", d.nodeID(n), err, context.Cause(ctx))
		}
		d.mu.Lock()
		d.slot(n).member = true
		d.mu.Unlock()
		d.ev.logf("%s joined", d.nodeID(n))
	}
	return nil
}

// vouch is the operator's word for the unjoined node in slot n: the suite
// started it, so it takes the identity the node shows, and the join token
// the node made for itself in its data directory.
func (d *db) vouch(n int) (client.JoinOptions, error) {
	b, err := os.ReadFile(cluster.JoinTokenPath(d.dataDir(d.nodeID(n))))
	if err != nil {
		return client.JoinOptions{}, fmt.Errorf("the join token of %s: %w", d.nodeID(n), err)
	}
	accept := func(*api.Identity, string) error { return nil }
	return client.JoinOptions{Token: strings.TrimSpace(string(b)), Confirm: accept}, nil
}

// joinNode has the cluster hold the join token of the unjoined node in
// slot n, then admits the node through c.
func (d *db) joinNode(ctx context.Context, c *client.Client, n int) error {
	opts, err := d.vouch(n)
	if err != nil {
		return err
	}
	if err := c.AddJoinToken(ctx, opts.Token, time.Hour); err != nil {
		return fmt.Errorf("join token of %s: %w", d.nodeID(n), err)
	}
	_, err = c.JoinNode(ctx, d.apiAddr(n), opts)
	return err
}

// kill sends kill -9 to a slot's node.
func (d *db) kill(n int) {
	d.mu.Lock()
	p := d.slot(n).proc
	d.slot(n).paused = false
	d.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// pause stops a slot's node with SIGSTOP; resume continues it.
func (d *db) pause(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.slot(n).proc; p != nil && p.alive() {
		p.signal(syscall.SIGSTOP)
		d.slot(n).paused = true
	}
}

func (d *db) resume(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.slot(n).proc; p != nil && d.slot(n).paused {
		p.signal(syscall.SIGCONT)
		d.slot(n).paused = false
	}
}

// leader finds the leader's slot by asking the members in turn.
func (d *db) leader(ctx context.Context) (int, bool) {
	for _, n := range d.members() {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := d.client(n).Status(cctx)
		cancel()
		if err == nil && st.Leader != "" {
			if s, ok := d.slotOf(st.Leader); ok {
				return s, true
			}
		}
	}
	return 0, false
}

// heal undoes every fault but membership changes: links mended and
// unslowed, paused nodes continued, dead members restarted.
func (d *db) heal(ctx context.Context) error {
	var errs []error
	errs = append(errs, d.nw.Mend(ctx), d.unfill(), d.clocksBack())
	d.nw.Unslow(ctx)
	for _, n := range d.members() {
		d.resume(n)
		errs = append(errs, d.start(ctx, n))
	}
	return errors.Join(errs...)
}

// replace removes the member in slot victim, waits until the cluster has
// reshared without it, stops it and erases its data, then joins a fresh
// node in slot fresh (which must be free) and waits for that resharing.
func (d *db) replace(ctx context.Context, victim, fresh int) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	id := d.nodeID(victim)
	var via int
	for _, n := range d.members() {
		if n != victim {
			via = n
			break
		}
	}
	if via == 0 {
		return errors.New("no other member to remove it through")
	}
	c := d.client(via)
	if err := retryDefinite(ctx, 10, func(ctx context.Context) error { return c.RemoveNode(ctx, id) }); err != nil {
		if classify(ctx, err).outcome != Unknown {
			return fmt.Errorf("removing %s: %w", id, err)
		}
		d.ev.logf("member: remove %s has an unknown outcome (%v): waiting to see", id, err)
	} else {
		d.ev.logf("member: remove %s committed", id)
	}
	// The node stays a member until the resharing without it completes.
	if err := d.waitMembers(ctx, via, func(st *cluster.Status) bool {
		return st.Resharing == nil && !slices.ContainsFunc(st.Members, func(m cluster.MemberStatus) bool { return m.ID == id })
	}); err != nil {
		return fmt.Errorf("waiting for the cluster to reshare without %s: %w", id, err)
	}
	d.erase(victim)
	d.ev.logf("member: %s removed, stopped and erased", id)
	return d.join(ctx, c, via, fresh)
}

// join starts a fresh node in slot fresh and joins it through c. A join
// that definitely failed (no leader during a partition, say) is tried
// again with another fresh node; one of unknown outcome may have added
// the node, so join waits for the cluster to list it.
func (d *db) join(ctx context.Context, c *client.Client, via, fresh int) error {
	for attempt := 1; ; attempt++ {
		if err := d.start(ctx, fresh); err != nil {
			return err
		}
		newID := d.nodeID(fresh)
		err := d.joinNode(ctx, c, fresh)
		if err == nil {
			d.markMember(fresh)
			d.ev.logf("member: fresh %s joined in slot %d", newID, fresh)
			return nil
		}
		if classify(ctx, err).outcome == Fail && attempt < 5 && ctx.Err() == nil {
			d.ev.logf("member: join of %s failed (%v): erasing it to try again", newID, err)
			d.erase(fresh)
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		werr := d.waitMembers(wctx, via, func(st *cluster.Status) bool {
			return slices.ContainsFunc(st.Members, func(m cluster.MemberStatus) bool { return m.ID == newID })
		})
		cancel()
		if werr != nil {
			return fmt.Errorf("joining %s: %w", newID, err)
		}
		d.markMember(fresh)
		d.ev.logf("member: join of %s failed (%v) but the cluster lists it", newID, err)
		return nil
	}
}

func (d *db) markMember(n int) {
	d.mu.Lock()
	d.slot(n).member = true
	d.mu.Unlock()
}

// erase stops a slot's node and erases its data; the slot's next node is
// a fresh one.
func (d *db) erase(n int) {
	d.mu.Lock()
	s := d.slot(n)
	p, id := s.proc, s.id
	s.member, s.proc, s.id, s.paused = false, nil, "", false
	d.mu.Unlock()
	if p != nil {
		p.stop(15 * time.Second)
	}
	d.unmountData(d.dataDir(id), false)
	os.RemoveAll(d.dataDir(id))
}

// waitMembers polls a node's status until ok holds.
func (d *db) waitMembers(ctx context.Context, n int, ok func(*cluster.Status) bool) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := d.client(n).Status(cctx)
		cancel()
		if err == nil && ok(st) {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// freeSlot is a slot that holds no node, preferring one other than
// avoid.
func (d *db) freeSlot(avoid int) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	best := 0
	for _, s := range d.slots {
		if !s.member && s.proc == nil && s.id == "" {
			if s.n != avoid {
				return s.n, true
			}
			best = s.n
		}
	}
	return best, best != 0
}

// stopAll stops every node gracefully, SIGKILL after limit. It returns
// the nodes that did not stop by themselves.
func (d *db) stopAll(limit time.Duration) []string {
	d.mu.Lock()
	var procs []*proc
	for _, s := range d.slots {
		if s.proc != nil {
			procs = append(procs, s.proc)
		}
	}
	d.mu.Unlock()
	var mu sync.Mutex
	var slow []string
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			if !p.stop(limit) {
				mu.Lock()
				slow = append(slow, p.id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(slow)
	return slow
}

// killAll kills every node process; it is the last resort of a run.
func (d *db) killAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.slots {
		if s.proc != nil {
			s.proc.signal(syscall.SIGCONT)
			s.proc.kill()
		}
	}
}

// retryDefinite calls fn until it succeeds, fails with an unknown
// outcome, or has failed definitely tries times.
func retryDefinite(ctx context.Context, tries int, fn func(context.Context) error) error {
	var err error
	for i := range tries {
		cctx, cancel := context.WithTimeout(ctx, DefaultOpTimeout)
		err = fn(cctx)
		cancel()
		if err == nil || classify(ctx, err).outcome == Unknown {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(i+1) * 300 * time.Millisecond):
		}
	}
	return err
}

// reportExits reports the exits the suite did not cause: one with a
// failing exit status is a crash; one by a signal, or a clean exit (keyd
// stops cleanly on SIGTERM), came from outside the suite.
func (d *db) reportExits(rep *Summary) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.unexpected {
		if p.state != nil && p.state.Exited() && p.state.ExitCode() != 0 {
			rep.anomaly("crash", "node %s exited by itself: %v (see logs/%s.log)", p.id, p.state, p.id)
			continue
		}
		rep.warn("node %s exited without the suite causing it (%v): something outside the suite signalled it", p.id, p.state)
	}
}
