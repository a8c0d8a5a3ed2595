package fsm

import (
	"crypto/ed25519"
	"encoding/json"
	"time"

	"github.com/keyquorum/keyquorum/vocab"
)

// Signed is one Raft log entry, and also the form of every request a share
// holder authorizes. Payload is the JSON of a Command exactly as it was
// signed; it is never re-encoded, so no canonical JSON is needed.
type Signed struct {
	Signer    string `json:"signer"`    // an operator, node or machine ID
	Payload   []byte `json:"payload"`   // JSON of a Command
	Signature []byte `json:"signature"` // Ed25519 over SigningInput(Payload)
	// WebAuthn, when set, signs in place of Signature: a passkey's
	// assertion over CommandChallenge(Payload) (passkeys.go).
	WebAuthn *Assertion `json:"webauthn,omitempty"`
	// Token, on a release request only, stands in place of Signature: a
	// capability token of the operator Signer, bound to Payload
	// (tokens.go, package token). Signature is then empty.
	Token []byte `json:"token,omitempty"`
}

// signingDomain separates keyquorum's signatures from any other use of the
// same Ed25519 keys.
const signingDomain = vocab.LabelCommand + "\x00"

// SigningInput is what a signer signs for a payload.
func SigningInput(payload []byte) []byte {
	return append([]byte(signingDomain), payload...)
}

// Sign makes a Signed from a command. The command must carry a fresh Nonce
// and IssuedAt.
func Sign(signer string, key ed25519.PrivateKey, cmd *Command) (*Signed, error) {
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	return &Signed{Signer: signer, Payload: payload, Signature: ed25519.Sign(key, SigningInput(payload))}, nil
}

// Command types.
const (
	TypeInit           = "init"
	TypeAddNode        = "add_node"
	TypeRemoveNode     = "remove_node"
	TypeAddOperator    = "add_operator"
	TypeRemoveOperator = "remove_operator"
	TypePutRule        = "put_rule"
	TypeDeleteRule     = "delete_rule"
	TypeCreateKey      = "create_key"
	// TypeCreateKeys creates many keys in one entry (createKeys).
	TypeCreateKeys = "create_keys"
	TypeReplaceKey = "replace_key"
	TypeRevokeKey  = "revoke_key"
	TypeDestroyKey = "destroy_key"
	TypeDeal       = "deal"
	TypeReshareAck = "reshare_ack"
	TypeSetEncKey  = "set_enc_key"
	// TypeComplaint is a member's proof that a dealer's sub-share to it is
	// bad (node-signed); TypeRestartReshare is an admin's new round.
	TypeComplaint      = "complaint"
	TypeRestartReshare = "restart_reshare"
	TypeSetAccess      = "set_access"
	TypeAddMachine     = "add_machine"
	TypeRevokeMachine  = "revoke_machine"
	TypeApprove        = "approve"
	// TypeDeny refuses a waiting machine; TypeAddPasskey and
	// TypeRemovePasskey are an admin's (passkeys.go).
	TypeDeny          = "deny"
	TypeAddPasskey    = "add_passkey"
	TypeRemovePasskey = "remove_passkey"
	// TypeSignIn is never logged: a passkey signs it to open a console
	// session (State.VerifyPasskey).
	TypeSignIn = "sign_in"
	// TypeRecordSession, TypeUseApproval and TypeDelivered are signed by
	// the member node that relays them, and carry the request the machine
	// signed; TypeSubmitKey is signed by the submitting operator.
	TypeRecordSession = "record_session"
	TypeUseApproval   = "use_approval"
	TypeSubmitKey     = "submit_key"
	TypeDelivered     = "delivered"
	// TypeAttest is a share holder's partial over a checkpoint of the
	// state (see checkpoint.go); node-signed.
	TypeAttest = "attest"
	// Join tokens (jointokens.go): an admin creates and revokes them; an
	// admin's join_node adds a node and spends the token it joins with.
	TypeCreateJoinToken = "create_join_token"
	TypeRevokeJoinToken = "revoke_join_token"
	TypeJoinNode        = "join_node"
	// TypeAutoJoin is relayed (signed) by a member node and carries the
	// joining node's request, signed with the token's key and its own.
	TypeAutoJoin = "auto_join"
	// The autopilot (autopilot.go): an admin turns it on; the leader
	// proposes remove_dead_node, signed as itself. The leader also
	// proposes promote_node, signed as itself, once a new member is a
	// Raft voter: the resharing to it starts then.
	TypeSetAutopilot   = "set_autopilot"
	TypeRemoveDeadNode = "remove_dead_node"
	TypePromoteNode    = "promote_node"
	// TypeRecoveryDeal is a holder's deal of its share to the recovery
	// officers (recovery.go); node-signed.
	TypeRecoveryDeal = "recovery_deal"
	// TypeRebuild replaces every member from the recovery kit (an
	// admin's; recovery.go).
	TypeRebuild = "rebuild"
	// TypeRevokeToken revokes a capability token by one of its
	// revocation ids (tokens.go); any operator signs it.
	TypeRevokeToken = "revoke_token"
	// TypeTokenUse records a use of a token with a bound on its uses;
	// the coordinating node signs it (tokens.go).
	TypeTokenUse = "token_use"
	// TypeRelease is never logged: it is a request that share holders
	// authorize against the state (see State.Authorize).
	TypeRelease = "release"

	// Transit keys (transit.go).
	TypeRotateKey    = "rotate_key"
	TypeConfigureKey = "configure_key"
)

// Command is the signed payload. Exactly the field that matches Type is set.
type Command struct {
	Type     string `json:"type"`
	Nonce    []byte `json:"nonce"`     // at least 16 random bytes
	IssuedAt int64  `json:"issued_at"` // Unix nanoseconds, by the signer's clock

	Init           *Init           `json:"init,omitempty"`
	AddNode        *Node           `json:"add_node,omitempty"`
	RemoveNode     string          `json:"remove_node,omitempty"`
	AddOperator    *Operator       `json:"add_operator,omitempty"`
	RemoveOperator string          `json:"remove_operator,omitempty"`
	PutRule        *Rule           `json:"put_rule,omitempty"`
	DeleteRule     string          `json:"delete_rule,omitempty"`
	CreateKey      *CreateKey      `json:"create_key,omitempty"`
	CreateKeys     []*CreateKey    `json:"create_keys,omitempty"`
	ReplaceKey     *ReplaceKey     `json:"replace_key,omitempty"`
	RevokeKey      string          `json:"revoke_key,omitempty"`
	DestroyKey     string          `json:"destroy_key,omitempty"`
	Deal           *DealCommand    `json:"deal,omitempty"`
	ReshareAck     *ReshareAck     `json:"reshare_ack,omitempty"`
	SetEncKey      []byte          `json:"set_enc_key,omitempty"`
	Complaint      *Complaint      `json:"complaint,omitempty"`
	RestartReshare *RestartReshare `json:"restart_reshare,omitempty"`
	SetAccess      *SetAccess      `json:"set_access,omitempty"`
	AddMachine     *Machine        `json:"add_machine,omitempty"`
	RevokeMachine  string          `json:"revoke_machine,omitempty"`
	Approve        *Approval       `json:"approve,omitempty"`
	Deny           *Denial         `json:"deny,omitempty"`
	AddPasskey     *Passkey        `json:"add_passkey,omitempty"`
	RemovePasskey  string          `json:"remove_passkey,omitempty"`
	SignIn         *SignIn         `json:"sign_in,omitempty"`
	RecordSession  *RecordSession  `json:"record_session,omitempty"`
	UseApproval    *UseApproval    `json:"use_approval,omitempty"`
	SubmitKey      *SubmittedKey   `json:"submit_key,omitempty"`
	Delivered      *Delivered      `json:"delivered,omitempty"`
	Attest         *Attest         `json:"attest,omitempty"`
	Release        *ReleaseRequest `json:"release,omitempty"`
	RotateKey      *RotateKey      `json:"rotate_key,omitempty"`
	ConfigureKey   *ConfigureKey   `json:"configure_key,omitempty"`

	// Join tokens (jointokens.go).
	CreateJoinToken *JoinToken `json:"create_join_token,omitempty"`
	RevokeJoinToken string     `json:"revoke_join_token,omitempty"`
	JoinNode        *JoinNode  `json:"join_node,omitempty"`
	AutoJoin        *AutoJoin  `json:"auto_join,omitempty"`

	// The autopilot (autopilot.go).
	SetAutopilot   *Autopilot  `json:"set_autopilot,omitempty"`
	RemoveDeadNode *RemoveDead `json:"remove_dead_node,omitempty"`
	PromoteNode    string      `json:"promote_node,omitempty"`

	// The recovery kit (recovery.go).
	RecoveryDeal *RecoveryDeal `json:"recovery_deal,omitempty"`
	Rebuild      *Rebuild      `json:"rebuild,omitempty"`
	RevokeToken  *RevokedToken `json:"revoke_token,omitempty"`
	TokenUse     *TokenUse     `json:"token_use,omitempty"`
}

// Init founds the cluster: the first operator (who signs this command with
// the key it names), the first node and the cluster's CA certificate.
type Init struct {
	ClusterID string    `json:"cluster_id"`
	CACert    []byte    `json:"ca_cert"` // PEM
	Operator  *Operator `json:"operator"`
	Node      *Node     `json:"node"`
	// InitialNodes is how many members the cluster waits for before the
	// DKG makes the cluster key: a key made by fewer nodes would have a
	// threshold that fewer nodes meet (with one, the founding node would
	// hold the whole secret).
	InitialNodes int `json:"initial_nodes"`
	// Recovery, when set, asks for a recovery kit (recovery.go); off by
	// default.
	Recovery *RecoveryKitRequest `json:"recovery,omitempty"`
}

// MaxNodes is the largest cluster.
const MaxNodes = 7

// MaxCreateKeys is the most keys one create_keys command may create.
const MaxCreateKeys = 1000

// CreateKey stores a new key. Material is sealed by the client to the
// cluster public key, so no node sees the plaintext.
type CreateKey struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	R         []byte `json:"r"`      // the KEM's public point
	Sealed    []byte `json:"sealed"` // nonce and AEAD ciphertext
	ExpiresAt int64  `json:"expires_at,omitempty"`
	// Public is the public key of an assembled key (PKIX DER) or of a
	// Tang key (uncompressed P-256 point).
	Public []byte `json:"public,omitempty"`
	// AssembleTTL is how long a node may keep an assembled key in memory
	// after a quorum released it; 0 is one operation.
	AssembleTTL time.Duration `json:"assemble_ttl,omitempty"`
	Access      *Access       `json:"access,omitempty"`
	Tang        *TangKey      `json:"tang,omitempty"`
	// RSA is a threshold RSA key's deal (rsathreshold.go).
	RSA *RSAThresholdKey `json:"rsa_threshold,omitempty"`
	// Frost is the sharing of an ed25519-frost key (frost.go).
	Frost *FROSTKey `json:"frost,omitempty"`
	// Transit is a transit key's cipher and first version (transit.go).
	Transit *TransitKey `json:"transit,omitempty"`
}

// ReplaceKey replaces a key's material if its version is still
// ExpectVersion: the compare-and-swap of keysrv. The coordinating node
// checks the old secret's hash before it proposes this command.
type ReplaceKey struct {
	Name          string `json:"name"`
	ExpectVersion uint64 `json:"expect_version"`
	OldSHA256     []byte `json:"old_sha256"`
	R             []byte `json:"r"`
	Sealed        []byte `json:"sealed"`
}

// DealCommand carries one share holder's resharing deal for a resharing
// round. The deal's encoding belongs to the DealChecker.
type DealCommand struct {
	Round  uint64 `json:"round"`
	Dealer uint32 `json:"dealer"`
	Deal   []byte `json:"deal"`
	// Tang are the dealer's deals of the round's Tang keys it holds
	// shares of (tangreshare.go).
	Tang []TangDeal `json:"tang,omitempty"`
	// Frost are its deals of the round's FROST keys (frostreshare.go).
	Frost []FROSTDeal `json:"frost,omitempty"`
}

// ReshareAck says the signing node holds its share of the round's new
// sharing, checked against the round's public commitments.
type ReshareAck struct {
	Round uint64 `json:"round"`
}

// ReleaseRequest asks for a key's material, or for an exchange with a Tang
// key. Share holders authorize it; it never enters the log.
type ReleaseRequest struct {
	Key string `json:"key"`
	// Op is what the release is for: OpGet, OpCAS when a node releases
	// the old secret to compare it during a compare-and-swap, or
	// OpExchange for a Tang key's s*Point (or an x25519 key's, Points).
	Op string `json:"op"`
	// Gateway is set when a node signs the request for a client of a
	// legacy gateway it authorized itself; Client describes that client
	// for the holders' logs.
	Gateway string `json:"gateway,omitempty"`
	Client  string `json:"client,omitempty"`
	// Point is the client's P-256 point for OpExchange (uncompressed).
	Point []byte `json:"point,omitempty"`
	// Input is the number, as many bytes as the modulus, a holder of a
	// threshold RSA key raises to its share for OpRSAShare: a padded
	// digest to sign or a ciphertext to decrypt.
	Input []byte `json:"input,omitempty"`
	// Ephemeral is the X25519 public key holders seal their partials to
	// (shamir.SealX25519; client-side combine). Machines and operators must set
	// it; a gateway node's request must not.
	Ephemeral []byte `json:"ephemeral,omitempty"`
	// Seal is how holders seal a blind release's partials to Ephemeral:
	// empty, each partial with its DLEQ proof (shamir.SealX25519); or
	// SealShare, each holder's value alone, sealed with its share
	// (shamir.Prover.SealToEphemeral), the key's ciphertext's AEAD tag
	// deciding at the client (docs/coordinator.md, "Share mode"). It is
	// signed, so the coordinator cannot change it.
	Seal string `json:"seal,omitempty"`
	// Message is what OpSign signs (frost.go, rsathreshold.go).
	Message []byte `json:"message,omitempty"`
	// Padding is how OpSign pads for an rsa-threshold key:
	// PaddingPKCS1v15 (also when empty) or PaddingPSS. Other keys take
	// none.
	Padding string `json:"padding,omitempty"`
	// Points are OpDecrypt's ciphertext points (transit.go), or an x25519
	// key's OpExchange's peer public keys: each Point an X25519 u
	// coordinate (RFC 7748), which each holder maps to the point it
	// multiplies.
	Points []TransitPoint `json:"points,omitempty"`
	// Derive are OpDerive's items (transit.go): each holder hashes each
	// context to the point it multiplies by its share.
	Derive []TransitDerivation `json:"derive,omitempty"`
	// Version is the transit key version OpExport exports (transit.go).
	Version uint64 `json:"version,omitempty"`
	// Exclude are share indexes the caller does not want answers from:
	// holders whose answers it found bad in an earlier attempt. The
	// coordinator asks the others.
	Exclude []uint32 `json:"exclude,omitempty"`
	// ReplaceKey is set when Op is OpCAS: the swap this release serves.
	ReplaceKey *ReplaceKey `json:"replace_key,omitempty"`
}
