// Command keyd runs a keyquorum node, or with "keyd dev" a complete local
// three-node cluster in one process.
//
// Every flag is mirrored by an environment variable: --data-dir by
// KEYQUORUM_DATA_DIR, and so on. A flag on the command line wins over the
// variable, and the variable over a --config file (JSON, with the flags'
// names as keys).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/gateway/console"
	"github.com/keyquorum/keyquorum/gateway/https"
	"github.com/keyquorum/keyquorum/gateway/tang"
)

const usage = `keyd runs a keyquorum node.

Usage:
  keyd [flags]        run one node
  keyd identity --data-dir DIR [--id ID]
                      print the node's ID and identity fingerprint (made on first use)
  keyd health [--api-addr ADDR] [--id ID]
                      exit 0 if the node at ADDR answers (a container's health check)
  keyd dev [flags]    run a local three-node cluster for development
  keyd snapshot restore --data-dir DIR [--id ID] FILE
                      restore a backup (keyctl snapshot save, --backup-dir) into a
                      stopped node whose Raft data was lost
  keyd recovery open|deal|rebuild ...
                      the recovery kit, when fewer than t nodes survived: an officer
                      checks and deals their share; a new node takes the rebuild
                      (docs/disaster-recovery.md)

Run "keyd -h" or "keyd dev -h" for the flags.
`

// started is when the process started.
var started = time.Now()

func main() {
	protectMemory()
	args := os.Args[1:]
	var err error
	switch {
	case len(args) > 0 && args[0] == "dev":
		err = runDev(args[1:], os.Stdout, os.Stderr)
	case len(args) > 0 && args[0] == "identity":
		err = runIdentity(args[1:], os.Stdout)
	case len(args) > 0 && args[0] == "snapshot":
		err = runSnapshot(args[1:], os.Stdout)
	case len(args) > 0 && args[0] == "recovery":
		err = runRecovery(args[1:], os.Stdout)
	case len(args) > 0 && args[0] == "health":
		if err = runHealth(args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keyd health:", err)
			os.Exit(1)
		}
	case len(args) > 0 && (args[0] == "help" || args[0] == "--help"):
		fmt.Print(usage)
	default:
		err = runNode(args, os.Stderr)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keyd:", err)
		}
		os.Exit(2)
	}
}

// protectMemory keeps key material out of core dumps: no core files, and
// the process is not dumpable (nor attachable by other users' ptrace).
func protectMemory() {
	unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0})
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}

// nodeFlags are the flags of one node.
type nodeFlags struct {
	id, dataDir, apiAddr, raftAddr, gossipAddr, logLevel, debugAddr string
	metricsAddr, auditLog, logFormat                                string
	auditBestEffort                                                 bool
	requestTimeout, heartbeatTimeout, snapshotInterval              time.Duration
	snapshotThreshold, trailingLogs                                 uint64
	gateways                                                        gatewayFlags
	// timeouts replace the HTTP servers' (the API's and kxd's) default
	// timeouts, https.DefaultTimeouts(requestTimeout); tests shorten them.
	timeouts *https.Timeouts
	// joinToken is what an unjoined node requires of whoever starts it,
	// and what it joins with by itself (retryJoin); joinTokenFile holds
	// it instead (a Kubernetes Secret, a compose secret).
	joinToken, joinTokenFile string
	backups                  backupFlags
	// retryJoin are where an unjoined node asks to join by itself, into
	// the cluster whose CA has joinCAFingerprint.
	retryJoin         listFlag
	joinCAFingerprint string
	// promoteAfter is the stable period of a new member as a Raft
	// non-voter, when this node leads.
	promoteAfter time.Duration
}

// defaultPromoteAfter is keyd's stable period for new members, counted
// from the node's first answer to the leader, its catch-up included
// (cluster/promote.go): ten polls without a miss, so that a node that
// comes up and falls over at once never votes (docs/autopilot.md).
const defaultPromoteAfter = time.Second

// listFlag is a flag that may be repeated; one value (or an environment
// variable) may also hold several, separated by commas or spaces.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })...)
	return nil
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.id, "id", "", "node ID (default: the host name)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (required)")
	fs.StringVar(&f.apiAddr, "api-addr", "127.0.0.1:8740", "host:port of the HTTPS API")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:8741", "host:port of Raft and node-to-node calls")
	fs.StringVar(&f.gossipAddr, "gossip-addr", "127.0.0.1:8742", "host:port of gossip (UDP and TCP)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text (key=value) or json (one object a line)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "host:port to serve /metrics (Prometheus) and /ready on, in plain HTTP without authentication (off when empty; docs/operations.md)")
	fs.StringVar(&f.auditLog, "audit-log", "", "audit log file: every authorization decision, hash-chained and signed (default: DATA_DIR/audit.log)")
	fs.BoolVar(&f.auditBestEffort, "audit-best-effort", false, "keep releasing when the audit log cannot be written (default: refuse, as Vault's blocking audit)")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "host:port to serve Go's pprof profiles on, for profiling (off when empty; never expose it)")
	fs.DurationVar(&f.requestTimeout, "request-timeout", cluster.DefaultRequestTimeout, "bound on one release, read or write")
	fs.DurationVar(&f.heartbeatTimeout, "heartbeat-timeout", cluster.DefaultHeartbeatTimeout, "Raft heartbeat and election timeout (and leader lease); raise it where the host starves keyd of CPU, at the price of a slower failover")
	fs.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", 0, "Raft log entries between snapshots (0: Raft's default, 8192)")
	fs.DurationVar(&f.snapshotInterval, "snapshot-interval", 0, "how often Raft checks whether a snapshot is due (0: Raft's default, 2m with jitter)")
	fs.Uint64Var(&f.trailingLogs, "trailing-logs", 0, "Raft log entries kept after a snapshot for lagging followers (0: Raft's default, 10240)")
	fs.StringVar(&f.joinTokenFile, "join-token-file", "", "file holding the join token, as --join-token (a mounted Secret); a missing file is no token")
	fs.StringVar(&f.joinToken, "join-token", "", "join token an unjoined node requires of whoever starts it (keyctl cluster token create; default: one the node makes in DATA_DIR/join-token)")
	fs.DurationVar(&f.promoteAfter, "promote-after", defaultPromoteAfter, "how long a new member stays a Raft non-voter answering the leader without a break (counted from its first answer, its catch-up included), and then only once caught up, before the leader promotes it to voter and reshares the key to it")
	fs.Var(&f.retryJoin, "retry-join", "API address of a member to ask to join by itself, with the join token: host:port (a name stands for each of its addresses) or srv:NAME (its SRV records); repeatable, or comma-separated")
	fs.StringVar(&f.joinCAFingerprint, "join-ca-fingerprint", "", "with --retry-join: the SHA-256 fingerprint of the cluster's CA certificate (keyctl cluster init --auto-join prints it); the node joins no other cluster")
	f.gateways.register(fs)
	f.backups.register(fs)
}

// applyEnvAndFile fills flags not given on the command line from
// KEYQUORUM_* variables, then from a JSON config file.
func applyEnvAndFile(fs *flag.FlagSet, configPath string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	file := map[string]any{}
	if configPath != "" {
		b, err := os.ReadFile(configPath)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &file); err != nil {
			return fmt.Errorf("config file %s: %w", configPath, err)
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := "KEYQUORUM_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if e := f.Value.Set(fmt.Sprint(v)); e != nil {
				err = fmt.Errorf("config file %s: %s: %w", configPath, f.Name, e)
			}
		}
	})
	return err
}

// newLogger makes the node's logger: every line of keyd, Raft included,
// goes through it. Nothing logs key material: errors and messages carry
// names, never bytes of a key (e2e.TestLogsHoldNoSecret).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func runNode(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("keyd", flag.ContinueOnError)
	var f nodeFlags
	f.register(fs)
	config := fs.String("config", "", "JSON config file with the flags' names as keys")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnvAndFile(fs, *config); err != nil {
		return err
	}
	if f.id == "" {
		host, err := os.Hostname()
		if err != nil {
			return err
		}
		f.id = host
	}
	if f.dataDir == "" {
		return errors.New("--data-dir is required")
	}
	if err := f.backups.validate(); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if err := readJoinTokenFile(&f, log); err != nil {
		return err
	}
	if f.debugAddr != "" {
		// keybench -trace takes the steps of the releases this node took
		// part in (cluster.TraceStep) from here.
		cluster.EnableReleaseTrace()
		http.HandleFunc("/debug/keyquorum/release-trace", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(cluster.TakeReleaseTrace())
		})
		// Before the node starts, so that a profile can see a restart's
		// restore. No write timeout: a CPU profile takes as long as it is
		// asked to.
		debug := &http.Server{Addr: f.debugAddr, ReadHeaderTimeout: https.ReadHeaderTimeout, IdleTimeout: https.IdleTimeout}
		go func() { log.Error("debug server", "err", debug.ListenAndServe()) }()
	}
	n, err := startNode(f, log)
	if err != nil {
		return err
	}
	id := n.node.Identity()
	fp := api.Fingerprint(id.SignKey)
	log.Info("keyd running", "node", f.id, "api", f.apiAddr, "raft", f.raftAddr, "gossip", f.gossipAddr, "fingerprint", fp,
		"took", time.Since(started)) // from the process's start: a restart's time to serve, snapshot restore included
	if !id.Joined && len(f.retryJoin) > 0 {
		log.Info("not in a cluster yet: asking to join by itself", "retry-join", f.retryJoin.String())
	} else if !id.Joined {
		token := "the one given with --join-token"
		if f.joinToken == "" && f.joinTokenFile == "" {
			token = "the one in " + cluster.JoinTokenPath(f.dataDir)
		}
		log.Info("not in a cluster yet: keyctl cluster init or join starts it with this fingerprint and the join token", "fingerprint", fp, "token", token)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if f.backups.dir != "" {
		go scheduleBackups(ctx, n.node, f.backups, log)
	}
	// Under systemd (Type=notify): READY=1 once the API answers, then the
	// watchdog while it still does.
	go func() {
		check := func(ctx context.Context) (string, error) {
			id, err := probeNode(ctx, f.apiAddr, f.id)
			if err != nil {
				return "", err
			}
			return describe(id), nil
		}
		if err := serveSystemd(ctx, os.Getenv, os.Getpid(), check, log); err != nil {
			log.Error("systemd notification", "err", err)
		}
	}()
	<-ctx.Done()
	log.Info("shutting down")
	if err := notifyStopping(os.Getenv); err != nil {
		log.Warn("systemd notification", "err", err)
	}
	return n.shutdown()
}

// runningNode is a node with its API server and its other gateways.
type runningNode struct {
	node     *cluster.Node
	api      *https.Server
	gateways []gateway
}

func startNode(f nodeFlags, log *slog.Logger) (*runningNode, error) {
	cfg := cluster.DefaultConfig()
	cfg.NodeID, cfg.DataDir = f.id, f.dataDir
	cfg.APIAddr, cfg.RaftAddr, cfg.GossipAddr = f.apiAddr, f.raftAddr, f.gossipAddr
	cfg.RequestTimeout = f.requestTimeout
	if f.heartbeatTimeout > 0 { // 0: the default's, which DefaultConfig set
		cfg.SetRaftTiming(f.heartbeatTimeout)
	}
	cfg.SnapshotThreshold, cfg.SnapshotInterval, cfg.TrailingLogs = f.snapshotThreshold, f.snapshotInterval, f.trailingLogs
	cfg.JoinToken = f.joinToken
	cfg.AuditLog, cfg.AuditBestEffort = f.auditLog, f.auditBestEffort
	cfg.PromoteAfter = f.promoteAfter
	if len(f.retryJoin) > 0 {
		cfg.RetryJoin, cfg.JoinCAFingerprint, cfg.JoinPeer = f.retryJoin, f.joinCAFingerprint, client.JoinPeer{}
	}
	cfg.Logger = log
	n, err := cluster.NewNode(cfg)
	if err != nil {
		return nil, err
	}
	if f.gateways.consoleCert != "" || f.gateways.consoleKey != "" {
		pair, err := tls.LoadX509KeyPair(f.gateways.consoleCert, f.gateways.consoleKey)
		if err != nil {
			n.Shutdown(context.Background())
			return nil, fmt.Errorf("--console-cert and --console-key: %w", err)
		}
		n.ServingCert().SetBrowserCert(&pair)
	}
	timeouts := https.DefaultTimeouts(f.requestTimeout)
	if f.timeouts != nil {
		timeouts = *f.timeouts
	}
	tangHandler := tang.Handler(tang.NewClusterKeys(n, f.gateways.tangDefault), log)
	api, err := https.NewServer(n, n.ServingCert(), log, https.Mount(tang.Patterns, tangHandler),
		https.Mount(console.Patterns, console.New(n, log)), https.WithTimeouts(timeouts), https.WithMetrics(n.Metrics()))
	if err != nil {
		n.Shutdown(context.Background())
		return nil, err
	}
	ln, err := net.Listen("tcp", f.apiAddr)
	if err != nil {
		n.Shutdown(context.Background())
		return nil, fmt.Errorf("API on %s: %w", f.apiAddr, err)
	}
	go func() {
		if err := api.Serve(ln); err != nil {
			log.Error("API server", "err", err)
		}
	}()
	gws, err := startGateways(n, api, f.apiAddr, f.gateways, log)
	if err == nil && f.metricsAddr != "" {
		var mg gateway
		if mg, err = serveMetrics(n, f.metricsAddr, log); err == nil {
			gws = append(gws, mg)
		}
	}
	if err != nil {
		for _, g := range gws {
			g.shutdown(context.Background())
		}
		api.Shutdown(context.Background())
		n.Shutdown(context.Background())
		return nil, err
	}
	return &runningNode{node: n, api: api, gateways: gws}, nil
}

// shutdown stops the API, then the node, within the shutdown timeout.
func (r *runningNode) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), cluster.DefaultShutdownTimeout)
	defer cancel()
	errs := []error{r.api.Shutdown(ctx)}
	for _, g := range r.gateways {
		if err := g.shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", g.name, err))
		}
	}
	return errors.Join(append(errs, r.node.Shutdown(ctx))...)
}

// runIdentity prints a node's ID and identity fingerprint, making its
// identity if the data directory has none yet, without starting it: the
// operator compares the fingerprint with the one keyctl is given.
func runIdentity(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keyd identity", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "data directory (required)")
	id := fs.String("id", "", "node ID, as keyd is given it (default: the host name)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnvAndFile(fs, ""); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("--data-dir is required")
	}
	if *id == "" {
		host, err := os.Hostname()
		if err != nil {
			return err
		}
		*id = host
	}
	ident, err := cluster.IdentityOf(*dataDir, *id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %s\nfingerprint %s\n", ident.NodeID, api.Fingerprint(ident.SignKey))
	return nil
}

// readJoinTokenFile sets the join token from --join-token-file when no
// --join-token is given. A missing file is no token: the node then makes
// its own (a pod whose Secret names no token for it cannot be started by
// anyone who does not read its data directory).
func readJoinTokenFile(f *nodeFlags, log *slog.Logger) error {
	if f.joinTokenFile == "" || f.joinToken != "" {
		return nil
	}
	b, err := os.ReadFile(f.joinTokenFile)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("no join token file: the node makes its own join token if it needs one", "file", f.joinTokenFile)
		return nil
	}
	if err != nil {
		return fmt.Errorf("--join-token-file: %w", err)
	}
	f.joinToken = strings.TrimSpace(string(b))
	if f.joinToken == "" {
		return fmt.Errorf("--join-token-file %s is empty", f.joinTokenFile)
	}
	return nil
}
