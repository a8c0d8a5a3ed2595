// Command keybench measures a 3-node cluster of real keyd processes on
// this machine: release latency, releases per second at 1, 8 and 32
// clients with the CPU each process spent per release (the figure that
// stays put on a busy machine) and the bare cryptography's cost beside
// them, key creations per second
// (a Raft write with fsync), the time from kill -9 of the leader to the
// next successful release, each idle node's memory, and Keyless SSL
// signatures per second with assembled keys, next to the cost of the bare
// cryptography, signatures through the sign path (FROST, threshold RSA,
// assembled ECDSA) next to the bare signatures, and the time a booting machine waits for its key with
// keyagent next to clevis decrypt of an sss pin over the nodes' Tang. It prints one table. `make bench`
// runs it after building bin/keyd and bin/keyctl.
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

func main() {
	script := flag.String("script", "deploy/local/cluster", "the local cluster script")
	latencyN := flag.Int("latency-releases", 500, "sequential releases for the latency figures")
	clients := flag.Int("clients", 16, "concurrent clients for the creation and Keyless SSL figures")
	window := flag.Duration("window", 5*time.Second, "how long each throughput run lasts")
	flag.StringVar(&keyagentBin, "keyagent", "bin/keyagent", "the keyagent binary")
	scale := flag.Int("scale", 0, "instead: load this many keys and measure what grows with them (scale.go)")
	flag.BoolVar(&releaseOnly, "release-only", false, "measure releases and failover only (no creations, Keyless SSL or boot)")
	flag.BoolVar(&signOnly, "sign-only", false, "measure signatures only: Keyless SSL and the sign path (FROST, threshold RSA, assembled ECDSA), each next to the bare signature")
	flag.BoolVar(&transitOnly, "transit-only", false, "measure transit encrypt and decrypt only (transit.go)")
	flag.IntVar(&traceN, "trace", 0, "instead: make this many sequential releases and print where each one's time goes, step by step on each node (trace.go)")
	flag.BoolVar(&scaleMemoryOnly, "scale-memory-only", false, "with -scale: stop after the memory figures (no releases, restart, join or leave)")
	flag.IntVar(&profileClients, "profile-clients", 8, "with -profile: the release run to profile, by its number of clients")
	flag.StringVar(&profileDir, "profile", "", "write CPU profiles of the client and each node during the release run of -profile-clients (8) clients to this directory (with -scale: during the creates near 0 keys and at N, in its create0 and createN, and of the restarted follower for 6 s from its start, or 1 s per 50,000 keys if longer, in restart; and each node's heap profile and memory statistics where memory is measured, in its memory)")
	flag.IntVar(&restarts, "restarts", 1, "with -scale: restart a follower this many times, with -restart-creates of creates before each after the first")
	flag.IntVar(&snapshotThreshold, "snapshot-threshold", scaleSnapshotThreshold, "with -scale: the nodes' Raft snapshot threshold (Raft's default is 8192)")
	flag.DurationVar(&restartCreates, "restart-creates", time.Second, "with -scale -restarts N: how long to create keys (16 clients) before each restart after the first")
	flag.BoolVar(&keepDir, "keep", false, "with -scale: keep the cluster's directory (the nodes' logs) and print where it is")
	promoteAfter := flag.Duration("promote-after", 0, "with -scale: the nodes' --promote-after (a new member's stable period before it votes; 0: keyd's default, 1s)")
	flag.Parse()
	if *scale > 0 {
		if err := runScale(*script, *scale, *clients, *window, *promoteAfter); err != nil {
			fmt.Fprintln(os.Stderr, "keybench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*script, *latencyN, *clients, *window); err != nil {
		fmt.Fprintln(os.Stderr, "keybench:", err)
		os.Exit(1)
	}
}

type row struct{ what, value, target string }

// Before holder-side freshness and client-side combine (issue 9), on the
// machine the targets are for: the coordinator combined, and holders
// trusted its read index.
const (
	beforeP50        = "2.05 ms"
	beforeP99        = "4.82 ms"
	beforeThroughput = "1155" // at 16 clients
	beforeFailover   = "1.0-1.4 s (issue 10)"
	// After issue 9, before issue 10's release work: a profile at about
	// 660 releases/s on a quiet machine.
	beforeCPU = "1.07, 1.03, 0.74, 0 (at ~660/s)"
)

// releaseClients are the client counts of the release throughput runs.
var releaseClients = []int{1, 8, 16, 32}

var (
	releaseOnly bool
	traceN      int
	signOnly    bool
	profileDir  string
	// profileClients is the release run -profile profiles.
	profileClients int
	keepDir        bool // -keep: keep a scale run's directory
	// restarts is how many times a scale run restarts a follower.
	restarts int
	// scaleMemoryOnly ends a scale run after its memory figures.
	scaleMemoryOnly bool
)

// before is the BEFORE column: the figure before, by the row's measure.
var before = map[string]string{}

var keyagentBin string

func run(script string, latencyN, clients int, window time.Duration) error {
	rows := []row{loadRow()}
	var bare time.Duration // one release's bare cryptography
	if traceN == 0 {
		var br []row
		br, bare = bareCrypto()
		rows = append(rows, br...)
	}

	dir, err := os.MkdirTemp("", "keybench-")
	if err != nil {
		return err
	}
	defer removeUnlessFailedStart(dir)
	base, err := freeBase()
	if err != nil {
		return err
	}
	env := append(os.Environ(), "KEYQUORUM_BASE_PORT="+strconv.Itoa(base))
	if profileDir != "" || traceN > 0 {
		env = append(env, "KEYQUORUM_PROFILE=1")
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
	if transitOnly {
		tr, err := transitRows(ctx, c, dir, window)
		if err != nil {
			return fmt.Errorf("transit: %w", err)
		}
		return printRows(append(rows, tr...))
	}
	secret := make([]byte, 64)
	rand.Read(secret)
	if _, err := c.CreateSecret(ctx, "bench/secret", secret, time.Time{}); err != nil {
		return err
	}

	if traceN > 0 {
		// A few releases first: connections, memos and held values.
		for range 20 {
			if _, err := c.Get(ctx, "bench/secret"); err != nil {
				return err
			}
		}
		return traceReleases(ctx, c, dir, base, traceN)
	}

	if signOnly {
		sr, err := signingRows(ctx, c, dir, base, latencyN, clients, window)
		if err != nil {
			return err
		}
		return printRows(append(rows, sr...))
	}

	// Idle memory first, before load grows the heaps.
	time.Sleep(2 * time.Second)
	var rss []string
	for i := 1; i <= 3; i++ {
		kb, err := rssKB(filepath.Join(dir, fmt.Sprintf("n%d.pid", i)))
		if err != nil {
			return err
		}
		rss = append(rss, fmt.Sprintf("%.1f", float64(kb)/1024))
	}
	rows = append(rows, row{"idle node memory (RSS, MiB: n1, n2, n3)", strings.Join(rss, ", "), "< 50 each"})
	idle, err := idleCPU(ctx, dir, c, 5*time.Second)
	if err != nil {
		return err
	}
	rows = append(rows, idle)

	lat := make([]time.Duration, 0, latencyN)
	for range latencyN {
		start := time.Now()
		if _, err := c.Get(ctx, "bench/secret"); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	rows = append(rows,
		row{"release latency p50 (one client, keyctl's path)", ms(lat[len(lat)/2]), "< 2.5 ms"},
		row{"release latency p99", ms(lat[len(lat)*99/100]), "< 10 ms"})
	before[rows[len(rows)-2].what], before[rows[len(rows)-1].what] = beforeP50, beforeP99

	for _, k := range releaseClients {
		cpu, err := startCPU(dir)
		if err != nil {
			return err
		}
		stop := func() error { return nil }
		if k == profileClients && profileDir != "" {
			stop = profile(profileDir, base, window)
		}
		n, errs := load(k, window, func() error { _, err := c.Get(ctx, "bench/secret"); return err })
		if err := stop(); err != nil {
			return err
		}
		// Issue 10: half of a non-threshold decrypt service on this
		// machine (about 1,760/s at 1 worker, 3,800-5,000/s at 8-32).
		target := ">= 1900"
		if k == 1 {
			target = ">= 880" // one client waits for each release: its latency sets the rate
		}
		rows = append(rows, row{fmt.Sprintf("releases per second (%d clients, %v, %d errors; bare: its cryptography alone)", k, window, errs),
			fmt.Sprintf("%.0f (bare: %.0f)", float64(n)/window.Seconds(), bareReleases(bare, k)), target})
		per, err := cpu.perOp(n)
		if err != nil {
			return err
		}
		rows = append(rows, row{fmt.Sprintf("  CPU per release at %d clients (ms: client, n1, n2, n3)", k), per, "-"})
		if k == 16 {
			before[rows[len(rows)-2].what] = beforeThroughput
			before[rows[len(rows)-1].what] = beforeCPU
		}
	}
	if releaseOnly {
		rows = append(rows, failoverRow(ctx, sh, dir, creds, addr, c)...)
		return printRows(rows)
	}

	var seq atomic.Int64
	n, errs := load(clients, window, func() error {
		_, err := c.CreateSecret(ctx, fmt.Sprintf("bench/create-%d", seq.Add(1)), secret, time.Time{})
		return err
	})
	rows = append(rows, row{fmt.Sprintf("key creations per second (%d clients, fsync on, %d errors)", clients, errs),
		fmt.Sprintf("%.0f", float64(n)/window.Seconds()), "-"})

	rows = append(rows, failoverRow(ctx, sh, dir, creds, addr, c)...)

	sr, err := signingRows(ctx, c, dir, base, latencyN, clients, window)
	if err != nil {
		return err
	}
	rows = append(rows, sr...)

	trr, err := transitRows(ctx, c, dir, window)
	if err != nil {
		return fmt.Errorf("transit: %w", err)
	}
	rows = append(rows, trr...)

	br, err := bootRows(ctx, c, dir, keyagentBin, []string{addr(1), addr(2), addr(3)}, 15)
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	rows = append(rows, br...)

	return printRows(rows)
}

// signingRows are the signature figures: Keyless SSL (tlvRows) and the
// generic sign path (signRows).
func signingRows(ctx context.Context, c *client.Client, dir string, base, latencyN, clients int, window time.Duration) ([]row, error) {
	tlvAt := fmt.Sprintf("127.0.0.1:%d", base+10+4)
	rows, err := tlvRows(ctx, c, tlvAt, filepath.Join(dir, "credentials/ca.pem"), filepath.Join(dir, "credentials/operator.pem"),
		filepath.Join(dir, "credentials/operator-key.pem"), 2, 32, window)
	if err != nil {
		return nil, fmt.Errorf("TLV: %w", err)
	}
	sr, err := signRows(ctx, c, latencyN, clients, window)
	if err != nil {
		return nil, err
	}
	return append(rows, sr...), nil
}

func printRows(rows []row) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MEASURE\tVALUE\tTARGET\tBEFORE")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.what, r.value, r.target, before[r.what])
	}
	return w.Flush()
}

// failoverRow kills the leader failoverRuns times, timing the next
// release each time, and starts the node again and lets it catch up
// before the next kill. An error becomes the row's value, so the figures
// before it are still printed.
func failoverRow(ctx context.Context, sh func(...string) error, dir string, creds *client.Credentials, addr func(int) string, c *client.Client) []row {
	what := fmt.Sprintf("kill -9 of the leader to the next successful release (median, max of %d)", failoverRuns)
	before[what] = beforeFailover
	var failovers []time.Duration
	for range failoverRuns {
		killed := 0
		d, err := leaderFailover(ctx, creds, addr, func(i int) error { killed = i; return killNode(dir, i) })
		if err != nil {
			return []row{{what, "failed: " + err.Error(), "< 500 ms"}}
		}
		failovers = append(failovers, d)
		if err := sh("start", strconv.Itoa(killed), dir); err != nil {
			return []row{{what, "failed: " + err.Error(), "< 500 ms"}}
		}
		if err := waitCaughtUp(ctx, c); err != nil {
			return []row{{what, "failed: " + err.Error(), "< 500 ms"}}
		}
	}
	slices.Sort(failovers)
	return []row{{what, ms(failovers[len(failovers)/2]) + ", " + ms(failovers[len(failovers)-1]), "< 500 ms"}}
}

// idleCPU measures each node's CPU use, as a share of one core, over
// the window with no requests; the leader's is the figure of issue 10.
func idleCPU(ctx context.Context, dir string, c *client.Client, window time.Duration) (row, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return row{}, err
	}
	m, err := startCPU(dir)
	if err != nil {
		return row{}, err
	}
	time.Sleep(window)
	var out []string
	for i := range m.nodes {
		d, err := nodeCPU(dir, i+1)
		if err != nil {
			return row{}, err
		}
		out = append(out, fmt.Sprintf("%.1f", 100*float64(d-m.nodes[i])/float64(window)))
	}
	what := fmt.Sprintf("idle CPU (%% of a core: n1, n2, n3; leader %s)", st.Leader)
	before[what] = "9-10 (issue 10)"
	return row{what, strings.Join(out, ", "), "leader <= 4"}, nil
}

// cpuMark is the CPU time this process and each node had used at the
// start of a run.
type cpuMark struct {
	dir   string
	self  time.Duration
	nodes [3]time.Duration
}

func startCPU(dir string) (*cpuMark, error) {
	m := &cpuMark{dir: dir, self: selfCPU()}
	for i := range m.nodes {
		d, err := nodeCPU(dir, i+1)
		if err != nil {
			return nil, err
		}
		m.nodes[i] = d
	}
	return m, nil
}

// perOp formats the CPU each process used since the mark, per operation
// of ops.
func (m *cpuMark) perOp(ops int64) (string, error) {
	if ops == 0 {
		return "no operations", nil
	}
	per := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000/float64(ops)) }
	out := []string{per(selfCPU() - m.self)}
	for i := range m.nodes {
		d, err := nodeCPU(m.dir, i+1)
		if err != nil {
			return "", err
		}
		out = append(out, per(d-m.nodes[i]))
	}
	return strings.Join(out, ", "), nil
}

// selfCPU is the user and system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// nodeCPU is the user and system CPU time node i has used
// (/proc/PID/stat, fields 14 and 15, in clock ticks of 1/100 s).
func nodeCPU(dir string, i int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.pid", i)))
	if err != nil {
		return 0, err
	}
	stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat for node %d", i)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc stat for node %d", i)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// profile starts CPU profiles of this process and of each node (their
// debug ports, +7) for the window, and returns what ends them and writes
// them to dir.
func profile(dir string, base int, window time.Duration) func() error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() error { return err }
	}
	f, err := os.Create(filepath.Join(dir, "client.pprof"))
	if err != nil {
		return func() error { return err }
	}
	pprof.StartCPUProfile(f)
	// Allocation profiles at the start and the end (client.allocs0 and
	// .allocs1, nI.allocs0 and .allocs1): go tool pprof -base the first
	// -sample_index=alloc_objects the second gives what the window allocated.
	if err := allocProfiles(dir, base, "allocs0"); err != nil {
		return func() error { return err }
	}
	errs := make(chan error, 3)
	for i := 1; i <= 3; i++ {
		go func() {
			url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", base+10*i+7, int(window.Seconds()))
			resp, err := http.Get(url)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			out, err := os.Create(filepath.Join(dir, fmt.Sprintf("n%d.pprof", i)))
			if err == nil {
				_, err = io.Copy(out, resp.Body)
				out.Close()
			}
			errs <- err
		}()
	}
	return func() error {
		pprof.StopCPUProfile()
		f.Close()
		first := allocProfiles(dir, base, "allocs1")
		for range 3 {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
}

// allocProfiles writes the allocation profiles of this process and of each
// node (their debug ports, +7) to dir/client.NAME and dir/nI.NAME.
func allocProfiles(dir string, base int, name string) error {
	f, err := os.Create(filepath.Join(dir, "client."+name))
	if err != nil {
		return err
	}
	err = pprof.Lookup("allocs").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	for i := 1; i <= 3; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/allocs", base+10*i+7))
		if err != nil {
			return err
		}
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("n%d.%s", i, name)))
		if err == nil {
			_, err = io.Copy(out, resp.Body)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		resp.Body.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// bareReleases is the releases a second k clients could make if a release
// cost only its bare cryptography: one core's worth for one client,
// which waits for each release, and both cores' for more.
func bareReleases(bare time.Duration, k int) float64 {
	if bare <= 0 {
		return 0
	}
	return float64(min(k, 2)) / bare.Seconds()
}

// bareCrypto times the cryptography of one release with t=2 of 3 on this
// machine: what the cluster's figures should be compared against. It
// returns the rows and one release's cost.
func bareCrypto() ([]row, time.Duration) {
	recipients := []shamir.Recipient{}
	encPrivs := map[uint32][]byte{}
	for i := uint32(1); i <= 3; i++ {
		p, pub, _ := shamir.GenerateEncryptionKey(rand.Reader)
		encPrivs[i] = p
		recipients = append(recipients, shamir.Recipient{Index: i, EncPub: pub})
	}
	var deals []*shamir.Deal
	for i := uint32(1); i <= 3; i++ {
		d, _ := shamir.NewFreshDeal(rand.Reader, i, 2, recipients, nil)
		deals = append(deals, d)
	}
	shares := map[uint32]*shamir.Share{}
	var poly *shamir.PublicPoly
	for i := uint32(1); i <= 3; i++ {
		mine := map[uint32][]byte{}
		for _, d := range deals {
			mine[d.Dealer], _ = shamir.OpenDeal(d, i, encPrivs[i], nil)
		}
		shares[i], poly, _ = shamir.CombineFresh(deals, mine, i)
	}
	ct, _ := shamir.Seal(rand.Reader, poly.PublicKey(), []byte("info"), make([]byte, 64))
	per := func(f func()) time.Duration {
		r := testing.Benchmark(func(b *testing.B) {
			for range b.N {
				f()
			}
		})
		return time.Duration(r.NsPerOp())
	}
	msOf := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Nanoseconds())/1e6) }

	// The release path as it runs, in share mode (fsm.SealShare, what
	// client.Client asks for): the client signs a request with an
	// ephemeral key; each of t=2 holders checks the signature and seals
	// the value it holds for the key with its share (shamir.Prover.
	// SealToEphemeral, the key's ciphertext hashed); the client opens
	// both seals, combines and decrypts, the AEAD tag deciding
	// (api.OpenRelease). Proof mode, the fallback, beside it: each holder
	// makes its partial with a proof and seals it to a fresh key; the
	// client opens both, checks both proofs in one batch, combines and
	// decrypts.
	opPub, opPriv, _ := ed25519.GenerateKey(rand.Reader)
	payload := make([]byte, 320) // about a signed release request's
	rand.Read(payload)
	rctx := []byte("release context")
	provers := map[uint32]*shamir.Prover{}
	values := map[uint32][]byte{}
	for i := uint32(1); i <= 2; i++ {
		provers[i], _ = shamir.NewProver(shares[i])
		values[i], _ = provers[i].Value(ct.R)
	}
	eph, _ := shamir.NewX25519Key(rand.Reader)
	sig := ed25519.Sign(opPriv, payload)
	info := func(i uint32) []byte { return append(slices.Clone(rctx), byte(i)) }

	shareHolder := func(i uint32) []byte {
		sealed, err := provers[i].SealToEphemeral(eph.PublicKey(), shamir.CiphertextHash(ct), info(i), values[i])
		if err != nil {
			panic(err)
		}
		return sealed
	}
	shareHolderCost := per(func() {
		ed25519.Verify(opPub, payload, sig)
		shareHolder(1)
	})
	seals := []shamir.ShareSeal{{Index: 1, Sealed: shareHolder(1)}, {Index: 2, Sealed: shareHolder(2)}}
	shareClientCost := per(func() {
		ed25519.Sign(opPriv, payload)
		shamir.NewX25519Key(rand.Reader)
		v, _ := shamir.NewVerifier(poly, ct.R, rctx)
		if _, err := v.OpenShareSeals(eph, ct, []byte("info"), info, seals); err != nil {
			panic(err)
		}
	})

	proofHolder := func(i uint32) *shamir.Ciphertext {
		p, _ := provers[i].Partial(rand.Reader, ct.R, values[i], rctx)
		plain, _ := json.Marshal(p)
		sealed, _ := shamir.SealX25519(rand.Reader, eph.PublicKey(), rctx, plain)
		return sealed
	}
	proofHolderCost := per(func() {
		ed25519.Verify(opPub, payload, sig)
		proofHolder(1)
	})
	sealed := []*shamir.Ciphertext{proofHolder(1), proofHolder(2)}
	proofClientCost := per(func() {
		ed25519.Sign(opPriv, payload)
		shamir.NewX25519Key(rand.Reader)
		v, _ := shamir.NewVerifier(poly, ct.R, rctx)
		var parts []*shamir.Partial
		for _, sc := range sealed {
			plain, err := eph.Open(sc, rctx)
			if err != nil {
				panic(err)
			}
			var p shamir.Partial
			json.Unmarshal(plain, &p)
			parts = append(parts, &p)
		}
		vps, ok := v.VerifyBatch(rand.Reader, parts)
		if !ok {
			panic("keybench: the batch of honest partials failed")
		}
		if _, err := v.Open(ct, []byte("info"), vps); err != nil {
			panic(err)
		}
	})
	release := 2*shareHolderCost + shareClientCost
	proofRelease := 2*proofHolderCost + proofClientCost
	return []row{
		{"bare: a holder's answer, share mode (check the signature, seal its held value with its share)", msOf(shareHolderCost), "-"},
		{"bare: the client's side, share mode (sign, ephemeral key, open 2 share seals, combine, decrypt)", msOf(shareClientCost), "-"},
		{"bare: one release's cryptography, share mode (2 holders + client), and releases/s on 1 and 2 cores",
			fmt.Sprintf("%s, %.0f/s, %.0f/s", msOf(release), 1/release.Seconds(), 2/release.Seconds()), "-"},
		{"bare: a holder's answer, proof mode (check the signature, partial with its held value, seal)", msOf(proofHolderCost), "-"},
		{"bare: the client's side, proof mode (sign, ephemeral key, open 2 seals, batch of 2 proofs, combine, decrypt)", msOf(proofClientCost), "-"},
		{"bare: one release's cryptography, proof mode (2 holders + client)",
			fmt.Sprintf("%s, %.0f/s, %.0f/s", msOf(proofRelease), 1/proofRelease.Seconds(), 2/proofRelease.Seconds()), "-"},
	}, release
}

// load runs f from n goroutines for the window and counts successes and
// errors.
func load(n int, window time.Duration, f func() error) (ok, errs int64) {
	var okN, errN atomic.Int64
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	deadline := time.Now().Add(window)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				err := f()
				if err == nil {
					okN.Add(1)
					continue
				}
				errN.Add(1)
				// Each kind of error once (at most five), so that a run's
				// error count comes with what the errors were.
				mu.Lock()
				if msg := err.Error(); !seen[msg] && len(seen) < 5 {
					seen[msg] = true
					fmt.Fprintf(os.Stderr, "keybench: %s an error during the load: %v\n", time.Now().Format("15:04:05"), err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return okN.Load(), errN.Load()
}

const failoverRuns = 5

// killNode sends SIGKILL to node i itself, so the time measured starts at
// the signal, not when a script has seen the process reaped.
func killNode(dir string, i int) error {
	pidFile := filepath.Join(dir, fmt.Sprintf("n%d.pid", i))
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	return os.Remove(pidFile)
}

// waitCaughtUp waits until every member reports the same applied index.
func waitCaughtUp(ctx context.Context, c *client.Client) error {
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(100 * time.Millisecond) {
		st, err := c.Status(ctx)
		if err != nil || st.Leader == "" {
			continue
		}
		same := true
		for _, m := range st.Members {
			same = same && m.Applied == st.Members[0].Applied && m.RaftState != "unreachable"
		}
		if same {
			return nil
		}
	}
	return fmt.Errorf("the cluster did not catch up within 30 s")
}

// leaderFailover kills the leader with SIGKILL and measures until a
// surviving node releases again.
func leaderFailover(ctx context.Context, creds *client.Credentials, addr func(int) string, kill func(int) error) (time.Duration, error) {
	c1, err := client.NewClient(addr(1), creds)
	if err != nil {
		return 0, err
	}
	st, err := c1.Status(ctx)
	if err != nil {
		return 0, err
	}
	leader := -1
	for i := 1; i <= 3; i++ {
		if st.Leader == fmt.Sprintf("n%d", i) {
			leader = i
		}
	}
	if leader < 0 {
		return 0, fmt.Errorf("no leader in status: %q", st.Leader)
	}
	survivor := leader%3 + 1
	c, err := client.NewClient(addr(survivor), creds)
	if err != nil {
		return 0, err
	}
	if _, err := c.Get(ctx, "bench/secret"); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := kill(leader); err != nil {
		return 0, err
	}
	for time.Since(start) < 30*time.Second {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Get(rctx, "bench/secret")
		cancel()
		if err == nil {
			return time.Since(start), nil
		}
		switch cluster.KindOf(err) {
		case cluster.KindNoQuorum, vocab.KindUnreachable, cluster.KindUnknownOutcome, cluster.KindInternal:
		default:
			return 0, err
		}
	}
	return 0, fmt.Errorf("no release within 30 s of killing the leader")
}

func rssKB(pidFile string) (int64, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	pid := strings.TrimSpace(string(b))
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %s", pid)
}

// startFailed is the error of a cluster that did not start: its
// directory, with the nodes' logs, is kept (removeUnlessFailedStart) and
// named.
func startFailed(dir string, err error) error {
	failedStart = true
	return fmt.Errorf("starting the cluster: %w (the nodes' logs are kept in %s)", err, dir)
}

// failedStart is set when the cluster did not start.
var failedStart bool

// removeUnlessFailedStart removes the run's directory, unless the
// cluster did not start.
func removeUnlessFailedStart(dir string) {
	if !failedStart {
		os.RemoveAll(dir)
	}
}

// freeBase picks a base port for a cluster (deploy/local/cluster: node I
// uses base+10*I to base+10*I+6) whose ports are free, below the
// kernel's ephemeral range: a port in it may be taken by any outgoing
// connection's local end between this check and the node's bind, the
// nodes' own among them.
func freeBase() (int, error) {
	low, high := 10000, cluster.EphemeralPortsStart()-50
	for range 50 {
		var b [2]byte
		rand.Read(b[:])
		base := low + (int(b[0])<<8|int(b[1]))%(high-low)
		free := true
		for i := 1; i <= 3 && free; i++ {
			for j := 0; j < 7; j++ {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+10*i+j))
				if err != nil {
					free = false
					break
				}
				l.Close()
			}
		}
		if free {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no free ports found")
}
