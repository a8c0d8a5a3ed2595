package cli

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/keyquorum/keyquorum/fsm"
)

// keyctl transit on the assembled AES-CBC and HMAC keys (docs/signing.md,
// "AES-CBC and HMAC: assembled on the coordinating node"): the same verbs
// as transit keys; the node a request reaches assembles the key.

var assembledTypes = []string{fsm.KeyTypeAES256CBC, fsm.KeyTypeAES128CBC, fsm.KeyTypeHMACSHA256, fsm.KeyTypeHMACSHA512}

// typeArg is the value of --type in args, or "".
func typeArg(args []string) string {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if v, ok := strings.CutPrefix(a, "type="); ok {
			return v
		}
		if a == "type" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// assembledCreateOr creates an assembled key when --type names one, and
// runs next (a transit key's create) otherwise.
func (c *command) assembledCreateOr(next func([]string) error) func([]string) error {
	return func(args []string) error {
		if !fsm.SymmetricAssembled(typeArg(args)) {
			return next(args)
		}
		fs := c.flags("transit create")
		keyType := fs.String("type", "", strings.Join(assembledTypes, ", "))
		keyFile := fs.String("key-file", "", "file holding the key's exact bytes (an import); none: random bytes")
		ttl := fs.Duration("assemble-ttl", 0, "how long the coordinating node may keep the key whole in memory (0: one operation)")
		pos, err := parse(fs, args, "NAME")
		if err != nil {
			return err
		}
		if *ttl < 0 || *ttl > fsm.MaxAssembleTTL {
			return usagef("--assemble-ttl is 0 to %v", fsm.MaxAssembleTTL)
		}
		var raw []byte
		if *keyFile != "" {
			if raw, err = os.ReadFile(*keyFile); err != nil {
				return err
			}
			defer clear(raw)
			if !fsm.SymmetricKeyLenOK(*keyType, len(raw)) {
				return usagef("%s: not a %s key (%d bytes)", *keyFile, *keyType, len(raw))
			}
		}
		cl, ctx, cancel, err := c.connect()
		if err != nil {
			return err
		}
		defer cancel()
		k, err := cl.CreateAssembled(ctx, pos[0], *keyType, raw, *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "created %s key %q (assembled: whole on the coordinating node for each operation)\n", k.Type, k.Name)
		return nil
	}
}

// assembledOr runs op with an assembled key when args are of its form
// (NAME [--in F]; decrypt NAME B64; verify NAME --hmac B64 [--in F]) and
// the key is one, and next (the transit key's verb) otherwise.
func (c *command) assembledOr(op string, next func([]string) error) func([]string) error {
	return func(args []string) error {
		fs := c.flags("transit " + op)
		fs.Usage = func() {}
		in := fs.String("in", "-", "file holding the input (- for stdin)")
		mac := fs.String("hmac", "", "the HMAC to check, base64")
		positional := []string{"NAME"}
		if op == fsm.OpDecrypt {
			positional = append(positional, "CIPHERTEXT")
		}
		pos, err := parse(fs, args, positional...)
		switch {
		case err != nil,
			op == fsm.OpDecrypt && strings.HasPrefix(pos[1], "kq:"),
			op == fsm.OpVerify && *mac == "",
			op != fsm.OpVerify && *mac != "",
			op == fsm.OpDecrypt && *in != "-":
			return next(args)
		}
		cl, ctx, cancel, err := c.connect()
		if err != nil {
			return err
		}
		defer cancel()
		k, err := cl.Key(ctx, pos[0])
		if err != nil || !fsm.SymmetricAssembled(k.Type) {
			cancel()
			return next(args)
		}
		var input, check []byte
		if op == fsm.OpDecrypt {
			if input, err = base64.StdEncoding.DecodeString(pos[1]); err != nil {
				return usagef("CIPHERTEXT is base64 of IV || AES-CBC ciphertext")
			}
		} else if input, err = c.readInput(*in); err != nil {
			return err
		}
		if op == fsm.OpVerify {
			if check, err = base64.StdEncoding.DecodeString(*mac); err != nil {
				return usagef("--hmac is base64")
			}
		}
		switch op {
		case fsm.OpEncrypt:
			out, err := cl.CBCEncrypt(ctx, pos[0], input)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, base64.StdEncoding.EncodeToString(out))
		case fsm.OpDecrypt:
			out, err := cl.CBCDecrypt(ctx, pos[0], input)
			if err != nil {
				return err
			}
			_, err = c.stdout.Write(out)
			return err
		case fsm.OpMAC:
			out, err := cl.HMAC(ctx, pos[0], input)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, base64.StdEncoding.EncodeToString(out))
		case fsm.OpVerify:
			ok, err := cl.VerifyHMAC(ctx, pos[0], input, check)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("the HMAC does not match")
			}
			fmt.Fprintln(c.stdout, "valid")
		}
		return nil
	}
}
