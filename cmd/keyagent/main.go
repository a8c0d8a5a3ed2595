// Command keyagent fetches a machine's unlock key from a keyquorum
// cluster, at boot or after: "keyagent unlock --key NAME" prints the key
// on stdout and nothing else, for a crypttab keyscript, systemd or the
// clevis pin; "keyagent enroll" makes the machine's key and pins the
// cluster's ID and public key in the config, without which unlock
// refuses to run. See docs/boot.md and package agent.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/keyquorum/keyquorum/agent"
	"github.com/keyquorum/keyquorum/vocab"
)

// usage is keyagent's help text.
const usage = `keyagent fetches this machine's unlock key from a keyquorum cluster.

Usage:
  keyagent enroll --cluster-key HEX --cluster-id ID [--config FILE] [--key-file F]
  keyagent enroll --confirm [--server HOST:PORT ...] [--ca FILE]
                  [--operator-cert FILE --operator-key FILE] [--config FILE]
      make the machine key if there is none; print its public key and ID
      for "keyctl machine add NAME --public-key B64 --key KEYNAME"; pin the
      cluster in the config (default ` + agent.DefaultConfigFile + `): its ID and
      public key as "keyctl cluster pin" prints them (KEYQUORUM_CLUSTER_ID,
      KEYQUORUM_CLUSTER_KEY), or with --confirm as t members, each at its
      own address with its node certificate, agree on them (the cluster's
      status is an operator's call: an operator's certificate, by default
      KEYQUORUM_CLIENT_CERT and KEYQUORUM_CLIENT_KEY, is used once and not
      kept). unlock refuses to run without the pin.
  keyagent unlock [--key NAME] [--config FILE] [--config-json JSON]
                  [--server HOST:PORT ...] [--srv DOMAIN] [--ca FILE]
                  [--key-file F] [--cluster-public-key KEY] [--cluster-id ID] [--wait D]
                  [--timeout-per-node D] [--retry-for D] [--tcp-only]
                  [--in-order] [--format raw|jwk] [-v]
      print the key on stdout (raw bytes, or with --format jwk the clevis
      pin's JSON Web Key); progress and errors go to stderr

The config file (default ` + agent.DefaultConfigFile + `, if present) is JSON:
  {"key": NAME, "servers": ["host:port", ...], "srv": DOMAIN,
   "ca": PEM-FILE, "key_file": FILE, "cluster_public_key": B64 (required),
   "cluster_id": ID, "timeout_per_node": "5s", "wait": "15m",
   "retry_for": "0s", "tcp_only": false, "in_order": false}
--config-json gives the same fields inline (the clevis pin's config),
over the file; "config": FILE in it names the file. Flags come last.

Exit status: 0 key printed, 1 other failure, 2 bad usage, 3 no such key,
4 machine not registered (or request refused as replayed or badly signed),
5 denied (machine revoked or not allowed), 6 clock too far off, 7 no
quorum, 8 no server answered, 9 approval did not come within --wait,
10 a node's answer failed verification, 11 unknown outcome (a node timed
out). keyctl exits with the same codes for the same errors.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// run runs keyagent with args and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	var u usageError
	switch {
	case err == nil:
		return vocab.ExitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return vocab.ExitOK
	case errors.As(err, &u):
		fmt.Fprintf(stderr, "keyagent: %s (keyagent help for usage)\n", u.msg)
		return vocab.ExitUsage
	}
	fmt.Fprintf(stderr, "keyagent: %s\n", strings.Join(strings.Fields(err.Error()), " "))
	return agent.ExitCode(err)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("no command: enroll or unlock")
	}
	switch args[0] {
	case "enroll":
		return enroll(ctx, args[1:], stdout, stderr)
	case "unlock":
		return unlock(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		return flag.ErrHelp
	}
	return usagef("unknown command %q: enroll or unlock", args[0])
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// Environment variables keyctl reads for an operator's credentials
// (package client's; keyagent enroll --confirm reads them too).
const (
	envCACert     = "KEYQUORUM_CACERT"
	envClientCert = "KEYQUORUM_CLIENT_CERT"
	envClientKey  = "KEYQUORUM_CLIENT_KEY"
)

func enroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("enroll")
	var servers serverList
	keyFile := fs.String("key-file", agent.DefaultKeyFile, "")
	configFile := fs.String("config", agent.DefaultConfigFile, "")
	clusterKey := fs.String("cluster-key", "", "")
	clusterID := fs.String("cluster-id", "", "")
	confirm := fs.Bool("confirm", false, "")
	fs.Var(&servers, "server", "")
	ca := fs.String("ca", "", "")
	opCert := fs.String("operator-cert", os.Getenv(envClientCert), "")
	opKey := fs.String("operator-key", os.Getenv(envClientKey), "")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*clusterKey == "") != (*clusterID == "") {
		return usagef("enroll: --cluster-key and --cluster-id go together (keyctl cluster pin prints both)")
	}
	var pinKey []byte
	if *clusterKey != "" {
		var err error
		if pinKey, err = agent.ParseClusterKey(*clusterKey); err != nil {
			return usagef("enroll: --cluster-key: %v", err)
		}
	}
	// The config the pin goes into, if it exists: its pin, and its
	// servers and CA for --confirm.
	var existing agent.Config
	if c, err := agent.LoadConfig(*configFile); err == nil {
		existing = *c
	} else if _, statErr := os.Stat(*configFile); statErr == nil {
		return &agent.Error{Kind: vocab.KindConfig, Message: err.Error()}
	}
	if pinKey == nil && !*confirm && len(existing.ClusterPublicKey) == 0 {
		return usagef("enroll: no cluster pin in %s: give --cluster-key HEX --cluster-id ID (keyctl cluster pin prints them) or --confirm", *configFile)
	}

	if *confirm {
		cf, err := confirmPin(ctx, existing, servers, *ca, *opCert, *opKey)
		if err != nil {
			return err
		}
		if pinKey != nil && (!bytes.Equal(cf.PublicKey, pinKey) || cf.ClusterID != *clusterID) {
			return &agent.Error{Kind: vocab.KindBadReply, Message: fmt.Sprintf(
				"%d members confirm cluster %s with public key %x, not the --cluster-id %s --cluster-key %x given: refusing to pin either",
				len(cf.Confirmers), cf.ClusterID, cf.PublicKey, *clusterID, pinKey)}
		}
		fmt.Fprintf(stderr, "keyagent: cluster %s, public key %x, confirmed by %d members (%s) of threshold %d at key epoch %d\n",
			cf.ClusterID, cf.PublicKey, len(cf.Confirmers), strings.Join(cf.Confirmers, ", "), cf.Threshold, cf.Epoch)
		pinKey, *clusterID = cf.PublicKey, cf.ClusterID
	}

	// The pin first: a config that pins another cluster stops the
	// enrollment before anything is made.
	if pinKey != nil {
		changed, err := agent.SavePin(*configFile, *clusterID, pinKey)
		if err != nil {
			return err
		}
		if changed {
			fmt.Fprintf(stderr, "keyagent: pinned cluster %s, public key %x, in %s\n", *clusterID, pinKey, *configFile)
		} else {
			fmt.Fprintf(stderr, "keyagent: %s pins cluster %s already\n", *configFile, *clusterID)
		}
	} else {
		fmt.Fprintf(stderr, "keyagent: %s pins cluster %q, public key %x\n", *configFile, existing.ClusterID, existing.ClusterPublicKey)
	}
	key, created, err := agent.EnsureMachineKey(*keyFile)
	if err != nil {
		return err
	}
	pub := key.Public().(ed25519.PublicKey)
	b64 := base64.StdEncoding.EncodeToString(pub)
	id := agent.MachineID(pub)
	if created {
		fmt.Fprintf(stderr, "keyagent: made the machine key %s\n", *keyFile)
	}
	fmt.Fprintf(stdout, "public-key: %s\nmachine-id: %s\n", b64, id)
	fmt.Fprintf(stderr, "keyagent: register it with: keyctl machine add NAME --public-key %s --key KEYNAME\n", b64)
	return nil
}

// confirmPin gets the pin from t members (agent.ConfirmPin) with an
// operator's certificate: servers and CA from the flags, else the config,
// else (the CA) KEYQUORUM_CACERT.
func confirmPin(ctx context.Context, cfg agent.Config, servers []string, ca, opCert, opKey string) (*agent.Confirmed, error) {
	if len(servers) == 0 {
		servers = cfg.Servers
	}
	if len(servers) == 0 {
		return nil, usagef("enroll: --confirm needs --server HOST:PORT (every node's, so that all must agree) or servers in the config")
	}
	if ca == "" {
		ca = cfg.CA
	}
	if ca == "" {
		ca = os.Getenv(envCACert)
	}
	if ca == "" {
		return nil, usagef("enroll: --confirm needs the cluster CA certificate: --ca FILE, \"ca\" in the config, or %s", envCACert)
	}
	if opCert == "" || opKey == "" {
		return nil, usagef("enroll: --confirm asks the cluster's status, an operator's call: --operator-cert FILE --operator-key FILE (or %s and %s)", envClientCert, envClientKey)
	}
	cert, err := agent.LoadOperatorCert(opCert, opKey)
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(cfg.TimeoutPerNode)
	return agent.ConfirmPin(ctx, agent.ConfirmOptions{Servers: servers, CA: ca, Operator: cert, TimeoutPerNode: timeout})
}

// serverList is a repeatable --server flag; commas also separate.
type serverList []string

func (s *serverList) String() string { return strings.Join(*s, ",") }

func (s *serverList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s = append(*s, part)
		}
	}
	return nil
}

// durationFlag records whether it was set.
type durationFlag struct {
	d   time.Duration
	set bool
}

func (d *durationFlag) String() string { return d.d.String() }

func (d *durationFlag) Set(v string) error {
	x, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	if x < 0 {
		return fmt.Errorf("negative duration %s", v)
	}
	d.d, d.set = x, true
	return nil
}

// clevisConfig is the config of the clevis pin: agent.Config's fields and
// "config", a config file they override.
type clevisConfig struct {
	File string `json:"config,omitempty"`
	agent.Config
}

func unlock(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("unlock")
	var servers serverList
	var wait, perNode, retryFor durationFlag
	keyName := fs.String("key", "", "")
	configFile := fs.String("config", "", "")
	configJSON := fs.String("config-json", "", "")
	fs.Var(&servers, "server", "")
	srv := fs.String("srv", "", "")
	ca := fs.String("ca", "", "")
	keyFile := fs.String("key-file", "", "")
	pin := fs.String("cluster-public-key", "", "")
	clusterID := fs.String("cluster-id", "", "")
	fs.Var(&wait, "wait", "")
	fs.Var(&perNode, "timeout-per-node", "")
	fs.Var(&retryFor, "retry-for", "")
	tcpOnly := fs.Bool("tcp-only", false, "")
	inOrder := fs.Bool("in-order", false, "")
	format := fs.String("format", "raw", "")
	verbose := fs.Bool("v", false, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != "raw" && *format != "jwk" {
		return usagef("unlock: --format is raw or jwk, not %q", *format)
	}

	var inline *clevisConfig
	if *configJSON != "" {
		inline = &clevisConfig{}
		if err := strictJSON([]byte(*configJSON), inline); err != nil {
			return usagef("unlock: --config-json: %v", err)
		}
	}
	cfg, err := baseConfig(*configFile, inline)
	if err != nil {
		return err
	}
	if inline != nil {
		cfg = cfg.Merge(&inline.Config)
	}
	flags := agent.Config{Key: *keyName, Servers: servers, SRV: *srv, CA: *ca, KeyFile: *keyFile, TCPOnly: *tcpOnly, InOrder: *inOrder, ClusterID: *clusterID}
	if *pin != "" {
		if flags.ClusterPublicKey, err = agent.ParseClusterKey(*pin); err != nil {
			return usagef("unlock: --cluster-public-key: %v", err)
		}
	}
	if wait.set {
		w := agent.Duration(wait.d)
		flags.Wait = &w
	}
	flags.TimeoutPerNode = agent.Duration(perNode.d)
	flags.RetryFor = agent.Duration(retryFor.d)
	cfg = cfg.Merge(&flags).WithDefaults()
	if err := cfg.Validate(); err != nil {
		return &agent.Error{Kind: vocab.KindConfig, Message: err.Error()}
	}

	key, err := agent.LoadMachineKey(cfg.KeyFile)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, key)
	if err != nil {
		return err
	}
	a.Log = stderr
	a.Verbose = *verbose
	secret, err := a.Unlock(ctx, cfg.Key)
	if err != nil {
		return err
	}
	defer clear(secret)
	out := secret
	if *format == "jwk" {
		if out, err = agent.ClevisJWK(secret, cfg.Key); err != nil {
			return err
		}
		defer clear(out)
	}
	// One write of the whole key: never part of it.
	if _, err := stdout.Write(out); err != nil {
		return fmt.Errorf("writing the key to stdout: %v", err)
	}
	return nil
}

// baseConfig reads the config file the others override: --config, else
// the inline config's "config", else the default file if it exists.
func baseConfig(flagFile string, inline *clevisConfig) (agent.Config, error) {
	path := flagFile
	if path == "" && inline != nil {
		path = inline.File
	}
	if path == "" {
		if _, err := os.Stat(agent.DefaultConfigFile); err != nil {
			return agent.Config{}, nil
		}
		path = agent.DefaultConfigFile
	}
	c, err := agent.LoadConfig(path)
	if err != nil {
		return agent.Config{}, &agent.Error{Kind: vocab.KindConfig, Message: err.Error()}
	}
	return *c, nil
}

// strictJSON decodes one JSON object into v, refusing unknown fields.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}
