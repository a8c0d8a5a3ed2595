package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster/api"
)

// scaleSnapshotInterval is how often the nodes of a scale run check
// whether a snapshot is due (Raft's default is 2 minutes): the run
// measures the state after its snapshots, and a restart from one.
const scaleSnapshotInterval = 5 * time.Second

// scaleSnapshotThreshold is the Raft log entries between snapshots in a
// scale run (Raft's default is 8192): the bulk load takes one entry per
// thousand keys, so the log after it is the create window's few thousand
// entries, and a snapshot is due after it only below that. It is the
// checkpoint interval (fsm.DefaultCheckpointEvery).
const scaleSnapshotThreshold = 1024

// snapshotThreshold is the scale run's snapshot threshold:
// scaleSnapshotThreshold unless -snapshot-threshold sets it (Raft's
// default, 8192, leaves a restarted follower a longer log after its
// snapshot).
var snapshotThreshold = scaleSnapshotThreshold

// restartCreates is how long a scale run creates keys before each
// restart after the first (-restart-creates): the follower's log after
// its snapshot grows with it, up to the snapshot threshold.
var restartCreates = time.Second

// scaleDownWrites is how many keys a scale run creates, one at a time,
// while its restarted follower is down: about two Raft entries each (the
// command and a barrier), well under scaleSnapshotThreshold.
const scaleDownWrites = 100

// The load of a scale run: create_keys entries of scaleLoadBatch keys
// (fsm.MaxCreateKeys), from scaleLoadClients clients at once.
const (
	scaleLoadBatch   = 1000
	scaleLoadClients = 4
)

// runScale loads n keys through the public API (the Go client, keyctl's
// path) into a 3-node cluster and measures what grows with the number of
// keys: memory per key, snapshot size and time, status latency, create
// and release rates, a follower's restart, a join and a leave.
func runScale(script string, n, clients int, window, promoteAfter time.Duration) error {
	dir, err := os.MkdirTemp("", "keybench-scale-")
	if err != nil {
		return err
	}
	if keepDir {
		defer fmt.Fprintf(os.Stderr, "keybench: the cluster's directory, with the nodes' logs: %s\n", dir)
	} else {
		defer removeUnlessFailedStart(dir)
	}
	base, err := freeBase4()
	if err != nil {
		return err
	}
	env := append(os.Environ(), "KEYQUORUM_BASE_PORT="+strconv.Itoa(base),
		"KEYQUORUM_SNAPSHOT_INTERVAL="+scaleSnapshotInterval.String(),
		"KEYQUORUM_SNAPSHOT_THRESHOLD="+strconv.Itoa(snapshotThreshold))
	if profileDir != "" {
		env = append(env, "KEYQUORUM_PROFILE=1")
	}
	if promoteAfter > 0 {
		env = append(env, "KEYQUORUM_PROMOTE_AFTER="+promoteAfter.String())
	}
	// profiled runs f, with CPU profiles of the client and each node in
	// profileDir/name when -profile is given.
	profiled := func(name string, f func() (int64, int64)) (int64, int64) {
		if profileDir == "" {
			return f()
		}
		stop := profile(filepath.Join(profileDir, name), base, window)
		ok, errs := f()
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "keybench: profile:", err)
		}
		return ok, errs
	}
	sh := func(args ...string) error {
		cmd := exec.Command(script, args...)
		cmd.Env, cmd.Stderr = env, os.Stderr
		return cmd.Run()
	}
	defer sh("down", dir) // also after a failed start: stop the nodes that did start
	if err := sh("up", "3", dir); err != nil {
		return startFailed(dir, err)
	}
	ctx := context.Background()
	c, creds, addr, err := connect(ctx, dir, base)
	if err != nil {
		return err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	if _, err := c.CreateSecret(ctx, "bench/secret", secret, time.Time{}); err != nil {
		return err
	}
	var rows []row
	add := func(what, value, target string) { rows = append(rows, row{what, value, target}) }
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "keybench: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}

	time.Sleep(2 * time.Second)
	rss0, err := rssAll(dir, 3)
	if err != nil {
		return err
	}
	parts0, err := rssPartsAll(dir, 3)
	if err != nil {
		return err
	}
	if profileDir != "" {
		if err := heapProfiles(filepath.Join(profileDir, "memory0"), dir, base); err != nil {
			fmt.Fprintln(os.Stderr, "keybench: heap profiles:", err)
		}
	}
	statusP50 := func() (time.Duration, time.Duration, error) {
		var lat []time.Duration
		for range 50 {
			start := time.Now()
			if _, err := c.Status(ctx); err != nil {
				return 0, 0, err
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*9/10], nil
	}
	s50, s90, err := statusP50()
	if err != nil {
		return err
	}
	add("status latency p50, p90 at 1 key", ms(s50)+", "+ms(s90), "-")

	var seq atomic.Int64
	create := func() error {
		_, err := c.CreateSecret(ctx, fmt.Sprintf("scale/%08d", seq.Add(1)), secret, time.Time{})
		return err
	}
	ok0, errs0 := profiled("create0", func() (int64, int64) { return load(clients, window, create) })
	rate0 := float64(ok0) / window.Seconds()
	add(fmt.Sprintf("creates per second near 0 keys (%d clients, %d errors)", clients, errs0), fmt.Sprintf("%.0f", rate0), "-")

	// The load goes through the bulk create (client.CreateSecrets, as
	// keyctl key create-many): scaleLoadBatch keys a Raft entry.
	logf("loading %d keys with %d clients, %d keys a create_keys entry", n, scaleLoadClients, scaleLoadBatch)
	loadStart := time.Now()
	var wg sync.WaitGroup
	var loadErrs, created atomic.Int64
	var firstErr atomic.Value // the first load error's text
	last := int64(n)          // names up to scale/<last>
	before := seq.Load()
	for range scaleLoadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				end := seq.Add(scaleLoadBatch)
				lo, hi := end-scaleLoadBatch+1, min(end, last)
				if lo > last {
					return
				}
				batch := make([]client.NamedSecret, 0, hi-lo+1)
				for i := lo; i <= hi; i++ {
					batch = append(batch, client.NamedSecret{Name: fmt.Sprintf("scale/%08d", i), Secret: secret})
				}
				items, err := c.CreateSecrets(ctx, batch)
				for _, it := range items {
					if it.Error == nil {
						created.Add(1)
					} else {
						loadErrs.Add(1)
					}
				}
				if err != nil {
					loadErrs.Add(int64(len(batch) - len(items)))
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(15 * time.Second):
				logf("%d keys", int64(ok0)+created.Load())
			}
		}
	}()
	wg.Wait()
	close(done)
	seq.Store(max(before, last)) // the loaders reserved names past last, and created none
	loaded := int64(ok0) + created.Load()
	loadTook := time.Since(loadStart)
	loadEnd := time.Now()
	if e := firstErr.Load(); e != nil {
		logf("the load's first failed create_keys: %s", e)
	}
	add(fmt.Sprintf("keys loaded in create_keys entries of %d (%d errors), in", scaleLoadBatch, loadErrs.Load()),
		fmt.Sprintf("%d, %.1f s (%.0f/s)", loaded, loadTook.Seconds(), float64(created.Load())/loadTook.Seconds()), "-")
	if err := waitCaughtUp(ctx, c); err != nil {
		return err
	}

	okN, errsN := profiled("createN", func() (int64, int64) { return load(clients, window, create) })
	rateN := float64(okN) / window.Seconds()
	add(fmt.Sprintf("creates per second at %d keys (%d clients, %d errors)", loaded, clients, errsN),
		fmt.Sprintf("%.0f (%.0f%% of near 0)", rateN, 100*rateN/rate0), ">= 90% of near 0")

	s50, s90, err = statusP50()
	if err != nil {
		return err
	}
	add(fmt.Sprintf("status latency p50, p90 at %d keys", loaded), ms(s50)+", "+ms(s90), "< 5 ms")

	// Snapshots: wait for every node to persist one after the load,
	// creating keys one at a time meanwhile (a snapshot is due only after
	// scaleSnapshotThreshold entries): they are counted in the keys.
	logf("waiting for a snapshot on every node, creating keys meanwhile")
	stop := make(chan struct{})
	var more atomic.Int64
	var mwg sync.WaitGroup
	for range clients {
		mwg.Add(1)
		go func() {
			defer mwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if create() == nil {
					more.Add(1)
				}
			}
		}()
	}
	snaps, err := waitSnapshots(dir, 3, loadEnd, 3*time.Minute)
	close(stop)
	mwg.Wait()
	if err != nil {
		return err
	}
	loaded += more.Load()
	add("keys created meanwhile, one a create (included in the keys below)", fmt.Sprint(more.Load()), "-")
	var sizes, took []string
	for _, s := range snaps {
		sizes = append(sizes, fmt.Sprintf("%.1f", float64(s.Bytes)/(1<<20)))
		took = append(took, s.Took)
	}
	add("last snapshot size (MiB: n1, n2, n3)", strings.Join(sizes, ", "), "-")
	add("last snapshot write time (n1, n2, n3)", strings.Join(took, ", "), "-")
	add("snapshot bytes per key (n1)", fmt.Sprintf("%.0f", float64(snaps[0].Bytes)/float64(loaded)), "-")
	// Status calls (each member hashes its state), then memory.
	if _, _, err := statusP50(); err != nil {
		return err
	}
	// The RSS and its split read together, before anything else asks
	// the nodes for anything.
	rssN, err := rssAll(dir, 3)
	if err != nil {
		return err
	}
	partsN, partsErr := rssPartsAll(dir, 3)
	var mem, perKey []string
	worst := 0.0
	for i := range rssN {
		mem = append(mem, fmt.Sprintf("%.0f", float64(rssN[i])/1024))
		pk := float64(rssN[i]-rss0[i]) * 1024 / float64(loaded)
		perKey = append(perKey, fmt.Sprintf("%.0f", pk))
		worst = max(worst, pk)
	}
	add("node memory after snapshots and status (RSS MiB: n1, n2, n3)", strings.Join(mem, ", "), "-")
	add("memory per key (RSS growth / keys, bytes: n1, n2, n3)", strings.Join(perKey, ", "), "< 1024")
	if partsErr == nil {
		var anon, file []string
		for i := range partsN {
			anon = append(anon, fmt.Sprintf("%.0f", float64(partsN[i].anon-parts0[i].anon)*1024/float64(loaded)))
			file = append(file, fmt.Sprintf("%.0f", float64(partsN[i].file-parts0[i].file)*1024/float64(loaded)))
		}
		add("  of which anonymous (heap, stacks: RssAnon growth / keys)", strings.Join(anon, ", "), "-")
		add("  and file-backed (the Raft log's memory map, the binary: RssFile)", strings.Join(file, ", "), "-")
	}
	if profileDir != "" {
		if err := heapProfiles(filepath.Join(profileDir, "memory"), dir, base); err != nil {
			fmt.Fprintln(os.Stderr, "keybench: heap profiles:", err)
		}
	}

	if scaleMemoryOnly {
		return printScale(n, rows)
	}

	names := []string{"bench/secret"}
	for i := range 1000 {
		names = append(names, fmt.Sprintf("scale/%08d", 1+i*int(seq.Load()/1000)))
	}
	okR, errsR := load(clients, window, func() error {
		j, _ := rand.Int(rand.Reader, big.NewInt(int64(len(names))))
		_, err := c.Get(ctx, names[j.Int64()])
		return err
	})
	add(fmt.Sprintf("releases per second at %d keys (%d clients, %d errors, %d distinct keys)", loaded, clients, errsR, len(names)),
		fmt.Sprintf("%.0f", float64(okR)/window.Seconds()), "-")

	// Restart a follower: kill -9, start, time until it releases again;
	// -restarts times, with a second of creates before each one after the
	// first (entries in the follower's log after its last snapshot).
	for r := range restarts {
		if r > 0 {
			okC, _ := load(clients, restartCreates, create)
			logf("%d creates before restart %d", okC, r+1)
		}
		if err := measureRestart(ctx, c, creds, addr, sh, dir, base, n, r, create, add, logf); err != nil {
			return err
		}
	}

	logf("joining n4")
	if err := measureJoin(ctx, c, creds, addr, sh, dir, promoteAfter, add, logf); err != nil {
		printScale(n, rows) // what was measured before the join
		return err
	}
	logf("n4 leaving")
	start := time.Now()
	if err := sh("leave", "4", dir); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	add("leave of the 4th node (cluster leave: remove, reshare, stop)", ms(time.Since(start)), "-")

	return printScale(n, rows)
}

// printScale prints a scale run's table.
func printScale(n int, rows []row) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "SCALE (%d keys)\tVALUE\tTARGET\n", n)
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.what, r.value, r.target)
	}
	return w.Flush()
}

// heapProfiles writes each node's heap profile (nI.heap: in use and
// allocated since the start, for go tool pprof), its runtime memory
// statistics (nI.memstats: the heap profile's text form, whose end is
// runtime.MemStats), from their debug ports (+7), and its memory
// mappings (nI.smaps: /proc/PID/smaps) to out.
func heapProfiles(out, dir string, base int) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for i := 1; i <= 3; i++ {
		pid, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.pid", i)))
		if err != nil {
			return err
		}
		smaps, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/smaps")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("n%d.smaps", i)), smaps, 0o644); err != nil {
			return err
		}
		for _, f := range []struct{ query, file string }{{"", "heap"}, {"?debug=1", "memstats"}} {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap%s", base+10*i+7, f.query))
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("n%d.%s", i, f.file)), b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func rssAll(dir string, n int) ([]int64, error) {
	var out []int64
	for i := 1; i <= n; i++ {
		kb, err := rssKB(filepath.Join(dir, fmt.Sprintf("n%d.pid", i)))
		if err != nil {
			return nil, err
		}
		out = append(out, kb)
	}
	return out, nil
}

// persisted is what a node logged for a snapshot it wrote.
type persisted struct {
	Time  time.Time
	Bytes int64
	Took  string
}

// waitSnapshots waits until each of nodes 1..n logged a snapshot written
// after since, and returns the last ones.
func waitSnapshots(dir string, n int, since time.Time, limit time.Duration) ([]persisted, error) {
	deadline := time.Now().Add(limit)
	for {
		var out []persisted
		for i := 1; i <= n; i++ {
			p, err := lastPersisted(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
			if err != nil {
				return nil, err
			}
			if p == nil || p.Time.Before(since) {
				break
			}
			out = append(out, *p)
		}
		if len(out) == n {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not every node wrote a snapshot within %v", limit)
		}
		time.Sleep(time.Second)
	}
}

// snapshotting says whether node i is writing a snapshot: Raft's file
// snapshot store writes one in a directory ending in .tmp, renamed once
// it is complete.
func snapshotting(dir string, i int) bool {
	tmp, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("n%d", i), "raft", "snapshots", "*.tmp"))
	return len(tmp) > 0
}

// waitSnapshotsQuiet waits until none of nodes 1..n has been writing a
// snapshot for quiet (polled every 100 ms).
func waitSnapshotsQuiet(dir string, n int, quiet, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	since := time.Now()
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			return fmt.Errorf("the nodes went on writing snapshots for %v", limit)
		}
		for i := 1; i <= n; i++ {
			if snapshotting(dir, i) {
				since = time.Now()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// lastPersisted finds the last "persisted a snapshot" line of a node's
// log (slog's text format: time=... msg="persisted a snapshot" ...
// bytes=N took=D).
func lastPersisted(logFile string) (*persisted, error) {
	f, err := os.Open(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var last *persisted
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="persisted a snapshot"`) {
			continue
		}
		var p persisted
		for _, field := range strings.Fields(line) {
			k, v, _ := strings.Cut(field, "=")
			switch k {
			case "time":
				p.Time, _ = time.Parse(time.RFC3339Nano, v)
			case "bytes":
				p.Bytes, _ = strconv.ParseInt(v, 10, 64)
			case "took":
				p.Took = v
			}
		}
		last = &p
	}
	return last, sc.Err()
}

// freeBase4 is freeBase with node 4's ports free too.
func freeBase4() (int, error) {
	for range 20 {
		b, err := freeBase()
		if err != nil {
			return 0, err
		}
		free := true
		for j := 0; j < 6 && free; j++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", b+40+j))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return b, nil
		}
	}
	return 0, fmt.Errorf("no free ports found")
}

// cpuOf is the CPU time, user and system, of the process whose pid is in
// pidFile (/proc/PID/stat's utime and stime, in clock ticks of 10 ms).
func cpuOf(pidFile string) (time.Duration, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
	if err != nil {
		return 0, err
	}
	// The fields after the command's name, which is in parentheses: utime
	// and stime are the 12th and 13th of them.
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: a short /proc stat", pidFile)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stm, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stm) * 10 * time.Millisecond, nil
}

// rssParts is a process's resident memory split as /proc/PID/status
// splits it, in KiB: anonymous (the heap, stacks) and file-backed (the
// binary, the Raft log's memory map).
type rssParts struct{ anon, file int64 }

func rssPartsAll(dir string, n int) ([]rssParts, error) {
	var out []rssParts
	for i := 1; i <= n; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.pid", i)))
		if err != nil {
			return nil, err
		}
		st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/status")
		if err != nil {
			return nil, err
		}
		var p rssParts
		for _, line := range strings.Split(string(st), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			v, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "RssAnon:":
				p.anon = v
			case "RssFile:":
				p.file = v
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// keydPromoteAfter is keyd's --promote-after when none is given, for the
// join's rows.
const keydPromoteAfter = time.Second

// measureJoin times `cluster join 4` in its parts, polling while it runs:
// until the new node, still a non-voter, answers a linearizable read (it
// has caught up: the leader's snapshot restored, the entries after it
// applied), until the leader has made it a voter (after its stable
// period, promoteAfter), and until the join returns (the node holds its
// share of a new epoch). The polls are every 50 ms.
func measureJoin(ctx context.Context, c *client.Client, creds *client.Credentials, addr func(int) string,
	sh func(...string) error, dir string, promoteAfter time.Duration, add func(what, value, target string), logf func(string, ...any)) error {
	n4, err := client.NewClient(addr(4), creds)
	if err != nil {
		return err
	}
	stable := promoteAfter
	how := "set for this run"
	if stable <= 0 {
		stable, how = keydPromoteAfter, "keyd's default"
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- sh("join", "4", dir) }()
	var serving, voter time.Duration
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("join: %w", err)
			}
			break wait
		case <-tick.C:
		}
		if serving == 0 {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			if _, err := n4.Key(rctx, "bench/secret"); err == nil {
				serving = time.Since(start)
			}
			cancel()
		}
		if voter == 0 {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			if st, err := c.Status(rctx); err == nil && slices.ContainsFunc(st.Members, func(m api.MemberStatus) bool { return m.ID == "n4" && m.Voter }) {
				voter = time.Since(start)
			}
			cancel()
		}
	}
	total := time.Since(start)
	mark := func(d time.Duration) string {
		if d == 0 {
			return "not seen (polled every 50 ms)"
		}
		return ms(d)
	}
	add("join of a 4th node (cluster join: token, start, join, reshare), from its start:", "", "")
	add("  caught up, a non-voter serving linearizable reads", mark(serving), "-")
	add(fmt.Sprintf("  a Raft voter (--promote-after %v, %s)", stable, how), mark(voter), "-")
	add("  holds its share (cluster join returns)", ms(total), "< 2000 ms")
	if cpu, err := cpuOf(filepath.Join(dir, "n4.pid")); err == nil {
		add("  the 4th node's CPU time (user and system) to then", ms(cpu), "-")
	}
	joinTimeline(dir, start, start.Add(total), start.Add(serving), add, logf)
	return nil
}

// joinTimeline breaks a join down from the nodes' logs (their clock is
// this machine's): the setup until the leader adds the node as a Raft
// non-voter (the token, keyd's start, the certificate, join_node, the
// leader's preparation of its log), the snapshot's transfer (until the
// new node's restore starts: the leader opens and sends it, the node
// writes and checks it), its restore, the catch-up of the entries after
// it (until the leader's poll finds the node caught up; without that log
// line, an older keyd's, when its stable period began), what is left of
// the stable period, the leader's promote_node, and the reshare (until
// the new node has its share of the new epoch). It prints the log lines
// it used.
func joinTimeline(dir string, start, end, serving time.Time, add func(what, value, target string), logf func(string, ...any)) {
	type event struct {
		node, msg string
		at        time.Time
		line      string
	}
	find := func(nodes []string, msg, also string) event {
		for _, node := range nodes {
			b, err := os.ReadFile(filepath.Join(dir, node+".log"))
			if err != nil {
				continue
			}
			lines := strings.Split(string(b), "\n")
			for i := len(lines) - 1; i >= 0; i-- {
				if !strings.Contains(lines[i], msg) || !strings.Contains(lines[i], also) {
					continue
				}
				at, ok := logTime(lines[i])
				if ok && !at.Before(start) {
					return event{node: node, msg: msg, at: at, line: lines[i]}
				}
				break
			}
		}
		return event{}
	}
	leaders := []string{"n1", "n2", "n3"}
	var (
		running   = find([]string{"n4"}, `msg="keyd running"`, "")
		prepared  = find(leaders, `for a joining node`, "")
		added     = find(leaders, `msg="added raft non-voter"`, "peer=n4")
		answers   = find(leaders, `msg="a non-voter answers`, "peer=n4")
		restored  = find([]string{"n4"}, `msg="restored a`, "")
		caught    = find(leaders, `msg="a non-voter caught up"`, "peer=n4")
		voter     = find(leaders, `msg="promoted raft non-voter to voter"`, "peer=n4")
		promoted  = find(leaders, `msg="promoted a new member`, "peer=n4")
		epoch     = find([]string{"n4"}, `msg="new key epoch"`, "")
		restoreAt time.Time
		took      time.Duration
	)
	// The join returns once the leader's state has the new epoch; the new
	// node logs it when it applies the same entry, which may come after
	// (1.1 s into a reshare at a million keys, with snapshots being
	// written): wait a little for its line.
	for deadline := time.Now().Add(5 * time.Second); epoch.line == "" && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		epoch = find([]string{"n4"}, `msg="new key epoch"`, "")
	}
	for _, e := range []event{running, prepared, added, answers, restored, caught, voter, promoted, epoch} {
		if e.line != "" {
			logf("%s: %s", e.node, e.line)
		}
	}
	if restored.line != "" {
		if d, err := time.ParseDuration(logField(restored.line, "took")); err == nil {
			took, restoreAt = d, restored.at.Add(-d)
		}
	}
	if caught.line == "" {
		// An older keyd counted its stable period from then.
		if d, err := time.ParseDuration(logField(voter.line, "stable_for")); err == nil {
			caught = event{at: voter.at.Add(-d)}
		} else if serving.After(start) {
			caught = event{at: serving}
		}
	}
	span := func(from, to time.Time) string {
		if from.IsZero() || to.IsZero() {
			return "not seen"
		}
		return ms(to.Sub(from))
	}
	add("  the join in parts (from the nodes' logs):", "", "")
	add("    setup: token, keyd, certificate, join_node, until a Raft non-voter", span(start, added.at), "-")
	if d, err := time.ParseDuration(logField(prepared.line, "took")); err == nil {
		add("      of which the leader's preparation of its log (snapshot_taken="+logField(prepared.line, "snapshot_taken")+")", ms(d), "-")
	}
	add("    the snapshot's transfer (until the new node's restore starts)", span(added.at, restoreAt), "-")
	add("    its restore", span(restoreAt, restoreAt.Add(took)), "-")
	add("    the entries after it, until the leader finds it caught up", span(restored.at, caught.at), "-")
	add("    the rest of the stable period, until a Raft voter", span(caught.at, voter.at), "-")
	if answers.line != "" {
		add("      (the stable period, counted from its first answer, "+span(start, answers.at)+" after the start)", span(answers.at, voter.at), "-")
	}
	add("    the leader's promote_node", span(voter.at, promoted.at), "-")
	add("    the reshare, until the new node has its share", span(promoted.at, epoch.at), "-")
	add("    until cluster join returns", span(epoch.at, end), "-")
}

// logTime is the time of a keyd log line (slog's text format).
func logTime(line string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, logField(line, "time"))
	return t, err == nil
}

// logField is the value of key=value in a keyd log line, unquoted.
func logField(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// profileStart writes a CPU profile of node i from its start (the first
// moment its debug address answers, which keyd serves before the node
// starts) for d, to dir/nI.pprof.
func profileStart(dir string, base, i int, d time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", base+10*i+7, int(d.Seconds()))
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url)
		if err != nil {
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		defer resp.Body.Close()
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("n%d.pprof", i)))
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, resp.Body); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
}

// measureRestart waits until no node is writing a snapshot, kills a
// follower with SIGKILL, makes a few creates (with create) while it is
// down, starts it again and measures from just before the start
// (deploy/local/cluster start, which returns once the node's API port is
// open) to its first release answered (polled every 20 ms): the row
// label, the share of that time the other nodes spent writing a
// snapshot, the node's CPU time and RSS then, and its log lines of the
// restore, the start and the log replayed after the snapshot. With
// -profile, the follower's first 6 s (1 s per 50,000 of the n keys if
// longer) are profiled (the directory restart, restart2, ...). r counts
// the restarts from 0.
func measureRestart(ctx context.Context, c *client.Client, creds *client.Credentials, addr func(int) string,
	sh func(...string) error, dir string, base, n, r int, create func() error, add func(what, value, target string), logf func(string, ...any)) error {
	label, profileName := "restarted follower", "restart"
	if restarts > 1 {
		label = fmt.Sprintf("restart %d of %d", r+1, restarts)
	}
	if r > 0 {
		profileName = fmt.Sprintf("restart%d", r+1)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	follower := 0
	for i := 3; i >= 1 && follower == 0; i-- {
		if st.Leader != fmt.Sprintf("n%d", i) {
			follower = i
		}
	}
	// The restart is measured with the other nodes quiet: none writing a
	// snapshot (one of a million keys takes two nodes 10-34 s of the
	// machine's two cores), and none started one for two snapshot
	// intervals, so that none is due. What they wrote during the restart
	// anyway is reported with it.
	logf("waiting until no node has written a snapshot for %v", 2*scaleSnapshotInterval)
	quietFrom := time.Now()
	if err := waitSnapshotsQuiet(dir, 3, 2*scaleSnapshotInterval, 5*time.Minute); err != nil {
		return err
	}
	add(fmt.Sprintf("wait before the restart until no node wrote a snapshot for %v", 2*scaleSnapshotInterval), ms(time.Since(quietFrom)), "-")
	if err := sh("kill", strconv.Itoa(follower), dir); err != nil {
		return err
	}
	logf("restarting n%d", follower)
	// The log moves on while the follower is down, as it would in a
	// cluster in use: the restarted node has entries to get from the
	// leader after its restore (how soon the first comes is its log's
	// first_after), few enough not to make a snapshot due.
	downWrites := 0
	for range scaleDownWrites {
		if create() == nil {
			downWrites++
		}
	}
	add("keys created while it was down (one a create)", fmt.Sprint(downWrites), "-")
	var others []int
	for i := 1; i <= 3; i++ {
		if i != follower {
			others = append(others, i)
		}
	}
	writing := make([]int, len(others)) // samples in which each was writing a snapshot
	samples := 0
	fc, err := client.NewClient(addr(follower), creds)
	if err != nil {
		return err
	}
	var restartProfile chan error
	if profileDir != "" {
		restartProfile = make(chan error, 1)
		go func() {
			// Long enough to see the restore, about 1 s per 50,000 keys
			// on this machine when loaded.
			d := max(6*time.Second, time.Duration(n/50000)*time.Second)
			restartProfile <- profileStart(filepath.Join(profileDir, profileName), base, follower, d)
		}()
	}
	start := time.Now()
	if err := sh("start", strconv.Itoa(follower), dir); err != nil {
		return err
	}
	// What the node answered until it released, each answer once, with
	// when it came (the time from the start to when it was asked and to
	// when it answered): what the start spent its time on after the
	// restore.
	lastErr := ""
	for {
		asked := time.Since(start)
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := fc.Get(rctx, "bench/secret")
		cancel()
		samples++
		for j, o := range others {
			if snapshotting(dir, o) {
				writing[j]++
			}
		}
		if err == nil {
			logf("n%d released: asked at %v, answered at %v (%s by the clock the nodes log with)", follower, asked.Round(time.Millisecond),
				time.Since(start).Round(time.Millisecond), time.Now().UTC().Format("15:04:05.000"))
			again := time.Now()
			if _, err := fc.Get(ctx, "bench/secret"); err == nil {
				logf("n%d: its second release took %v", follower, time.Since(again).Round(time.Millisecond))
			}
			break
		}
		if msg := err.Error(); msg != lastErr {
			lastErr = msg
			logf("n%d refused: asked at %v, answered at %v: %v", follower, asked.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), err)
		}
		if time.Since(start) > 2*time.Minute {
			return fmt.Errorf("n%d did not serve within 2 minutes of its start: %w", follower, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	add(label+": start to its first release", ms(time.Since(start)), "< 1000 ms")
	var shares []string
	for j, o := range others {
		shares = append(shares, fmt.Sprintf("n%d %.0f%%", o, 100*float64(writing[j])/float64(samples)))
	}
	add("  share of it the other nodes were writing a snapshot", strings.Join(shares, ", "), "-")
	if restartProfile != nil {
		if err := <-restartProfile; err != nil {
			fmt.Fprintln(os.Stderr, "keybench: restart profile:", err)
		}
	}
	pidFile := filepath.Join(dir, fmt.Sprintf("n%d.pid", follower))
	if cpu, err := cpuOf(pidFile); err == nil {
		add("  its CPU time (user and system) to then", ms(cpu), "-")
	}
	if kb, err := rssKB(pidFile); err == nil {
		add("  its RSS then (MiB)", fmt.Sprint(kb/1024), "-")
	}
	// What the restart did, from its log: the restore and the start.
	if b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.log", follower))); err == nil {
		lines := strings.Split(string(b), "\n")
		for _, msg := range []string{`msg="restored a verified snapshot"`, `msg="keyd running"`, `msg="applied the log held after the restored snapshot"`} {
			for i := len(lines) - 1; i >= 0; i-- {
				if strings.Contains(lines[i], msg) {
					logf("n%d: %s", follower, lines[i])
					break
				}
			}
		}
	}
	return waitCaughtUp(ctx, c)
}
