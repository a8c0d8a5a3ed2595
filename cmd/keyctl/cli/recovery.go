package cli

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// The recovery kit's officer side in keyctl (docs/disaster-recovery.md):
// an officer's key, and the officers named at cluster init.

// officerFlags collects --recovery-officer NAME=PUBLIC-KEY.
type officerFlags []fsm.RecoveryOfficer

func (o *officerFlags) String() string { return fmt.Sprint(len(*o), " officers") }

func (o *officerFlags) Set(v string) error {
	name, key, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want NAME=PUBLIC-KEY, got %q", v)
	}
	pub, err := hex.DecodeString(strings.TrimSpace(key))
	if err != nil || len(pub) != shamir.PointSize {
		return fmt.Errorf("officer %q: the public key is %d hex digits, as keyctl recovery keygen prints it", name, 2*shamir.PointSize)
	}
	*o = append(*o, fsm.RecoveryOfficer{Name: name, EncKey: pub})
	return nil
}

// request is the kit cluster init asks for: nil without officers.
func (o officerFlags) request(k int) (*fsm.RecoveryKitRequest, error) {
	switch {
	case len(o) == 0 && k == 0:
		return nil, nil
	case len(o) == 0:
		return nil, usagef("--recovery-threshold needs --recovery-officer")
	case k < 1 || k > len(o):
		return nil, usagef("--recovery-threshold must be 1 to %d (the officers named)", len(o))
	}
	return &fsm.RecoveryKitRequest{Threshold: k, Officers: o}, nil
}

// recoveryKeygen makes an officer's encryption key: the private key in
// FILE (hex, mode 0600, never overwritten), the public key on stdout.
func (c *command) recoveryKeygen(args []string) error {
	fs := c.flags("recovery keygen")
	out := fs.String("out", "", "file to write the officer's private key into (created, mode 0600)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("recovery keygen needs --out FILE")
	}
	pub, err := client.WriteOfficerKey(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "# the officer's private key is in %s: keep it offline; its public key, for keyctl cluster init --recovery-officer NAME=KEY:\n%s\n", *out, hex.EncodeToString(pub))
	return nil
}

// recoveryPlan writes the plan of a rebuild: the new nodes (started once,
// unjoined), vouched for by their fingerprints, and the lost cluster's
// holders the officers combine over.
func (c *command) recoveryPlan(args []string) error {
	fs := c.flags("recovery plan")
	var nodes listFlag
	fs.Var(&nodes, "node", "ADDR=FINGERPRINT of a new node, started unjoined (keyd prints its fingerprint); repeat for each")
	holders := fs.String("holders", "", "the lost cluster's holders whose kit deals the officers combine (comma-separated share indexes; keyd recovery open says which opened)")
	threshold := fs.Int("threshold", 0, "t of the rebuilt cluster (default: a majority of the new nodes)")
	out := fs.String("out", "", "file to write the plan into")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if len(nodes) == 0 || *holders == "" || *out == "" {
		return usagef("recovery plan needs --node ADDR=FINGERPRINT (each new node), --holders I,J and --out FILE")
	}
	hs, err := parseIndexes(*holders)
	if err != nil {
		return usagef("--holders: %v", err)
	}
	var addrs, fps []string
	for _, n := range nodes {
		addr, fp, ok := strings.Cut(n, "=")
		if !ok {
			return usagef("--node %q: want ADDR=FINGERPRINT", n)
		}
		addrs, fps = append(addrs, addr), append(fps, fp)
	}
	creds, err := client.CredentialsFromEnv()
	if err != nil {
		return err
	}
	if creds.ClusterID == "" {
		return fmt.Errorf("no pinned cluster (%s): a rebuild is of the cluster the credentials pin", client.EnvClusterID)
	}
	ctx, cancel := timeout()
	defer cancel()
	plan, err := client.PlanRebuild(ctx, creds.ClusterID, addrs, fps, hs, *threshold)
	if err != nil {
		return err
	}
	if err := writeNewJSON(*out, plan); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "# rebuild plan of cluster %s in %s: %d new nodes, t %d, over the kit deals of holders %v; each officer: keyd recovery deal --plan %s\n",
		plan.ClusterID, *out, len(plan.Nodes), plan.Threshold, plan.Holders, *out)
	return nil
}

// recoverySign signs the rebuild of a plan with the officers' deals, and
// issues the new nodes' certificates: the order every new node is given.
func (c *command) recoverySign(args []string) error {
	fs := c.flags("recovery sign")
	planFile := fs.String("plan", "", "the plan keyctl recovery plan wrote")
	var deals listFlag
	fs.Var(&deals, "deal", "an officer's deal (keyd recovery deal); repeat for each, at least the kit's threshold")
	out := fs.String("out", "", "file to write the rebuild order into (give it to every new node)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *planFile == "" || len(deals) == 0 || *out == "" {
		return usagef("recovery sign needs --plan FILE, --deal FILE (each officer's) and --out FILE")
	}
	var plan api.RebuildPlan
	if err := readJSONFile(*planFile, &plan); err != nil {
		return err
	}
	var raw [][]byte
	for _, d := range deals {
		b, err := os.ReadFile(d)
		if err != nil {
			return err
		}
		raw = append(raw, b)
	}
	creds, err := client.CredentialsFromEnv()
	if err != nil {
		return err
	}
	order, err := client.SignRebuild(creds, &plan, raw)
	if err != nil {
		return err
	}
	if err := writeNewJSON(*out, order); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "# rebuild order in %s (it holds the gossip key: give it only to the new nodes); on each, stopped: keyd recovery rebuild --order %s --backup FILE\n", *out, *out)
	return nil
}

func parseIndexes(s string) ([]uint32, error) {
	var out []uint32
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a share index", f)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// writeNewJSON writes v into a new file, mode 0600.
func writeNewJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
