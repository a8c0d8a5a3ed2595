package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster/api"
)

// vouchFlags adds --token, --token-file and --fingerprint to fs; the
// function it returns makes the JoinOptions once fs is parsed. Without
// --fingerprint, keyctl asks on a terminal and refuses elsewhere.
func (c *command) vouchFlags(fs *flag.FlagSet) func() (client.JoinOptions, error) {
	token := fs.String("token", "", "the join token the node was started with")
	tokenFile := fs.String("token-file", "", "file holding the join token (such as the node's DATA/join-token)")
	fp := fs.String("fingerprint", "", "the node's identity fingerprint, as keyd printed it on the node's machine")
	return func() (client.JoinOptions, error) {
		opts := client.JoinOptions{Token: *token, Fingerprint: *fp}
		switch {
		case *token != "" && *tokenFile != "":
			return opts, usagef("%s: give --token or --token-file, not both", fs.Name())
		case *tokenFile != "":
			b, err := os.ReadFile(*tokenFile)
			if err != nil {
				return opts, fmt.Errorf("reading the join token: %w", err)
			}
			opts.Token = strings.TrimSpace(string(b))
		case *token == "":
			return opts, usagef("%s needs the node's join token: --token T or --token-file F", fs.Name())
		}
		if *fp == "" {
			if !c.onTerminal() {
				return opts, usagef("%s needs --fingerprint FP (keyd prints the node's fingerprint at start; keyd identity prints it), or a terminal to confirm it on", fs.Name())
			}
			opts.Confirm = c.confirm
		}
		return opts, nil
	}
}

// onTerminal reports whether stdin is a terminal to ask on.
func (c *command) onTerminal() bool {
	f, ok := c.stdin.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// confirm shows the operator the node's fingerprint and waits for "yes".
func (c *command) confirm(id *api.Identity, fp string) error {
	fmt.Fprintf(c.stdout, "node %q (API %s) has identity fingerprint\n  %s\ncompare it with the one keyd printed on the node's machine; admit it? (yes/no) ", id.NodeID, id.APIAddr, fp)
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("no confirmation: %w", err)
	}
	if a := strings.ToLower(strings.TrimSpace(line)); a != "yes" && a != "y" {
		return errors.New("the operator did not confirm the node's fingerprint: nothing was issued to it")
	}
	return nil
}

func (c *command) clusterToken(args []string) error {
	if len(args) == 0 {
		return usagef("cluster token needs create, list or revoke")
	}
	switch args[0] {
	case "-h", "-help", "--help": // the help, as every command's flags give it
		_, err := parse(c.flags("cluster token"), args)
		return err
	case "create":
		return c.tokenCreate(args[1:])
	case "list":
		return c.tokenList(args[1:])
	case "revoke":
		return c.tokenRevoke(args[1:])
	}
	return usagef("unknown command \"cluster token %s\"", args[0])
}

func (c *command) tokenCreate(args []string) error {
	fs := c.flags("cluster token create")
	ttl := fs.Duration("ttl", time.Hour, "how long the token may be used")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *ttl <= 0 {
		return usagef("--ttl must be positive")
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	token, err := cl.CreateJoinToken(ctx, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, token)
	return nil
}

func (c *command) tokenList(args []string) error {
	return list(c, c.flags("cluster token list"), args, (*client.Client).JoinTokens, "ID\tCREATED BY\tEXPIRES\tSPENT BY", func(t api.JoinTokenInfo) string {
		return fmt.Sprintf("%s\t%s\t%s\t%s", t.ID, t.CreatedBy, fmtTime(t.ExpiresAt), orNone(t.SpentBy))
	})
}

func (c *command) tokenRevoke(args []string) error {
	fs := c.flags("cluster token revoke")
	pos, err := parse(fs, args, "ID")
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	if err := cl.RevokeJoinToken(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "join token %s revoked\n", pos[0])
	return nil
}
