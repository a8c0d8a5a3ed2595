package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
)

// A join token is "kqjoin.<id>.<secret>": id is 16 hex digits that name
// the token in the cluster's state, secret 32 random bytes in unpadded
// base64url. The cluster keeps only the SHA-256 of the secret. An
// unjoined node started with a token accepts a start only from whoever
// knows it; the cluster spends the token when the node joins with it.
const joinTokenPrefix = "kqjoin."

// NewJoinToken makes a random join token and returns it with its ID and
// the SHA-256 of its secret, the part the cluster stores.
func NewJoinToken() (token, id string, hash []byte, err error) {
	idb := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", "", nil, err
	}
	if _, err := rand.Read(secret); err != nil {
		return "", "", nil, err
	}
	id = hex.EncodeToString(idb)
	sum := sha256.Sum256(secret)
	return joinTokenPrefix + id + "." + base64.RawURLEncoding.EncodeToString(secret), id, sum[:], nil
}

// ParseJoinToken splits a join token into its ID and secret. The error
// never repeats the token.
func ParseJoinToken(token string) (id string, secret []byte, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(token), joinTokenPrefix)
	if !ok {
		return "", nil, errors.New("a join token starts with \"kqjoin.\" (keyctl cluster token create makes one)")
	}
	id, enc, ok := strings.Cut(rest, ".")
	if len(id) != 16 || !ok {
		return "", nil, errors.New("a join token is kqjoin.<16 hex digits>.<secret>")
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", nil, errors.New("a join token's ID is 16 hex digits")
	}
	secret, err = base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(secret) != 32 {
		return "", nil, errors.New("a join token's secret is 32 bytes of unpadded base64url")
	}
	return id, secret, nil
}

// Fingerprint is a node's identity fingerprint: the SHA-256 of its Ed25519
// public key, in hex. keyd prints it at start and "keyd identity" prints
// it; the operator compares it before admitting the node.
func Fingerprint(signKey []byte) string {
	sum := sha256.Sum256(signKey)
	return hex.EncodeToString(sum[:])
}

// SameFingerprint compares a fingerprint the operator typed with a node's,
// ignoring case, colons and a "sha256:" prefix.
func SameFingerprint(typed, fp string) bool {
	t := strings.ToLower(strings.TrimSpace(typed))
	t = strings.TrimPrefix(t, "sha256:")
	t = strings.ReplaceAll(t, ":", "")
	return t == strings.ToLower(fp)
}

// JoinTokenInfo is a join token as the cluster lists it: never its secret
// nor its hash.
type JoinTokenInfo struct {
	ID        string `json:"id"`
	CreatedBy string `json:"created_by"`
	CreatedAt int64  `json:"created_at"` // Unix nanoseconds
	ExpiresAt int64  `json:"expires_at"`
	SpentBy   string `json:"spent_by,omitempty"` // the node that joined with it
	SpentAt   int64  `json:"spent_at,omitempty"`
}

// joinTokenKeyLabel separates the join token's signing key from any other
// use of its secret.
const joinTokenKeyLabel = "keyquorum/join-token-key/v1"

// JoinTokenKey is the Ed25519 key a join token's secret derives. The
// cluster holds its public key (fsm.JoinToken.Key); the node that holds the
// token signs its own join request with it (fsm.AutoJoin), so that the
// secret never leaves the node.
func JoinTokenKey(secret []byte) ed25519.PrivateKey {
	h := sha256.New()
	h.Write([]byte(joinTokenKeyLabel + "\x00"))
	h.Write(secret)
	return ed25519.NewKeyFromSeed(h.Sum(nil))
}

// CAFingerprint is the fingerprint of a cluster's CA certificate (PEM):
// the SHA-256 of its DER, in hex. keyctl cluster init prints it; a node
// started with --retry-join joins only a cluster whose CA has it.
func CAFingerprint(caCertPEM []byte) (string, error) {
	block, _ := pem.Decode(caCertPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate found")
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:]), nil
}

// ClusterCA is what a member tells whoever asks (GET /v1/bootstrap/ca):
// public, and trusted by a joining node only if the CA's fingerprint is
// the one it was given.
type ClusterCA struct {
	ClusterID string `json:"cluster_id"`
	CACert    []byte `json:"ca_cert"` // PEM
}

// AutoJoinReply is what a member answers a node it admitted (POST
// /v1/bootstrap/join): what an operator's StartRequest would carry, with
// the node's certificate issued by the cluster's join CA.
type AutoJoinReply struct {
	ClusterID string `json:"cluster_id"`
	CACert    []byte `json:"ca_cert"`
	// NodeCert is the node's certificate and the join CA's, PEM.
	NodeCert  []byte `json:"node_cert"`
	GossipKey []byte `json:"gossip_key"`
	// ClusterKey is the cluster key the member pinned, if any.
	ClusterKey []byte `json:"cluster_key,omitempty"`
	// JoinCACert and JoinCAKey let the node admit nodes in its turn.
	JoinCACert []byte `json:"join_ca_cert"`
	JoinCAKey  []byte `json:"join_ca_key"`
}
