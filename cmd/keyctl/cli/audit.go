package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/audit"
)

// auditVerify checks a node's audit log (package audit): every signed
// line's signature, every line's sequence and chain, that the node it
// names has the identity fingerprint given, and, with --until, that its
// signed lines reach that time. It says how many decisions no signature
// proves (after the last one, or left unsigned by a crash).
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
	if s.Unsealed > 0 {
		fmt.Fprintf(c.stdout, "unsealed: the last %d decisions follow the last signature (of %s): nothing proves them yet (a running node seals within %v)\n",
			s.Unsealed, s.LastSigned.Format(time.RFC3339), audit.SealInterval)
	}
	if s.UnsealedAtRestart > 0 {
		fmt.Fprintf(c.stdout, "unsealed at a crash: %d decisions were signed only by the node's next start: they could have been changed while it was down\n", s.UnsealedAtRestart)
	}
	if *fingerprint == "" {
		fmt.Fprintf(c.stdout, "signed by fingerprint %s: compare it with the node's (keyctl cluster status, keyd identity), or pass --fingerprint\n", fp)
	}
	return nil
}
