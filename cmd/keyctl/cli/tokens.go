package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/token"
)

// capTokenCreate mints a capability token with the operator's key, here.
func (c *command) capTokenCreate(args []string) error {
	fs := c.flags("token create")
	var keys, prefixes listFlag
	fs.Var(&keys, "key", "a key the token is for (repeats)")
	fs.Var(&prefixes, "prefix", "a key name prefix the token is for (repeats)")
	allKeys := fs.Bool("all-keys", false, "the token is for every key")
	flags := fs.String("flags", "", "capability flags, comma-separated, or ALL or READONLY")
	ttl := fs.Duration("ttl", time.Hour, "how long the token lives (at most 90 days)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	fl, err := token.ParseFlags(*flags)
	if err != nil {
		return usagef("token create --flags: %v", err)
	}
	if *allKeys {
		prefixes = append(prefixes, "")
	}
	creds, err := client.CredentialsFromEnv()
	if err != nil {
		return err
	}
	cl, err := client.NewClient("localhost:1", creds) // minting asks no node
	if err != nil {
		return err
	}
	text, err := cl.MintToken(token.Scope{Keys: keys, Prefixes: prefixes, Flags: fl, ExpiresAt: time.Now().Add(*ttl)})
	if err != nil {
		return usagef("token create: %v", err)
	}
	fmt.Fprintln(c.stdout, text)
	return nil
}

// readToken reads a token's text form from arg, or stdin for "-".
func (c *command) readToken(arg string) (string, error) {
	if arg != "-" {
		return arg, nil
	}
	b, err := io.ReadAll(io.LimitReader(c.stdin, 2*token.MaxBytes))
	return strings.TrimSpace(string(b)), err
}

// capTokenRestrict narrows a token offline: it needs no credentials and asks
// no node.
func (c *command) capTokenRestrict(args []string) error {
	fs := c.flags("token restrict")
	var keys, prefixes listFlag
	fs.Var(&keys, "key", "only this key (repeats)")
	fs.Var(&prefixes, "prefix", "only keys with this prefix (repeats)")
	flags := fs.String("flags", "", "only these capability flags, comma-separated, or READONLY")
	ttl := fs.Duration("ttl", 0, "a shorter life, from now")
	network := fs.String("network", "", "only callers in this CIDR (as the node they reach sees them)")
	maxUses := fs.Int("max-uses", 0, "at most this many requests, counted in the log")
	pos, err := parse(fs, args, "TOKEN")
	if err != nil {
		return err
	}
	r := token.Restriction{Keys: keys, Prefixes: prefixes, MaxUses: *maxUses}
	if *flags != "" {
		if r.Flags, err = token.ParseFlags(*flags); err != nil {
			return usagef("token restrict --flags: %v", err)
		}
	}
	if *ttl > 0 {
		r.ExpiresAt = time.Now().Add(*ttl)
	}
	if *network != "" {
		if r.Network, err = netip.ParsePrefix(*network); err != nil {
			return usagef("token restrict --network: %v", err)
		}
	}
	text, err := c.readToken(pos[0])
	if err != nil {
		return err
	}
	out, err := client.RestrictToken(text, r)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, out)
	return nil
}

// capTokenRevoke revokes a token by a revocation id (token show lists them).
func (c *command) capTokenRevoke(args []string) error {
	fs := c.flags("token revoke")
	pos, err := parse(fs, args, "REVOCATION-ID")
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	if err := cl.RevokeToken(ctx, strings.TrimSpace(pos[0])); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "revoked %s\n", pos[0])
	return nil
}

// capTokenShow decodes a token without verifying it.
func (c *command) capTokenShow(args []string) error {
	fs := c.flags("token show")
	pos, err := parse(fs, args, "TOKEN")
	if err != nil {
		return err
	}
	text, err := c.readToken(pos[0])
	if err != nil {
		return err
	}
	op, tok, err := token.ParseText(text)
	if err != nil {
		return err
	}
	info, err := token.Inspect(tok)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "operator:\t%s\nblocks:\t%d after the authority\nbound:\t%v\nrevocation ids (authority first):\n", op, info.Blocks, info.Sealed)
	for _, id := range info.RevocationIDs {
		fmt.Fprintf(c.stdout, "  %s\n", id)
	}
	fmt.Fprintf(c.stdout, "datalog (not verified here; every node verifies it):%s\n", info.Code)
	return nil
}

// tokenClient is the client of an application that holds a token and no
// operator credentials: the CA and the pin from the environment.
func (c *command) tokenClient(text string) (*client.TokenClient, context.Context, context.CancelFunc, error) {
	if c.addr == "" {
		return nil, nil, nil, usagef("no node address: set %s or pass --addr", client.EnvAddr)
	}
	tc, err := client.TokenClientFromEnv(c.addr, text)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := timeout()
	return tc, ctx, cancel, nil
}

// tokenFlag adds --token to a command that a token may authorize.
func tokenFlag(fsTok *string) string {
	if *fsTok != "" {
		return *fsTok
	}
	return os.Getenv(client.EnvToken)
}

// keyGetWithToken and keySignWithToken are key get and key sign for a
// holder of a token.
func (c *command) keyGetWithToken(text, name string) error {
	tc, ctx, cancel, err := c.tokenClient(text)
	if err != nil {
		return err
	}
	defer cancel()
	secret, err := tc.Get(ctx, name)
	warnShareMode(tc.ShareModeFailure())
	if err != nil {
		return err
	}
	defer clear(secret)
	_, err = c.stdout.Write(secret)
	return err
}

func (c *command) keySignWithToken(text, name string, msg []byte, padding string) error {
	tc, ctx, cancel, err := c.tokenClient(text)
	if err != nil {
		return err
	}
	defer cancel()
	sig, err := tc.SignMessage(ctx, name, msg, padding)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, base64.StdEncoding.EncodeToString(sig.Signature))
	return nil
}
