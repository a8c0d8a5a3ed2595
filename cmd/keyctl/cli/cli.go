// Package cli is keyctl's command line: it parses the commands, calls the
// cluster's REST v1 API through package client, and prints
// results. Errors are one line on stderr and a non-zero exit status.
package cli

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

// Exit statuses: the project's one table (vocab), which keyagent shares.
// An error of the cluster exits with the code of its kind
// (vocab.Kind.ExitCode).
const (
	ExitOK    = vocab.ExitOK
	ExitError = vocab.ExitFailure // refused or failed, for a kind without a code of its own
	ExitUsage = vocab.ExitUsage   // the command line is wrong
)

// Usage is keyctl's help text.
const Usage = `keyctl runs a keyquorum cluster.

Usage:
  keyctl cluster init --node ADDR --token T|--token-file F [--fingerprint FP] [--nodes N] [--name NAME] [--dir DIR] [--auto-join]
                    [--recovery-officer NAME=KEY ... --recovery-threshold K]
                                    found a cluster; its key is made when N nodes (default 3) have joined;
                                    --auto-join lets nodes join by themselves (keyd --retry-join)
  keyctl cluster token create [--ttl 1h]
                                    print a one-time join token; start the new node with it (keyd --join-token)
  keyctl cluster token list | revoke ID
  keyctl cluster join ADDR --token T|--token-file F [--fingerprint FP] [--env FILE]
                                    admit the unjoined node at ADDR (needs the CA and gossip keys);
                                    the join that completes the first key writes the pin into FILE
  keyctl cluster autopilot --remove-dead-after D
                                    have the leader remove a member down for D (0: off, the default),
                                    while t holders stay, and reshare its share away
  keyctl cluster pin [--env FILE]   confirm the cluster key with t members and pin it: print its
                                    export lines and write them into FILE
  keyctl cluster leave NODE-ID      remove a member; the cluster reshares without it
  keyctl cluster status
  keyctl key create NAME [--type secret] [--bytes N | --from-file F] [--expires DURATION] [ACCESS]
  keyctl key create NAME --type rsa|ecdsa|ed25519 [--from-file PEM | --bits N] [--assemble-ttl D] [ACCESS]
  keyctl key create NAME --type ed25519-frost [--from-file PEM] [ACCESS]
                                    an Ed25519 key dealt here in FROST shares: it signs by quorum, never whole
  keyctl key create NAME --type tang [ACCESS]
                                    a P-256 Tang key dealt in shares; clevis uses it at /tang/NAME or /rec
  keyctl key access NAME ACCESS | --close
                                    set which legacy gateways serve a key, and their rules
  keyctl key create NAME --type rsa-threshold [--from-file PEM | --bits N] [ACCESS]
                                    an RSA key dealt here in shares: it signs by quorum, never assembled
  keyctl key import-dir DIR --client-cert PEM [--prefix P] [--assemble-ttl D] [--assembled-rsa]
                                    import PEM private keys for the Keyless SSL gateway: RSA keys
                                    sign by quorum (rsa-threshold) unless --assembled-rsa; ECDSA
                                    and Ed25519 keys are assembled
  keyctl key create-many FILE [--bytes N]
                                    create many secret keys, up to 1000 per Raft entry, each checked as
                                    a key create of it: FILE (- for stdin) has one key a line, NAME
                                    (a random secret of N bytes) or NAME BASE64-SECRET; prints each refusal
  keyctl key import-kxd DIR [--prefix P]
                                    import a kxd data directory (keys, allowed_clients, allowed_hosts, email_to)
  keyctl key get NAME [--token T]   print the secret's exact bytes on stdout
  keyctl key list [--limit N [--after NAME]]
                                    every key, or one page of N and the command for the next
  keyctl key show NAME|ID
  keyctl key revoke NAME
  keyctl key destroy NAME
  keyctl key cas NAME --old-sha256 HEX --from-file F
  keyctl key sign NAME [--in FILE] [--token T]
                                    sign the message (stdin by default) by quorum; print the signature, base64
                                    (an ecdsa key, assembled, signs on the node a quorum releases it to)
  keyctl key verify NAME --signature B64 [--in FILE]
                                    check a signature with the key's public key
  keyctl transit create NAME [--cipher aes256-gcm96|chacha20-poly1305] [--derived] [--expires DURATION] [--exportable]
                                    an encryption key whose versions are dealt here in shares
  keyctl transit create NAME --type x25519 [--expires DURATION]
                                    an X25519 exchange key, dealt here in shares; prints its X25519 public key
  keyctl transit create NAME --type aes256-cbc|aes128-cbc|hmac-sha256|hmac-sha512 [--key-file F] [--assemble-ttl D]
                                    an assembled key (whole on the coordinating node for each operation), of
                                    random bytes or F's; then transit encrypt NAME / decrypt NAME B64 (CBC:
                                    IV || ciphertext, PKCS #7, no integrity) or hmac NAME / verify NAME --hmac B64
  keyctl transit import NAME --key-file F | --wrapped F --wrapping-private-key PEM [same flags as create]
                                    the same, its first version the given key (unwrapped and dealt here;
                                    --type x25519: an RFC 7748 private key)
  keyctl transit export NAME --wrapping-key PUB.pem [--version N] [--token T]
                                    an exportable key's version, combined here from t holders' shares and
                                    printed only wrapped (Vault's BYOK format: RSA-OAEP + AES-KWP, base64)
  keyctl transit encrypt NAME [--in FILE] [--context B64] | --batch FILE
                                    encrypt here with the latest version's public key; print kq:vN:...
  keyctl transit decrypt NAME CIPHERTEXT [--context B64] | NAME --batch FILE
                                    decrypt by quorum, combined here (no node sees the plaintext)
  keyctl transit rewrap NAME CIPHERTEXT [--context B64] | NAME --batch FILE
                                    decrypt and encrypt again with the latest version, here
  keyctl transit rotate NAME        deal a new version; it encrypts from now on
  keyctl transit config NAME --min-decryption-version N
  keyctl transit datakey NAME [--wrapped] [--context B64]
                                    a fresh 256-bit data key and its ciphertext (or only the ciphertext)
  keyctl transit derive NAME [--context B64] [--algorithm sha2-256|sha2-512] [--bytes N] [--version N]
                                    a key derived by quorum from the context (HKDF of a threshold PRF), combined here
  keyctl transit hmac NAME [--in FILE] [--context B64] [--algorithm sha2-256|sha2-512] [--hmac kq:vN:...]
                                    HMAC under a MAC key derived by quorum, used here only; --hmac checks one
  keyctl transit sign NAME [--in FILE]
                                    sign by quorum with an ed25519-frost key; print kq:vN:<base64>
  keyctl transit verify NAME --signature kq:vN:... [--in FILE]
                                    check a signature with the key's public key, here
  keyctl transit exchange NAME --peer-public B64 [--version N]
                                    X25519 with an x25519 key by quorum, combined here; print the shared secret, base64
  keyctl machine add NAME --public-key B64 --key NAME|PREFIX* [--approval]
                                    register a machine (keyagent enroll prints its key)
  keyctl machine list
  keyctl machine revoke MACHINE-ID  no node answers the machine any more
  keyctl session list               machines waiting at boot for an approval
  keyctl session approve MACHINE-ID [--key NAME] [--uses N | --for DURATION]
                                    approve a waiting machine: one use by default
  keyctl session deny MACHINE-ID [--key NAME] [--for DURATION]
                                    refuse a waiting machine (for 1h by default); its keyagent stops
  keyctl passkey add REQUEST [--origin https://HOST:PORT ...]
                                    register an operator's passkey, as the console's passkey page
                                    prints it: it may then sign that operator's approvals and denials
                                    at the request's console origins, or at those --origin lists
  keyctl rule put ID --principal OPERATOR-ID --key NAME|PREFIX* --ops OP[,OP...]
  keyctl token create (--key NAME | --prefix P | --all-keys)... --flags F[,F...]|ALL|READONLY [--ttl 1h]
                                    mint a capability token with your operator key (no node is asked);
                                    it never allows more than your own rules
  keyctl token restrict TOKEN|- [--flags F,...] [--key NAME]... [--prefix P]... [--ttl D] [--network CIDR] [--max-uses N]
                                    narrow a token offline, with the token alone; print the new one
  keyctl token show TOKEN|-         its operator, revocation ids and Datalog, unverified
  keyctl token revoke REVOCATION-ID refuse that token, and every token restricted from it, on every node
  keyctl operator create NAME --dir DIR [--admin]
                                    make another operator's key and certificate (needs the CA key)
  keyctl snapshot save FILE         write a backup of the cluster's state (admins; keyd snapshot
                                    restore puts it back on nodes whose Raft data was lost)
  keyctl snapshot inspect FILE      check a backup's checksum and certificate, and show what it holds
  keyctl recovery keygen --out FILE
                                    make a recovery officer's key (FILE, mode 0600) and print its
                                    public key for cluster init --recovery-officer
  keyctl recovery plan --node ADDR=FP ... --holders I,J [--threshold T] --out PLAN
                                    after fewer than t nodes survived: the new nodes (started
                                    unjoined) a recovery kit rebuilds the cluster on
  keyctl recovery sign --plan PLAN --deal FILE ... --out ORDER
                                    sign the rebuild with k officers' deals (keyd recovery deal)
                                    and issue the new nodes' certificates (needs the CA key)
  keyctl audit verify FILE [--fingerprint FP] [--until now|TIME]
                                    check a node's audit log: signatures, order, chain, its
                                    node's key, and that it reaches TIME (docs/operations.md)

A node is admitted only if its identity fingerprint is the one keyd printed
on its machine at start ("keyd identity" prints it too): pass it with
--fingerprint, or confirm it when asked on a terminal. The token is the one
the node was started with: for a join, one "cluster token create" made,
which the join spends; for init, the one in the node's data directory
(join-token) unless keyd was given --join-token.

ACCESS is --gateway kxd|tang|tlv, --client-cert PEM, --host H, --no-hosts,
--network CIDR, --email ADDR, --rate N (each list flag repeats). The node
that terminates a kxd, Tang or Keyless SSL client checks these rules itself;
share holders check only that the key is open to that gateway.

MACHINE-ID is the ID "keyctl machine list" and "keyagent enroll" show, or
the "SHA256:..." form the gRPC machine flow and klefki's tools show.

The node and credentials come from KEYQUORUM_ADDR, KEYQUORUM_CACERT,
KEYQUORUM_CLIENT_CERT and KEYQUORUM_CLIENT_KEY (and KEYQUORUM_CA_KEY,
KEYQUORUM_GOSSIP_KEY to join nodes), as printed by "keyd dev" or
"keyctl cluster init". --addr overrides KEYQUORUM_ADDR. KEYQUORUM_CLUSTER_ID
and KEYQUORUM_CLUSTER_KEY are the pin: every secret is sealed to that key,
never to one a node reports, and every release is checked against it.
FILE defaults to the env.sh beside KEYQUORUM_CACERT.

With --token (or KEYQUORUM_TOKEN), key get, key sign and transit decrypt,
derive, hmac and exchange need no operator credentials: only KEYQUORUM_ADDR,
KEYQUORUM_CACERT and the pin (for transit, also --key-file: the key's
metadata from key show --json). Capability flags: genkey, destroy, revoke,
encrypt, decrypt, sign, verify, mac, hash, getinfo, list, restrict, derive,
exchange, import; key get and transit decrypt need decrypt, key sign needs
sign, transit derive and hmac need derive, transit exchange needs exchange
(docs/tokens.md).

Exit status, the same as keyagent's: 0 done, 1 refused or failed, 2 bad
usage, 3 not found, 4 unauthenticated, 5 denied, 6 clock too far off,
7 no quorum (nothing happened), 8 cannot reach the node (nothing
happened), 11 unknown outcome (a write may have happened).
`

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// Run runs keyctl with args and returns the exit status.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return report(run(args, stdin, stdout), stdout, stderr)
}

// report prints err, if any, as one line on stderr (help on stdout) and
// returns its exit status. An error of a kind is printed with its kind
// and its whole text: the steps that wrapped the node's answer say where
// it happened ("starting node "n3": internal error", not "internal error"
// alone).
func report(err error, stdout, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var u usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, Usage)
		return ExitOK
	case errors.As(err, &u):
		fmt.Fprintf(stderr, "keyctl: %s\nRun \"keyctl help\" for usage.\n", u.msg)
		return ExitUsage
	}
	var e *api.Error
	if errors.As(err, &e) {
		fmt.Fprintf(stderr, "keyctl: %s: %s\n", strings.ReplaceAll(string(e.Kind), "_", " "), strings.ReplaceAll(err.Error(), "\n", "; "))
		return e.Kind.ExitCode()
	}
	fmt.Fprintf(stderr, "keyctl: %v\n", err)
	return ExitError
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		return flag.ErrHelp
	}
	if len(args) < 2 {
		return usagef("%q needs a subcommand", args[0])
	}
	cmd, sub, rest := args[0], args[1], args[2:]
	c := &command{stdin: stdin, stdout: stdout}
	handlers := c.handlers()
	group, ok := handlers[cmd]
	if !ok {
		return usagef("unknown command %q", cmd)
	}
	h, ok := group[sub]
	if !ok {
		return usagef("unknown command %q %q", cmd, sub)
	}
	return h(rest)
}

// handlers maps each command and subcommand to its function.
func (c *command) handlers() map[string]map[string]func([]string) error {
	return map[string]map[string]func([]string) error{
		"cluster": {"init": c.clusterInit, "join": c.clusterJoin, "leave": c.clusterLeave, "status": c.clusterStatus, "token": c.clusterToken, "pin": c.clusterPin, "autopilot": c.clusterAutopilot},
		"key": {"create": c.keyCreate, "create-many": c.keyCreateMany, "get": c.keyGet, "list": c.keyList, "show": c.keyShow,
			"revoke": c.keyRevoke, "destroy": c.keyDestroy, "cas": c.keyCAS, "access": c.keyAccess,
			"import-dir": c.keyImportDir, "import-kxd": c.keyImportKxd, "sign": c.keySign, "verify": c.keyVerify},
		"rule":     {"put": c.rulePut},
		"token":    {"create": c.capTokenCreate, "restrict": c.capTokenRestrict, "revoke": c.capTokenRevoke, "show": c.capTokenShow},
		"machine":  {"add": c.machineAdd, "list": c.machineList, "revoke": c.machineRevoke},
		"session":  {"list": c.sessionList, "approve": c.sessionApprove, "deny": c.sessionDeny},
		"operator": {"create": c.operatorCreate},
		"snapshot": {"save": c.snapshotSave, "inspect": c.snapshotInspect},
		"passkey":  {"add": c.passkeyAdd},
		"audit":    {"verify": c.auditVerify},
		"recovery": {"keygen": c.recoveryKeygen, "plan": c.recoveryPlan, "sign": c.recoverySign},
		"transit": {"create": c.assembledCreateOr(c.transitCreate), "import": c.transitImport,
			"encrypt": c.assembledOr(fsm.OpEncrypt, c.transitEncrypt), "decrypt": c.assembledOr(fsm.OpDecrypt, c.transitDecrypt),
			"rotate": c.transitRotate, "config": c.transitConfig, "datakey": c.transitDataKey, "rewrap": c.transitRewrap,
			"derive": c.transitDerive, "hmac": c.assembledOr(fsm.OpMAC, c.transitHMAC), "sign": c.transitSign,
			"verify": c.assembledOr(fsm.OpVerify, c.transitVerify),
			"export": c.transitExport, "exchange": c.transitExchange},
	}
}

type command struct {
	stdin  io.Reader
	stdout io.Writer
	addr   string
}

// flags makes a flag set with the common --addr flag.
func (c *command) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.addr, "addr", os.Getenv(client.EnvAddr), "node API address host:port")
	return fs
}

// parse parses flags that may come before or after positional arguments
// and checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, positional ...string) ([]string, error) {
	return parseUpTo(fs, args, len(positional), len(positional), strings.Join(positional, " "))
}

// parseUpTo is parse for a command that takes least to most positional
// arguments, described by usage; flags may come before, between or after
// them, and -h answers with the help (flag.ErrHelp).
func parseUpTo(fs *flag.FlagSet, args []string, least, most int, usage string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < least || len(pos) > most {
		return nil, usagef("%s takes %s", fs.Name(), usage)
	}
	return pos, nil
}

func (c *command) client() (*client.Client, error) {
	if c.addr == "" {
		return nil, usagef("no node address: set %s or pass --addr", client.EnvAddr)
	}
	creds, err := client.CredentialsFromEnv()
	if err != nil {
		return nil, err
	}
	return client.NewClient(c.addr, creds)
}

func timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// connect makes the client and the context of one command.
func (c *command) connect() (*client.Client, context.Context, context.CancelFunc, error) {
	cl, err := c.client()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := timeout()
	return cl, ctx, cancel, nil
}

// connected runs a command that takes no positional argument: it parses
// args with fs (whose flags the command has defined), connects, and calls
// do with the client and the command's context.
func (c *command) connected(fs *flag.FlagSet, args []string, do func(ctx context.Context, cl *client.Client) error) error {
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	return do(ctx, cl)
}

// list runs a list command: it gets the items with get and prints them
// in aligned columns under header, row making each item's line of
// tab-separated columns.
func list[T any](c *command, fs *flag.FlagSet, args []string, get func(*client.Client, context.Context) ([]T, error), header string, row func(T) string) error {
	return c.connected(fs, args, func(ctx context.Context, cl *client.Client) error {
		items, err := get(cl, ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, header)
		for _, it := range items {
			fmt.Fprintln(w, row(it))
		}
		return w.Flush()
	})
}

func (c *command) clusterInit(args []string) error {
	fs := c.flags("cluster init")
	node := fs.String("node", "", "API address of the first, unjoined node")
	name := fs.String("name", "admin", "name of the first operator")
	nodes := fs.Int("nodes", 3, "the cluster key is made once this many nodes have joined")
	dir := fs.String("dir", "keyquorum-credentials", "directory to write the credentials and env.sh into")
	autoJoin := fs.Bool("auto-join", false, "give the members a join CA, so that nodes started with a join token and --retry-join join by themselves")
	var officers officerFlags
	fs.Var(&officers, "recovery-officer", "NAME=PUBLIC-KEY of a recovery officer (keyctl recovery keygen); repeat for each")
	recoveryK := fs.Int("recovery-threshold", 0, "how many recovery officers rebuild the cluster key (with --recovery-officer)")
	vouch := c.vouchFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *node == "" {
		return usagef("cluster init needs --node ADDR")
	}
	opts, err := vouch()
	if err != nil {
		return err
	}
	opts.AutoJoin = *autoJoin
	if opts.Recovery, err = officers.request(*recoveryK); err != nil {
		return err
	}
	ctx, cancel := timeout()
	defer cancel()
	creds, id, err := client.InitCluster(ctx, *node, *name, *nodes, opts)
	if err != nil {
		return err
	}
	env, err := creds.Save(*dir, *node)
	if err != nil {
		return err
	}
	pinned := "the key is pinned"
	if len(creds.ClusterKey) == 0 {
		pinned = fmt.Sprintf("the key is made, and pinned by the join that completes it, when %d nodes have joined", *nodes)
	}
	fmt.Fprintf(c.stdout, "# cluster initialized on node %s; %s; credentials in %s (keep ca-key.pem safe)\n", id.NodeID, pinned, *dir)
	if *autoJoin {
		fp, err := api.CAFingerprint(creds.CACert)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "# nodes join by themselves with: keyd --retry-join ADDR --join-ca-fingerprint %s --join-token TOKEN (keyctl cluster token create)\n", fp)
	}
	fmt.Fprint(c.stdout, env)
	return nil
}

func (c *command) clusterJoin(args []string) error {
	fs := c.flags("cluster join")
	vouch := c.vouchFlags(fs)
	envFile := fs.String("env", defaultEnvFile(), "env.sh to write the pin into when this join completes the first key")
	pos, err := parse(fs, args, "ADDR")
	if err != nil {
		return err
	}
	opts, err := vouch()
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	hadPin := len(cl.Credentials().ClusterKey) > 0
	id, err := cl.JoinNode(ctx, pos[0], opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "node %s joined; the cluster key was reshared to include it\n", id.NodeID)
	if creds := cl.Credentials(); !hadPin && len(creds.ClusterKey) > 0 {
		if err := creds.SavePin(*envFile); err != nil {
			return fmt.Errorf("writing the pin into %s: %w", *envFile, err)
		}
		fmt.Fprintf(c.stdout, "# the cluster key is made and pinned (written into %s):\n%s", *envFile, creds.PinLines())
	}
	return nil
}

// defaultEnvFile is the env.sh beside the CA certificate the environment
// names, where keyctl cluster init wrote it.
func defaultEnvFile() string {
	if ca := os.Getenv(client.EnvCACert); ca != "" {
		return filepath.Join(filepath.Dir(ca), "env.sh")
	}
	return "env.sh"
}

func (c *command) clusterPin(args []string) error {
	fs := c.flags("cluster pin")
	envFile := fs.String("env", defaultEnvFile(), "env.sh to write the pin into (\"\" writes nothing)")
	return c.connected(fs, args, func(ctx context.Context, cl *client.Client) error {
		cf, err := cl.Pin(ctx)
		if err != nil {
			return err
		}
		creds := cl.Credentials()
		fmt.Fprintf(c.stdout, "# cluster %s, public key %x, confirmed by %d members (%s) of threshold %d at key epoch %d\n",
			cf.ClusterID, cf.PublicKey, len(cf.Confirmers), strings.Join(cf.Confirmers, ", "), cf.Threshold, cf.Epoch)
		if *envFile != "" {
			if err := creds.SavePin(*envFile); err != nil {
				return fmt.Errorf("writing the pin into %s: %w", *envFile, err)
			}
			fmt.Fprintf(c.stdout, "# written into %s\n", *envFile)
		}
		fmt.Fprint(c.stdout, creds.PinLines())
		return nil
	})
}

func (c *command) clusterLeave(args []string) error {
	fs := c.flags("cluster leave")
	pos, err := parse(fs, args, "NODE-ID")
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if err := cl.RemoveNode(ctx, pos[0]); err != nil {
		return err
	}
	if _, err := cl.WaitEpoch(ctx, st.Epoch); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "node %s left; the cluster key was reshared without it\n", pos[0])
	return nil
}

func (c *command) clusterAutopilot(args []string) error {
	fs := c.flags("cluster autopilot")
	after := fs.Duration("remove-dead-after", 0, "remove a member the leader has seen down this long (0: off)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	if err := cl.SetAutopilot(ctx, *after); err != nil {
		return err
	}
	if *after == 0 {
		fmt.Fprintln(c.stdout, "autopilot off: dead members stay until an operator removes them")
		return nil
	}
	fmt.Fprintf(c.stdout, "autopilot on: the leader removes a member it has seen down for %v, while t holders stay\n", *after)
	return nil
}

func (c *command) clusterStatus(args []string) error {
	fs := c.flags("cluster status")
	asJSON := fs.Bool("json", false, "print JSON")
	return c.connected(fs, args, func(ctx context.Context, cl *client.Client) error {
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, st)
		}
		return writeStatus(c.stdout, st)
	})
}

// tolerance says how many more nodes may fail before what stops.
func tolerance(n int, what string) string {
	switch {
	case n < 0:
		return what + " have stopped"
	case n == 1:
		return "1 more node may fail before " + what + " stop"
	}
	return fmt.Sprintf("%d more nodes may fail before %s stop", n, what)
}

// recoveryLine says whether the cluster has a recovery kit, and what
// losing t nodes would cost.
func recoveryLine(k *api.RecoveryKitStatus) string {
	switch {
	case k == nil:
		return "recovery kit: none (if fewer than t nodes survive, every key is lost)"
	case !k.Usable:
		return fmt.Sprintf("recovery kit: %d of %d officers; not usable yet: %d of %d holders dealt it", k.Threshold, k.Officers, k.Dealt, k.Needed)
	}
	return fmt.Sprintf("recovery kit: %d of %d officers rebuild the cluster key (dealt by %d holders at epoch %d)", k.Threshold, k.Officers, k.Dealt, k.Epoch)
}

// writeStatus writes the text of keyctl cluster status.
func writeStatus(out io.Writer, st *api.Status) error {
	fmt.Fprintf(out, "cluster %s  leader %s  key epoch %d  n %d  t %d  (as seen by %s at index %d)\n",
		st.ClusterID, orNone(st.Leader), st.Epoch, st.N, st.Threshold, st.Node, st.Applied)
	fmt.Fprintf(out, "failure tolerance: %s; raft quorum: %s\n",
		tolerance(st.FailureTolerance, "releases"), tolerance(st.QuorumTolerance, "writes"))
	fmt.Fprintln(out, recoveryLine(st.Recovery))
	if st.RemoveDeadAfter > 0 {
		fmt.Fprintf(out, "autopilot: removes a member down for %v while t holders stay\n", st.RemoveDeadAfter)
	}
	if r := st.Resharing; r != nil {
		// t acknowledgements complete a round; a member that missed it
		// opens its share from the round's deals later.
		fmt.Fprintf(out, "resharing: round %d to %s, t %d, deals %d/%d, acks %d/%d\n",
			r.Round, strings.Join(r.Members, ","), r.Threshold, r.Deals, r.Needed, r.Acks, r.Threshold)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tAPI\tRAFT\tSTATE\tVOTER\tAPPLIED\tHEALTH\tSHARE")
	for _, m := range st.Members {
		share := "-"
		if m.Holder {
			share = fmt.Sprint(m.Index)
		}
		if m.Leaving {
			share += " (leaving)"
		}
		if m.Pending {
			share += " (waiting for promotion)"
		}
		voter := "no"
		if m.Voter {
			voter = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, m.APIAddr, m.RaftAddr, strings.ToLower(m.RaftState), voter, m.Applied, m.Health, share)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, m := range st.Members {
		for _, h := range m.Held {
			fmt.Fprintf(out, "held in memory: %s on %s (%s gateway, version %d) until %s\n",
				h.Name, m.ID, h.Gateway, h.Version, h.Until.UTC().Format(time.RFC3339))
		}
	}
	for _, m := range st.Members {
		if m.Diverged != "" {
			fmt.Fprintf(out, "DIVERGED: %s serves no share until it is rebuilt: %s\n", m.ID, m.Diverged)
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// secretInput reads a secret from a file or stdin, or generates n bytes.
func (c *command) secretInput(from string, n int) ([]byte, error) {
	const maxSecret = 60 << 10
	switch {
	case from == "-":
		b, err := io.ReadAll(io.LimitReader(c.stdin, maxSecret+1))
		if err != nil {
			return nil, fmt.Errorf("reading the secret from stdin: %w", err)
		}
		if len(b) == 0 || len(b) > maxSecret {
			return nil, fmt.Errorf("the secret on stdin must be 1 to %d bytes, got %d", maxSecret, len(b))
		}
		return b, nil
	case from != "":
		b, err := os.ReadFile(from)
		if err != nil {
			return nil, fmt.Errorf("reading the secret: %w", err)
		}
		if len(b) == 0 || len(b) > maxSecret {
			return nil, fmt.Errorf("the secret in %s must be 1 to %d bytes, got %d", from, maxSecret, len(b))
		}
		return b, nil
	}
	if n < 1 || n > maxSecret {
		return nil, usagef("--bytes must be 1 to %d, got %d", maxSecret, n)
	}
	b := make([]byte, n)
	_, err := rand.Read(b)
	return b, err
}

func (c *command) keyGet(args []string) error {
	fs := c.flags("key get")
	tok := fs.String("token", "", "a capability token (or "+client.EnvToken+") in place of operator credentials")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	if text := tokenFlag(tok); text != "" {
		return c.keyGetWithToken(text, pos[0])
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	secret, err := cl.Get(ctx, pos[0])
	warnShareMode(cl.ShareModeFailure())
	if err != nil {
		return err
	}
	defer clear(secret)
	_, err = c.stdout.Write(secret)
	return err
}

// warnShareMode prints on stderr why a release was made again with
// proofs: the release in share mode did not open (failure, from
// client.Client.ShareModeFailure), because a holder or the node lied.
func warnShareMode(failure error) {
	if failure != nil {
		fmt.Fprintf(os.Stderr, "keyctl: warning: %v; made the release again with proofs\n", failure)
	}
}

// keyList lists every key, a page at a time, or with --limit one page
// (after --after), and the command that lists the next.
func (c *command) keyList(args []string) error {
	fs := c.flags("key list")
	limit := fs.Int("limit", 0, fmt.Sprintf("list one page of at most this many keys (1 to %d), and how to ask the next", api.MaxKeysPage))
	after := fs.String("after", "", "list the keys whose names sort after this one")
	var next string
	get := func(cl *client.Client, ctx context.Context) ([]*fsm.Key, error) {
		if *limit == 0 && *after == "" {
			return cl.Keys(ctx)
		}
		if *limit < 0 || *limit > api.MaxKeysPage {
			return nil, usagef("--limit %d: want 1 to %d", *limit, api.MaxKeysPage)
		}
		keys, n, err := cl.KeysPage(ctx, *after, *limit)
		next = n
		return keys, err
	}
	err := list(c, fs, args, get, "NAME\tID\tTYPE\tVERSION\tSTATE\tCREATED", func(k *fsm.Key) string {
		return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s", k.Name, cmp.Or(k.ID, "-"), k.Type, k.Version, k.State, time.Unix(0, k.CreatedAt).UTC().Format(time.RFC3339))
	})
	if err == nil && next != "" {
		fmt.Fprintf(c.stdout, "more: keyctl key list --limit %d --after %s\n", cmp.Or(*limit, api.MaxKeysPage), next)
	}
	return err
}

func (c *command) keyShow(args []string) error {
	fs := c.flags("key show")
	asJSON := fs.Bool("json", false, "print the key's metadata as JSON (a transit key's: the pin of a token client, keyctl transit ... --token --key-file)")
	pos, err := parse(fs, args, "NAME|ID")
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	k, err := cl.Key(ctx, pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, k)
	}
	return writeKey(c.stdout, k, func() string { return heldOn(ctx, cl, k.Name) })
}

// writeKey writes the text of keyctl key show. held says which nodes hold
// the key in memory; it is called only for an assembled key kept in memory.
func writeKey(out io.Writer, k *fsm.Key, held func() string) error {
	fmt.Fprintf(out, "name:      %s\ntype:      %s\nversion:   %d\nstate:     %s\ncreated:   %s\nupdated:   %s\n",
		k.Name, k.Type, k.Version, k.State, fmtTime(k.CreatedAt), fmtTime(k.UpdatedAt))
	if k.ID != "" {
		fmt.Fprintf(out, "id:        %s\n", k.ID)
	}
	if k.ExpiresAt != 0 {
		fmt.Fprintf(out, "expires:   %s\n", fmtTime(k.ExpiresAt))
	}
	fmt.Fprintf(out, "custody:   %s\n", custody(k))
	if k.RSA() != nil && k.RSA().Reimport != "" {
		fmt.Fprintf(out, "re-import: needed: %s\n", k.RSA().Reimport)
	}
	if fsm.Assembled(k.Type) && k.AssembleTTL() > 0 {
		fmt.Fprintf(out, "in memory: %s\n", held())
	}
	fmt.Fprintf(out, "gateways:  %s\n", gatewaysOf(k))
	if a := k.Access(); a != nil {
		hosts := "any"
		if a.Hosts != nil {
			hosts = orNone(strings.Join(a.Hosts, ", "))
		}
		fmt.Fprintf(out, "clients:   %d certificates; hosts %s; networks %s\n", len(a.ClientCerts), hosts, orNone(strings.Join(a.Networks, ", ")))
		if len(a.EmailTo) > 0 {
			fmt.Fprintf(out, "email to:  %s\n", strings.Join(a.EmailTo, ", "))
		}
		if a.RatePerMinute > 0 {
			fmt.Fprintf(out, "rate:      %d per client and minute on each node\n", a.RatePerMinute)
		}
	}
	if tk := k.Transit(); tk != nil {
		use := "decrypts"
		if k.Type == fsm.KeyTypeX25519 {
			use = "exchanges"
			fmt.Fprintf(out, "x25519:    exchanges only, min_decryption_version %d\n", tk.MinDecryptionVersion)
		} else {
			fmt.Fprintf(out, "transit:   %s, derived %v, exportable %v, min_decryption_version %d\n", tk.Cipher, tk.Derived, tk.Exportable, tk.MinDecryptionVersion)
		}
		for _, v := range tk.Versions {
			state := use
			switch {
			case v.Version < tk.MinDecryptionVersion:
				state = "below min_decryption_version"
			case v.Sharing.NeedsReimport:
				state = "dealt before the members changed: no holder answers it"
			}
			if v.Imported {
				state += ", imported"
			}
			fmt.Fprintf(out, "  v%-7d %s, %d-of-%d, epoch %d, public key %x, %s\n", v.Version, fmtTime(v.CreatedAt), v.Sharing.Threshold, len(v.Sharing.Shares), v.Sharing.Epoch, v.Sharing.Commits[0], state)
			if k.Type == fsm.KeyTypeX25519 {
				if pub, err := api.X25519PublicKey(k, v.Version); err == nil {
					fmt.Fprintf(out, "           X25519 public key %s\n", base64.StdEncoding.EncodeToString(pub))
				}
			}
		}
	}
	if t := k.Tang(); t != nil {
		fmt.Fprintf(out, "tang:      kid %s, thp %s, %d-of-%d\n", t.Kid, t.Thp, t.Threshold, len(t.Shares))
	}
	return nil
}

// heldOn says which nodes hold an assembled key in memory now, by the
// cluster's status.
func heldOn(ctx context.Context, cl *client.Client, name string) string {
	st, err := cl.Status(ctx)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return heldIn(st, name)
}

// heldIn says which nodes hold an assembled key in memory, by a status.
func heldIn(st *api.Status, name string) string {
	var on []string
	for _, m := range st.Members {
		if m.RaftState == "unreachable" {
			on = append(on, m.ID+" unreachable")
		}
		for _, h := range m.Held {
			if h.Name == name {
				on = append(on, fmt.Sprintf("%s until %s (version %d)", m.ID, h.Until.UTC().Format(time.RFC3339), h.Version))
			}
		}
	}
	if len(on) == 0 {
		return "on no node"
	}
	return strings.Join(on, "; ")
}

// custody says honestly where a key's material can be whole.
func custody(k *fsm.Key) string {
	switch {
	case k.Type == fsm.KeyTypeTang:
		return "P-256 secret in shares; each exchange combines partials from a quorum; never assembled"
	case k.Type == fsm.KeyTypeRSAThreshold && k.RSA() != nil:
		return fmt.Sprintf("RSA private exponent in %d-of-%d shares (Shoup), dealt by the importing client; each signature or decryption combines shares from a quorum on the serving node; never assembled", k.RSA().Threshold, len(k.RSA().Shares))
	case k.Type == fsm.KeyTypeFROST && k.Frost() != nil && k.Frost().NeedsReimport:
		return fmt.Sprintf("NEEDS RE-IMPORT: Ed25519 key in FROST shares dealt to the holders of epoch %d; the members changed since and no resharing round carried it, so no holder signs with it: import it again", k.Frost().Epoch)
	case k.Type == fsm.KeyTypeFROST:
		return "Ed25519 key in FROST shares (RFC 9591), reshared with every membership change; each signature adds a quorum's signature shares; never assembled"
	case k.Type == fsm.KeyTypeX25519:
		return "X25519 exchange key: each version an edwards25519 scalar (clamp(k)/8 of the X25519 private key k) dealt in shares by the creating client; each exchange combines a quorum's proved partials on the caller; never assembled"
	case k.Type == fsm.KeyTypeTransit:
		return "transit encryption key: each version an edwards25519 key dealt in shares by the creating client; encryption runs on the caller with the public key; each decryption combines a quorum's proved partials on the caller; never assembled"
	case k.Type == fsm.KeyTypeECDSA && k.AssembleTTL() > 0:
		return fmt.Sprintf("assembled: ECDSA has no practical threshold scheme here; threshold-encrypted, a quorum releases it whole to the node that uses it (a Keyless SSL gateway's, or the one coordinating a key sign, REST /v1/sign or gRPC Sign), which keeps it in memory for up to %v", k.AssembleTTL())
	case k.Type == fsm.KeyTypeECDSA:
		return "assembled: ECDSA has no practical threshold scheme here; threshold-encrypted, a quorum releases it whole to the node that uses it (a Keyless SSL gateway's, or the one coordinating a key sign, REST /v1/sign or gRPC Sign) for one operation, then it is erased"
	case fsm.SymmetricAssembled(k.Type):
		held := "for the operation, then it is erased"
		if k.AssembleTTL() > 0 {
			held = fmt.Sprintf("and keeps it in memory for up to %v", k.AssembleTTL())
		}
		return "assembled: AES-CBC and standard HMAC have no threshold form; threshold-encrypted, the key is whole on the coordinating node for the operation: a quorum releases it to the node that coordinates an encrypt, decrypt, hmac or verify (REST /v1/assembled), " + held + "; never released to a client"
	case fsm.Assembled(k.Type) && k.AssembleTTL() > 0:
		return fmt.Sprintf("assembled: threshold-encrypted; a quorum releases it to the serving node, which keeps it in memory for up to %v", k.AssembleTTL())
	case fsm.Assembled(k.Type):
		return "assembled: threshold-encrypted; a quorum releases it to the serving node for one operation, then it is erased"
	}
	return "threshold-encrypted; holders seal their partials to the requester, whose client combines them: no node sees it; a gateway's release (kxd) combines on the node that terminates that client, for that release only; the cluster key is never rebuilt"
}

func fmtTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

func (c *command) keyRevoke(args []string) error {
	return c.keyState(args, "key revoke", (*client.Client).Revoke, (*client.TokenClient).RevokeKey, "revoked")
}

func (c *command) keyDestroy(args []string) error {
	return c.keyState(args, "key destroy", (*client.Client).Destroy, (*client.TokenClient).DestroyKey, "destroyed")
}

func (c *command) keyState(args []string, name string, fn func(*client.Client, context.Context, string) (*fsm.Key, error),
	withToken func(*client.TokenClient, context.Context, string) (*fsm.Key, error), done string) error {
	fs := c.flags(name)
	tok := fs.String("token", "", "a capability token (or "+client.EnvToken+") in place of operator credentials")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	if text := tokenFlag(tok); text != "" {
		tc, ctx, cancel, err := c.tokenClient(text)
		if err != nil {
			return err
		}
		defer cancel()
		if _, err := withToken(tc, ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s key %q (acknowledged by the node asked)\n", done, pos[0])
		return nil
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := fn(cl, ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s key %q\n", done, pos[0])
	return nil
}

func (c *command) keyCAS(args []string) error {
	fs := c.flags("key cas")
	oldHex := fs.String("old-sha256", "", "hex SHA-256 of the current secret")
	from := fs.String("from-file", "", "file with the new secret (- for stdin)")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	old, err := hex.DecodeString(*oldHex)
	if err != nil || len(old) != sha256.Size {
		return usagef("--old-sha256 must be %d hex digits", 2*sha256.Size)
	}
	if *from == "" {
		return usagef("key cas needs --from-file")
	}
	secret, err := c.secretInput(*from, 0)
	if err != nil {
		return err
	}
	defer clear(secret)
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	k, err := cl.CompareAndSwap(ctx, pos[0], old, secret)
	warnShareMode(cl.ShareModeFailure())
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "replaced key %q, now version %d\n", k.Name, k.Version)
	return nil
}

func (c *command) rulePut(args []string) error {
	fs := c.flags("rule put")
	principal := fs.String("principal", "", "operator ID the rule grants to")
	key := fs.String("key", "", "key name, or prefix ending in *")
	ops := fs.String("ops", "", "comma-separated operations: read, get, create, cas, revoke, destroy")
	pos, err := parse(fs, args, "ID")
	if err != nil {
		return err
	}
	if *principal == "" || *key == "" || *ops == "" {
		return usagef("rule put needs --principal, --key and --ops")
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	r := &fsm.Rule{ID: pos[0], Principal: *principal, Key: *key, Ops: strings.Split(*ops, ",")}
	if err := cl.PutRule(ctx, r); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "rule %q grants %s on %s to %s\n", r.ID, strings.Join(r.Ops, ","), r.Key, r.Principal)
	return nil
}

func (c *command) operatorCreate(args []string) error {
	fs := c.flags("operator create")
	dir := fs.String("dir", "", "directory to write the new operator's credentials and env.sh into")
	admin := fs.Bool("admin", false, "the operator may do everything, like the first one")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	if *dir == "" {
		return usagef("operator create needs --dir")
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	creds, err := cl.CreateOperator(ctx, pos[0], *admin)
	if err != nil {
		return err
	}
	if _, err := creds.Save(*dir, c.addr); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "operator %q is %s; credentials in %s\n", pos[0], creds.OperatorID, *dir)
	return nil
}
