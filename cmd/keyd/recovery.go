package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// keyd recovery: the recovery kit's commands that read a backup, which
// only the node's state machine can verify completely (it replays every
// entry), so they are keyd's, not keyctl's (docs/disaster-recovery.md):
//
//	open     an officer checks which holders' kit deals open for them
//	deal     an officer deals their kit share to the plan's new nodes
//	rebuild  a new node, stopped, takes the signed rebuild order
const recoveryUsage = `usage:
  keyd recovery open --backup FILE --officer N --officer-key FILE [--cluster-key KEY]
  keyd recovery deal --backup FILE --officer N --officer-key FILE --plan PLAN --out DEAL [--cluster-key KEY]
  keyd recovery rebuild --data-dir DIR [--id ID] --backup FILE --order ORDER [--cluster-key KEY]`

func runRecovery(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(recoveryUsage)
	}
	fs := flag.NewFlagSet("keyd recovery "+args[0], flag.ContinueOnError)
	backupFile := fs.String("backup", "", "a backup of the lost cluster (keyctl snapshot save, --backup-dir)")
	pinFlag := fs.String("cluster-key", "", "the cluster public key, hex or base64, as env.sh pins it (KEYQUORUM_CLUSTER_KEY)")
	var officer *uint
	var officerKey, planFile, out, dataDir, id, orderFile *string
	switch args[0] {
	case "open", "deal":
		officer = fs.Uint("officer", 0, "the officer's number: their place in cluster init's --recovery-officer list, from 1")
		officerKey = fs.String("officer-key", "", "the officer's key file (keyctl recovery keygen)")
		if args[0] == "deal" {
			planFile = fs.String("plan", "", "the rebuild plan (keyctl recovery plan)")
			out = fs.String("out", "", "file to write the deal into")
		}
	case "rebuild":
		dataDir = fs.String("data-dir", "", "the new node's data directory: started once unjoined, then stopped")
		id = fs.String("id", "", "node ID, as keyd is given it (default: the host name)")
		orderFile = fs.String("order", "", "the rebuild order (keyctl recovery sign)")
	default:
		return errors.New(recoveryUsage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errors.New(recoveryUsage)
	}
	// --cluster-key mirrors KEYQUORUM_CLUSTER_KEY, as env.sh sets it.
	if err := applyEnvAndFile(fs, ""); err != nil {
		return err
	}
	if *backupFile == "" || *pinFlag == "" {
		return errors.New("--backup and --cluster-key (or KEYQUORUM_CLUSTER_KEY) are required")
	}
	pin, err := client.ParseClusterKey(*pinFlag)
	if err != nil {
		return fmt.Errorf("--cluster-key: %w", err)
	}
	data, err := os.ReadFile(*backupFile)
	if err != nil {
		return err
	}
	if args[0] == "rebuild" {
		return recoveryRebuild(stdout, data, pin, *dataDir, *id, *orderFile)
	}
	if *officer == 0 || *officerKey == "" {
		return errors.New("--officer N and --officer-key FILE are required")
	}
	_, f, err := cluster.VerifyBackup(data, pin)
	if err != nil {
		return err
	}
	priv, err := client.ReadOfficerKey(*officerKey)
	if err != nil {
		return err
	}
	defer clear(priv)
	var s *fsm.State
	f.Read(func(st *fsm.State) { s = st }) // f is this command's own: nothing applies to it
	o, err := cluster.OpenRecoveryKit(s, uint32(*officer), priv)
	if err != nil {
		return err
	}
	defer o.Erase()
	if args[0] == "open" {
		return printOpening(stdout, s, o)
	}
	var plan api.RebuildPlan
	if err := readJSONFile(*planFile, &plan); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out FILE is required")
	}
	if plan.ClusterID != s.ClusterID {
		return fmt.Errorf("the plan is for cluster %q, the backup is of %q", plan.ClusterID, s.ClusterID)
	}
	sh, _, err := cluster.KitShare(s, o, plan.Holders)
	if err != nil {
		return err
	}
	defer sh.Erase()
	to := make([]cluster.RebuildRecipient, len(plan.Nodes))
	for i, n := range plan.Nodes {
		to[i] = cluster.RebuildRecipient{Index: n.Index, EncPub: n.EncKey}
	}
	d, err := cluster.RebuildDeal(s.ClusterID, sh, plan.Threshold, to)
	if err != nil {
		return err
	}
	if err := writeNewFile(*out, d); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "officer %d dealt their kit share (over holders %v) to %d new nodes, t %d, into %s: give it to the admin (keyctl recovery sign --deal %s)\n",
		*officer, plan.Holders, len(plan.Nodes), plan.Threshold, *out, *out)
	return nil
}

// printOpening says which holders' kit deals open for the officer.
func printOpening(stdout io.Writer, s *fsm.State, o *cluster.KitOpening) error {
	k := s.Recovery
	var good, bad []string
	deals := slices.Clone(k.Deals)
	slices.SortFunc(deals, func(a, b fsm.Deal) int { return int(a.Dealer) - int(b.Dealer) })
	for _, d := range deals {
		if _, ok := o.Sub[d.Dealer]; ok {
			good = append(good, fmt.Sprint(d.Dealer))
		} else {
			bad = append(bad, fmt.Sprintf("%d (%v)", d.Dealer, o.Bad[d.Dealer]))
		}
	}
	fmt.Fprintf(stdout, "officer %d (%s) of cluster %s: kit %d of %d, dealt at epoch %d; t %d holders' deals combine\n",
		o.Officer, k.Officers[o.Officer-1].Name, s.ClusterID, k.Threshold, len(k.Officers), k.Epoch, k.Needed)
	fmt.Fprintf(stdout, "opened and checked: holders %s\n", orDash(good))
	if len(bad) > 0 {
		fmt.Fprintf(stdout, "did not open: holders %s\n", strings.Join(bad, ", "))
	}
	return nil
}

func orDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func recoveryRebuild(stdout io.Writer, data, pin []byte, dataDir, id, orderFile string) error {
	if dataDir == "" || orderFile == "" {
		return errors.New("--data-dir and --order are required")
	}
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			return err
		}
		id = host
	}
	var order api.RebuildOrder
	if err := readJSONFile(orderFile, &order); err != nil {
		return err
	}
	cert := order.NodeCerts[id]
	if cert == nil || order.Entry == nil {
		return fmt.Errorf("the order has no rebuild entry or no certificate for node %q", id)
	}
	info, err := cluster.RebuildNode(dataDir, id, data, pin, order.Entry,
		cluster.RebuildMembership{CACert: order.CACert, NodeCert: cert, GossipKey: order.GossipKey})
	if err != nil {
		return err
	}
	members := slices.Clone(info.Members)
	fmt.Fprintf(stdout, "rebuilt node %s of cluster %s at index %d, key epoch %d (the same cluster key): members %s\nstart keyd on it; the new nodes elect a leader\n",
		id, info.ClusterID, info.Index, info.Epoch, strings.Join(members, ","))
	return nil
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeNewFile writes v as JSON into a new file, mode 0600.
func writeNewFile(path string, v any) error {
	b, err := json.Marshal(v)
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
