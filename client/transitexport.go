package client

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// Transit export and wrapped import (docs/transit.md, "Export and
// wrapped import"). The export asks t holders for their shares of a
// version, sealed to this client; the scalar is whole here only, for as
// long as it takes to wrap it to the operator's RSA wrapping key in
// Vault's BYOK layout, then erased. A wrapped import unwraps here, with
// the operator's private wrapping key, and deals as ImportTransit does.

// TransitExport exports version (0: the latest) of transit key name,
// wrapped for the holder of wrapping (api.WrapTransitKey: base64 of
// RSA-OAEP SHA-256 of an AES-256 key, then RFC 5649 KWP of the 32-byte
// scalar). Only a key created exportable, for an operator with a rule
// for export; every holder checks both. The version's public key is
// checked with t members first, and a holder whose share is off the
// version's commitments is left out (the export is asked again without
// it). The scalar never leaves this call unwrapped.
func (c *Client) TransitExport(ctx context.Context, name string, version uint64, wrapping *rsa.PublicKey) (string, error) {
	clusterID, _, err := c.pinned()
	if err != nil {
		return "", err
	}
	if wrapping == nil {
		return "", &Error{Kind: api.KindInvalid, Message: "an export needs a wrapping key"}
	}
	k, err := c.transitKey(ctx, name)
	if err != nil {
		return "", err
	}
	if version == 0 {
		version = k.Transit().Latest().Version
	}
	// The scalar is checked against the version's public key: it must
	// be the one t members show.
	if err := c.pinTransitVersion(ctx, k, version); err != nil {
		return "", err
	}
	return transitExport(ctx, c.base, clusterID, k, cmpOr(k.ID, name), version, wrapping, c.transitSend("/v1/transit/export/"+name))
}

// TransitExport is Client.TransitExport with transit key k (its pinned
// metadata): the token needs flag import.
func (c *TokenClient) TransitExport(ctx context.Context, k *fsm.Key, version uint64, wrapping *rsa.PublicKey) (string, error) {
	if err := checkTransitPin(k); err != nil {
		return "", err
	}
	if version == 0 {
		version = k.Transit().Latest().Version
	}
	return transitExport(ctx, c.base, c.clusterID, k, k.Name, version, wrapping, c.tokenTransitSend("/v1/token/transit/export"))
}

// transitExport asks for version of key k through send until t shares
// check out, leaving out the holders whose shares did not, and wraps the
// scalar.
func transitExport(ctx context.Context, base, clusterID string, k *fsm.Key, ref string, version uint64, wrapping *rsa.PublicKey, send transitSend) (string, error) {
	if tv := k.Transit().Version(version); tv == nil || tv.Sharing == nil || len(tv.Sharing.Commits) == 0 {
		return "", &Error{Kind: api.KindNotFound, Message: fmt.Sprintf("key %q has no version %d", k.Name, version)}
	}
	if !k.Transit().Exportable {
		return "", &Error{Kind: api.KindDenied, Message: fmt.Sprintf("key %q was created non-exportable: it is never exported", k.Name)}
	}
	failed := api.BadAnswers{}
	for {
		ephPriv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return "", err
		}
		sg, rep, err := send(ctx, &fsm.ReleaseRequest{Key: ref, Op: fsm.OpExport, Version: version,
			Ephemeral: ephPriv.PublicKey().Bytes(), Exclude: slices.Sorted(maps.Keys(failed))})
		if err != nil {
			return "", afterLeftOut(err, failed)
		}
		scalar, err := api.OpenTransitExport(rep, clusterID, k, version, sg.Payload, ephPriv)
		var bad api.BadAnswers
		if errors.As(err, &bad) && len(failed)+len(bad) <= fsm.MaxNodes {
			maps.Copy(failed, bad)
			continue
		}
		if err != nil {
			return "", &Error{Kind: api.KindInternal, Message: fmt.Sprintf("the export of key %q through %s does not check out: %v", k.Name, base, err)}
		}
		wrapped, err := api.WrapTransitKey(rand.Reader, wrapping, scalar)
		clear(scalar)
		if err != nil {
			return "", &Error{Kind: api.KindInvalid, Message: err.Error()}
		}
		return wrapped, nil
	}
}

// ImportTransitWrapped creates a transit key whose first version is the
// key that wrapped (what TransitExport or Vault's BYOK wrapping made)
// holds, unwrapped here with the operator's private wrapping key and
// dealt as ImportTransit deals a scalar; the scalar is erased here.
func (c *Client) ImportTransitWrapped(ctx context.Context, name, wrapped string, wrappingPriv *rsa.PrivateKey, opts TransitOptions) (*fsm.Key, error) {
	scalar, err := api.UnwrapTransitKey(wrappingPriv, wrapped)
	if err != nil {
		return nil, &Error{Kind: api.KindInvalid, Message: err.Error()}
	}
	defer clear(scalar)
	return c.ImportTransit(ctx, name, scalar, opts)
}
