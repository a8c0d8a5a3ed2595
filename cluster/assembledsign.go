package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Signing with an assembled ECDSA key (docs/signing.md, "ECDSA: assembled
// on the coordinating node"). ECDSA P-256 has no practical threshold
// scheme without a heavy MPC protocol, so an ecdsa key signs whole: for an
// operator's signing request (op sign, the path REST /v1/sign, gRPC Sign
// and keyctl key sign take), a quorum of holders, each with every check a
// release has, gives this node, the coordinator, its partials in the
// clear; this node opens the key, signs the message's SHA-256 and checks
// the signature. That is the key's stated custody (fsm.CustodyAssembled):
// the coordinating node holds the key, for one signature, or for the key's
// assemble_ttl when it has one. While it is held, a signature still needs
// the signer's request checked at a read index from the leader (the rule,
// the key active, unexpired, at the version held) and its nonce spent
// here, but no holder is asked (so another node, which does not know that
// nonce, could be made to sign the same request once more: a second
// signature of the message its signer authorized, by a node the request
// reached, which could have taken the key itself). A held key is dropped at the end of its
// assemble_ttl, and as soon as this node applies a revoke, a destroy, a
// new version, an expiry or any change of the key (the node's status
// lists it, gateway "sign", as the Keyless SSL gateway's keys are).
//
// Dropping zeroes the private scalar this package can reach; as for the
// Keyless SSL gateway's keys (gateway/tlv), Go cannot promise more: the
// standard library keeps its own copy inside the parsed key, the runtime
// may have copied it, and freed memory is not wiped.

// heldForSigning is the gateway name a coordinator's held signing keys
// are listed under in the node's status.
const heldForSigning = "sign"

// signingKeys are the assembled keys this node holds to sign with, by
// name.
type signingKeys struct {
	mu sync.Mutex
	by map[string]*signingKey
}

type signingKey struct {
	version uint64
	updated int64 // the key's UpdatedAt when released: any change drops it
	expires time.Time
	stop    chan struct{} // closed when dropped

	mu   sync.RWMutex // signatures read-lock it; dropping write-locks it
	priv *ecdsa.PrivateKey
	raw  []byte // a symmetric key's bytes (assembledsym.go), instead of priv
}

// assembledSign signs a's request (op sign) with an assembled ECDSA key:
// with the key this node holds for it, if it holds it at the version read,
// or else with the key a quorum releases to this node for it.
func (n *Node) assembledSign(ctx context.Context, a *authorized) (*api.Signature, error) {
	k := a.key
	if k.Type != fsm.KeyTypeECDSA {
		return nil, Errorf(KindInvalid, "key %q is a %s key, which does not sign on the node", k.Name, k.Type)
	}
	if h := n.signing.held(k); h != nil {
		// No holder is asked, so no holder spends the nonce: this node does.
		if err := n.nonces.use(a.request.Signer+"/"+hex.EncodeToString(a.cmd.Nonce), time.Unix(0, a.cmd.IssuedAt), now()); err != nil {
			return nil, err
		}
		h.mu.RLock()
		defer h.mu.RUnlock()
		if h.priv == nil {
			return nil, Errorf(KindConflict, "key %q was dropped from this node's memory while it signed: sign a new request", k.Name)
		}
		return signECDSA(k, h.priv, a.cmd.Release.Message)
	}
	// A request this node may have signed with a key it held in an
	// earlier life spent its nonce only here: the holders have not seen
	// it, so this node refuses it itself.
	if issued := time.Unix(0, a.cmd.IssuedAt); issued.Before(n.nonces.since) {
		return nil, Errorf(KindUnauthenticated, "request issued at %s, before this node started at %s: sign a new request",
			issued.UTC().Format(time.RFC3339Nano), n.nonces.since.UTC().Format(time.RFC3339Nano))
	}
	priv, err := n.releaseToSign(ctx, a)
	if err != nil {
		return nil, err
	}
	sig, err := signECDSA(k, priv, a.cmd.Release.Message)
	if err != nil || k.AssembleTTL() <= 0 || !n.signing.hold(n, k, priv, nil) {
		wipeECDSA(priv)
	}
	return sig, err
}

// releaseToSign has a's holders release the key to this node, as to a
// gateway node (partials in the clear, checked and combined here), and
// parses it.
func (n *Node) releaseToSign(ctx context.Context, a *authorized) (*ecdsa.PrivateKey, error) {
	der, err := n.releaseWhole(ctx, a)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, Errorf(KindInternal, "key %q does not hold a PKCS #8 key", a.key.Name)
	}
	priv, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, Errorf(KindInternal, "key %q holds a %T, not an ECDSA key", a.key.Name, key)
	}
	if want := ecdsaPublic(a.key); want == nil || !priv.PublicKey.Equal(want) {
		wipeECDSA(priv)
		return nil, Errorf(KindInternal, "key %q's released private key does not match its public key", a.key.Name)
	}
	return priv, nil
}

// releaseWhole has a's holders release the key's material to this node,
// as to a gateway node (partials in the clear, checked and combined
// here): the one way an assembled key is put together on a coordinator.
func (n *Node) releaseWhole(ctx context.Context, a *authorized) ([]byte, error) {
	pub := &shamir.PublicPoly{Commits: a.poly}
	rctx := releaseContext(a.clusterID, a.key, a.epoch, a.request)
	ct := &shamir.Ciphertext{R: a.key.R, Sealed: a.key.Sealed}
	info := fsm.SealInfo(a.clusterID, a.key.Name)
	der, err := gather(ctx, n, a, partialCall(n), a.partialFor(a.epoch), holdersListed, nil, func(own, others []*shamir.Partial) ([]byte, error) {
		if len(own) == 1 {
			return shamir.OpenWithOwn(pub, ct, info, own[0], others, rctx)
		}
		return shamir.Open(pub, ct, info, others, rctx)
	})
	if err != nil {
		return nil, err
	}
	return der, nil
}

// signECDSA signs msg's SHA-256 with priv (ASN.1 DER) and checks the
// signature with the key's public key before it is returned.
func signECDSA(k *fsm.Key, priv *ecdsa.PrivateKey, msg []byte) (*api.Signature, error) {
	digest := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, priv, digest[:])
	if err != nil {
		return nil, Errorf(KindInternal, "signing with key %q: %v", k.Name, err)
	}
	if err := api.VerifySignature(k, msg, sig, ""); err != nil {
		return nil, Errorf(KindInternal, "the signature with key %q does not verify: %v", k.Name, err)
	}
	return &api.Signature{Key: k.Name, Version: k.Version, Type: k.Type, PublicKey: slices.Clone(k.Public()), Signature: sig}, nil
}

func ecdsaPublic(k *fsm.Key) *ecdsa.PublicKey {
	pub, err := x509.ParsePKIXPublicKey(k.Public())
	if err != nil {
		return nil
	}
	ek, _ := pub.(*ecdsa.PublicKey)
	return ek
}

// wipeECDSA zeroes the private scalar of priv that this package can
// reach.
func wipeECDSA(priv *ecdsa.PrivateKey) {
	//lint:ignore SA1019 zeroing the scalar we hold is the point; the key is never used again
	d := priv.D
	if d != nil {
		clear(d.Bits())
		d.SetInt64(0)
	}
}

// held is what this node holds for k at k's version, unchanged and
// unexpired, or nil.
func (s *signingKeys) held(k *fsm.Key) *signingKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.by[k.Name]
	if h == nil || h.version != k.Version || h.updated != k.UpdatedAt || !time.Now().Before(h.expires) {
		return nil
	}
	return h
}

// hold keeps priv (an ECDSA key's) or raw (a symmetric key's) for k until
// k's assemble_ttl is over, or this node applies a change to k, and
// reports it held. false: one is held already for k as it is (neither is
// kept).
func (s *signingKeys) hold(n *Node, k *fsm.Key, priv *ecdsa.PrivateKey, raw []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[string]*signingKey{}
	}
	if old := s.by[k.Name]; old != nil && old.version == k.Version && old.updated == k.UpdatedAt {
		return false
	}
	s.dropLocked(n, k.Name)
	h := &signingKey{version: k.Version, updated: k.UpdatedAt, expires: time.Now().Add(k.AssembleTTL()), priv: priv, raw: raw, stop: make(chan struct{})}
	s.by[k.Name] = h
	s.reportLocked(n)
	go s.watch(n, k.Name, h)
	return true
}

// watch drops h at its deadline, or as soon as this node's applied state
// no longer has the key active, unexpired and unchanged since it was
// released.
func (s *signingKeys) watch(n *Node, name string, h *signingKey) {
	deadline := time.NewTimer(time.Until(h.expires))
	defer deadline.Stop()
	for current := true; current; {
		_, applied := n.watch()
		k := n.LocalKey(name)
		if k == nil || k.State != fsm.KeyActive || k.Version != h.version || k.UpdatedAt != h.updated ||
			(k.ExpiresAt != 0 && time.Now().UnixNano() >= k.ExpiresAt) {
			break
		}
		select {
		case <-applied:
		case <-deadline.C:
			current = false
		case <-h.stop:
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by[name] == h {
		s.dropLocked(n, name)
	}
}

// dropAll drops every held key (the node stops).
func (s *signingKeys) dropAll(n *Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.by {
		s.dropLocked(n, name)
	}
}

// dropLocked forgets the key held for name, waits for the signatures
// in progress with it, and zeroes it.
func (s *signingKeys) dropLocked(n *Node, name string) {
	h := s.by[name]
	if h == nil {
		return
	}
	delete(s.by, name)
	close(h.stop)
	h.mu.Lock()
	if h.priv != nil {
		wipeECDSA(h.priv)
	}
	clear(h.raw)
	h.priv, h.raw = nil, nil
	h.mu.Unlock()
	s.reportLocked(n)
}

func (s *signingKeys) reportLocked(n *Node) {
	held := make([]HeldKey, 0, len(s.by))
	for name, h := range s.by {
		held = append(held, HeldKey{Name: name, Gateway: heldForSigning, Version: h.version, Until: h.expires})
	}
	n.ReportHeld(heldForSigning, held)
}
