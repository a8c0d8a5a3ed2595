package client

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// transitSend sends a transit request by quorum (op decrypt, derive or
// exchange) made of rel: signed by an operator (Client) or with a
// capability token bound to it (TokenClient). It returns the request as sent, whose payload
// the holders' answers are bound to, and the node's reply.
type transitSend func(ctx context.Context, rel *fsm.ReleaseRequest) (*fsm.Signed, *api.TransitDecryptReply, error)

// transitDecryptItems decrypts items with transit key k (its metadata,
// pinned or read) in one request per round through send: when a holder's
// answer does not check out (a lying holder, or a coordinator that changed
// it), it asks again without that holder, until t good answers open the
// batch or too few holders are left. ref names the key in the request.
func transitDecryptItems(ctx context.Context, base, clusterID string, k *fsm.Key, ref string, items []api.TransitBatchItem, send transitSend) (*TransitDecryption, error) {
	if len(items) == 0 || len(items) > fsm.MaxTransitBatch {
		return nil, &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("a batch has 1 to %d items", fsm.MaxTransitBatch)}
	}
	out := make([]api.TransitBatchResult, len(items))
	var (
		parsed   []*api.TransitCiphertext
		contexts [][]byte
		at       []int // parsed[j] is items[at[j]]
		points   []fsm.TransitPoint
	)
	for i, it := range items {
		ct, err := api.ParseTransitCiphertext(it.Ciphertext)
		if err != nil {
			out[i].Error = &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("item %d: %v", i, err)}
			continue
		}
		parsed, contexts, at = append(parsed, ct), append(contexts, it.Context), append(at, i)
		points = append(points, ct.Point(it.Context))
	}
	if len(parsed) == 0 {
		return &TransitDecryption{Results: out}, nil
	}
	failed := api.BadAnswers{}
	var res []api.TransitResult
	for {
		ephPriv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		sg, rep, err := send(ctx, &fsm.ReleaseRequest{Key: ref, Op: fsm.OpDecrypt,
			Ephemeral: ephPriv.PublicKey().Bytes(), Points: points, Exclude: slices.Sorted(maps.Keys(failed))})
		if err != nil {
			return nil, afterLeftOut(err, failed)
		}
		res, err = api.OpenTransitDecrypt(rep, clusterID, k, parsed, contexts, sg.Payload, ephPriv)
		var bad api.BadAnswers
		if errors.As(err, &bad) && len(failed)+len(bad) <= fsm.MaxNodes {
			maps.Copy(failed, bad)
			continue
		}
		if err != nil {
			return nil, &Error{Kind: api.KindInternal, Message: fmt.Sprintf("the decryption with key %q through %s does not check out: %v", k.Name, base, err)}
		}
		break
	}
	for j, r := range res {
		i := at[j]
		if r.Error != nil {
			out[i].Error = &Error{Kind: r.Error.Kind, Message: fmt.Sprintf("item %d: %s", i, r.Error.Message)}
			continue
		}
		out[i].Plaintext = r.Plaintext
	}
	return &TransitDecryption{Results: out, Failed: failed}, nil
}

// checkTransitDerive checks a derivation's arguments before any request.
func checkTransitDerive(n int, hashName string, length int) error {
	if n == 0 || n > fsm.MaxTransitBatch {
		return &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("a batch has 1 to %d items", fsm.MaxTransitBatch)}
	}
	if length < 1 || length > api.MaxTransitDerived {
		return &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("a derived key is 1 to %d bytes", api.MaxTransitDerived)}
	}
	if hashName != "" && hashName != "sha2-256" && hashName != "sha2-512" {
		return &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("unknown derivation hash %q (known: sha2-256, sha2-512)", hashName)}
	}
	return nil
}

// transitDeriveItems derives with transit key k (whose versions' public
// keys the caller pinned) through send, leaving out holders whose answers
// do not check out, as transitDecryptItems.
func transitDeriveItems(ctx context.Context, base, clusterID string, k *fsm.Key, ref string, derive []fsm.TransitDerivation, hashName string, length int, send transitSend) (*TransitDecryption, error) {
	return transitRounds(ctx, base, "derivation", k, send, &fsm.ReleaseRequest{Key: ref, Op: fsm.OpDerive, Derive: derive},
		func(rep *api.TransitDecryptReply, payload []byte, eph *ecdh.PrivateKey) ([]api.TransitResult, error) {
			return api.OpenTransitDerive(rep, clusterID, k, derive, hashName, length, payload, eph)
		})
}

// transitExchangeItems exchanges with x25519 key k (whose versions'
// public keys the caller pinned) for the peers' public keys in items
// through send, leaving out holders whose answers do not check out.
func transitExchangeItems(ctx context.Context, base, clusterID string, k *fsm.Key, ref string, items []fsm.TransitPoint, send transitSend) (*TransitDecryption, error) {
	return transitRounds(ctx, base, "exchange", k, send, &fsm.ReleaseRequest{Key: ref, Op: fsm.OpExchange, Points: items},
		func(rep *api.TransitDecryptReply, payload []byte, eph *ecdh.PrivateKey) ([]api.TransitResult, error) {
			return api.OpenTransitExchange(rep, clusterID, k, items, payload, eph)
		})
}

// transitRounds sends rel (with a fresh ephemeral key each round) through
// send and opens the reply with open, asking again without the holders
// whose answers did not check out, until t good answers give every
// item's result or too few holders are left; what names the operation
// in errors.
func transitRounds(ctx context.Context, base, what string, k *fsm.Key, send transitSend, rel *fsm.ReleaseRequest,
	open func(rep *api.TransitDecryptReply, payload []byte, eph *ecdh.PrivateKey) ([]api.TransitResult, error)) (*TransitDecryption, error) {
	failed := api.BadAnswers{}
	for {
		ephPriv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		round := *rel
		round.Ephemeral, round.Exclude = ephPriv.PublicKey().Bytes(), slices.Sorted(maps.Keys(failed))
		sg, rep, err := send(ctx, &round)
		if err != nil {
			return nil, afterLeftOut(err, failed)
		}
		res, err := open(rep, sg.Payload, ephPriv)
		var bad api.BadAnswers
		if errors.As(err, &bad) && len(failed)+len(bad) <= fsm.MaxNodes {
			maps.Copy(failed, bad)
			continue
		}
		if err != nil {
			return nil, &Error{Kind: api.KindInternal, Message: fmt.Sprintf("the %s with key %q through %s does not check out: %v", what, k.Name, base, err)}
		}
		out := make([]api.TransitBatchResult, len(res))
		for i, r := range res {
			if r.Error != nil {
				out[i].Error = &Error{Kind: r.Error.Kind, Message: fmt.Sprintf("item %d: %s", i, r.Error.Message)}
				continue
			}
			out[i].Plaintext = r.Plaintext
		}
		return &TransitDecryption{Results: out, Failed: failed}, nil
	}
}

// afterLeftOut is a round's error, naming the holders left out before.
func afterLeftOut(err error, failed api.BadAnswers) error {
	if len(failed) == 0 {
		return err
	}
	return &Error{Kind: api.KindOf(err), Message: fmt.Sprintf("%s (after leaving out holders whose answers were bad: %v)", messageOf(err), failed)}
}
