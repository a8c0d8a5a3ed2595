package cluster

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// Operations with a symmetric assembled key (docs/signing.md, "AES-CBC
// and HMAC: assembled on the coordinating node"). AES-CBC and an HMAC
// that another system checks with the same key have no threshold form:
// as for an assembled ECDSA key (assembledsign.go, whose machinery this
// uses), a quorum of holders releases the key to this node, the
// coordinator, which computes whole and holds the key for the key's
// assemble_ttl at most (listed in the node's status under gateway
// "sign"), dropping it on any change to the key. The requests are an
// operator's, signed: the operations take no capability token.

// Symmetric answers sg, a request of op encrypt or decrypt (an AES-CBC
// key) or mac or verify (an HMAC key).
func (n *Node) Symmetric(ctx context.Context, sg *fsm.Signed) (_ *api.Symmetric, err error) {
	_, key := commandOf(sg)
	defer func(start time.Time) { n.observe(ctx, opAssembled, key, start, err) }(time.Now())
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	a, err := n.coordinatorRead(ctx, sg, nil)
	if err != nil {
		return nil, err
	}
	k := a.key
	if !fsm.SymmetricAssembled(k.Type) {
		return nil, Errorf(KindInvalid, "key %q is a %s key, which is not assembled for %s", k.Name, k.Type, a.cmd.Release.Op)
	}
	if h := n.signing.held(k); h != nil {
		// No holder is asked, so no holder spends the nonce: this node does.
		if err := n.nonces.use(a.request.Signer+"/"+hex.EncodeToString(a.cmd.Nonce), time.Unix(0, a.cmd.IssuedAt), now()); err != nil {
			return nil, err
		}
		h.mu.RLock()
		defer h.mu.RUnlock()
		if h.raw == nil {
			return nil, Errorf(KindConflict, "key %q was dropped from this node's memory while it was used: sign a new request", k.Name)
		}
		return symmetricOp(k, a.cmd.Release, h.raw)
	}
	if issued := time.Unix(0, a.cmd.IssuedAt); issued.Before(n.nonces.since) {
		return nil, Errorf(KindUnauthenticated, "request issued at %s, before this node started at %s: sign a new request",
			issued.UTC().Format(time.RFC3339Nano), n.nonces.since.UTC().Format(time.RFC3339Nano))
	}
	raw, err := n.releaseWhole(ctx, a)
	if err != nil {
		return nil, err
	}
	if !fsm.SymmetricKeyLenOK(k.Type, len(raw)) {
		clear(raw)
		return nil, Errorf(KindInternal, "key %q does not hold a %s key", k.Name, k.Type)
	}
	out, err := symmetricOp(k, a.cmd.Release, raw)
	if k.AssembleTTL() <= 0 || !n.signing.hold(n, k, nil, raw) {
		clear(raw)
	}
	return out, err
}

// symmetricOp computes req's operation with k's whole material raw.
func symmetricOp(k *fsm.Key, req *fsm.ReleaseRequest, raw []byte) (*api.Symmetric, error) {
	res := &api.Symmetric{Key: k.Name, Version: k.Version, Type: k.Type}
	var err error
	switch req.Op {
	case fsm.OpEncrypt:
		res.Output, err = api.CBCEncrypt(raw, req.Message)
	case fsm.OpDecrypt:
		if res.Output, err = api.CBCDecrypt(raw, req.Message); err != nil {
			return nil, Errorf(KindInvalid, "decrypting with key %q: %v", k.Name, err)
		}
	case fsm.OpMAC:
		res.Output, err = api.HMAC(k.Type, raw, req.Message)
	case fsm.OpVerify:
		var mac []byte
		mac, err = api.HMAC(k.Type, raw, req.Message)
		res.Valid = err == nil && hmac.Equal(mac, req.Input)
	default:
		return nil, Errorf(KindInvalid, "key %q does not answer %s on the node", k.Name, req.Op)
	}
	if err != nil {
		return nil, Errorf(KindInternal, "%s with key %q: %v", req.Op, k.Name, err)
	}
	return res, nil
}
