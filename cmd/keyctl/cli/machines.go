package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

// machineAdd registers a machine by the public key keyagent enroll printed.
func (c *command) machineAdd(args []string) error {
	fs := c.flags("machine add")
	pub := fs.String("public-key", "", "the machine's Ed25519 public key, base64, as keyagent enroll prints it")
	var keys listFlag
	fs.Var(&keys, "key", "key name, or prefix ending in *, the machine may fetch (repeatable)")
	approval := fs.Bool("approval", false, "every release needs an operator's approval (keyctl session approve)")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(*pub)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return usagef("--public-key must be a base64 Ed25519 public key of %d bytes", ed25519.PublicKeySize)
	}
	if len(keys) == 0 {
		return usagef("machine add needs --key: the keys the machine may fetch")
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	m := &fsm.Machine{ID: fsm.PrincipalID(raw), Name: pos[0], PublicKey: raw, Keys: keys, Approval: *approval}
	if err := cl.AddMachine(ctx, m); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "registered machine %q as %s; it may fetch %s\n", m.Name, m.ID, strings.Join(keys, ", "))
	return nil
}

func (c *command) machineList(args []string) error {
	return list(c, c.flags("machine list"), args, (*client.Client).Machines, "ID\tNAME\tSTATE\tAPPROVAL\tKEYS", func(m *fsm.Machine) string {
		return fmt.Sprintf("%s\t%s\t%s\t%v\t%s", m.ID, m.Name, m.State, m.Approval, strings.Join(m.Keys, ","))
	})
}

func (c *command) machineRevoke(args []string) error {
	fs := c.flags("machine revoke")
	pos, err := parse(fs, args, "MACHINE-ID")
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	id, err := machineID(ctx, cl, pos[0])
	if err != nil {
		return err
	}
	if err := cl.RevokeMachine(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "revoked machine %s\n", id)
	return nil
}

// machineID returns the ID the cluster knows a machine by (the one keyctl
// shows, vocab.PrincipalID) for an ID in either form: one in klefki's form
// ("SHA256:...", as the gRPC flow and klefki's tools show it) is looked
// up among the registered machines.
func machineID(ctx context.Context, cl *client.Client, id string) (string, error) {
	if !vocab.IsKlefkiMachineID(id) {
		return id, nil
	}
	list, err := cl.Machines(ctx)
	if err != nil {
		return "", err
	}
	return resolveMachineID(id, list)
}

// resolveMachineID finds the machine of list that id names, in either form.
func resolveMachineID(id string, list []*fsm.Machine) (string, error) {
	for _, m := range list {
		if vocab.SameMachine(id, m.PublicKey) {
			return m.ID, nil
		}
	}
	if !vocab.IsKlefkiMachineID(id) {
		return id, nil
	}
	return "", vocab.Errorf(vocab.KindNotFound, "no registered machine has the ID %s", id)
}

// sessionList lists the machines waiting for an approval.
func (c *command) sessionList(args []string) error {
	return list(c, c.flags("session list"), args, (*client.Client).Sessions, "MACHINE\tNAME\tKEY\tFROM\tLAST ATTEMPT\tATTEMPTS\tPUBLIC KEY", func(s *fsm.Session) string {
		return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d\t%s", s.Machine, s.Name, s.Key, s.Addr, fmtTime(s.LastAt), s.Attempts,
			base64.StdEncoding.EncodeToString(s.PublicKey))
	})
}

// sessionApprove approves a machine's release: one use by default.
func (c *command) sessionApprove(args []string) error {
	fs := c.flags("session approve")
	key := fs.String("key", "", "the key approved (default: every key the machine may fetch; needs an admin)")
	uses := fs.Int("uses", 0, "how many releases are approved (default 1 when --for is not given)")
	window := fs.Duration("for", 0, "approve every release for this long")
	pos, err := parse(fs, args, "MACHINE-ID")
	if err != nil {
		return err
	}
	if *uses == 0 && *window == 0 {
		*uses = 1
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	id, err := machineID(ctx, cl, pos[0])
	if err != nil {
		return err
	}
	a := &fsm.Approval{Machine: id, Key: *key, Uses: *uses}
	if *window > 0 {
		a.Until = time.Now().Add(*window).UnixNano()
	}
	if err := cl.Approve(ctx, a); err != nil {
		return err
	}
	what := fmt.Sprintf("%d use(s)", a.Uses)
	if *window > 0 {
		what = fmt.Sprintf("%s and every release for %v", what, *window)
	}
	fmt.Fprintf(c.stdout, "approved machine %s: %s\n", id, what)
	return nil
}

// sessionDeny refuses a machine's releases for a while.
func (c *command) sessionDeny(args []string) error {
	fs := c.flags("session deny")
	key := fs.String("key", "", "the key refused (default: every key; needs an admin)")
	window := fs.Duration("for", time.Hour, "refuse the machine's releases for this long")
	pos, err := parse(fs, args, "MACHINE-ID")
	if err != nil {
		return err
	}
	if *window <= 0 {
		return usagef("--for must be positive")
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	id, err := machineID(ctx, cl, pos[0])
	if err != nil {
		return err
	}
	if err := cl.Deny(ctx, &fsm.Denial{Machine: id, Key: *key, Until: time.Now().Add(*window).UnixNano()}); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "denied machine %s for %v\n", id, *window)
	return nil
}

// passkeyAdd registers a passkey from the request a console printed: the
// base64url of the fsm.Passkey JSON. --origin, repeated, lists the console
// origins it is good for instead of the request's: the nodes as operators
// reach them, when they have names of their own under the passkey's
// relying party ID. It prints what it registers.
func (c *command) passkeyAdd(args []string) error {
	fs := c.flags("passkey add")
	var origins listFlag
	fs.Var(&origins, "origin", "a console origin https://HOST[:PORT] the passkey signs at, instead of the request's (repeat it)")
	pos, err := parse(fs, args, "REQUEST")
	if err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(pos[0])
	var pk fsm.Passkey
	if err == nil {
		err = json.Unmarshal(raw, &pk)
	}
	if err != nil {
		return usagef("REQUEST must be the base64url passkey request the console's passkey page shows: %v", err)
	}
	if len(origins) > 0 {
		pk.Origins = origins
	}
	if err := fsm.CheckPasskeyOrigins(pk.RPID, pk.Origins); err != nil {
		return usagef("%v", err)
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	if err := cl.AddPasskey(ctx, &pk); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "registered passkey %q of operator %s (algorithm %d, relying party %s, origins %s)\n",
		pk.Name, pk.Operator, pk.Algorithm, pk.RPID, strings.Join(pk.Origins, " "))
	return nil
}
