package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

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
	priv, pub, err := shamir.GenerateEncryptionKey(rand.Reader)
	if err != nil {
		return err
	}
	defer clear(priv)
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, hex.EncodeToString(priv)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "# the officer's private key is in %s: keep it offline; its public key, for keyctl cluster init --recovery-officer NAME=KEY:\n%s\n", *out, hex.EncodeToString(pub))
	return nil
}
