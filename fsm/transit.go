package fsm

import (
	"slices"
	"strings"
)

// Transit keys: Vault transit's encryption keys, held as shares
// (docs/transit.md). Each version of a transit key is an edwards25519
// scalar the client dealt t-of-n to the share holders of the current
// epoch, as a FROST key is dealt (frost.go): the state keeps the Feldman
// commitments of each version's sharing (Commits[0] is the version's
// public key) and the shares sealed to the holders' identity keys.
// Encryption needs only a version's public key and runs on the client;
// decryption (OpDecrypt) asks t holders for their partial s_i*E of each
// ciphertext's ephemeral point, with a proof, sealed to the caller's
// ephemeral key; the caller combines. No node ever holds a version's key.
//
// rotate_key deals a new version, which encrypts from then on;
// configure_key sets min_decryption_version, below which holders refuse
// to decrypt. A version dealt before the members changed, and not
// reshared by the round that changed them, is refused too
// (TransitVersionFor).
//
// Capabilities. Today a decryption is allowed by the access rules
// (State.Allowed, op decrypt); every holder checks them in
// AuthorizeRelease. The capability tokens of issue 12 plug in at
// cluster's Node.transitAllowed, which every holder calls per request.

// KeyTypeTransit is an encryption key of the transit operations.
const KeyTypeTransit = "transit"

// KeyTypeX25519 is a transit key for X25519 exchanges (OpExchange,
// docs/transit.md "Exchange"): its versions are sharings as a transit
// key's, of s = clamp(k)/8 for its X25519 private key k, and a holder
// answers s_i*Q for Q = 8*P of the peer's public key u, which it maps to
// P itself. It has no cipher and answers no decryption or derivation
// (keyKinds): its sharing is used for exchanges alone.
const KeyTypeX25519 = "x25519"

// Transit operations a rule can grant. Encrypting needs only OpRead (the
// public key is in the key's metadata).
const (
	OpDecrypt = "decrypt" // decrypt by quorum (the holders' partials)
	OpRotate  = "rotate"  // deal a new version; set min_decryption_version
	OpDerive  = "derive"  // derive a key by quorum from a context (a threshold PRF)
	// OpExport exports a transit key version, wrapped: only for a key
	// created exportable (TransitExportable). Each holder seals its share
	// of the version to the caller, who checks and combines the scalar
	// and wraps it to its wrapping key (docs/transit.md, "Export").
	OpExport = "export"
)

// MaxDeriveContext is the longest context a derivation hashes.
const MaxDeriveContext = 4096

// MaxTransitBatch is the most ciphertexts one decryption request carries:
// one quorum round answers them all.
const MaxTransitBatch = 1024

// TransitKey is a transit key's versions and settings.
type TransitKey struct {
	// Cipher is the payload AEAD: "aes256-gcm96" or "chacha20-poly1305"
	// (Vault's names).
	Cipher string `json:"cipher"`
	// Derived keys bind a context, which every encryption and decryption
	// must give, into each ciphertext.
	Derived bool `json:"derived,omitempty"`
	// Exportable is set at creation only (no command changes it): a key
	// created without it is never exported (TransitExportable).
	Exportable           bool             `json:"exportable,omitempty"`
	MinDecryptionVersion uint64           `json:"min_decryption_version"`
	Versions             []TransitVersion `json:"versions"`
}

// TransitVersion is one version's sharing. The sharing's shares are
// sealed with context cluster/api.TransitShareContext(name, Version).
type TransitVersion struct {
	Version   uint64    `json:"version"`
	CreatedAt int64     `json:"created_at,omitempty"`
	Sharing   *FROSTKey `json:"sharing"`
	// Imported says the creating client dealt a scalar it was given
	// rather than one it drew (keyctl transit import): the key existed
	// outside the cluster before. What the client says; nothing checks it.
	Imported bool `json:"imported,omitempty"`
}

// TransitCiphers are the payload ciphers (shamir.TransitCiphers; fsm
// imports no shamir).
var TransitCiphers = []string{"aes256-gcm96", "chacha20-poly1305"}

// TransitPoint is one ciphertext's ephemeral point E, for the version it
// was made with: what a holder multiplies by its share, once it has
// checked Proof, the encryptor's proof that it knows E's discrete log,
// bound to the key's ID, the version and Context (the ciphertext's
// derived context; cluster/api.TransitBinding). The ciphertext itself
// never reaches the cluster.
type TransitPoint struct {
	Version uint64 `json:"version"`
	Point   []byte `json:"point"`
	Proof   []byte `json:"proof"`
	Context []byte `json:"context,omitempty"`
}

// TransitDerivation is one derivation's version and context: each holder
// hashes the key's ID, the version and the context to a point
// (shamir.TransitDerivePoint) and multiplies it by its share of the
// version, so the context decides the point and the caller does not.
type TransitDerivation struct {
	Version uint64 `json:"version"`
	Context []byte `json:"context"`
}

// RotateKey deals a transit key's next version.
type RotateKey struct {
	Name    string    `json:"name"`
	Sharing *FROSTKey `json:"sharing"`
}

// ConfigureKey sets a transit key's min_decryption_version.
type ConfigureKey struct {
	Name                 string `json:"name"`
	MinDecryptionVersion uint64 `json:"min_decryption_version"`
}

// Version returns the key's version v, or nil.
func (tk *TransitKey) Version(v uint64) *TransitVersion {
	for i := range tk.Versions {
		if tk.Versions[i].Version == v {
			return &tk.Versions[i]
		}
	}
	return nil
}

// Latest is the version encryptions use.
func (tk *TransitKey) Latest() *TransitVersion { return &tk.Versions[len(tk.Versions)-1] }

// TransitVersionFor is the one place that says whether a holder decrypts
// with version v of transit key k: it exists, is not below the key's
// min_decryption_version, and was dealt to the holders of epoch, the
// current one.
func TransitVersionFor(k *Key, v, epoch uint64) (*TransitVersion, *Error) {
	if k.Transit() == nil {
		return nil, errorf(CodeInvalid, "key %q is not a %s key", k.Name, KeyTypeTransit)
	}
	tv := k.Transit().Version(v)
	switch {
	case tv == nil:
		return nil, errorf(CodeNotFound, "key %q has no version %d (latest %d)", k.Name, v, k.Transit().Latest().Version)
	case v < k.Transit().MinDecryptionVersion:
		return nil, errorf(CodeDenied, "key %q decrypts from version %d (min_decryption_version), not %d", k.Name, k.Transit().MinDecryptionVersion, v)
	case tv.Sharing.Epoch != epoch:
		return nil, errorf(CodeConflict, "version %d of key %q was dealt to the holders of epoch %d and no round reshared it to epoch %d", v, k.Name, tv.Sharing.Epoch, epoch)
	}
	return tv, nil
}

// TransitExportable is the one place that says whether key k may be
// exported: only a transit key created exportable (the flag is set at
// creation and no command changes it). Every holder asks it of every
// export request, at its own read index (AuthorizeRelease).
func TransitExportable(k *Key) *Error {
	switch {
	case k.State == KeyDestroyed:
		return errorf(CodeDenied, "key %q is destroyed", k.Name)
	case k.Transit() == nil:
		return errorf(CodeInvalid, "key %q is a %s key: only %s keys created exportable are exported", k.Name, k.Type, KeyTypeTransit)
	case !k.Transit().Exportable:
		return errorf(CodeDenied, "key %q was created non-exportable: it is never exported", k.Name)
	}
	return nil
}

// authorizeExport checks what an export request must be: one version,
// asked by its caller (who combines) with nothing else. The version
// itself is each holder's to check (TransitVersionFor).
func authorizeExport(req *ReleaseRequest) *Error {
	switch {
	case req.Gateway != "":
		return errorf(CodeInvalid, "a transit export is asked by its caller, who combines, never by a gateway node")
	case req.Version == 0:
		return errorf(CodeInvalid, "an export request names the version it exports")
	case len(req.Points) != 0 || len(req.Derive) != 0 || len(req.Message) != 0 || len(req.Input) != 0 || len(req.Point) != 0 || req.Padding != "":
		return errorf(CodeInvalid, "an export request carries its version only")
	case len(req.Exclude) > MaxNodes:
		return errorf(CodeInvalid, "an export request excludes at most %d holders", MaxNodes)
	}
	return nil
}

// checkTransit checks a new transit key: a known cipher and one version,
// dealt to the current holders.
func (s *State) checkTransit(c *CreateKey) *Error {
	tk := c.Transit
	switch {
	case tk == nil:
		return errorf(CodeInvalid, "a %s key needs its first version's sharing", KeyTypeTransit)
	case len(c.R) != 0 || len(c.Sealed) != 0 || len(c.Public) != 0:
		return errorf(CodeInvalid, "a %s key has shares, not sealed material or a separate public key", KeyTypeTransit)
	case c.Type == KeyTypeX25519 && (tk.Cipher != "" || tk.Derived || tk.Exportable):
		return errorf(CodeInvalid, "an %s key has no cipher, is not derived and not exportable: it only exchanges", KeyTypeX25519)
	case c.Type == KeyTypeTransit && !slices.Contains(TransitCiphers, tk.Cipher):
		return errorf(CodeInvalid, "unknown transit cipher %q (known: %s)", tk.Cipher, strings.Join(TransitCiphers, ", "))
	case len(tk.Versions) != 1 || tk.Versions[0].Version != 0 || tk.Versions[0].CreatedAt != 0 || tk.MinDecryptionVersion != 0:
		return errorf(CodeInvalid, "a new %s key carries one version's sharing, numbered by the state", KeyTypeTransit)
	}
	return s.checkSharing(c.Type, tk.Versions[0].Sharing)
}

func (t *transition) rotateKey(c *RotateKey) *Error {
	if c == nil {
		return errorf(CodeInvalid, "rotate_key needs a key and a sharing")
	}
	c.Name = t.s.KeyName(c.Name)
	k := t.s.Keys[c.Name]
	switch {
	case k == nil:
		return errorf(CodeNotFound, "key %q does not exist", c.Name)
	case !t.s.Allowed(t.signer, OpRotate, c.Name):
		return errorf(CodeDenied, "%s may not rotate key %q", t.signer, c.Name)
	case k.State != KeyActive:
		return errorf(CodeState, "key %q is %s", c.Name, k.State)
	case k.Transit() == nil:
		return errorf(CodeInvalid, "key %q is a %s key: only %s keys rotate", c.Name, k.Type, KeyTypeTransit)
	case t.s.Reshare != nil:
		return errorf(CodeConflict, "resharing round %d is in progress: rotate key %q when it is done", t.s.Reshare.Round, c.Name)
	}
	if err := t.s.checkSharing(KeyTypeTransit, c.Sharing); err != nil {
		return err
	}
	k = t.editKey(c.Name)
	tk := *k.Transit()
	k.Version++
	tk.Versions = append(slices.Clone(tk.Versions), TransitVersion{Version: k.Version, CreatedAt: t.now, Sharing: c.Sharing})
	d := k.Detail()
	d.Transit = &tk
	k.SetDetail(d)
	k.UpdatedAt = t.now
	t.key = k.Metadata()
	return nil
}

func (t *transition) configureKey(c *ConfigureKey) *Error {
	if c == nil {
		return errorf(CodeInvalid, "configure_key needs a key")
	}
	c.Name = t.s.KeyName(c.Name)
	k := t.s.Keys[c.Name]
	switch {
	case k == nil:
		return errorf(CodeNotFound, "key %q does not exist", c.Name)
	case !t.s.Allowed(t.signer, OpRotate, c.Name):
		return errorf(CodeDenied, "%s may not configure key %q", t.signer, c.Name)
	case k.State == KeyDestroyed:
		return errorf(CodeState, "key %q is destroyed", c.Name)
	case k.Transit() == nil:
		return errorf(CodeInvalid, "key %q is a %s key: min_decryption_version is a %s key's", c.Name, k.Type, KeyTypeTransit)
	case c.MinDecryptionVersion < k.Transit().Versions[0].Version || c.MinDecryptionVersion > k.Version:
		return errorf(CodeInvalid, "min_decryption_version of key %q must be %d to %d", c.Name, k.Transit().Versions[0].Version, k.Version)
	}
	k = t.editKey(c.Name)
	tk := *k.Transit()
	tk.MinDecryptionVersion = c.MinDecryptionVersion
	d := k.Detail()
	d.Transit = &tk
	k.SetDetail(d)
	k.UpdatedAt = t.now
	t.key = k.Metadata()
	return nil
}

// authorizeDecrypt checks a decryption (OpDecrypt: MaxTransitBatch
// points of 32 bytes), a derivation (OpDerive: MaxTransitBatch
// contexts) or an x25519 key's exchange (OpExchange: MaxTransitBatch
// peer public keys u of 32 bytes, in Points), from an operator (an ephemeral key, checked with the other
// releases), nothing else. Each item's version is checked by each holder,
// per item (TransitVersionFor).
func authorizeDecrypt(req *ReleaseRequest, k *Key) *Error {
	what, items, other := "decryption", len(req.Points), len(req.Derive)
	switch req.Op {
	case OpDerive:
		what, items, other = "derivation", len(req.Derive), len(req.Points)
	case OpExchange:
		what = "exchange"
	}
	switch {
	case req.Gateway != "":
		return errorf(CodeInvalid, "a transit %s is asked by its caller, who combines, never by a gateway node", what)
	case items == 0 || items > MaxTransitBatch:
		return errorf(CodeInvalid, "a %s request carries 1 to %d items", what, MaxTransitBatch)
	case other != 0 || req.Version != 0 || len(req.Message) != 0 || len(req.Input) != 0 || len(req.Point) != 0 || req.Padding != "":
		return errorf(CodeInvalid, "a %s request carries its own items only", what)
	case len(req.Exclude) > MaxNodes:
		return errorf(CodeInvalid, "a %s request excludes at most %d holders", what, MaxNodes)
	}
	for i, p := range req.Points {
		switch {
		case len(p.Point) != pointLen:
			return errorf(CodeInvalid, "%s point %d is not %d bytes", what, i, pointLen)
		case req.Op != OpDecrypt && (len(p.Proof) != 0 || len(p.Context) != 0):
			return errorf(CodeInvalid, "%s point %d carries a proof or a context, which only a ciphertext's point does", what, i)
		case req.Op == OpDecrypt && len(p.Proof) != transitProofLen:
			return errorf(CodeInvalid, "ciphertext point %d carries no %d-byte proof: the transit ciphertext format changed, encrypt again (docs/transit.md)", i, transitProofLen)
		case len(p.Context) > MaxDeriveContext:
			return errorf(CodeInvalid, "ciphertext %d's context is longer than %d bytes", i, MaxDeriveContext)
		}
	}
	for i, d := range req.Derive {
		if len(d.Context) > MaxDeriveContext {
			return errorf(CodeInvalid, "derivation context %d is longer than %d bytes", i, MaxDeriveContext)
		}
		if k.Transit() != nil && k.Transit().Derived && len(d.Context) == 0 {
			return errorf(CodeInvalid, "derivation %d: key %q is derived: give a context", i, k.Name)
		}
	}
	return nil
}

// transitMetadata is the key's transit versions without their sealed
// shares.
func (tk *TransitKey) metadata() *TransitKey {
	c := *tk
	c.Versions = make([]TransitVersion, len(tk.Versions))
	for i, v := range tk.Versions {
		if v.Sharing != nil {
			v.Sharing = v.Sharing.metadata()
		}
		c.Versions[i] = v
	}
	return &c
}

// metadata is the sharing without its sealed shares.
func (fk *FROSTKey) metadata() *FROSTKey {
	c := *fk
	c.Shares = make([]FROSTShare, len(fk.Shares))
	for i, sh := range fk.Shares {
		sh.Sealed = nil
		c.Shares[i] = sh
	}
	return &c
}
