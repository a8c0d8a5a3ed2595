package api

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"strings"

	tssrsa "github.com/cloudflare/circl/tss/rsa"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// DealRSA deals an RSA private key made elsewhere by Shoup's threshold
// scheme (cloudflare/circl tss/rsa): one share for each of holders (the
// share holders t members confirmed), threshold of them needed, each share
// sealed to its holder's identity key with RSAShareInfo. It returns the
// key's PKIX public key and the deal to store (fsm.CreateKey.RSA). The
// caller (keyctl) is the only place the whole key ever is; it should drop
// priv once this returns. circl's shares are big.Ints that cannot be
// wiped: they stay in this process's freed memory until reused.
func DealRSA(rand io.Reader, clusterID, name string, priv *rsa.PrivateKey, threshold int, holders []MemberStatus) ([]byte, *fsm.RSAThresholdKey, error) {
	if len(priv.Primes) != 2 {
		return nil, nil, fmt.Errorf("key %q has %d primes: threshold RSA needs a two-prime key", name, len(priv.Primes))
	}
	if err := priv.Validate(); err != nil {
		return nil, nil, fmt.Errorf("key %q: %w", name, err)
	}
	holders = slices.Clone(holders)
	slices.SortFunc(holders, func(a, b MemberStatus) int { return strings.Compare(a.ID, b.ID) })
	if threshold < 1 || threshold > len(holders) {
		return nil, nil, fmt.Errorf("cannot deal %d-of-%d", threshold, len(holders))
	}
	public, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	shares, err := tssrsa.Deal(rand, uint(len(holders)), uint(threshold), priv, false)
	if err != nil {
		return nil, nil, fmt.Errorf("dealing key %q: %w", name, err)
	}
	rk := &fsm.RSAThresholdKey{Threshold: threshold}
	for i, h := range holders {
		b, err := shares[i].MarshalBinary()
		if err != nil {
			return nil, nil, err
		}
		index := uint32(i + 1)
		ct, err := shamir.Seal(rand, h.SignKey, RSAShareInfo(clusterID, name, public, index), b)
		clear(b)
		if err != nil {
			return nil, nil, fmt.Errorf("sealing the share of node %s: %w", h.ID, err)
		}
		rk.Shares = append(rk.Shares, fsm.RSAShare{NodeID: h.ID, Index: index, R: ct.R, Sealed: ct.Sealed})
	}
	return public, rk, nil
}

// OpenRSAShare opens a holder's share of a threshold RSA key with the
// holder's encryption private key (shamir.EncryptionKeyFromEd25519 of its
// identity) and checks that it is the share the state lists: its index,
// the number of players and the threshold.
func OpenRSAShare(encPriv []byte, clusterID string, k *fsm.Key, sh *fsm.RSAShare) (*tssrsa.KeyShare, error) {
	b, err := shamir.OpenWithKey(encPriv, &shamir.Ciphertext{R: sh.R, Sealed: sh.Sealed}, RSAShareInfo(clusterID, k.Name, k.Public(), sh.Index))
	if err != nil {
		return nil, err
	}
	defer clear(b)
	var ks tssrsa.KeyShare
	if err := ks.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	if ks.Index != uint(sh.Index) || ks.Players != uint(len(k.RSA().Shares)) || ks.Threshold != uint(k.RSA().Threshold) {
		return nil, fmt.Errorf("the share opened is %d of %d (t=%d), the state lists %d of %d (t=%d)",
			ks.Index, ks.Players, ks.Threshold, sh.Index, len(k.RSA().Shares), k.RSA().Threshold)
	}
	return &ks, nil
}
