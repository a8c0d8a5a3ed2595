package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// Transit (docs/transit.md). Encryption runs here, with the public key of
// a transit key's latest version, which t members must show alike before
// this client encrypts to it (a lying node could otherwise hand out a key
// of its own). Decryption sends only the ciphertexts' points, in one
// signed request per batch, and combines the holders' partials here: no
// node sees a plaintext or a ciphertext.

// transitPins are the transit versions whose public keys t members
// confirmed: key ID and version -> public key.
type transitPins struct {
	mu sync.Mutex
	m  map[string][]byte
}

func transitPinID(id string, version uint64) string { return fmt.Sprintf("%s/%d", id, version) }

func (p *transitPins) get(id string, version uint64) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[transitPinID(id, version)]
}

func (p *transitPins) put(id string, version uint64, pub []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string][]byte{}
	}
	p.m[transitPinID(id, version)] = bytes.Clone(pub)
}

// CreateTransit creates a transit key: its first version's scalar is
// drawn and dealt here t-of-n to the share holders t members confirm,
// each share sealed to its holder's identity key. cipher is
// "aes256-gcm96" (also when empty) or "chacha20-poly1305"; a derived key
// binds a context into every ciphertext.
func (c *Client) CreateTransit(ctx context.Context, name, cipher string, derived bool) (*fsm.Key, error) {
	return c.CreateTransitWith(ctx, name, TransitOptions{Cipher: cipher, Derived: derived})
}

// TransitOptions are a new transit key's settings (docs/transit.md).
type TransitOptions struct {
	// Cipher is "aes256-gcm96" (also when empty) or "chacha20-poly1305".
	Cipher string
	// Derived binds a context into every ciphertext.
	Derived bool
	// ExpiresAt, when not zero, is when every holder stops decrypting
	// and deriving with the key and clients stop encrypting to it.
	ExpiresAt time.Time
	// Exportable may be set at creation only: a key created without it
	// is never exported.
	Exportable bool
}

// CreateTransitWith creates a transit key with opts, its first version's
// scalar drawn here as CreateTransit's is.
func (c *Client) CreateTransitWith(ctx context.Context, name string, opts TransitOptions) (*fsm.Key, error) {
	sharing, err := c.transitSharing(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	return c.createTransit(ctx, name, opts, sharing, false)
}

func (c *Client) createTransit(ctx context.Context, name string, opts TransitOptions, sharing *fsm.FROSTKey, imported bool) (*fsm.Key, error) {
	if opts.Cipher == "" {
		opts.Cipher = fsm.TransitCiphers[0]
	}
	ck := &fsm.CreateKey{Name: name, Type: fsm.KeyTypeTransit, Transit: &fsm.TransitKey{Cipher: opts.Cipher, Derived: opts.Derived,
		Exportable: opts.Exportable, Versions: []fsm.TransitVersion{{Sharing: sharing, Imported: imported}}}}
	if !opts.ExpiresAt.IsZero() {
		ck.ExpiresAt = opts.ExpiresAt.UnixNano()
	}
	res, err := c.submit(ctx, "/v1/keys", &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: ck})
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// ImportTransit creates a transit key whose first version is scalar (32
// bytes, a canonical little-endian edwards25519 scalar, as
// shamir.RandomSecret draws), dealt here t-of-n as CreateTransit deals a
// drawn one: no node ever holds it whole. The caller erases scalar.
func (c *Client) ImportTransit(ctx context.Context, name string, scalar []byte, opts TransitOptions) (*fsm.Key, error) {
	sharing, err := c.transitSharing(ctx, name, scalar)
	if err != nil {
		return nil, err
	}
	return c.createTransit(ctx, name, opts, sharing, true)
}

// TransitRotate deals a transit key's next version, which encrypts from
// then on; the older versions still decrypt (down to
// min_decryption_version).
func (c *Client) TransitRotate(ctx context.Context, name string) (*fsm.Key, error) {
	sharing, err := c.transitSharing(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	res, err := c.submit(ctx, "/v1/transit/rotate", &fsm.Command{Type: fsm.TypeRotateKey, RotateKey: &fsm.RotateKey{Name: name, Sharing: sharing}})
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// TransitConfig sets a transit key's min_decryption_version.
func (c *Client) TransitConfig(ctx context.Context, name string, minDecryptionVersion uint64) (*fsm.Key, error) {
	res, err := c.submit(ctx, "/v1/transit/config", &fsm.Command{Type: fsm.TypeConfigureKey,
		ConfigureKey: &fsm.ConfigureKey{Name: name, MinDecryptionVersion: minDecryptionVersion}})
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// transitSharing deals scalar, or a drawn one when it is nil, to the
// share holders t members confirm.
func (c *Client) transitSharing(ctx context.Context, name string, scalar []byte) (*fsm.FROSTKey, error) {
	_, pin, err := c.pinned()
	if err != nil {
		return nil, err
	}
	st, err := c.Confirm(ctx, pin)
	if err != nil {
		return nil, err
	}
	if scalar != nil {
		return api.DealTransitSharing(rand.Reader, scalar, name, st.ClusterID, st.Epoch, st.Threshold, st.Holders)
	}
	return api.NewTransitSharing(rand.Reader, name, st.ClusterID, st.Epoch, st.Threshold, st.Holders)
}

// transitKey is key name's metadata, its latest version's public key
// confirmed by t members (once per version: then pinned in memory).
func (c *Client) transitKey(ctx context.Context, name string) (*fsm.Key, error) {
	k, err := c.Key(ctx, name)
	if err != nil {
		return nil, err
	}
	if k.Transit() == nil || len(k.Transit().Versions) == 0 || k.ID == "" {
		return nil, &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("key %q is a %s key, not a %s key", name, k.Type, fsm.KeyTypeTransit)}
	}
	v := k.Transit().Latest()
	if v.Sharing == nil || len(v.Sharing.Commits) == 0 {
		return nil, &Error{Kind: api.KindInternal, Message: fmt.Sprintf("the node shows version %d of key %q without a public key", v.Version, name)}
	}
	pub := v.Sharing.Commits[0]
	if pinned := c.transit.get(k.ID, v.Version); pinned != nil {
		if !bytes.Equal(pinned, pub) {
			return nil, &Error{Kind: api.KindConflict, Message: fmt.Sprintf("the node shows version %d of key %q with public key %x, not the %x t members confirmed", v.Version, name, pub, pinned)}
		}
		return k, nil
	}
	if err := c.confirmTransit(ctx, k.ID, v.Version, pub); err != nil {
		return nil, err
	}
	c.transit.put(k.ID, v.Version, pub)
	return k, nil
}

// confirmTransit asks the confirmed share holders for key id and checks
// that t of them show version's public key as pub.
func (c *Client) confirmTransit(ctx context.Context, id string, version uint64, pub []byte) error {
	cf, err := c.Confirm(ctx, c.creds.ClusterKey)
	if err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		agree    int
		disagree []string
		wg       sync.WaitGroup
	)
	for _, m := range cf.Holders {
		wg.Go(func() {
			var k fsm.Key
			err := c.memberGet(ctx, m, m.SignKey, "/v1/keys/"+id, &k)
			if err == nil {
				if k.Transit() == nil || k.Transit().Version(version) == nil || k.Transit().Version(version).Sharing == nil ||
					len(k.Transit().Version(version).Sharing.Commits) == 0 || !bytes.Equal(k.Transit().Version(version).Sharing.Commits[0], pub) {
					err = fmt.Errorf("shows another public key for version %d", version)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				disagree = append(disagree, fmt.Sprintf("%s: %v", m.ID, err))
				return
			}
			agree++
		})
	}
	wg.Wait()
	if agree < cf.Threshold {
		sort.Strings(disagree)
		return &Error{Kind: api.KindConflict, Message: fmt.Sprintf("only %d of the %d members needed confirm the public key of version %d of key %s: refusing to encrypt to it; %s",
			agree, cf.Threshold, version, id, strings.Join(disagree, "; "))}
	}
	return nil
}

// TransitEncrypt encrypts plaintext with the latest version of transit key
// name, here; context is a derived key's (nil otherwise).
func (c *Client) TransitEncrypt(ctx context.Context, name string, plaintext, context []byte) (string, error) {
	res, err := c.TransitEncryptBatch(ctx, name, []api.TransitBatchItem{{Plaintext: plaintext, Context: context}})
	if err != nil {
		return "", err
	}
	if res[0].Error != nil {
		return "", res[0].Error
	}
	return res[0].Ciphertext, nil
}

// TransitEncryptBatch encrypts each item's plaintext under its context
// with the key's latest version: a ciphertext or an error per item.
func (c *Client) TransitEncryptBatch(ctx context.Context, name string, items []api.TransitBatchItem) ([]api.TransitBatchResult, error) {
	k, err := c.transitKey(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]api.TransitBatchResult, len(items))
	for i, it := range items {
		ct, err := api.TransitEncrypt(rand.Reader, k, it.Plaintext, it.Context)
		if err != nil {
			out[i].Error = itemError(i, err)
			continue
		}
		out[i].Ciphertext = ct
	}
	return out, nil
}

func itemError(i int, err error) *Error {
	return &Error{Kind: api.KindOf(err), Message: fmt.Sprintf("item %d: %s", i, messageOf(err))}
}

func messageOf(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Message
	}
	return err.Error()
}

// TransitDecrypt decrypts one ciphertext of transit key name.
func (c *Client) TransitDecrypt(ctx context.Context, name, ciphertext string, context []byte) ([]byte, error) {
	res, err := c.TransitDecryptBatch(ctx, name, []api.TransitBatchItem{{Ciphertext: ciphertext, Context: context}})
	if err != nil {
		return nil, err
	}
	if res[0].Error != nil {
		return nil, res[0].Error
	}
	return res[0].Plaintext, nil
}

// TransitDecryptBatch decrypts each item's ciphertext under its context,
// in one quorum round: a plaintext or an error per item (a malformed
// ciphertext, a version the holders refuse, one that does not
// authenticate). The error is for the whole batch only when no item could
// be answered: the request was refused, no quorum, or a holder or the
// node lied (named).
func (c *Client) TransitDecryptBatch(ctx context.Context, name string, items []api.TransitBatchItem) ([]api.TransitBatchResult, error) {
	d, err := c.TransitDecryptReport(ctx, name, items)
	if err != nil {
		return nil, err
	}
	return d.Results, nil
}

// TransitDecryption is a batch's results, and the holders whose answers
// were bad (by share index, why), which the batch was completed without.
type TransitDecryption struct {
	Results []api.TransitBatchResult
	Failed  api.BadAnswers
}

// TransitDecryptReport is TransitDecryptBatch, with the holders it left
// out: when a holder's answer does not check out (a lying holder, or a
// coordinator that changed it), it asks again without that holder, until
// t good answers open the batch or too few holders are left.
func (c *Client) TransitDecryptReport(ctx context.Context, name string, items []api.TransitBatchItem) (*TransitDecryption, error) {
	clusterID, _, err := c.pinned()
	if err != nil {
		return nil, err
	}
	k, err := c.Key(ctx, name)
	if err != nil {
		return nil, err
	}
	// The request names the key by its ID: it cannot reach a key created
	// later under the same name.
	return transitDecryptItems(ctx, c.base, clusterID, k, cmpOr(k.ID, name), items, c.transitSend("/v1/transit/decrypt"))
}

// transitSend signs a transit request and posts it to path.
func (c *Client) transitSend(path string) transitSend {
	return func(ctx context.Context, rel *fsm.ReleaseRequest) (*fsm.Signed, *api.TransitDecryptReply, error) {
		sg, err := c.Sign(&fsm.Command{Type: fsm.TypeRelease, Release: rel})
		if err != nil {
			return nil, nil, err
		}
		var rep api.TransitDecryptReply
		if err := c.do(ctx, http.MethodPost, path, sg, &rep); err != nil {
			return nil, nil, err
		}
		return sg, &rep, nil
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TransitDataKey makes a fresh 256-bit data key here and encrypts it with
// transit key name: the ciphertext, and the plaintext key unless
// wrappedOnly (then the key is erased here).
func (c *Client) TransitDataKey(ctx context.Context, name string, context []byte, wrappedOnly bool) (*api.TransitDataKeyReply, error) {
	k, err := c.transitKey(ctx, name)
	if err != nil {
		return nil, err
	}
	key := make([]byte, api.TransitDataKeyBits/8)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	ct, err := api.TransitEncrypt(rand.Reader, k, key, context)
	if err != nil {
		clear(key)
		return nil, err
	}
	rep := &api.TransitDataKeyReply{Ciphertext: ct, KeyVersion: k.Transit().Latest().Version}
	if wrappedOnly {
		clear(key)
	} else {
		rep.Plaintext = key
	}
	return rep, nil
}

// TransitRewrap decrypts each item and encrypts its plaintext again with
// the key's latest version, here: the plaintexts never leave this
// process. A ciphertext or an error per item.
func (c *Client) TransitRewrap(ctx context.Context, name string, items []api.TransitBatchItem) ([]api.TransitBatchResult, error) {
	dec, err := c.TransitDecryptBatch(ctx, name, items)
	if err != nil {
		return nil, err
	}
	var again []api.TransitBatchItem
	var at []int
	for i, r := range dec {
		if r.Error == nil {
			again = append(again, api.TransitBatchItem{Plaintext: r.Plaintext, Context: items[i].Context})
			at = append(at, i)
		}
	}
	out := make([]api.TransitBatchResult, len(items))
	for i, r := range dec {
		out[i].Error = r.Error
	}
	if len(again) == 0 {
		return out, nil
	}
	enc, err := c.TransitEncryptBatch(ctx, name, again)
	for _, it := range again {
		clear(it.Plaintext)
	}
	if err != nil {
		return nil, err
	}
	for j, r := range enc {
		out[at[j]] = r
	}
	return out, nil
}

// pinTransitVersion checks that version v of transit key k has the public
// key t members show (once per version: then it is pinned).
func (c *Client) pinTransitVersion(ctx context.Context, k *fsm.Key, v uint64) error {
	tv := k.Transit().Version(v)
	if tv == nil || tv.Sharing == nil || len(tv.Sharing.Commits) == 0 {
		return &Error{Kind: api.KindNotFound, Message: fmt.Sprintf("key %q has no version %d", k.Name, v)}
	}
	pub := tv.Sharing.Commits[0]
	if pinned := c.transit.get(k.ID, v); pinned != nil {
		if !bytes.Equal(pinned, pub) {
			return &Error{Kind: api.KindConflict, Message: fmt.Sprintf("the node shows version %d of key %q with public key %x, not the %x t members confirmed", v, k.Name, pub, pinned)}
		}
		return nil
	}
	if err := c.confirmTransit(ctx, k.ID, v, pub); err != nil {
		return err
	}
	c.transit.put(k.ID, v, pub)
	return nil
}

// TransitDerivation is one derivation's input: the context (required by a
// derived key) and the version (0: the latest).
type TransitDerivation struct {
	Context []byte
	Version uint64
}

// TransitDerive derives a key of length bytes from each item's context
// with transit key name, in one quorum round: the holders answer s_i*X
// for the point X each of them hashes from the key's ID, the version and
// the context, with proofs, sealed to this client, which combines s*X and
// runs HKDF with hashName ("sha2-256", also when empty, or "sha2-512").
// No node holds the key or the output. A holder whose answer does not
// check out is left out, as in TransitDecryptReport (Failed).
func (c *Client) TransitDerive(ctx context.Context, name string, items []TransitDerivation, hashName string, length int) (*TransitDecryption, error) {
	clusterID, _, err := c.pinned()
	if err != nil {
		return nil, err
	}
	if err := checkTransitDerive(len(items), hashName, length); err != nil {
		return nil, err
	}
	k, err := c.transitKey(ctx, name)
	if err != nil {
		return nil, err
	}
	derive := make([]fsm.TransitDerivation, len(items))
	for i, it := range items {
		derive[i] = fsm.TransitDerivation{Version: it.Version, Context: it.Context}
		if it.Version == 0 {
			derive[i].Version = k.Transit().Latest().Version
		}
		// Nothing authenticates a derived key as an AEAD authenticates a
		// plaintext: the version's public key must be the one t members
		// show, or a lying node could hand out commitments of its own
		// and partials that combine to a point it knows. With the
		// public key pinned, partials that pass their proofs combine to
		// s*X whatever the other commitments say.
		if err := c.pinTransitVersion(ctx, k, derive[i].Version); err != nil {
			return nil, err
		}
	}
	return transitDeriveItems(ctx, c.base, clusterID, k, cmpOr(k.ID, name), derive, hashName, length, c.transitSend("/v1/transit/derive/"+name))
}

// TransitHMAC is Vault transit's hmac with transit key name: HMAC with
// hashName ("sha2-256", also when empty, or "sha2-512") of input, under a
// MAC key derived by quorum (TransitDerive) from the key's version and
// context, tagged "hmac" (api.TransitHMACContext). The MAC key is whole
// here only, for this call: no node holds it. The result is
// "kq:v<version>:<base64 of the MAC>". version 0 is the latest.
func (c *Client) TransitHMAC(ctx context.Context, name, hashName string, version uint64, input, context []byte) (string, error) {
	if _, err := api.TransitHMACSize(hashName); err != nil {
		return "", &Error{Kind: api.KindInvalid, Message: err.Error()}
	}
	k, err := c.transitKey(ctx, name)
	if err != nil {
		return "", err
	}
	return transitHMAC(k, hashName, version, input, context, func(items []TransitDerivation, size int) (*TransitDecryption, error) {
		return c.TransitDerive(ctx, name, items, hashName, size)
	})
}

// transitHMAC is TransitHMAC with key k's metadata, deriving the MAC key
// with derive.
func transitHMAC(k *fsm.Key, hashName string, version uint64, input, context []byte, derive func([]TransitDerivation, int) (*TransitDecryption, error)) (string, error) {
	size, err := api.TransitHMACSize(hashName)
	if err != nil {
		return "", &Error{Kind: api.KindInvalid, Message: err.Error()}
	}
	if k.Transit() == nil {
		return "", &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("key %q is no %s key", k.Name, fsm.KeyTypeTransit)}
	}
	if k.Transit().Derived && len(context) == 0 {
		return "", &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("key %q is derived: give a context", k.Name)}
	}
	if version == 0 {
		version = k.Transit().Latest().Version
	}
	d, err := derive([]TransitDerivation{{Version: version, Context: api.TransitHMACContext(hashName, context)}}, size)
	if err != nil {
		return "", err
	}
	r := d.Results[0]
	if r.Error != nil {
		return "", r.Error
	}
	defer clear(r.Plaintext)
	return api.TransitHMAC(hashName, r.Plaintext, version, input)
}

// TransitVerifyHMAC checks a "kq:vN:..." HMAC of input with transit key
// name (the version it names), in constant time.
func (c *Client) TransitVerifyHMAC(ctx context.Context, name, hashName, mac string, input, context []byte) (bool, error) {
	version, _, err := api.ParseTransitHMAC(mac)
	if err != nil {
		return false, &Error{Kind: api.KindInvalid, Message: err.Error()}
	}
	want, err := c.TransitHMAC(ctx, name, hashName, version, input, context)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(mac)) == 1, nil
}

// TransitSign signs input by quorum with the ed25519-frost key name
// through Vault transit's path (POST /v1/transit/sign/NAME, the FROST
// signing path): "kq:v<version>:<base64 signature>". The signature is
// checked here against the public key of the key's metadata.
func (c *Client) TransitSign(ctx context.Context, name string, input []byte) (string, error) {
	k, err := c.Key(ctx, name)
	if err != nil {
		return "", err
	}
	if err := api.TransitSigningKey(k); err != nil {
		return "", err
	}
	sg, err := c.Sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: cmpOr(k.ID, name), Op: fsm.OpSign, Message: input}})
	if err != nil {
		return "", err
	}
	var rep api.TransitSignReply
	if err := c.do(ctx, http.MethodPost, "/v1/transit/sign/"+name, sg, &rep); err != nil {
		return "", err
	}
	if err := api.TransitVerify(k, input, rep.Signature); err != nil {
		return "", &Error{Kind: api.KindInternal, Message: fmt.Sprintf("the node's signature does not check out: %v", err)}
	}
	return rep.Signature, nil
}

// TransitVerify checks a "kq:vN:..." signature of input with the
// ed25519-frost key name's public key, here, with the key's metadata.
func (c *Client) TransitVerify(ctx context.Context, name string, input []byte, signature string) error {
	k, err := c.Key(ctx, name)
	if err != nil {
		return err
	}
	return api.TransitVerify(k, input, signature)
}

// CreateX25519 creates an x25519 key (docs/transit.md, "Exchange"): a
// transit sharing for X25519 exchanges only, its scalar drawn and dealt
// here as CreateTransit's is. Its X25519 public key is
// api.X25519PublicKey of the result. opts.Cipher, Derived and Exportable
// must be unset.
func (c *Client) CreateX25519(ctx context.Context, name string, opts TransitOptions) (*fsm.Key, error) {
	sharing, err := c.transitSharing(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	return c.createX25519(ctx, name, opts, sharing, false)
}

// ImportX25519 creates an x25519 key whose X25519 private key is priv
// (RFC 7748, 32 bytes; clamped): the scalar clamp(priv)/8 is dealt here
// t-of-n, so that the quorum's exchange is X25519(priv, u) and no node
// ever holds priv. The caller erases priv.
func (c *Client) ImportX25519(ctx context.Context, name string, priv []byte, opts TransitOptions) (*fsm.Key, error) {
	s, err := api.X25519PrivateScalar(priv)
	if err != nil {
		return nil, err
	}
	defer clear(s)
	sharing, err := c.transitSharing(ctx, name, s)
	if err != nil {
		return nil, err
	}
	return c.createX25519(ctx, name, opts, sharing, true)
}

func (c *Client) createX25519(ctx context.Context, name string, opts TransitOptions, sharing *fsm.FROSTKey, imported bool) (*fsm.Key, error) {
	if opts.Cipher != "" || opts.Derived || opts.Exportable {
		return nil, &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("an %s key has no cipher, is not derived and not exportable", fsm.KeyTypeX25519)}
	}
	ck := &fsm.CreateKey{Name: name, Type: fsm.KeyTypeX25519, Transit: &fsm.TransitKey{
		Versions: []fsm.TransitVersion{{Sharing: sharing, Imported: imported}}}}
	if !opts.ExpiresAt.IsZero() {
		ck.ExpiresAt = opts.ExpiresAt.UnixNano()
	}
	res, err := c.submit(ctx, "/v1/keys", &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: ck})
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// TransitExchangeItem is one exchange's input: the peer's X25519 public
// key (RFC 7748, 32 bytes) and the version (0: the latest).
type TransitExchangeItem struct {
	Peer    []byte
	Version uint64
}

// TransitExchange is X25519 with x25519 key name for each item's peer
// public key, in one quorum round, as a Tang server's exchange: each
// holder maps the peer's u to Q = 8*P itself and answers s_i*Q with a
// proof, sealed to this client, which combines and returns u(s*Q), the
// shared secret X25519(k, peer), in each result's Plaintext. No node
// holds the key or the secret. A peer key on the curve's twist, or of low
// order, fails alone (invalid). A holder whose answer does not check out
// is left out, as in TransitDecryptReport (Failed).
func (c *Client) TransitExchange(ctx context.Context, name string, items []TransitExchangeItem) (*TransitDecryption, error) {
	clusterID, _, err := c.pinned()
	if err != nil {
		return nil, err
	}
	k, err := c.transitKey(ctx, name)
	if err != nil {
		return nil, err
	}
	points, err := exchangePoints(k, items)
	if err != nil {
		return nil, err
	}
	for _, p := range points {
		// Nothing authenticates a shared secret: the version's public key
		// must be the one t members show, as for a derivation.
		if err := c.pinTransitVersion(ctx, k, p.Version); err != nil {
			return nil, err
		}
	}
	return transitExchangeItems(ctx, c.base, clusterID, k, cmpOr(k.ID, name), points, c.transitSend("/v1/transit/exchange/"+name))
}

// exchangePoints are an exchange's request items for x25519 key k.
func exchangePoints(k *fsm.Key, items []TransitExchangeItem) ([]fsm.TransitPoint, error) {
	if err := api.X25519Key(k); err != nil {
		return nil, err
	}
	if len(items) == 0 || len(items) > fsm.MaxTransitBatch {
		return nil, &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("a batch has 1 to %d items", fsm.MaxTransitBatch)}
	}
	points := make([]fsm.TransitPoint, len(items))
	for i, it := range items {
		if len(it.Peer) != 32 {
			return nil, &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("item %d: a peer's X25519 public key is 32 bytes, not %d", i, len(it.Peer))}
		}
		points[i] = fsm.TransitPoint{Version: it.Version, Point: it.Peer}
		if it.Version == 0 {
			points[i].Version = k.Transit().Latest().Version
		}
		if tv := k.Transit().Version(points[i].Version); tv == nil || tv.Sharing == nil || len(tv.Sharing.Commits) == 0 {
			return nil, &Error{Kind: api.KindNotFound, Message: fmt.Sprintf("key %q has no version %d", k.Name, points[i].Version)}
		}
	}
	return points, nil
}
