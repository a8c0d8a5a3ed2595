package vocab

// Domain-separation labels. Each binds a signature, a proof, a key
// derivation or a ciphertext to one use, so that bytes made for one can
// never be taken for another. Where a label is used it is followed by a
// zero byte (and the fields it binds), or is the first input of a hash.
// Their bytes are part of every stored ciphertext and every signature:
// changing one breaks what was made with it, so a new use gets a new
// label and an old one is never edited (TestLabelsKeepTheirBytes).
const (
	// Signatures.
	LabelCommand       = "keyquorum/command/v1"         // every signed command (fsm.SigningInput)
	LabelMachineGetKey = "keyquorum/machine/get-key/v1" // a machine's GetKey of klefki's flow (fsm.GetKeySigningInput)

	// Contexts of releases and proofs (fsm, cluster).
	LabelSecret     = "keyquorum/secret/v1"      // HKDF info of a secret's ciphertext (fsm.SealInfo)
	LabelRelease    = "keyquorum/release/v1"     // a partial's proof context for one release (fsm.ReleaseContext)
	LabelPartial    = "keyquorum/partial/v1"     // HKDF info of a partial sealed to a client (fsm.PartialSealInfo)
	LabelCheckpoint = "keyquorum/checkpoint/v1"  // what a checkpoint partial certifies (fsm.CheckpointMessage)
	LabelDeal       = "keyquorum/deal/v1"        // a resharing deal's context (cluster)
	LabelExchange   = "keyquorum/exchange/v1"    // a Tang exchange partial's proof context (cluster)
	LabelTangShare  = "keyquorum/tang-share/v1"  // a Tang share sealed to a node (cluster/api.TangShareContext)
	LabelPossession = "keyquorum/possession/v1"  // a holder's proof that it holds its share, for a client's nonce (cluster/api.PossessionMessage)
	LabelFROSTShare = "keyquorum/frost-share/v1" // a FROST key's share sealed to a node (cluster/api.FROSTShareContext)
	LabelBackup     = "keyquorum/backup/v1"      // what a node signs of a backup it made (cluster/api.BackupMessage)
	LabelRSAShare   = "keyquorum/rsa-share/v1"   // a threshold RSA share sealed to a node (cluster/api.RSAShareInfo)
	LabelKeyID      = "keyquorum/key-id/v1"      // a key's opaque ID, hashed from its create entry (fsm.KeyID)

	// Transit (shamir/transit.go, cluster/api/transit.go).
	LabelTransitKey     = "keyquorum/transit/key/v1"     // HKDF info of a transit ciphertext's AEAD key
	LabelTransitAAD     = "keyquorum/transit/aad/v1"     // a transit ciphertext's additional data
	LabelTransitShare   = "keyquorum/transit/share/v1"   // a transit key version's share sealed to a node
	LabelTransitDecrypt = "keyquorum/transit/decrypt/v1" // a transit partial's proof context for one request
	LabelTransitDerive  = "keyquorum/transit/derive/v1"  // a derivation's point and HKDF info (shamir.TransitDerivePoint)
	LabelTransitHMAC    = "keyquorum/transit/hmac/v1"    // the derivation context of a transit HMAC key (cluster/api.TransitHMACContext)
	LabelTransitExport  = "keyquorum/transit/export/v1"  // a holder's share sealed to an export's caller (cluster/api.TransitExportContext)
	LabelTransitProof   = "keyquorum/transit/proof/v1"   // the challenge of a transit ciphertext's proof that its encryptor knows r (shamir.VerifyTransitProof)

	// Primitives (shamir).
	LabelKEM         = "keyquorum/kem/v1"           // HKDF info of the threshold ElGamal KEM
	LabelDLEQ        = "keyquorum/dleq/v1"          // the edwards25519 DLEQ proof's challenge
	LabelHashToPoint = "keyquorum/hash-to-point/v1" // hashing to edwards25519
	LabelDealKey     = "keyquorum/deal/key/v1"      // HKDF info of a deal's share encryption key
	LabelDealAD      = "keyquorum/deal/ad/v1"       // additional data of a deal's share encryption
	LabelP256DLEQ    = "keyquorum/p256-dleq/v1"     // the P-256 (Tang) DLEQ proof's challenge
	LabelP256Share   = "keyquorum/p256-share/v1"    // additional data of a P-256 share's encryption
	LabelX25519Seal  = "keyquorum/x25519-seal/v1"   // HKDF info of a one-time X25519 sealing (shamir.SealX25519)
	LabelShareAD     = "keyquorum/share/v1"         // additional data of an edwards25519 share sealed to a node (shamir.SealShare)
	LabelShareSeal   = "keyquorum/share-seal/v1"    // HKDF info of a holder's value sealed to a client with its share (shamir.Prover.SealToEphemeral)

	// Clients.
	LabelClevis = "keyquorum/clevis/v1" // HKDF info of the clevis pin's JWK (agent.ClevisJWK)
)

// Labels are all the labels, for tests.
var Labels = []string{LabelCommand, LabelMachineGetKey, LabelSecret, LabelRelease, LabelPartial,
	LabelCheckpoint, LabelDeal, LabelExchange, LabelTangShare, LabelKEM, LabelDLEQ, LabelHashToPoint,
	LabelDealKey, LabelDealAD, LabelP256DLEQ, LabelP256Share, LabelClevis, LabelPossession, LabelX25519Seal,
	LabelFROSTShare, LabelShareAD, LabelBackup,
	LabelRSAShare, LabelKeyID, LabelTransitKey, LabelTransitAAD, LabelTransitShare, LabelTransitDecrypt,
	LabelTransitDerive, LabelTransitHMAC, LabelTransitExport, LabelTransitProof, LabelShareSeal}
