package cli

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// keyctl transit (docs/transit.md): Vault transit's operations on keys
// whose versions are held as shares. Encryption runs here, with a
// version's public key; decryption asks t holders and combines here.

// maxTransitInput bounds what encrypt and a batch file read.
const maxTransitInput = api.MaxTransitPlaintext

// transitContext decodes --context (base64, as Vault takes it).
func transitContext(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, usagef("--context must be base64")
	}
	return b, nil
}

// readBatch reads a batch_input file: a JSON array of items with
// plaintext (base64), ciphertext and context (base64), Vault's fields.
func (c *command) readBatch(file string) ([]api.TransitBatchItem, error) {
	r := c.stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var items []api.TransitBatchItem
	dec := json.NewDecoder(io.LimitReader(r, 4*maxTransitInput))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&items); err != nil {
		return nil, fmt.Errorf("%s: a batch is a JSON array of {\"plaintext\"|\"ciphertext\", \"context\"}: %v", file, err)
	}
	if len(items) == 0 || len(items) > fsm.MaxTransitBatch {
		return nil, fmt.Errorf("%s: a batch has 1 to %d items", file, fsm.MaxTransitBatch)
	}
	return items, nil
}

// writeBatch prints batch_results as JSON; it fails (exit 1) when an
// item failed, after printing every result.
func (c *command) writeBatch(res []api.TransitBatchResult) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(struct {
		BatchResults []api.TransitBatchResult `json:"batch_results"`
	}{res}); err != nil {
		return err
	}
	failed := 0
	for _, r := range res {
		if r.Error != nil {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d items failed", failed, len(res))
	}
	return nil
}

func (c *command) transitCreate(args []string) error {
	return c.transitCreateOrImport("transit create", args, false)
}

func (c *command) transitImport(args []string) error {
	return c.transitCreateOrImport("transit import", args, true)
}

// transitCreateOrImport creates a transit key, its first version drawn
// here or, for an import, read from --key-file; dealt here either way.
func (c *command) transitCreateOrImport(name string, args []string, imported bool) error {
	fs := c.flags(name)
	keyType := fs.String("type", fsm.KeyTypeTransit, "the key's type: "+fsm.KeyTypeTransit+" (encrypt, decrypt, derive) or "+fsm.KeyTypeX25519+" (X25519 exchange only)")
	cipher := fs.String("cipher", fsm.TransitCiphers[0], "payload cipher: "+strings.Join(fsm.TransitCiphers, ", "))
	derived := fs.Bool("derived", false, "bind a context (--context) into every ciphertext")
	expires := fs.Duration("expires", 0, "the key expires after this long: no decryption or derivation after it (0: never)")
	exportable := fs.Bool("exportable", false, "allow the key to be exported (wrapped) later; set at creation only")
	var keyFile, wrappedFile, wrappingPriv *string
	if imported {
		keyFile = fs.String("key-file", "", "file holding the version's key: 32 bytes, or 64 hex digits, a canonical little-endian edwards25519 scalar (--type x25519: an RFC 7748 X25519 private key)")
		wrappedFile = fs.String("wrapped", "", "file holding the version's key wrapped (transit export's output, Vault's BYOK format), instead of --key-file")
		wrappingPriv = fs.String("wrapping-private-key", "", "PEM file of the RSA private key that unwraps --wrapped (PKCS #8 or PKCS #1)")
	}
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	if *expires < 0 {
		return usagef("--expires must be positive")
	}
	x25519 := *keyType == fsm.KeyTypeX25519
	switch {
	case *keyType != fsm.KeyTypeTransit && !x25519:
		return usagef("--type is %s or %s", fsm.KeyTypeTransit, fsm.KeyTypeX25519)
	case x25519 && (*derived || *exportable || *cipher != fsm.TransitCiphers[0]):
		return usagef("an %s key takes no --cipher, --derived or --exportable: it only exchanges", fsm.KeyTypeX25519)
	case x25519:
		*cipher = ""
	}
	var scalar []byte
	if imported {
		switch {
		case (*keyFile == "") == (*wrappedFile == ""):
			return usagef("transit import needs --key-file or --wrapped")
		case (*wrappedFile == "") != (*wrappingPriv == ""):
			return usagef("--wrapped and --wrapping-private-key go together")
		case x25519 && *wrappedFile != "":
			return usagef("--wrapped holds a %s key's exported scalar; an %s key is imported from its RFC 7748 private key with --key-file", fsm.KeyTypeTransit, fsm.KeyTypeX25519)
		case *keyFile != "":
			scalar, err = readTransitScalar(*keyFile)
		default:
			scalar, err = readWrappedScalar(*wrappedFile, *wrappingPriv)
		}
		if err != nil {
			return err
		}
		defer clear(scalar)
	}
	opts := client.TransitOptions{Cipher: *cipher, Derived: *derived, Exportable: *exportable}
	if *expires > 0 {
		opts.ExpiresAt = time.Now().Add(*expires)
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	var k *fsm.Key
	switch {
	case imported && x25519:
		k, err = cl.ImportX25519(ctx, pos[0], scalar, opts)
	case x25519:
		k, err = cl.CreateX25519(ctx, pos[0], opts)
	case imported:
		k, err = cl.ImportTransit(ctx, pos[0], scalar, opts)
	default:
		k, err = cl.CreateTransitWith(ctx, pos[0], opts)
	}
	if err != nil {
		return err
	}
	v := k.Transit().Latest()
	verb := "created"
	if imported {
		verb = "imported"
	}
	if x25519 {
		pub, err := api.X25519PublicKey(k, v.Version)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s %s key %q, id %s, version %d dealt %d-of-%d: no node holds it whole; X25519 public key %s\n",
			verb, fsm.KeyTypeX25519, k.Name, k.ID, v.Version, v.Sharing.Threshold, len(v.Sharing.Shares), base64.StdEncoding.EncodeToString(pub))
		return nil
	}
	fmt.Fprintf(c.stdout, "%s transit key %q (%s), id %s, version %d dealt %d-of-%d: no node holds it whole\n",
		verb, k.Name, k.Transit().Cipher, k.ID, v.Version, v.Sharing.Threshold, len(v.Sharing.Shares))
	return nil
}

// readTransitScalar reads an imported version's key: 32 raw bytes, or 64
// hex digits (surrounding white space ignored).
func readTransitScalar(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	if len(b) == 32 {
		return bytes.Clone(b), nil
	}
	t := bytes.TrimSpace(b)
	out := make([]byte, 32)
	if n, err := hex.Decode(out, t); err != nil || n != 32 || len(t) != 64 {
		clear(out)
		return nil, usagef("%s holds neither 32 bytes nor 64 hex digits", file)
	}
	return out, nil
}

// readWrappedScalar unwraps the wrapped key in file (base64, Vault's
// BYOK layout) with the RSA private key in the PEM file privFile.
func readWrappedScalar(file, privFile string) ([]byte, error) {
	pemBytes, err := os.ReadFile(privFile)
	if err != nil {
		return nil, err
	}
	defer clear(pemBytes)
	priv, err := api.ParseWrappingPrivateKey(pemBytes)
	if err != nil {
		return nil, usagef("%s: %v", privFile, err)
	}
	wrapped, err := readLimited(file, api.MaxWrappedKey+64)
	if err != nil {
		return nil, err
	}
	scalar, err := api.UnwrapTransitKey(priv, string(wrapped))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return scalar, nil
}

// readLimited reads file, refusing one longer than max bytes.
func readLimited(file string, max int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, usagef("%s is longer than %d bytes", file, max)
	}
	return b, nil
}

// transitExport exports a version of an exportable transit key, wrapped
// to the operator's RSA wrapping key (--wrapping-key, a PEM public key
// such as Vault's transit/wrapping_key): it prints the wrapped key,
// base64 of Vault's BYOK layout, and never the key itself.
func (c *command) transitExport(args []string) error {
	fs := c.flags("transit export")
	wrappingFile := fs.String("wrapping-key", "", "PEM file of the RSA public key to wrap the exported key to (at least 2048 bits)")
	version := fs.Uint64("version", 0, "the key version (default: the latest)")
	auth := transitTokenFlags(fs)
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	if *wrappingFile == "" {
		return usagef("transit export needs --wrapping-key")
	}
	pemBytes, err := readLimited(*wrappingFile, 64<<10)
	if err != nil {
		return err
	}
	wrapping, err := api.ParseWrappingKey(pemBytes)
	if err != nil {
		return usagef("%s: %v", *wrappingFile, err)
	}
	wrapped, err := transitCall(c, auth, pos[0],
		func(ctx context.Context, tc *client.TokenClient, k *fsm.Key) (string, error) {
			return tc.TransitExport(ctx, k, *version, wrapping)
		},
		func(ctx context.Context, cl *client.Client) (string, error) {
			return cl.TransitExport(ctx, pos[0], *version, wrapping)
		})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, wrapped)
	return nil
}

func (c *command) transitEncrypt(args []string) error {
	fs := c.flags("transit encrypt")
	in := fs.String("in", "-", "file holding the plaintext (- for stdin)")
	context := fs.String("context", "", "a derived key's context, base64")
	batch := fs.String("batch", "", "a batch_input file (JSON; - for stdin) instead of --in: print batch_results")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	var items []api.TransitBatchItem
	if *batch != "" {
		if items, err = c.readBatch(*batch); err != nil {
			return err
		}
	} else {
		ctxBytes, err := transitContext(*context)
		if err != nil {
			return err
		}
		pt, err := c.readInput(*in)
		if err != nil {
			return err
		}
		items = []api.TransitBatchItem{{Plaintext: pt, Context: ctxBytes}}
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	res, err := cl.TransitEncryptBatch(ctx, pos[0], items)
	if err != nil {
		return err
	}
	return c.writeCiphertexts(res, *batch != "")
}

// readInput reads a file, or stdin for "-", up to maxTransitInput bytes.
func (c *command) readInput(file string) ([]byte, error) {
	r := c.stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxTransitInput+1))
	if err == nil && len(b) > maxTransitInput {
		err = fmt.Errorf("%s: more than %d bytes", file, maxTransitInput)
	}
	return b, err
}

// transitItems are the items of NAME CIPHERTEXT or NAME --batch FILE.
func (c *command) transitItems(pos []string, batch, context string) ([]api.TransitBatchItem, error) {
	if batch != "" {
		if len(pos) != 1 {
			return nil, usagef("with --batch, give only NAME")
		}
		return c.readBatch(batch)
	}
	if len(pos) != 2 {
		return nil, usagef("give NAME CIPHERTEXT, or NAME --batch FILE")
	}
	ctxBytes, err := transitContext(context)
	if err != nil {
		return nil, err
	}
	return []api.TransitBatchItem{{Ciphertext: pos[1], Context: ctxBytes}}, nil
}

func (c *command) transitDecrypt(args []string) error {
	return c.transitDecryptOrRewrap("transit decrypt", args, false)
}

func (c *command) transitRewrap(args []string) error {
	return c.transitDecryptOrRewrap("transit rewrap", args, true)
}

func (c *command) transitDecryptOrRewrap(name string, args []string, rewrap bool) error {
	fs := c.flags(name)
	ctxFlag := fs.String("context", "", "a derived key's context, base64")
	batch := fs.String("batch", "", "a batch_input file (JSON; - for stdin): print batch_results")
	var auth transitAuth
	if !rewrap {
		auth = transitTokenFlags(fs)
	}
	pos, err := parseUpTo(fs, args, 1, 2, "NAME [CIPHERTEXT]")
	if err != nil {
		return err
	}
	items, err := c.transitItems(pos, *batch, *ctxFlag)
	if err != nil {
		return err
	}
	if !rewrap {
		d, err := transitCall(c, auth, pos[0],
			func(ctx context.Context, tc *client.TokenClient, k *fsm.Key) (*client.TransitDecryption, error) {
				return tc.TransitDecrypt(ctx, k, items)
			},
			func(ctx context.Context, cl *client.Client) (*client.TransitDecryption, error) {
				return cl.TransitDecryptReport(ctx, pos[0], items)
			})
		if err != nil {
			return err
		}
		return c.writeDecrypted(d, *batch != "")
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	res, err := cl.TransitRewrap(ctx, pos[0], items)
	if err != nil {
		return err
	}
	return c.writeCiphertexts(res, *batch != "")
}

// writeCiphertexts prints the batch results, or the one ciphertext.
func (c *command) writeCiphertexts(res []api.TransitBatchResult, batch bool) error {
	if batch {
		return c.writeBatch(res)
	}
	if res[0].Error != nil {
		return res[0].Error
	}
	fmt.Fprintln(c.stdout, res[0].Ciphertext)
	return nil
}

// leftOut prints the holders a quorum answer left out, on stderr.
func leftOut(d *client.TransitDecryption) {
	for _, why := range d.Failed {
		fmt.Fprintf(os.Stderr, "keyctl: left out a holder whose answer was bad: %s\n", why)
	}
}

// writeDecrypted prints a decryption: the batch results, or the one
// plaintext; and the holders left out, on stderr.
func (c *command) writeDecrypted(d *client.TransitDecryption, batch bool) error {
	leftOut(d)
	if batch {
		return c.writeBatch(d.Results)
	}
	if d.Results[0].Error != nil {
		return d.Results[0].Error
	}
	_, err := c.stdout.Write(d.Results[0].Plaintext)
	clear(d.Results[0].Plaintext)
	return err
}

// writeSecret prints the one value of a quorum answer, a derived key or
// a shared secret, in base64, and the holders left out, on stderr.
func (c *command) writeSecret(d *client.TransitDecryption) error {
	leftOut(d)
	if r := d.Results[0]; r.Error != nil {
		return r.Error
	}
	fmt.Fprintln(c.stdout, base64.StdEncoding.EncodeToString(d.Results[0].Plaintext))
	clear(d.Results[0].Plaintext)
	return nil
}

// transitAuth is the --token and --key-file of a transit command that a
// capability token may authorize.
type transitAuth struct{ token, keyFile *string }

// transitTokenFlags adds --token and --key-file to fs.
func transitTokenFlags(fs *flag.FlagSet) transitAuth {
	return transitAuth{
		token:   fs.String("token", "", "a capability token (or KEYQUORUM_TOKEN) in place of operator credentials"),
		keyFile: fs.String("key-file", "", "with --token: the key's metadata, the pin (keyctl key show --json NAME)"),
	}
}

// transitCall runs a transit command on key name: with a capability
// token (auth, or KEYQUORUM_TOKEN), byToken with the token client and
// the key's pinned metadata; else byOperator with operator credentials.
func transitCall[T any](c *command, auth transitAuth, name string,
	byToken func(context.Context, *client.TokenClient, *fsm.Key) (T, error),
	byOperator func(context.Context, *client.Client) (T, error)) (T, error) {
	var none T
	if text := tokenFlag(auth.token); text != "" {
		k, err := pinnedKey(*auth.keyFile, name)
		if err != nil {
			return none, err
		}
		tc, ctx, cancel, err := c.tokenClient(text)
		if err != nil {
			return none, err
		}
		defer cancel()
		return byToken(ctx, tc, k)
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return none, err
	}
	defer cancel()
	return byOperator(ctx, cl)
}

// pinnedKey reads the pinned metadata of the transit key name, for a
// token client, from keyFile (--key-file).
func pinnedKey(keyFile, name string) (*fsm.Key, error) {
	if keyFile == "" {
		return nil, usagef("--token needs --key-file: the key's metadata, from keyctl key show --json %s", name)
	}
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	var k fsm.Key
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("--key-file %s: not a key's metadata (keyctl key show --json): %v", keyFile, err)
	}
	if k.Name != name && k.ID != name {
		return nil, usagef("--key-file %s holds key %q, not %q", keyFile, k.Name, name)
	}
	return &k, nil
}

func (c *command) transitRotate(args []string) error {
	fs := c.flags("transit rotate")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	k, err := cl.TransitRotate(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "rotated transit key %q to version %d; it decrypts from version %d\n", k.Name, k.Version, k.Transit().MinDecryptionVersion)
	return nil
}

func (c *command) transitConfig(args []string) error {
	fs := c.flags("transit config")
	minVersion := fs.Uint64("min-decryption-version", 0, "the oldest version that still decrypts")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	if *minVersion == 0 {
		return usagef("transit config needs --min-decryption-version N")
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	k, err := cl.TransitConfig(ctx, pos[0], *minVersion)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "transit key %q decrypts from version %d (latest %d)\n", k.Name, k.Transit().MinDecryptionVersion, k.Version)
	return nil
}

func (c *command) transitDataKey(args []string) error {
	fs := c.flags("transit datakey")
	wrapped := fs.Bool("wrapped", false, "print only the wrapped key (Vault's datakey/wrapped)")
	context := fs.String("context", "", "a derived key's context, base64")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	ctxBytes, err := transitContext(*context)
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	dk, err := cl.TransitDataKey(ctx, pos[0], ctxBytes, *wrapped)
	if err != nil {
		return err
	}
	defer clear(dk.Plaintext)
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(dk)
}

// transitDerive derives a key by quorum from a context (HKDF from a
// threshold PRF), combined here; it prints the key, base64.
func (c *command) transitDerive(args []string) error {
	fs := c.flags("transit derive")
	ctxFlag := fs.String("context", "", "the context, base64 (a derived key needs one)")
	version := fs.Uint64("version", 0, "the key version (default: the latest)")
	algorithm := fs.String("algorithm", "sha2-256", "the HKDF hash: sha2-256 or sha2-512")
	size := fs.Int("bytes", 32, "the derived key's length in bytes")
	auth := transitTokenFlags(fs)
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	ctxBytes, err := transitContext(*ctxFlag)
	if err != nil {
		return err
	}
	items := []client.TransitDerivation{{Context: ctxBytes, Version: *version}}
	d, err := transitCall(c, auth, pos[0],
		func(ctx context.Context, tc *client.TokenClient, k *fsm.Key) (*client.TransitDecryption, error) {
			return tc.TransitDerive(ctx, k, items, *algorithm, *size)
		},
		func(ctx context.Context, cl *client.Client) (*client.TransitDecryption, error) {
			return cl.TransitDerive(ctx, pos[0], items, *algorithm, *size)
		})
	if err != nil {
		return err
	}
	return c.writeSecret(d)
}

// transitExchange prints X25519(k, peer) for x25519 key NAME's private
// key k, in base64: t holders' partials combined here (docs/transit.md,
// "Exchange").
func (c *command) transitExchange(args []string) error {
	fs := c.flags("transit exchange")
	peer := fs.String("peer-public", "", "the peer's X25519 public key, base64 (32 bytes)")
	version := fs.Uint64("version", 0, "the key version (default: the latest)")
	auth := transitTokenFlags(fs)
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	u, err := base64.StdEncoding.DecodeString(*peer)
	if err != nil || len(u) != 32 {
		return usagef("transit exchange needs --peer-public: a 32-byte X25519 public key in base64")
	}
	items := []client.TransitExchangeItem{{Peer: u, Version: *version}}
	d, err := transitCall(c, auth, pos[0],
		func(ctx context.Context, tc *client.TokenClient, k *fsm.Key) (*client.TransitDecryption, error) {
			return tc.TransitExchange(ctx, k, items)
		},
		func(ctx context.Context, cl *client.Client) (*client.TransitDecryption, error) {
			return cl.TransitExchange(ctx, pos[0], items)
		})
	if err != nil {
		return err
	}
	return c.writeSecret(d)
}

// transitHMAC prints the HMAC of the input (stdin or --in) under a MAC
// key derived by quorum and used here only: kq:vN:<base64>. With --hmac
// it checks one instead (exit 1 when it does not match).
func (c *command) transitHMAC(args []string) error {
	fs := c.flags("transit hmac")
	in := fs.String("in", "-", "file holding the input (- for stdin)")
	ctxFlag := fs.String("context", "", "a derived key's context, base64")
	version := fs.Uint64("version", 0, "the key version (default: the latest)")
	algorithm := fs.String("algorithm", "sha2-256", "sha2-256 or sha2-512")
	check := fs.String("hmac", "", "check this kq:vN:... HMAC instead of printing one")
	auth := transitTokenFlags(fs)
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	ctxBytes, err := transitContext(*ctxFlag)
	if err != nil {
		return err
	}
	input, err := c.readInput(*in)
	if err != nil {
		return err
	}
	mismatch := fmt.Errorf("the HMAC does not match")
	out, err := transitCall(c, auth, pos[0],
		func(ctx context.Context, tc *client.TokenClient, k *fsm.Key) (string, error) {
			v := *version
			if *check != "" {
				cv, _, err := api.ParseTransitHMAC(*check)
				if err != nil {
					return "", usagef("--hmac: %v", err)
				}
				v = cv
			}
			mac, err := tc.TransitHMAC(ctx, k, *algorithm, v, input, ctxBytes)
			switch {
			case err != nil || *check == "":
				return mac, err
			case subtle.ConstantTimeCompare([]byte(mac), []byte(*check)) != 1:
				return "", mismatch
			}
			return "valid", nil
		},
		func(ctx context.Context, cl *client.Client) (string, error) {
			if *check == "" {
				return cl.TransitHMAC(ctx, pos[0], *algorithm, *version, input, ctxBytes)
			}
			ok, err := cl.TransitVerifyHMAC(ctx, pos[0], *algorithm, *check, input, ctxBytes)
			switch {
			case err != nil:
				return "", err
			case !ok:
				return "", mismatch
			}
			return "valid", nil
		})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, out)
	return nil
}

// transitSign signs the input by quorum with an ed25519-frost key,
// through Vault transit's path, and prints kq:vN:<base64>.
func (c *command) transitSign(args []string) error {
	fs := c.flags("transit sign")
	in := fs.String("in", "-", "file holding the input (- for stdin)")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	input, err := c.readInput(*in)
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	sig, err := cl.TransitSign(ctx, pos[0], input)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, sig)
	return nil
}

// transitVerify checks a kq:vN:... signature of the input with an
// ed25519-frost key's public key, here; exit 1 when it does not verify.
func (c *command) transitVerify(args []string) error {
	fs := c.flags("transit verify")
	in := fs.String("in", "-", "file holding the input (- for stdin)")
	signature := fs.String("signature", "", "the kq:vN:... signature")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	if *signature == "" {
		return usagef("transit verify needs --signature kq:vN:...")
	}
	input, err := c.readInput(*in)
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	if err := cl.TransitVerify(ctx, pos[0], input, *signature); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "valid")
	return nil
}
