package api

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Transit (docs/transit.md): what the client and the nodes share of
// transit encryption. A ciphertext is
//
//	kq:v<version>:<base64 of E || proof || nonce || AEAD output>
//
// as Vault's "vault:v1:...". E is the ephemeral point of the hybrid
// encryption (shamir.TransitSeal); proof (64 bytes) shows that the
// encryptor knows r with E = r*G, bound to the key's ID, the version and
// the derived context (TransitBinding), which the AEAD key and additional
// data bind too, so a ciphertext opens only under its own key, version
// and context.
//
// Decryption: the caller sends the ciphertexts' points E, their proofs
// and contexts (never the ciphertexts) in a signed request (op decrypt);
// each holder checks the proofs and answers every point with its partial
// s_i*E and a DLEQ proof, or an error for that
// point, all sealed to the request's ephemeral key; the coordinator
// relays t answers (TransitDecryptReply) and the caller checks the proofs
// against the version's commitments, combines and opens
// (OpenTransitDecrypt).

// TransitPrefix starts every transit ciphertext.
const TransitPrefix = "kq:v"

// TransitShareContext binds a transit version's share sealed to a node to
// the cluster, the key's name, the epoch it was dealt in and the
// version's public key (each version is a fresh key, so its public key
// names it before the state numbers it).
func TransitShareContext(clusterID, name string, epoch uint64, public []byte) []byte {
	b := []byte(vocab.LabelTransitShare + "\x00" + clusterID + "\x00" + name + "\x00")
	b = binary.BigEndian.AppendUint64(b, epoch)
	return append(b, public...)
}

// TransitDecryptContext binds a holder's partial for one point of a
// decryption request to the cluster, the key, the epoch, the signed
// request and the point's place in it: a partial cannot be moved to
// another request or another item.
func TransitDecryptContext(clusterID, name string, epoch uint64, payload []byte, item int) []byte {
	h := sha256.New()
	h.Write([]byte(vocab.LabelTransitDecrypt + "\x00" + clusterID + "\x00" + name + "\x00"))
	h.Write(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, epoch), uint64(item)))
	h.Write(payload)
	return h.Sum(nil)
}

// TransitBinding is the HKDF info and the AEAD additional data of a
// ciphertext of the key with ID keyID, at version, for context.
func TransitBinding(keyID string, version uint64, context []byte) []byte {
	return shamir.TransitBinding(vocab.LabelTransitAAD, keyID, version, context)
}

// NewTransitSharing deals a fresh transit key version threshold-of-n to
// the share holders of epoch (as t members confirmed them), each share
// sealed to its holder's identity key, for the key named name. The
// version's scalar and shares are erased here; only the sharing leaves.
func NewTransitSharing(rand io.Reader, name, clusterID string, epoch uint64, threshold int, holders []MemberStatus) (*fsm.FROSTKey, error) {
	secret, err := shamir.RandomSecret(rand)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	return DealTransitSharing(rand, secret, name, clusterID, epoch, threshold, holders)
}

// DealTransitSharing is NewTransitSharing of a given scalar: an imported
// version (32 bytes, a canonical little-endian edwards25519 scalar, not
// zero). The caller erases secret.
func DealTransitSharing(rand io.Reader, secret []byte, name, clusterID string, epoch uint64, threshold int, holders []MemberStatus) (*fsm.FROSTKey, error) {
	holders = slices.Clone(holders)
	slices.SortFunc(holders, func(a, b MemberStatus) int { return strings.Compare(a.ID, b.ID) })
	indexes := make([]uint32, len(holders))
	for i, h := range holders {
		indexes[i] = h.Index
	}
	poly, shares, err := shamir.DealKey(rand, secret, threshold, indexes)
	if errors.Is(err, shamir.ErrInvalidScalar) {
		return nil, &Error{Kind: KindInvalid, Message: "the imported key is not a canonical non-zero 32-byte edwards25519 scalar (little-endian)"}
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, sh := range shares {
			sh.Erase()
		}
	}()
	fk := &fsm.FROSTKey{Threshold: threshold, Epoch: epoch, Commits: poly.Commits}
	for i, h := range holders {
		sealed, err := shamir.SealShare(rand, h.SignKey, shares[i], TransitShareContext(clusterID, name, epoch, poly.Commits[0]))
		if err != nil {
			return nil, fmt.Errorf("sealing the share of node %s: %w", h.ID, err)
		}
		fk.Shares = append(fk.Shares, fsm.FROSTShare{NodeID: h.ID, Index: h.Index, Sealed: sealed})
	}
	return fk, nil
}

// TransitCiphertext is a parsed ciphertext.
type TransitCiphertext struct {
	Version uint64
	E       []byte // the ephemeral point
	Proof   []byte // the encryptor's proof of knowledge of E's r (shamir.TransitProofSize bytes)
	Sealed  []byte // nonce || AEAD output
}

// String is the ciphertext's text form.
func (c *TransitCiphertext) String() string {
	raw := make([]byte, 0, len(c.E)+len(c.Proof)+len(c.Sealed))
	raw = append(append(append(raw, c.E...), c.Proof...), c.Sealed...)
	return TransitPrefix + strconv.FormatUint(c.Version, 10) + ":" + base64.StdEncoding.EncodeToString(raw)
}

// Point is what a decryption request carries of the ciphertext, made
// with context: its version, E, its proof and the context the proof is
// bound to.
func (c *TransitCiphertext) Point(context []byte) fsm.TransitPoint {
	return fsm.TransitPoint{Version: c.Version, Point: c.E, Proof: c.Proof, Context: context}
}

// transitHeader is what every ciphertext has before its nonce: E and the
// proof.
const transitHeader = shamir.PointSize + shamir.TransitProofSize

// errTransitFormat says a ciphertext is of the format before the proof.
const errTransitFormat = "the transit ciphertext format changed (it now carries the encryptor's proof, docs/transit.md): a ciphertext made before cannot be decrypted; encrypt again"

// MaxTransitPlaintext is the largest plaintext one item encrypts.
const MaxTransitPlaintext = 1 << 20

// ParseTransitCiphertext parses "kq:v<version>:<base64>".
func ParseTransitCiphertext(s string) (*TransitCiphertext, error) {
	rest, ok := strings.CutPrefix(s, TransitPrefix)
	if !ok {
		return nil, fmt.Errorf("a transit ciphertext starts with %q", TransitPrefix)
	}
	v, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, errors.New("a transit ciphertext is kq:v<version>:<base64>")
	}
	version, err := strconv.ParseUint(v, 10, 64)
	if err != nil || version == 0 || strconv.FormatUint(version, 10) != v {
		return nil, fmt.Errorf("version %q is not a positive number", v)
	}
	if len(b64) > base64.StdEncoding.EncodedLen(transitHeader+shamir.TransitOverhead+MaxTransitPlaintext) {
		return nil, fmt.Errorf("the ciphertext is longer than a %d-byte plaintext makes", MaxTransitPlaintext)
	}
	// The decoder skips CR and LF: refused here, so that one ciphertext
	// has one spelling.
	if strings.ContainsAny(b64, "\r\n") {
		return nil, errors.New("the ciphertext is not base64: it holds a line break")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("the ciphertext is not base64: %v", err)
	}
	if len(raw) < shamir.PointSize+shamir.TransitOverhead {
		return nil, errors.New("the ciphertext is too short")
	}
	if err := shamir.ValidatePoint(raw[:shamir.PointSize]); err != nil {
		return nil, fmt.Errorf("the ciphertext's point: %v", err)
	}
	// A ciphertext of the format before the proof (E || nonce || AEAD
	// output) is too short for the header, or its bytes after E are not a
	// proof's encoding but for a chance of about 1 in 32; those few fail
	// at the holders, whose error says the same (cluster/transit.go).
	if len(raw) < transitHeader+shamir.TransitOverhead {
		return nil, errors.New(errTransitFormat)
	}
	if err := shamir.ValidateTransitProof(raw[shamir.PointSize:transitHeader]); err != nil {
		return nil, fmt.Errorf("%s (%v)", errTransitFormat, err)
	}
	return &TransitCiphertext{Version: version, E: raw[:shamir.PointSize], Proof: raw[shamir.PointSize:transitHeader], Sealed: raw[transitHeader:]}, nil
}

// transitCheck checks that k is a transit key the caller can use with
// context: a derived key needs one, another takes none.
func transitCheck(k *fsm.Key, context []byte) error {
	if k.Type != fsm.KeyTypeTransit || k.Transit() == nil || len(k.Transit().Versions) == 0 || k.ID == "" {
		return &Error{Kind: KindInvalid, Message: fmt.Sprintf("key %q is not a %s key", k.Name, fsm.KeyTypeTransit)}
	}
	if k.Transit().Derived != (len(context) > 0) {
		if k.Transit().Derived {
			return &Error{Kind: KindInvalid, Message: fmt.Sprintf("key %q is derived: give a context", k.Name)}
		}
		return &Error{Kind: KindInvalid, Message: fmt.Sprintf("key %q is not derived: it takes no context", k.Name)}
	}
	return nil
}

// TransitEncrypt encrypts plaintext with the latest version of transit
// key k (its metadata), here: only the version's public key is needed.
func TransitEncrypt(rand io.Reader, k *fsm.Key, plaintext, context []byte) (string, error) {
	if err := transitCheck(k, context); err != nil {
		return "", err
	}
	if len(plaintext) > MaxTransitPlaintext {
		return "", &Error{Kind: KindInvalid, Message: fmt.Sprintf("a plaintext is at most %d bytes", MaxTransitPlaintext)}
	}
	if len(context) > fsm.MaxDeriveContext {
		// A decryption request carries the context to the holders, which
		// refuse a longer one (fsm.authorizeDecrypt).
		return "", &Error{Kind: KindInvalid, Message: fmt.Sprintf("a context is at most %d bytes", fsm.MaxDeriveContext)}
	}
	if k.State != fsm.KeyActive {
		return "", &Error{Kind: KindDenied, Message: fmt.Sprintf("key %q is %s", k.Name, k.State)}
	}
	if k.Expired(time.Now()) {
		return "", &Error{Kind: KindDenied, Message: fmt.Sprintf("key %q expired at %s", k.Name, time.Unix(0, k.ExpiresAt).UTC().Format(time.RFC3339))}
	}
	v := k.Transit().Latest()
	if v.Sharing == nil || len(v.Sharing.Commits) == 0 {
		return "", &Error{Kind: KindInvalid, Message: fmt.Sprintf("version %d of key %q has no public key", v.Version, k.Name)}
	}
	bind := TransitBinding(k.ID, v.Version, context)
	E, proof, sealed, err := shamir.TransitSeal(rand, v.Sharing.Commits[0], k.Transit().Cipher, bind, bind, plaintext)
	if err != nil {
		return "", err
	}
	return (&TransitCiphertext{Version: v.Version, E: E, Proof: proof, Sealed: sealed}).String(), nil
}

// TransitItemPartial is a holder's answer for one point: its partial, or
// why it refuses that point.
type TransitItemPartial struct {
	Partial *shamir.Partial `json:"partial,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// TransitDecryptReply is what the coordinator relays: t holders' answers,
// each sealed to the request's ephemeral key (the JSON of a
// []TransitItemPartial, one per point, under fsm.PartialSealInfo of the
// request's TransitDecryptContext at item -1, and the holder's index).
type TransitDecryptReply struct {
	ClusterID string          `json:"cluster_id"`
	Key       string          `json:"key"`
	Epoch     uint64          `json:"epoch"`
	Threshold int             `json:"threshold"`
	Partials  []SealedPartial `json:"partials"`
}

// TransitResult is one item's outcome: its plaintext or its error.
type TransitResult struct {
	Plaintext []byte `json:"plaintext,omitempty"`
	Error     *Error `json:"error,omitempty"`
}

// OpenTransitDecrypt checks a decryption reply for the items of the signed
// request with payload, against transit key k's metadata (which the
// caller read: its versions' commitments), and opens each item. A holder
// whose answer does not open or whose proof fails is named in the error
// and nothing is returned: the coordinator or a holder lied, and the
// caller asks again. Otherwise each item has its plaintext or its own
// error (a version the holders refuse, a ciphertext that does not
// authenticate). contexts are the items' derived contexts, nil for a key
// that is not derived.
func OpenTransitDecrypt(r *TransitDecryptReply, clusterID string, k *fsm.Key, items []*TransitCiphertext, contexts [][]byte, payload []byte, ephPriv *ecdh.PrivateKey) ([]TransitResult, error) {
	if len(contexts) != len(items) {
		return nil, fmt.Errorf("%d contexts for %d items", len(contexts), len(items))
	}
	points := make([]fsm.TransitPoint, len(items))
	for i, ct := range items {
		points[i] = ct.Point(contexts[i])
	}
	return openTransitItems(r, clusterID, k, points, payload, ephPriv, func(i int) *Error {
		if err := transitCheck(k, contexts[i]); err != nil {
			return err.(*Error)
		}
		return nil
	}, func(i int, tv *fsm.TransitVersion, K []byte) ([]byte, *Error) {
		ct := items[i]
		bind := TransitBinding(k.ID, ct.Version, contexts[i])
		pt, err := shamir.TransitOpen(K, ct.E, tv.Sharing.Commits[0], k.Transit().Cipher, bind, bind, ct.Sealed)
		if err != nil {
			// The holders checked the proof binding E to this key,
			// version and context; the body it does not cover was changed.
			return nil, &Error{Kind: KindTampered, Message: fmt.Sprintf("the ciphertext's body does not authenticate under key %q version %d with this context, whose proof verified: it was changed", k.Name, ct.Version)}
		}
		return pt, nil
	})
}

// TransitDeriveBinding is what a derivation with the key with ID keyID,
// at version, for context hashes to its point and binds into its HKDF
// info (shamir.TransitDerivePoint, shamir.TransitDeriveOutput).
func TransitDeriveBinding(keyID string, version uint64, context []byte) []byte {
	return shamir.TransitBinding(vocab.LabelTransitDerive, keyID, version, context)
}

// MaxTransitDerived is the longest key a derivation makes: HKDF's bound
// for SHA-256.
const MaxTransitDerived = 255 * 32

// OpenTransitDerive checks a derivation reply for the items of the
// signed request with payload (op derive) against transit key k's
// metadata, combines each item's s*X and runs HKDF with hashName
// (shamir.DeriveSHA256 or DeriveSHA512) for length bytes. A lying holder
// or coordinator is named as OpenTransitDecrypt names it.
func OpenTransitDerive(r *TransitDecryptReply, clusterID string, k *fsm.Key, items []fsm.TransitDerivation, hashName string, length int, payload []byte, ephPriv *ecdh.PrivateKey) ([]TransitResult, error) {
	if length < 1 || length > MaxTransitDerived {
		return nil, fmt.Errorf("a derived key is 1 to %d bytes", MaxTransitDerived)
	}
	points := make([]fsm.TransitPoint, len(items))
	binds := make([][]byte, len(items))
	for i, d := range items {
		binds[i] = TransitDeriveBinding(k.ID, d.Version, d.Context)
		X, err := shamir.TransitDerivePoint(binds[i])
		if err != nil {
			return nil, err
		}
		points[i] = fsm.TransitPoint{Version: d.Version, Point: X}
	}
	return openTransitItems(r, clusterID, k, points, payload, ephPriv, func(i int) *Error {
		if k.Transit() == nil || len(k.Transit().Versions) == 0 || k.ID == "" {
			return &Error{Kind: KindInvalid, Message: fmt.Sprintf("key %q is not a %s key", k.Name, fsm.KeyTypeTransit)}
		}
		return nil
	}, func(i int, tv *fsm.TransitVersion, K []byte) ([]byte, *Error) {
		out, err := shamir.TransitDeriveOutput(hashName, K, points[i].Point, tv.Sharing.Commits[0], binds[i], length)
		if err != nil {
			return nil, &Error{Kind: KindInvalid, Message: err.Error()}
		}
		return out, nil
	})
}

// openTransitItems opens a reply's answers, checks each item's partials
// against its version's commitments, combines K = s*point from t of them
// and gives it to finish, which makes the item's result. precheck refuses
// an item before its partials are looked at.
func openTransitItems(r *TransitDecryptReply, clusterID string, k *fsm.Key, points []fsm.TransitPoint, payload []byte, ephPriv *ecdh.PrivateKey,
	precheck func(i int) *Error, finish func(i int, tv *fsm.TransitVersion, K []byte) ([]byte, *Error)) ([]TransitResult, error) {
	if r.Key != k.Name || r.ClusterID != clusterID {
		return nil, fmt.Errorf("the reply is for key %q of cluster %q, not %q of %q", r.Key, r.ClusterID, k.Name, clusterID)
	}
	if k.Transit() == nil {
		return nil, fmt.Errorf("key %q is not a %s key", k.Name, fsm.KeyTypeTransit)
	}
	base := TransitDecryptContext(clusterID, k.Name, r.Epoch, payload, -1)
	answers := map[uint32][]TransitItemPartial{}
	bad := BadAnswers{}
	nodes := map[uint32]string{}
	for _, sp := range r.Partials {
		ans, err := openTransitAnswer(&sp, ephPriv, base, len(points))
		if err == nil && answers[sp.Index] != nil {
			err = errors.New("a second answer for the same share")
		}
		if err != nil {
			bad[sp.Index] = fmt.Sprintf("answer of share %d (node %q): %v", sp.Index, sp.Node, err)
			continue
		}
		answers[sp.Index], nodes[sp.Index] = ans, sp.Node
	}
	if len(bad) > 0 {
		return nil, bad
	}
	for _, v := range k.Transit().Versions {
		if v.Sharing == nil {
			continue
		}
		if err := validatePoly(&shamir.PublicPoly{Commits: v.Sharing.Commits}); err != nil {
			return nil, fmt.Errorf("version %d's commitments: %w", v.Version, err)
		}
	}
	indexes := slices.Sorted(maps.Keys(answers))
	out := make([]TransitResult, len(points))
	itemBad := make([]BadAnswers, len(points))
	fatal := make([]error, len(points))
	pre := make([]*Error, len(points))
	// The proofs of every item answered by exactly t partials are checked
	// at once (batchTransitProofs); an item that is not, or a batch that
	// fails, or a combination with a small-order part, gets every check
	// one by one below, which decides and names the holder at fault.
	batch := batchTransitProofs(answers, indexes, k, points, func(i int) []byte {
		return TransitDecryptContext(clusterID, k.Name, r.Epoch, payload, i)
	}, func(i int) bool {
		pre[i] = precheck(i)
		return pre[i] == nil
	})
	// Items are checked and opened in parallel: a batch waits for the
	// slowest core's share only.
	each(len(points), func(i int) {
		pt := points[i]
		if pre[i] != nil {
			out[i].Error = pre[i]
			return
		}
		tv := k.Transit().Version(pt.Version)
		if tv == nil || tv.Sharing == nil {
			out[i].Error = &Error{Kind: KindNotFound, Message: fmt.Sprintf("key %q has no version %d", k.Name, pt.Version)}
			return
		}
		var K []byte
		if b := batch[i]; b.v != nil {
			K, _ = b.v.Combine(b.verified)
		}
		if K == nil {
			poly := &shamir.PublicPoly{Commits: tv.Sharing.Commits}
			rctx := TransitDecryptContext(clusterID, k.Name, r.Epoch, payload, i)
			parts := map[uint32][]byte{}
			var refusal *Error
			for _, index := range indexes {
				a := answers[index][i]
				if a.Error != nil {
					refusal = a.Error
					continue
				}
				var why string
				if a.Partial == nil || a.Partial.Index != index {
					why = fmt.Sprintf("share %d's (node %q) answer for item %d is not its partial", index, nodes[index], i)
				} else if err := shamir.VerifyPartial(poly, pt.Point, a.Partial, rctx); err != nil {
					why = fmt.Sprintf("share %d's (node %q) partial for item %d: %v", index, nodes[index], i, err)
				}
				if why != "" {
					if itemBad[i] == nil {
						itemBad[i] = BadAnswers{}
					}
					itemBad[i][index] = why
					continue
				}
				parts[index] = a.Partial.Value
			}
			if itemBad[i] != nil {
				return
			}
			if len(parts) < tv.Sharing.Threshold {
				if refusal == nil {
					refusal = &Error{Kind: KindNoQuorum, Message: fmt.Sprintf("%d partials, %d needed", len(parts), tv.Sharing.Threshold)}
				}
				out[i].Error = refusal
				return
			}
			var err error
			if K, err = shamir.CombinePoints(parts, tv.Sharing.Threshold); err != nil {
				fatal[i] = fmt.Errorf("combining checked partials: %w", err)
				return
			}
		}
		res, ferr := finish(i, tv, K)
		clear(K)
		if ferr != nil {
			out[i].Error = ferr
			return
		}
		out[i].Plaintext = res
	})
	for i := range points {
		for index, why := range itemBad[i] {
			if bad[index] == "" {
				bad[index] = why
			}
		}
	}
	if len(bad) > 0 {
		for i := range out {
			clear(out[i].Plaintext)
		}
		return nil, bad
	}
	for _, err := range fatal {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// batchedItem is an item whose partials' proofs a batch accepted: its
// verifier and the partials, to combine (shamir.Verifier.Combine, which
// makes the subgroup check the batch leaves).
type batchedItem struct {
	v        *shamir.Verifier
	verified []*shamir.VerifiedPartial
}

// batchTransitProofs checks at once (shamir.VerifyBatches: one
// multi-scalar multiplication per core, every proof of every item with
// its own random weights) the partials of each item that eligible(i)
// lets through, has a version, and was answered by exactly its
// threshold's partials, all with their proofs' commitments. It returns
// the items a batch accepted; the others (none when a batch fails) are
// the caller's to check one by one. Any item failing fails the whole
// answer (openTransitItems), so a batch deciding as
// shamir.Verifier.VerifyProof does is enough.
func batchTransitProofs(answers map[uint32][]TransitItemPartial, indexes []uint32, k *fsm.Key, points []fsm.TransitPoint,
	rctx func(i int) []byte, eligible func(i int) bool) []batchedItem {
	out := make([]batchedItem, len(points))
	parts := make([][]*shamir.Partial, len(points))
	each(len(points), func(i int) {
		if !eligible(i) {
			return
		}
		tv := k.Transit().Version(points[i].Version)
		if tv == nil || tv.Sharing == nil {
			return
		}
		var ps []*shamir.Partial
		for _, index := range indexes {
			a := answers[index][i]
			if a.Error != nil || a.Partial == nil || a.Partial.Index != index || len(a.Partial.Commits) == 0 {
				return
			}
			ps = append(ps, a.Partial)
		}
		if len(ps) != tv.Sharing.Threshold {
			return
		}
		v, err := shamir.NewVerifier(&shamir.PublicPoly{Commits: tv.Sharing.Commits}, points[i].Point, rctx(i))
		if err != nil {
			return
		}
		out[i].v, parts[i] = v, ps
	})
	var items []int
	for i := range out {
		if out[i].v != nil {
			items = append(items, i)
		}
	}
	// One batch per core, each item's proofs in one of them.
	chunks := min(len(items), runtime.GOMAXPROCS(0))
	failed := atomic.Bool{}
	each(chunks, func(c int) {
		mine := items[c*len(items)/chunks : (c+1)*len(items)/chunks]
		vs := make([]*shamir.Verifier, len(mine))
		ps := make([][]*shamir.Partial, len(mine))
		for j, i := range mine {
			vs[j], ps[j] = out[i].v, parts[i]
		}
		vps, ok := shamir.VerifyBatches(rand.Reader, vs, ps)
		if !ok {
			failed.Store(true)
			return
		}
		for j, i := range mine {
			out[i].verified = vps[j]
		}
	})
	if failed.Load() {
		return make([]batchedItem, len(points))
	}
	return out
}

// BadAnswers are the holders, by share index, whose answers to a
// decryption did not open or whose proofs failed, with why: the holder or
// the coordinator lied. The caller asks again without them
// (fsm.ReleaseRequest.Exclude).
type BadAnswers map[uint32]string

func (b BadAnswers) Error() string {
	var out []string
	for _, i := range slices.Sorted(maps.Keys(b)) {
		out = append(out, b[i])
	}
	return "rejected " + strings.Join(out, "; ")
}

func openTransitAnswer(sp *SealedPartial, ephPriv *ecdh.PrivateKey, base []byte, items int) ([]TransitItemPartial, error) {
	if sp.Index == 0 {
		return nil, errors.New("share index 0")
	}
	pt, err := shamir.OpenX25519(ephPriv, &shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}, fsm.PartialSealInfo(base, sp.Index))
	if err != nil {
		return nil, fmt.Errorf("does not open with the request's ephemeral key: %w", err)
	}
	var ans []TransitItemPartial
	if err := json.Unmarshal(pt, &ans); err != nil {
		return nil, fmt.Errorf("is not a list of partials: %v", err)
	}
	if len(ans) != items {
		return nil, fmt.Errorf("answers %d items, the request has %d", len(ans), items)
	}
	return ans, nil
}
