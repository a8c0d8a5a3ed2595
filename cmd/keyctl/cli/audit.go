package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/audit"
)

// auditVerify checks a node's audit log (package audit): every line's
// signature, sequence and chain, that the node it names has the identity
// fingerprint given, and, with --until, that it reaches that time.
func (c *command) auditVerify(args []string) error {
	fs := c.flags("audit verify")
	fingerprint := fs.String("fingerprint", "", "the node's identity fingerprint (keyd identity, keyctl cluster status): the log must be signed by that key")
	until := fs.String("until", "", `"now", or an RFC 3339 time, that the log must reach within two ticks (finds a log cut short)`)
	pos, err := parse(fs, args, "FILE")
	if err != nil {
		return err
	}
	var opt audit.Options
	switch *until {
	case "":
	case "now":
		opt.Until = time.Now()
	default:
		if opt.Until, err = time.Parse(time.RFC3339, *until); err != nil {
			return usagef("--until: %v", err)
		}
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	s, err := audit.Verify(f, opt)
	if err != nil {
		return fmt.Errorf("audit log %s does not verify: %w", pos[0], err)
	}
	fp := api.Fingerprint(s.PublicKey)
	if *fingerprint != "" && !api.SameFingerprint(*fingerprint, fp) {
		return fmt.Errorf("audit log %s is signed by the key of fingerprint %s, not %s", pos[0], fp, *fingerprint)
	}
	fmt.Fprintf(c.stdout, "ok: %d records, %d decisions (%d refused), node %s, from %s to %s, ending with %s\n",
		s.Records, s.Decisions, s.Refused, s.Node, s.First.Format(time.RFC3339), s.Last.Format(time.RFC3339), s.LastType)
	if *fingerprint == "" {
		fmt.Fprintf(c.stdout, "signed by fingerprint %s: compare it with the node's (keyctl cluster status, keyd identity), or pass --fingerprint\n", fp)
	}
	return nil
}
