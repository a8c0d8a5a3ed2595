// Package shamir is keyquorum's threshold cryptography on edwards25519: a
// dealerless DKG and resharing of the cluster secret, and a threshold
// ElGamal KEM that releases secret blobs without ever rebuilding the
// cluster secret; and on P-256, the t-of-n exchange of Tang keys (p256.go:
// partials s_i*X with DLEQ proofs, combined in the exponent, every secret
// value handled in constant time with nistec and bigmod). It is pure: no I/O except the io.Reader of randomness
// that every randomized function takes, and it imports nothing of the
// project but its vocabulary (package vocab: the domain-separation labels).
//
// # Sharing
//
// t of n nodes hold Shamir shares s_i = f(i) of the cluster secret x = f(0),
// f of degree t-1. Indexes are 1-based uint32 x-coordinates everywhere in
// this API (kyber's share package counts from 0 and evaluates at I+1; that
// is hidden here). A PublicPoly holds the Feldman commitments C_j = a_j*G;
// C_0 = X = x*G is the cluster public key and f(i)*G = sum_j C_j*i^j is node
// i's public share.
//
// DKG (Pedersen, over the Raft log as broadcast channel): every dealer d
// calls NewFreshDeal, which picks a random polynomial f_d, publishes its
// commitments and encrypts f_d(j) to each recipient j. Everyone runs
// VerifyFreshDeal on every deal; recipients OpenDeal their sub-share, which
// checks it against the commitments. Given the same set of qualified deals,
// CombineFresh gives every node the same PublicPoly (sum of commitments) and
// recipient j its share sum_d f_d(j).
//
// Reshare (to new members and/or a new threshold, same public key): every
// dealer i of a qualified set of old holders calls NewReshareDeal, whose
// polynomial g_i has g_i(0) = s_i, so Commits[0] must equal the old public
// share of i (VerifyReshareDeal checks it). CombineReshare interpolates at 0
// over the dealer indexes: new share = sum lambda_i g_i(j), new poly = sum
// lambda_i Commits_i, hence the same x and X. Old shares stay valid for the
// old polynomial: holders must Erase them, which is what makes a removed
// node's old share useless against the new epoch's public shares.
//
// Deal encryption: each sub-share is encrypted to the recipient's
// edwards25519 key A = a*G (GenerateEncryptionKey) with a fresh ephemeral
// e: E = e*G, k = HKDF-SHA256(e*A, salt = E || A), ChaCha20-Poly1305 with a
// zero nonce (the key is single-use) and associated data binding a label,
// the caller's context (epoch, cluster id), the dealer index, the recipient
// index and the deal's commitments.
//
// # Threshold KEM
//
// Seal picks r, sends R = r*G and encrypts under
// HKDF-SHA256(r*X, salt = R, info = "keyquorum/kem/v1\x00" || info) with
// ChaCha20-Poly1305 (random nonce prepended). To release, each of t holders
// returns a Partial: s_i*R with a Chaum-Pedersen DLEQ proof that
// log_G(S_i) = log_R(s_i*R). The combiner (Open) verifies every proof it
// uses, recomputing the Fiat-Shamir challenge itself as SHA-512 of the
// domain label "keyquorum/dleq/v1", G, R, S_i, the value, both commitments
// A1 = w*G and A2 = w*R, the index and the caller's context, reduced mod l.
// It then interpolates r*X = sum lambda_i s_i*R and decrypts. The cluster
// secret is never rebuilt. CombinePoints exposes the interpolation step for
// other schemes. HashToPoint maps a message to a point nobody knows the
// discrete log of, so that partials over it (with their DLEQ proofs) are
// threshold signature shares: keyquorum's holders certify state
// checkpoints with them.
//
// # One-time sealing to X25519
//
// SealX25519 seals to a requester's one-time X25519 key (a holder's
// partial for a blind release), like HPKE's base mode: a fresh X25519 key
// e, k = HKDF-SHA256(X25519(e, pub), no salt, "keyquorum/x25519-seal/v1\x00"
// || e_pub || pub || info), ChaCha20-Poly1305 with a zero nonce. A key of
// low order (shared secret zero) is refused. The X25519 is circl's
// (github.com/cloudflare/circl/dh/x25519, constant time, already the
// module's threshold RSA): e_pub by its fixed-base ladder and the shared
// secret by its Montgomery ladder, where crypto/ecdh computes e_pub with
// a second full ladder (its NewPrivateKey is eager) and runs slower; a
// seal costs about 0.55x and an open 0.75x of crypto/ecdh's on amd64
// (TestX25519MatchesCryptoECDH checks they agree). It costs less than
// Seal.
//
// # FROST signatures
//
// frost.go is FROST(Ed25519, SHA-512) of RFC 9591 on the same group and
// shares: a key shared t-of-n (by the DKG, by a client's deal of an
// imported Ed25519 key's scalar, Ed25519Scalar, or by a reshare) signs in
// two rounds, FROSTCommit (nonces and their commitments) and
// FROSTRound.Sign (a signature share, which erases the nonces); the
// aggregator checks every share with FROSTRound.VerifyShare, naming the
// signer of a bad one, and FROSTRound.Aggregate makes an Ed25519
// signature that crypto/ed25519 verifies. testdata holds the RFC's test
// vector (TestFROSTRFC9591Vectors). FROST is not robust: a bad share
// spoils the round, and the caller starts another without that signer.
//
// # Encodings
//
// Points: 32-byte compressed edwards25519 (RFC 8032), the same bytes as
// Ed25519 public keys, kyber's Point.MarshalBinary and
// filippo.io/edwards25519's Point.Bytes. Scalars: 32 bytes little-endian,
// fully reduced mod l (kyber's Scalar.MarshalBinary, filippo's
// SetCanonicalBytes). Non-canonical encodings are rejected. The tests check
// that kyber and filippo.io/edwards25519 agree.
//
// # Threat model points
//
//   - Up to t-1 holders may be malicious. Every point received from outside
//     (R, deal commitments, ephemeral keys, partial values, encryption and
//     public keys) is rejected unless canonical, not of small order, and in
//     the prime-order subgroup (l*P = identity), before any secret
//     multiplication. kyber's decoder accepts small-order points, and a point
//     with a torsion component would leak a share's value mod 8 through s_i*R
//     and let a forged DLEQ proof pass with probability 1/8.
//   - kyber v3.1.0's dleq.Verify does not recompute the challenge and accepts
//     forgeries; it is not used. share.RecoverSecret/RecoverCommit check
//     nothing and are not used; inputs are verified before interpolation.
//   - Secret-scalar multiplications use filippo.io/edwards25519's
//     constant-time ScalarMult/ScalarBaseMult (or kyber's constant-time
//     multiplication for polynomial commitments); variable-time routines are
//     used only with public scalars (verification, Lagrange combination,
//     subgroup checks). Secret scalars created here are overwritten when done,
//     where Go makes that practical (kyber's big.Int conversions may leave
//     copies).
//   - A Pedersen DKG lets a rushing last dealer bias the public key
//     (Gennaro et al.); the key is still uniform enough for ElGamal and no
//     coalition below t learns it. Raft orders the deals; the caller decides
//     the qualified set and must use the same set on every node.
//   - Errors name what was wrong (which index, which field) and wrap the
//     exported sentinels; they never contain secret bytes.
//
// The hot path (Seal, ComputePartial, VerifyPartial, Open, CombinePoints)
// uses filippo.io/edwards25519, about 2-4x faster than kyber's group;
// polynomials, dealing and resharing use kyber.
package shamir
