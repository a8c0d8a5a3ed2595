package fsm

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Key types beyond KeyTypeSecret. Assembled keys (RSA, ECDSA, Ed25519) are
// stored like secrets, sealed under the cluster key, with their public key
// in the clear; a quorum releases them to the node that serves them, which
// keeps them in memory for at most the key's AssembleTTL. A Tang key is a
// P-256 exchange key dealt as t-of-n shares: it is never released, only
// used by quorum.
const (
	KeyTypeRSA     = "rsa"
	KeyTypeECDSA   = "ecdsa"
	KeyTypeEd25519 = "ed25519"
	KeyTypeTang    = "tang"
	// Symmetric assembled keys (assembledsym.go): only a whole key
	// works for AES-CBC and for an HMAC another system checks.
	KeyTypeAES128CBC  = "aes128-cbc"
	KeyTypeAES256CBC  = "aes256-cbc"
	KeyTypeHMACSHA256 = "hmac-sha256"
	KeyTypeHMACSHA512 = "hmac-sha512"
)

// KeyKind is what one key type is: where its material can be whole
// (Custody) and which release operations its holders answer (Ops). Every
// key type is listed once, in keyKinds.
type KeyKind struct {
	Type    string
	Custody Custody
	Ops     []string
	// use says how the key is used, for a refused operation's error.
	use string
}

// Custody is where a key type's material can be whole.
type Custody string

const (
	// CustodyReleased: threshold-encrypted; a quorum releases it to the
	// requester's client, which combines (or a gateway node, for its
	// client).
	CustodyReleased Custody = "released"
	// CustodyAssembled: threshold-encrypted; a quorum releases it to the
	// node that serves it, which keeps it for at most its AssembleTTL.
	CustodyAssembled Custody = "assembled"
	// CustodyQuorum: dealt in shares to the holders; used by quorum and
	// never whole in any node.
	CustodyQuorum Custody = "quorum"
)

var released = []string{OpGet, OpCAS}

var keyKinds = []KeyKind{
	{KeyTypeSecret, CustodyReleased, released, "it is released"},
	{KeyTypeRSA, CustodyAssembled, released, "it is released to the node that serves it"},
	// ECDSA has no practical threshold scheme without a heavy MPC
	// protocol: its signatures (OpSign) are made whole by the node that
	// coordinates them, which a quorum releases the key to.
	{KeyTypeECDSA, CustodyAssembled, []string{OpGet, OpCAS, OpSign}, "it is released to the node that serves it, which signs with it"},
	{KeyTypeEd25519, CustodyAssembled, released, "it is released to the node that serves it"},
	// AES-CBC and standard HMAC have no threshold form: a quorum releases
	// the key to the node that coordinates the operation, which computes
	// whole (assembledsym.go). They are never released to a client.
	{KeyTypeAES128CBC, CustodyAssembled, []string{OpEncrypt, OpDecrypt}, "it is assembled on the coordinating node, which encrypts and decrypts with it"},
	{KeyTypeAES256CBC, CustodyAssembled, []string{OpEncrypt, OpDecrypt}, "it is assembled on the coordinating node, which encrypts and decrypts with it"},
	{KeyTypeHMACSHA256, CustodyAssembled, []string{OpMAC, OpVerify}, "it is assembled on the coordinating node, which makes and checks MACs with it"},
	{KeyTypeHMACSHA512, CustodyAssembled, []string{OpMAC, OpVerify}, "it is assembled on the coordinating node, which makes and checks MACs with it"},
	{KeyTypeTang, CustodyQuorum, []string{OpExchange}, "it is used by exchange, never released"},
	{KeyTypeRSAThreshold, CustodyQuorum, []string{OpRSAShare, OpSign}, "it signs and decrypts by quorum, never released"},
	{KeyTypeFROST, CustodyQuorum, []string{OpSign}, "it signs by quorum, never released"},
	{KeyTypeTransit, CustodyQuorum, []string{OpDecrypt, OpDerive}, "it encrypts with its public key, decrypts and derives by quorum, never released"},
	// An x25519 key's sharing answers exchange only: a holder's answer
	// to a decryption is s_i*E for any E, so a sharing that decrypted
	// would exchange too, and the other way round.
	{KeyTypeX25519, CustodyQuorum, []string{OpExchange}, "it answers X25519 exchanges by quorum only, never released"},
}

var keyTypes = func() []string {
	var out []string
	for _, k := range keyKinds {
		out = append(out, k.Type)
	}
	return out
}()

// KindOf is the key type's kind, or nil for an unknown type.
func KindOf(keyType string) *KeyKind {
	for i := range keyKinds {
		if keyKinds[i].Type == keyType {
			return &keyKinds[i]
		}
	}
	return nil
}

// checkOp refuses a release operation the key's type does not answer.
func checkOp(k *Key, op string) *Error {
	kind := KindOf(k.Type)
	if kind == nil {
		return errorf(CodeInvalid, "key %q has the unknown type %q", k.Name, k.Type)
	}
	if !slices.Contains(kind.Ops, op) {
		return errorf(CodeInvalid, "key %q is a %s key: %s (it answers %s, not %s)", k.Name, k.Type, kind.use, strings.Join(kind.Ops, ", "), op)
	}
	return nil
}

// Assembled reports whether keys of the type are released to a serving node
// as a whole key (docs/coordinator.md, gateway releases).
func Assembled(keyType string) bool {
	k := KindOf(keyType)
	return k != nil && k.Custody == CustodyAssembled
}

// Legacy gateways: protocols whose clients cannot sign a request, so the
// node that terminates them authorizes the client itself and signs the
// release as a node (docs/threat-model.md). A key serves a gateway only if
// its Access names it.
const (
	GatewayKxd  = "kxd"
	GatewayTang = "tang"
	GatewayTLV  = "tlv"
)

var gateways = []string{GatewayKxd, GatewayTang, GatewayTLV}

// Limits on what a key's metadata may hold.
const (
	MaxAssembleTTL   = 24 * time.Hour
	maxPublicKeyLen  = 4096
	maxAdvLen        = 16 << 10
	maxAccessEntries = 64
	maxClientCerts   = 16
	maxCertLen       = 8 << 10
	maxTangSealedLen = 1024
	p256PointLen     = 65
)

// Access says which legacy gateways may use a key, and the rules those
// gateways enforce for their clients. Share holders check only Gateways:
// the rest is the terminating node's to check, since only it sees the
// client.
type Access struct {
	Gateways []string `json:"gateways"`
	// ClientCerts are DER certificates: a leaf allows that certificate, a
	// CA the leaves it signed (kxd's allowed_clients; the TLV clients);
	// AuthorizeClient decides.
	ClientCerts [][]byte `json:"client_certs,omitempty"`
	// Hosts are the client addresses or names allowed (kxd's
	// allowed_hosts): nil allows every host, an empty list none.
	Hosts []string `json:"hosts"`
	// Networks are the source networks allowed, as CIDR prefixes; none
	// allows every network.
	Networks []string `json:"networks,omitempty"`
	// EmailTo is told of every access (kxd's email_to).
	EmailTo []string `json:"email_to,omitempty"`
	// RatePerMinute bounds the uses per client address and minute on
	// each node; 0 is no bound.
	RatePerMinute int `json:"rate_per_minute,omitempty"`
}

// AuthorizeClient decides whether a client of a legacy gateway is allowed
// by allowed, the DER certificates of an Access's ClientCerts (or kxd's
// allowed_clients), from the certificates it presented. Only the leaf,
// presented[0], whose key the client proved it holds in the handshake, is
// an identity: it is allowed when it is byte for byte one of the allowed
// certificates and valid at now, or when it verifies up to an allowed CA,
// with the rest of what the client sent as intermediates and the
// client-authentication extended key usage (a leaf without extended key
// usages passes). An allowed leaf never acts as a CA. It returns the
// chains that allow the leaf, leaf first.
func AuthorizeClient(allowed [][]byte, presented []*x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	if len(presented) == 0 {
		return nil, fmt.Errorf("the client sent no certificate")
	}
	leaf := presented[0]
	for _, der := range allowed {
		if bytes.Equal(der, leaf.Raw) {
			if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
				return nil, fmt.Errorf("the allowed certificate %q is not valid now (valid from %s to %s)",
					leaf.Subject.String(), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			return [][]*x509.Certificate{{leaf}}, nil
		}
	}
	roots := x509.NewCertPool()
	cas := 0
	for _, der := range allowed {
		c, err := x509.ParseCertificate(der)
		if err != nil || !c.BasicConstraintsValid || !c.IsCA {
			continue
		}
		roots.AddCert(c)
		cas++
	}
	if cas == 0 {
		return nil, fmt.Errorf("the certificate %q is not one of the key's allowed certificates", leaf.Subject.String())
	}
	intermediates := x509.NewCertPool()
	for _, c := range presented[1:] {
		intermediates.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("the certificate %q is not allowed and not signed by an allowed CA: %v", leaf.Subject.String(), err)
	}
	return chains, nil
}

// Allows reports whether the access names the gateway.
func (a *Access) Allows(gateway string) bool {
	return a != nil && slices.Contains(a.Gateways, gateway)
}

// Equal reports whether a and b are the same rules, field by field. Hosts
// tells nil (every host) from empty (none); the other lists mean the same
// empty or nil.
func (a *Access) Equal(b *Access) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Gateways, b.Gateways) &&
		slices.EqualFunc(a.ClientCerts, b.ClientCerts, bytes.Equal) &&
		(a.Hosts == nil) == (b.Hosts == nil) && slices.Equal(a.Hosts, b.Hosts) &&
		slices.Equal(a.Networks, b.Networks) &&
		slices.Equal(a.EmailTo, b.EmailTo) &&
		a.RatePerMinute == b.RatePerMinute
}

// TangKey is a Tang exchange key: a P-256 secret dealt t-of-n to the share
// holders of the epoch it was created in, each share sealed to its node's
// identity key, and an advertisement signed once by a key that was then
// discarded.
type TangKey struct {
	Adv       []byte      `json:"adv"` // the JWS of the advertisement
	Kid       string      `json:"kid"` // RFC 7638 S256 thumbprint of the exchange key
	Thp       string      `json:"thp"` // RFC 7638 S256 thumbprint of the signing key
	Threshold int         `json:"threshold"`
	Shares    []TangShare `json:"shares"`
}

// TangShare is one node's share of a Tang key.
type TangShare struct {
	NodeID      string `json:"node_id"`
	Index       uint32 `json:"index"`
	PublicShare []byte `json:"public_share"` // s_i*G, 65-byte uncompressed
	Sealed      []byte `json:"sealed,omitempty"`
}

// SetAccess replaces a key's access rules.
type SetAccess struct {
	Name   string  `json:"name"`
	Access *Access `json:"access"`
}

func checkAccess(a *Access) *Error {
	if a == nil {
		return nil
	}
	for _, g := range a.Gateways {
		if !slices.Contains(gateways, g) {
			return errorf(CodeInvalid, "unknown gateway %q (known: %s)", g, strings.Join(gateways, ", "))
		}
	}
	if len(a.ClientCerts) > maxClientCerts {
		return errorf(CodeInvalid, "at most %d client certificates", maxClientCerts)
	}
	for i, der := range a.ClientCerts {
		if len(der) > maxCertLen {
			return errorf(CodeInvalid, "client certificate %d is larger than %d bytes", i+1, maxCertLen)
		}
		if _, err := x509.ParseCertificate(der); err != nil {
			return errorf(CodeInvalid, "client certificate %d: %v", i+1, err)
		}
	}
	if len(a.Hosts) > maxAccessEntries || len(a.Networks) > maxAccessEntries || len(a.EmailTo) > maxAccessEntries {
		return errorf(CodeInvalid, "at most %d hosts, networks and e-mail addresses each", maxAccessEntries)
	}
	for _, h := range a.Hosts {
		if h == "" || len(h) > 253 || strings.ContainsAny(h, " \t\r\n/") {
			return errorf(CodeInvalid, "host %q is not an address or a name", h)
		}
	}
	for _, n := range a.Networks {
		if _, err := netip.ParsePrefix(n); err != nil {
			return errorf(CodeInvalid, "network %q: %v", n, err)
		}
	}
	for _, e := range a.EmailTo {
		if !strings.Contains(e, "@") || len(e) > 254 || strings.ContainsAny(e, " \t\r\n,;<>") {
			return errorf(CodeInvalid, "e-mail address %q is not valid", e)
		}
	}
	if a.RatePerMinute < 0 {
		return errorf(CodeInvalid, "rate_per_minute must not be negative")
	}
	return nil
}

// checkKeyMaterial checks that a new key carries exactly what its type
// needs. s is the state the key is created in: a Tang key must be dealt
// to its share holders.
func (s *State) checkKeyMaterial(c *CreateKey) *Error {
	if !slices.Contains(keyTypes, c.Type) {
		return errorf(CodeInvalid, "unknown key type %q (known: %s)", c.Type, strings.Join(keyTypes, ", "))
	}
	if c.AssembleTTL < 0 || c.AssembleTTL > MaxAssembleTTL {
		return errorf(CodeInvalid, "assemble_ttl must be 0 to %v", MaxAssembleTTL)
	}
	if c.AssembleTTL != 0 && !Assembled(c.Type) {
		return errorf(CodeInvalid, "assemble_ttl applies only to assembled keys (rsa, ecdsa, ed25519, aes-cbc, hmac)")
	}
	if c.Tang != nil && c.Type != KeyTypeTang {
		return errorf(CodeInvalid, "only a tang key has tang shares")
	}
	if c.RSA != nil && c.Type != KeyTypeRSAThreshold {
		return errorf(CodeInvalid, "only an %s key has rsa shares", KeyTypeRSAThreshold)
	}
	if c.Frost != nil && c.Type != KeyTypeFROST {
		return errorf(CodeInvalid, "only an %s key has frost shares", KeyTypeFROST)
	}
	if c.Transit != nil && c.Type != KeyTypeTransit && c.Type != KeyTypeX25519 {
		return errorf(CodeInvalid, "only a %s or %s key has transit versions", KeyTypeTransit, KeyTypeX25519)
	}
	switch c.Type {
	case KeyTypeTang:
		if len(c.R) != 0 || len(c.Sealed) != 0 {
			return errorf(CodeInvalid, "a tang key has shares, not sealed material")
		}
		for _, seg := range strings.Split(c.Name, "/") {
			if seg == "adv" || seg == "rec" {
				return errorf(CodeInvalid, "a tang key's name has no segment \"adv\" or \"rec\": clevis reaches it at /tang/NAME/adv and /tang/NAME/rec")
			}
		}
		return s.checkTang(c.Public, c.Tang)
	case KeyTypeRSAThreshold:
		return s.checkRSAThreshold(c)
	case KeyTypeTransit, KeyTypeX25519:
		return s.checkTransit(c)
	case KeyTypeFROST:
		if len(c.R) != 0 || len(c.Sealed) != 0 {
			return errorf(CodeInvalid, "an %s key has shares, not sealed material", KeyTypeFROST)
		}
		return s.checkFROST(c.Public, c.Frost)
	}
	if err := checkSealed(c.R, c.Sealed); err != nil {
		return err
	}
	if c.Type == KeyTypeSecret || SymmetricAssembled(c.Type) {
		if len(c.Public) != 0 {
			return errorf(CodeInvalid, "a %s key has no public key", c.Type)
		}
		return nil
	}
	return checkPublicKey(c.Type, c.Public)
}

func checkPublicKey(keyType string, der []byte) *Error {
	if len(der) == 0 || len(der) > maxPublicKeyLen {
		return errorf(CodeInvalid, "a %s key needs its public key, DER, 1 to %d bytes", keyType, maxPublicKeyLen)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return errorf(CodeInvalid, "public key: %v", err)
	}
	var ok bool
	switch keyType {
	case KeyTypeRSA:
		_, ok = pub.(*rsa.PublicKey)
	case KeyTypeECDSA:
		_, ok = pub.(*ecdsa.PublicKey)
	case KeyTypeEd25519:
		_, ok = pub.(ed25519.PublicKey)
	}
	if !ok {
		return errorf(CodeInvalid, "the public key is a %T, not a %s key", pub, keyType)
	}
	return nil
}

// checkTang checks a Tang key's deal: one share for every share holder of
// the current epoch, at the holder's index, and the epoch's threshold.
func (s *State) checkTang(public []byte, tk *TangKey) *Error {
	if tk == nil {
		return errorf(CodeInvalid, "a tang key needs its shares and advertisement")
	}
	if len(public) != p256PointLen {
		return errorf(CodeInvalid, "a tang key's public key is a %d-byte uncompressed P-256 point", p256PointLen)
	}
	if _, err := ecdh.P256().NewPublicKey(public); err != nil {
		return errorf(CodeInvalid, "tang public key: %v", err)
	}
	if len(tk.Adv) == 0 || len(tk.Adv) > maxAdvLen || tk.Kid == "" || tk.Thp == "" || len(tk.Kid) > 128 || len(tk.Thp) > 128 {
		return errorf(CodeInvalid, "a tang key needs an advertisement of at most %d bytes, a kid and a thp", maxAdvLen)
	}
	holders := s.Holders()
	if tk.Threshold != s.Threshold || len(tk.Shares) != len(holders) {
		return errorf(CodeConflict, "a tang key must be dealt %d-of-%d to the current share holders; they changed since this deal was made", s.Threshold, len(holders))
	}
	for i, sh := range tk.Shares {
		h := holders[i] // both in node ID order
		if sh.NodeID != h.ID || sh.Index != h.Index {
			return errorf(CodeConflict, "tang share %d is for node %q index %d, not holder %q index %d", i+1, sh.NodeID, sh.Index, h.ID, h.Index)
		}
		if len(sh.PublicShare) != p256PointLen {
			return errorf(CodeInvalid, "tang share %d needs a %d-byte public share", i+1, p256PointLen)
		}
		if _, err := ecdh.P256().NewPublicKey(sh.PublicShare); err != nil {
			return errorf(CodeInvalid, "tang share %d public share: %v", i+1, err)
		}
		if len(sh.Sealed) == 0 || len(sh.Sealed) > maxTangSealedLen {
			return errorf(CodeInvalid, "tang share %d needs sealed material of 1 to %d bytes", i+1, maxTangSealedLen)
		}
	}
	return nil
}

// TangKeyByKid finds the active or revoked Tang key whose exchange key has
// the thumbprint kid. There is at most one: create_key refuses a kid in
// use.
func (s *State) TangKeyByKid(kid string) *Key {
	for _, k := range s.TangKeys() {
		if k.Tang().Kid == kid {
			return k
		}
	}
	return nil
}

func (t *transition) setAccess(c *SetAccess) *Error {
	if c == nil {
		return errorf(CodeInvalid, "set_access needs a key and its access")
	}
	if err := checkAccess(c.Access); err != nil {
		return err
	}
	c.Name = t.s.KeyName(c.Name)
	k := t.s.Keys[c.Name]
	if k == nil {
		return errorf(CodeNotFound, "key %q does not exist", c.Name)
	}
	if k.State == KeyDestroyed {
		return errorf(CodeState, "key %q is destroyed", c.Name)
	}
	k = t.editKey(c.Name)
	d := k.Detail()
	d.Access = c.Access
	k.SetDetail(d)
	k.UpdatedAt = t.now
	t.key = k.Metadata()
	return nil
}
