package cli

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/client/kxddir"
	"github.com/keyquorum/keyquorum/fsm"
)

// listFlag is a flag that may be given many times, or with commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// accessFlags are the flags that set a key's gateway access.
type accessFlags struct {
	gateways, certs, hosts, networks, emails listFlag
	noHosts                                  bool
	rate                                     int
}

func (a *accessFlags) register(fs *flag.FlagSet) {
	fs.Var(&a.gateways, "gateway", "legacy gateway that may serve the key: kxd, tang or tlv (repeat or comma-separate)")
	fs.Var(&a.certs, "client-cert", "PEM file of client certificates allowed (a CA allows the leaves it signed; repeatable)")
	fs.Var(&a.hosts, "host", "client address or name allowed (kxd's allowed_hosts; repeatable; none given: every host)")
	fs.BoolVar(&a.noHosts, "no-hosts", false, "allow no host at all (kxd's empty allowed_hosts)")
	fs.Var(&a.networks, "network", "source network allowed, as a CIDR prefix (repeatable; none given: every network)")
	fs.Var(&a.emails, "email", "e-mail address told of every access (repeatable)")
	fs.IntVar(&a.rate, "rate", 0, "uses per client address and minute on each node (0: unbounded)")
}

func (a *accessFlags) given() bool {
	return len(a.gateways)+len(a.certs)+len(a.hosts)+len(a.networks)+len(a.emails) > 0 || a.noHosts || a.rate != 0
}

// access builds the access; implied is a gateway the key type needs.
func (a *accessFlags) access(implied string) (*fsm.Access, error) {
	if !a.given() && implied == "" {
		return nil, nil
	}
	acc := &fsm.Access{Gateways: slices.Clone(a.gateways), Networks: a.networks, EmailTo: a.emails, RatePerMinute: a.rate}
	if implied != "" && !slices.Contains(acc.Gateways, implied) {
		acc.Gateways = append(acc.Gateways, implied)
	}
	if a.noHosts {
		if len(a.hosts) > 0 {
			return nil, usagef("--no-hosts and --host contradict each other")
		}
		acc.Hosts = []string{}
	} else if len(a.hosts) > 0 {
		acc.Hosts = a.hosts
	}
	for _, f := range a.certs {
		ders, err := readCertificates(f)
		if err != nil {
			return nil, err
		}
		acc.ClientCerts = append(acc.ClientCerts, ders...)
	}
	return acc, nil
}

// readCertificates reads every certificate of a PEM file, as DER.
func readCertificates(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificates: %w", err)
	}
	var out [][]byte
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %v", path, len(out)+1, err)
		}
		out = append(out, block.Bytes)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return out, nil
}

// keyTypes keyctl creates.
var createTypes = []string{fsm.KeyTypeSecret, fsm.KeyTypeRSA, fsm.KeyTypeECDSA, fsm.KeyTypeEd25519, fsm.KeyTypeFROST, fsm.KeyTypeTang, fsm.KeyTypeRSAThreshold}

func (c *command) keyCreate(args []string) error {
	fs := c.flags("key create")
	typ := fs.String("type", fsm.KeyTypeSecret, "key type: "+strings.Join(createTypes, ", "))
	n := fs.Int("bytes", 32, "generate a secret of this many random bytes")
	bits := fs.Int("bits", 2048, "size of a generated rsa key")
	from := fs.String("from-file", "", "read the secret, or the PEM private key, from this file (- for stdin)")
	expires := fs.Duration("expires", 0, "the key expires after this long (0: never)")
	ttl := fs.Duration("assemble-ttl", 0, "how long a node may keep an assembled rsa, ecdsa or ed25519 key in memory (0: one operation)")
	var af accessFlags
	af.register(fs)
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	name := pos[0]
	if !slices.Contains(createTypes, *typ) {
		return usagef("unknown key type %q (known: %s)", *typ, strings.Join(createTypes, ", "))
	}
	implied := ""
	if *typ == fsm.KeyTypeTang {
		implied = fsm.GatewayTang
	}
	access, err := af.access(implied)
	if err != nil {
		return err
	}
	if *typ == fsm.KeyTypeTang && (*from != "" || *expires != 0 || *ttl != 0) {
		return usagef("a tang key is generated in shares: --from-file, --expires and --assemble-ttl do not apply")
	}
	if *typ == fsm.KeyTypeFROST && (*expires != 0 || *ttl != 0) {
		return usagef("an ed25519-frost key signs by quorum and is never assembled: --expires and --assemble-ttl do not apply")
	}
	if *typ == fsm.KeyTypeRSAThreshold && *ttl != 0 {
		return usagef("an rsa-threshold key is never assembled: --assemble-ttl does not apply (use --type rsa for an assembled key)")
	}
	if (*typ == fsm.KeyTypeRSA || *typ == fsm.KeyTypeRSAThreshold) && *from == "" && (*bits < 2048 || *bits > 8192) {
		return usagef("--bits must be 2048 to 8192, got %d", *bits)
	}
	var secret []byte
	if *typ == fsm.KeyTypeSecret {
		if secret, err = c.secretInput(*from, *n); err != nil {
			return err
		}
		defer clear(secret)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	ctx, cancel := timeout()
	defer cancel()
	var k *fsm.Key
	switch *typ {
	case fsm.KeyTypeTang:
		if k, err = cl.CreateTang(ctx, name, access); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "created tang key %q: kid %s, thp %s\n", k.Name, k.Tang().Kid, k.Tang().Thp)
		return nil
	case fsm.KeyTypeSecret:
		ck := &fsm.CreateKey{Name: name, Type: fsm.KeyTypeSecret, Access: access}
		if *expires > 0 {
			ck.ExpiresAt = time.Now().Add(*expires).UnixNano()
		}
		if k, err = cl.CreateSealed(ctx, ck, secret); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "created %s key %q, version %d, %d bytes\n", k.Type, k.Name, k.Version, len(secret))
		return nil
	}
	var priv crypto.Signer
	if *from != "" {
		pemBytes, err := c.secretInput(*from, 0)
		if err != nil {
			return err
		}
		defer clear(pemBytes)
		if priv, err = parsePrivateKey(pemBytes, *from); err != nil {
			return err
		}
	} else if priv, err = generateKey(*typ, *bits); err != nil {
		return err
	}
	if *typ == fsm.KeyTypeRSAThreshold {
		if k, err = c.createThresholdRSA(ctx, cl, name, priv, access, *expires); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "created %s key %q, version %d, dealt %d-of-%d: no node holds it whole\n", k.Type, k.Name, k.Version, k.RSA().Threshold, len(k.RSA().Shares))
		return nil
	}
	if *typ == fsm.KeyTypeFROST {
		ed, ok := priv.(ed25519.PrivateKey)
		if !ok {
			return fmt.Errorf("%s holds a %T, not an Ed25519 key", *from, priv)
		}
		defer clear(ed)
		if k, err = cl.CreateFROST(ctx, name, ed, access); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "created %s key %q, version %d: %d-of-%d FROST shares\n", k.Type, k.Name, k.Version, k.Frost().Threshold, len(k.Frost().Shares))
		return nil
	}
	ck, material, err := assembledKey(name, priv)
	if err != nil {
		return err
	}
	defer clear(material)
	if ck.Type != *typ {
		return fmt.Errorf("%s holds a %s key, not a %s key", *from, ck.Type, *typ)
	}
	ck.AssembleTTL, ck.Access = *ttl, access
	if *expires > 0 {
		ck.ExpiresAt = time.Now().Add(*expires).UnixNano()
	}
	if k, err = cl.CreateSealed(ctx, ck, material); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "created %s key %q, version %d\n", k.Type, k.Name, k.Version)
	return nil
}

func generateKey(typ string, bits int) (crypto.Signer, error) {
	switch typ {
	case fsm.KeyTypeRSA, fsm.KeyTypeRSAThreshold:
		return rsa.GenerateKey(rand.Reader, bits)
	case fsm.KeyTypeECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
}

// parsePrivateKey reads a PEM private key: PKCS #8, PKCS #1 (RSA) or SEC 1 (EC).
func parsePrivateKey(b []byte, source string) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("%s holds no PEM private key", source)
		}
		var k any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %v", source, block.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: a %T is not a signing key", source, k)
		}
		return s, nil
	}
}

// assembledKey is the create command of an rsa, ecdsa or ed25519 key and
// its PKCS #8 material, which the caller erases.
func assembledKey(name string, priv crypto.Signer) (*fsm.CreateKey, []byte, error) {
	ck := &fsm.CreateKey{Name: name}
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, nil, fmt.Errorf("rsa key of %d bits: at least 2048 are needed", k.N.BitLen())
		}
		ck.Type = fsm.KeyTypeRSA
	case *ecdsa.PrivateKey:
		ck.Type = fsm.KeyTypeECDSA
	case ed25519.PrivateKey:
		ck.Type = fsm.KeyTypeEd25519
	default:
		return nil, nil, fmt.Errorf("a %T is not an rsa, ecdsa or ed25519 key", priv)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	material, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	ck.Public = pub
	return ck, material, nil
}

// keyAccess replaces a key's gateway access.
func (c *command) keyAccess(args []string) error {
	fs := c.flags("key access")
	closeAll := fs.Bool("close", false, "close the key to every legacy gateway")
	var af accessFlags
	af.register(fs)
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	if *closeAll == af.given() {
		return usagef("key access needs --close or access flags (--gateway, --client-cert, ...), not both")
	}
	access, err := af.access("")
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	k, err := cl.SetAccess(ctx, pos[0], access)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "key %q: gateways %s\n", k.Name, gatewaysOf(k))
	return nil
}

func gatewaysOf(k *fsm.Key) string {
	if k.Access() == nil || len(k.Access().Gateways) == 0 {
		return "none"
	}
	return strings.Join(k.Access().Gateways, ", ")
}

// keyImportDir imports a directory of PEM private keys for the Keyless
// SSL gateway, like the keyless servers' --private-key-directory: one key
// per file, named PREFIX + the file name without its extension. RSA keys
// are dealt here by Shoup's scheme and sign by quorum (rsa-threshold),
// unless --assembled-rsa asks for assembled keys, for throughput; ECDSA and
// Ed25519 keys are assembled.
func (c *command) keyImportDir(args []string) error {
	fs := c.flags("key import-dir")
	prefix := fs.String("prefix", "tls/", "prefix of the key names")
	ttl := fs.Duration("assemble-ttl", 5*time.Minute, "how long a node may keep each assembled key in memory once released")
	assembledRSA := fs.Bool("assembled-rsa", false, "import RSA keys assembled (a quorum releases the whole key to the serving node) instead of signing by quorum")
	var af accessFlags
	af.register(fs)
	pos, err := parse(fs, args, "DIR")
	if err != nil {
		return err
	}
	access, err := af.access(fsm.GatewayTLV)
	if err != nil {
		return err
	}
	if len(access.ClientCerts) == 0 {
		return usagef("key import-dir needs --client-cert: the certificates (or CA) of the TLS terminators that may use the keys")
	}
	entries, err := os.ReadDir(pos[0])
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	imported := 0
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".pem" && ext != ".key") {
			continue
		}
		path := filepath.Join(pos[0], e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		priv, err := parsePrivateKey(b, path)
		clear(b)
		if err != nil {
			return err
		}
		name := *prefix + strings.TrimSuffix(e.Name(), ext)
		if rk, ok := priv.(*rsa.PrivateKey); ok && !*assembledRSA {
			k, err := c.createThresholdRSA(ctx, cl, name, rk, access, 0)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			imported++
			fmt.Fprintf(c.stdout, "imported %s as %s key %q, dealt %d-of-%d: no node holds it whole\n", path, k.Type, k.Name, k.RSA().Threshold, len(k.RSA().Shares))
			continue
		}
		ck, material, err := assembledKey(name, priv)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		ck.AssembleTTL, ck.Access = *ttl, access
		k, err := cl.CreateSealed(ctx, ck, material)
		clear(material)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		imported++
		fmt.Fprintf(c.stdout, "imported %s as %s key %q\n", path, k.Type, k.Name)
	}
	if imported == 0 {
		return fmt.Errorf("%s holds no .pem or .key private key", pos[0])
	}
	return nil
}

// createThresholdRSA checks and deals an RSA key made here or read from a
// file, and creates it (client.CreateThresholdRSA).
func (c *command) createThresholdRSA(ctx context.Context, cl *client.Client, name string, priv crypto.Signer, access *fsm.Access, expires time.Duration) (*fsm.Key, error) {
	rk, ok := priv.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T is not an rsa key", priv)
	}
	if rk.N.BitLen() < 2048 {
		return nil, fmt.Errorf("rsa key of %d bits: at least 2048 are needed", rk.N.BitLen())
	}
	if expires > 0 {
		return nil, usagef("an rsa-threshold key does not expire yet: --expires does not apply")
	}
	return cl.CreateThresholdRSA(ctx, name, rk, access)
}

// createManyChunk is how many keys keyCreateMany sends under one
// command timeout.
const createManyChunk = 20 * fsm.MaxCreateKeys

// keyCreateMany creates the secret keys a file lists, in create_keys
// commands (client.CreateSecrets): one line a key, NAME for a random
// secret of --bytes bytes or NAME and the secret in standard base64.
func (c *command) keyCreateMany(args []string) error {
	fs := c.flags("key create-many")
	n := fs.Int("bytes", 32, "the size of each generated secret")
	pos, err := parse(fs, args, "FILE")
	if err != nil {
		return err
	}
	if *n < 1 || *n > fsm.MaxSealedSize-16 {
		return usagef("--bytes must be 1 to %d, got %d", fsm.MaxSealedSize-16, *n)
	}
	in := c.stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	var secrets []client.NamedSecret
	defer func() {
		for _, s := range secrets {
			clear(s.Secret)
		}
	}()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 2*fsm.MaxSealedSize)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		switch len(fields) {
		case 0:
			continue
		case 1:
			s := make([]byte, *n)
			rand.Read(s)
			secrets = append(secrets, client.NamedSecret{Name: fields[0], Secret: s})
		case 2:
			s, err := base64.StdEncoding.DecodeString(fields[1])
			if err != nil || len(s) == 0 {
				return fmt.Errorf("%s line %d: the secret is not standard base64 of at least one byte", pos[0], line)
			}
			secrets = append(secrets, client.NamedSecret{Name: fields[0], Secret: s})
		default:
			return fmt.Errorf("%s line %d: want NAME or NAME BASE64-SECRET, got %d fields", pos[0], line, len(fields))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if len(secrets) == 0 {
		return fmt.Errorf("%s lists no key", pos[0])
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	created, refused := 0, 0
	for lo := 0; lo < len(secrets); lo += createManyChunk {
		chunk := secrets[lo:min(lo+createManyChunk, len(secrets))]
		ctx, cancel := timeout()
		items, err := cl.CreateSecrets(ctx, chunk)
		cancel()
		for i, it := range items {
			if it.Error != nil {
				refused++
				fmt.Fprintf(c.stdout, "refused %q: %s\n", chunk[i].Name, it.Error.Message)
			} else {
				created++
			}
		}
		if err != nil {
			fmt.Fprintf(c.stdout, "created %d of %d keys, %d refused, before: %v\n", created, len(secrets), refused, err)
			return err
		}
	}
	fmt.Fprintf(c.stdout, "created %d of %d keys\n", created, len(secrets))
	if refused > 0 {
		return fmt.Errorf("%d of %d keys refused", refused, len(secrets))
	}
	return nil
}

// keyImportKxd imports a kxd data directory: each key under its path,
// opened to the kxd gateway with its allowed_clients, allowed_hosts and
// email_to.
func (c *command) keyImportKxd(args []string) error {
	fs := c.flags("key import-kxd")
	prefix := fs.String("prefix", "", "prefix of the key names (kxc asks for /v1/PREFIX...)")
	pos, err := parse(fs, args, "DIR")
	if err != nil {
		return err
	}
	entries, err := kxddir.Parse(pos[0])
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return fmt.Errorf("%s holds no kxd key (a directory with a file named key)", pos[0])
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	var failed []error
	for _, e := range entries {
		p := e.Policy
		access := &fsm.Access{Gateways: []string{fsm.GatewayKxd}, ClientCerts: p.AllowedClients, Hosts: p.AllowedHosts, EmailTo: p.EmailTo}
		k, err := cl.CreateSealed(ctx, &fsm.CreateKey{Name: *prefix + e.Path, Type: fsm.KeyTypeSecret, Access: access}, e.Key)
		clear(e.Key)
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", e.Path, err))
			continue
		}
		fmt.Fprintf(c.stdout, "imported kxd key %q (%d allowed certificates)\n", k.Name, len(p.AllowedClients))
	}
	return errors.Join(failed...)
}
