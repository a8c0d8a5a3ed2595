package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster/api"
)

// runDev starts a complete cluster on loopback in one process, as an
// operator would form it: init on the first node, join the others.
func runDev(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keyd dev", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for data and credentials (default: a new temporary directory)")
	nodes := fs.Int("nodes", 3, "number of nodes")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text (key=value) or json (one object a line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nodes < 1 || *nodes > 7 {
		return fmt.Errorf("--nodes must be 1 to 7, got %d", *nodes)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "keyquorum-dev-")
		if err != nil {
			return err
		}
		*dir = d
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
	var apiAddrs, gatewayLines, tokens []string
	for i := 1; i <= *nodes; i++ {
		ports, err := freePorts(6)
		if err != nil {
			return err
		}
		token, _, _, err := api.NewJoinToken()
		if err != nil {
			return err
		}
		tokens = append(tokens, token)
		f := nodeFlags{
			joinToken:      token,
			id:             fmt.Sprintf("dev%d", i),
			dataDir:        filepath.Join(*dir, fmt.Sprintf("dev%d", i)),
			apiAddr:        ports[0],
			raftAddr:       ports[1],
			gossipAddr:     ports[2],
			requestTimeout: 3 * time.Second,
			gateways:       gatewayFlags{quic: true, kxdAddr: ports[3], tlvAddr: ports[4], grpcAddr: ports[5]},
		}
		gatewayLines = append(gatewayLines, fmt.Sprintf("# %s: https+http/3 (REST, Tang at /adv and /tang/NAME/) %s, kxd %s, keyless TLV %s, gRPC %s",
			f.id, f.apiAddr, ports[3], ports[4], ports[5]))
		r, err := startNode(f, log)
		if err != nil {
			return fmt.Errorf("starting %s: %w", f.id, err)
		}
		running = append(running, r)
		apiAddrs = append(apiAddrs, f.apiAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Each node's fingerprint is known here, in its own process: the
	// operator's check of it is the same as a join across machines.
	vouch := func(i int) client.JoinOptions {
		return client.JoinOptions{Token: tokens[i], Fingerprint: api.Fingerprint(running[i].node.Identity().SignKey)}
	}
	creds, _, err := client.InitCluster(ctx, apiAddrs[0], "dev", *nodes, vouch(0))
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	c, err := client.NewClient(apiAddrs[0], creds)
	if err != nil {
		return err
	}
	for i := 1; i < len(apiAddrs); i++ {
		addr := apiAddrs[i]
		if err := c.AddJoinToken(ctx, tokens[i], 10*time.Minute); err != nil {
			return fmt.Errorf("join token for %s: %w", addr, err)
		}
		if _, err := c.JoinNode(ctx, addr, vouch(i)); err != nil {
			return fmt.Errorf("join %s: %w", addr, err)
		}
	}
	env, err := creds.Save(filepath.Join(*dir, "credentials"), apiAddrs[0])
	if err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# keyquorum dev cluster: %d nodes, threshold %d, key epoch %d, data in %s\n", st.N, st.Threshold, st.Epoch, *dir)
	for _, l := range gatewayLines {
		fmt.Fprintln(stdout, l)
	}
	fmt.Fprintf(stdout, "# nodes' APIs: %v\n# paste these lines into another shell (also in %s):\n", apiAddrs, filepath.Join(*dir, "credentials", "env.sh"))
	fmt.Fprint(stdout, env)
	if err := os.WriteFile(filepath.Join(*dir, "env.sh"), []byte(env), 0o644); err != nil {
		return err
	}
	sig, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-sig.Done()
	fmt.Fprintln(stderr, "keyd dev: shutting down")
	return nil
}

// freePorts finds n free TCP ports on 127.0.0.1 that are free for UDP too
// (gossip uses both).
func freePorts(n int) ([]string, error) {
	var out []string
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		out = append(out, addr)
	}
	return out, nil
}
