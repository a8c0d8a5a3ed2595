package cli

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSignInput bounds what key sign and key verify read
// (fsm.MaxSignMessage, checked by the cluster).
const maxSignInput = 1 << 20

// readMessage reads the message to sign or verify from file, or stdin
// for "-".
func (c *command) readMessage(file string) ([]byte, error) {
	r := c.stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return io.ReadAll(io.LimitReader(r, maxSignInput))
}

// keySign signs a message by quorum (an assembled ECDSA key: on the
// coordinating node) and prints the signature in base64.
func (c *command) keySign(args []string) error {
	fs := c.flags("key sign")
	in := fs.String("in", "-", "file holding the message (- for stdin)")
	padding := fs.String("padding", "", "an rsa-threshold key's padding over SHA-256: pkcs1v15 (default) or pss")
	tok := fs.String("token", "", "a capability token (or KEYQUORUM_TOKEN) in place of operator credentials")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	msg, err := c.readMessage(*in)
	if err != nil {
		return err
	}
	if text := tokenFlag(tok); text != "" {
		return c.keySignWithToken(text, pos[0], msg, *padding)
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	sig, err := cl.SignMessage(ctx, pos[0], msg, *padding)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, base64.StdEncoding.EncodeToString(sig.Signature))
	return nil
}

// keyVerify checks a base64 signature of a message with a key's public
// key; an invalid signature is an error (a non-zero exit).
func (c *command) keyVerify(args []string) error {
	fs := c.flags("key verify")
	in := fs.String("in", "-", "file holding the message (- for stdin)")
	sig64 := fs.String("signature", "", "the signature, base64")
	padding := fs.String("padding", "", "an RSA signature's padding: pkcs1v15 (default) or pss")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*sig64))
	if err != nil || len(sig) == 0 {
		return usagef("--signature must be the signature in base64")
	}
	msg, err := c.readMessage(*in)
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	if err := cl.VerifySignature(ctx, pos[0], msg, sig, *padding); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "signature valid for key %q\n", pos[0])
	return nil
}
