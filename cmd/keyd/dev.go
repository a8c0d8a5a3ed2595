package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
)

// devFile is the file in a dev cluster's directory that records its
// nodes and ports. It is written once the cluster is formed: a directory
// with it is resumed, one with nodes but without it was cut off while it
// formed.
const devFile = "dev.json"

// devNode is one node of a dev cluster, as devFile records it.
type devNode struct {
	ID     string `json:"id"`
	API    string `json:"api"`
	Raft   string `json:"raft"`
	Gossip string `json:"gossip"`
	Kxd    string `json:"kxd"`
	TLV    string `json:"tlv"`
	GRPC   string `json:"grpc"`
}

// devHeartbeatTimeout is a dev cluster's Raft heartbeat and election
// timeout. Its nodes share one process on one machine: nothing but a
// pause of the process (a busy laptop, a loaded CI machine) delays their
// heartbeats, and keyd's LAN default (150 ms) takes such a pause for a
// dead leader; the cluster, with two voters while the third joins, lost
// its leader in the middle of the join (e2e TestKeydDevResumesItsDir). A
// dev cluster has no failover to hurry.
const devHeartbeatTimeout = 500 * time.Millisecond

func (d devNode) flags(dir, joinToken string) nodeFlags {
	return nodeFlags{
		joinToken:        joinToken,
		id:               d.ID,
		dataDir:          filepath.Join(dir, d.ID),
		apiAddr:          d.API,
		raftAddr:         d.Raft,
		gossipAddr:       d.Gossip,
		requestTimeout:   3 * time.Second,
		heartbeatTimeout: devHeartbeatTimeout,
		gateways:         gatewayFlags{quic: true, kxdAddr: d.Kxd, tlvAddr: d.TLV, grpcAddr: d.GRPC},
	}
}

// runDev starts a complete cluster on loopback in one process, as an
// operator would form it: init on the first node, join the others. With
// --dir, a directory that holds a dev cluster already is resumed: the same
// nodes on the same ports, with their keys. Without it, the data is in a
// temporary directory removed at exit.
func runDev(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keyd dev", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for data and credentials, resumed when it holds a dev cluster (default: a temporary directory, removed at exit)")
	nodes := fs.Int("nodes", 3, "number of nodes")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text (key=value) or json (one object a line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *nodes < 1 || *nodes > 7 {
		return fmt.Errorf("--nodes must be 1 to 7, got %d", *nodes)
	}
	nodesGiven := false
	fs.Visit(func(f *flag.Flag) { nodesGiven = nodesGiven || f.Name == "nodes" })
	temporary := *dir == ""
	if temporary {
		d, err := os.MkdirTemp("", "keyquorum-dev-")
		if err != nil {
			return err
		}
		*dir = d
		defer os.RemoveAll(d)
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	var running []*runningNode
	defer func() {
		for _, r := range running {
			r.shutdown()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	saved, err := readDevFile(*dir)
	if err != nil {
		return err
	}
	var (
		members []devNode
		st      *api.Status
		env     string
	)
	if saved != nil {
		if nodesGiven && *nodes != len(saved) {
			return fmt.Errorf("%s holds a dev cluster of %d nodes, not --nodes %d: leave --nodes out to resume it, or choose another --dir", *dir, len(saved), *nodes)
		}
		members = saved
		st, env, err = resumeDev(ctx, *dir, members, log, &running)
	} else {
		members, st, env, err = formDev(ctx, *dir, *nodes, log, &running)
	}
	if err != nil {
		return err
	}
	verb, where := "formed", *dir
	if saved != nil {
		verb = "resumed"
	}
	if temporary {
		where += " (temporary: removed at exit; --dir keeps it)"
	}
	fmt.Fprintf(stdout, "# keyquorum dev cluster %s: %d nodes, threshold %d, key epoch %d, data in %s\n", verb, st.N, st.Threshold, st.Epoch, where)
	var apiAddrs []string
	for _, m := range members {
		fmt.Fprintf(stdout, "# %s: https+http/3 (REST, Tang at /adv and /tang/NAME/) %s, kxd %s, keyless TLV %s, gRPC %s\n",
			m.ID, m.API, m.Kxd, m.TLV, m.GRPC)
		apiAddrs = append(apiAddrs, m.API)
	}
	fmt.Fprintf(stdout, "# nodes' APIs: %v\n# paste these lines into another shell (also in %s):\n", apiAddrs, filepath.Join(*dir, "env.sh"))
	fmt.Fprint(stdout, env)
	sig, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-sig.Done()
	fmt.Fprintln(stderr, "keyd dev: shutting down")
	return nil
}

// readDevFile reads the nodes of the dev cluster in dir: nil if dir holds
// none, an error if it holds one cut off while it formed.
func readDevFile(dir string) ([]devNode, error) {
	b, err := os.ReadFile(filepath.Join(dir, devFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, "dev1")); err == nil {
			return nil, fmt.Errorf("%s holds nodes of a dev cluster that was stopped before it was formed (no %s): remove it, or choose another --dir", dir, devFile)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var members []devNode
	if err := json.Unmarshal(b, &members); err != nil || len(members) == 0 {
		return nil, fmt.Errorf("%s: not a dev cluster's record (%v): remove the directory, or choose another --dir", filepath.Join(dir, devFile), err)
	}
	return members, nil
}

// formDev starts n new nodes on free ports, forms them into a cluster,
// saves the credentials and env.sh, and last records the nodes in
// devFile. Each node's ports are found just before it starts, and it
// binds them all as it starts, before the init or its join: another
// program can take one only in between, and the start then says which.
func formDev(ctx context.Context, dir string, n int, log *slog.Logger, running *[]*runningNode) ([]devNode, *api.Status, string, error) {
	var members []devNode
	var tokens []string
	for i := 1; i <= n; i++ {
		ports, err := cluster.FreeLoopbackPorts(6)
		if err != nil {
			return nil, nil, "", err
		}
		token, _, _, err := api.NewJoinToken()
		if err != nil {
			return nil, nil, "", err
		}
		m := devNode{ID: fmt.Sprintf("dev%d", i), API: ports[0], Raft: ports[1], Gossip: ports[2], Kxd: ports[3], TLV: ports[4], GRPC: ports[5]}
		r, err := startNode(m.flags(dir, token), log)
		if err != nil {
			return nil, nil, "", fmt.Errorf("starting %s: %w", m.ID, err)
		}
		*running = append(*running, r)
		members, tokens = append(members, m), append(tokens, token)
	}
	// Each node's fingerprint is known here, in its own process: the
	// operator's check of it is the same as a join across machines.
	vouch := func(i int) client.JoinOptions {
		return client.JoinOptions{Token: tokens[i], Fingerprint: api.Fingerprint((*running)[i].node.Identity().SignKey)}
	}
	creds, _, err := client.InitCluster(ctx, members[0].API, "dev", n, vouch(0))
	if err != nil {
		return nil, nil, "", fmt.Errorf("init: %w", err)
	}
	c, err := client.NewClient(members[0].API, creds)
	if err != nil {
		return nil, nil, "", err
	}
	for i := 1; i < n; i++ {
		addr := members[i].API
		if err := c.AddJoinToken(ctx, tokens[i], 10*time.Minute); err != nil {
			return nil, nil, "", fmt.Errorf("join token for %s: %w", addr, err)
		}
		if _, err := c.JoinNode(ctx, addr, vouch(i)); err != nil {
			return nil, nil, "", fmt.Errorf("join %s: %w", addr, err)
		}
	}
	env, err := creds.Save(filepath.Join(dir, "credentials"), members[0].API)
	if err != nil {
		return nil, nil, "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "env.sh"), []byte(env), 0o644); err != nil {
		return nil, nil, "", err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	b, err := json.MarshalIndent(members, "", "  ")
	if err != nil {
		return nil, nil, "", err
	}
	if err := os.WriteFile(filepath.Join(dir, devFile), append(b, '\n'), 0o644); err != nil {
		return nil, nil, "", err
	}
	return members, st, env, nil
}

// resumeDev starts the recorded nodes on their ports with their data and
// waits until the cluster answers with its key; it returns the env.sh
// the first run wrote.
func resumeDev(ctx context.Context, dir string, members []devNode, log *slog.Logger, running *[]*runningNode) (*api.Status, string, error) {
	for _, m := range members {
		r, err := startNode(m.flags(dir, ""), log)
		if err != nil {
			return nil, "", fmt.Errorf("resuming %s on the ports of its first run (%s): %w", m.ID, filepath.Join(dir, devFile), err)
		}
		*running = append(*running, r)
	}
	creds := filepath.Join(dir, "credentials")
	c, err := client.LoadCredentials(filepath.Join(creds, "ca.pem"), filepath.Join(creds, "operator.pem"), filepath.Join(creds, "operator-key.pem"), "", "")
	if err != nil {
		return nil, "", fmt.Errorf("the dev cluster's credentials: %w", err)
	}
	cl, err := client.NewClient(members[0].API, c)
	if err != nil {
		return nil, "", err
	}
	env, err := os.ReadFile(filepath.Join(dir, "env.sh"))
	if err != nil {
		return nil, "", err
	}
	for {
		st, err := cl.Status(ctx)
		if err == nil && st.Epoch > 0 && st.Leader != "" {
			return st, string(env), nil
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("the resumed dev cluster did not elect a leader with its key: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
