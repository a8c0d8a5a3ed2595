package grpc

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// Machines is klefki's machine flow behind MachineService: a booting
// machine asks for its key and waits; an operator lists the waiting
// machines and submits a key. The server checks the shape of each request,
// authenticates the operator of ListSessions and SubmitKey, and checks
// that SubmitKey's command is a submit_key that operator signed; the rest
// is the implementation's. Errors are *cluster.Error, as from
// cluster.Service.
type Machines interface {
	// GetKey answers a machine's signed request. The implementation
	// verifies the signature over req.SigningInput() with the machine's
	// registered Ed25519 key, that SignedAt is within its time window and
	// that the nonce is new in that window; it records the attempt for
	// ListSessions, and answers not_found until there is a key.
	GetKey(ctx context.Context, req *KeyRequest) (*KeyReply, error)
	// ListSessions lists the machines that have asked for a key, for the
	// operator with ID operator.
	ListSessions(ctx context.Context, operator string) ([]Session, error)
	// SubmitKey gives the machine its key, encrypted to the machine's
	// public key. cmd is the submit_key command the operator of the call
	// signed (the server has checked its type and signer); the
	// implementation checks that it names the machine and the key, and
	// commits it as it is.
	SubmitKey(ctx context.Context, machineID string, encryptedKey []byte, cmd *fsm.Signed) error
}

// KeyRequest is a machine's GetKey.
type KeyRequest struct {
	// MachineID is "SHA256:" and the standard base64 of the SHA-256 of the
	// machine's Ed25519 public key.
	MachineID string
	Nonce     []byte
	SignedAt  time.Time
	Signature []byte
	// EphemeralPublicKey is the machine's one-time key for client-side
	// combine; empty if it does not combine.
	EphemeralPublicKey []byte
	// Source is the address the request came from, host:port.
	Source string
}

// SigningInput is what the machine signed (keyquorumv1.GetKeySigningInput).
func (r *KeyRequest) SigningInput() []byte {
	return keyquorumv1.GetKeySigningInput(r.MachineID, r.Nonce, r.SignedAt.UnixNano(), r.EphemeralPublicKey)
}

// KeyReply is the answer to a machine that has a key.
type KeyReply struct {
	// EncryptedKey is a key an operator submitted, encrypted to the machine.
	EncryptedKey []byte
	// Partials are the share holders' partials for client-side combine,
	// each encrypted to the request's ephemeral key.
	Partials []Partial
}

// Partial is one share holder's partial, encrypted to a machine's
// ephemeral key.
type Partial struct {
	Index  uint32
	Sealed []byte
}

// Session is a machine that has asked for its key.
type Session struct {
	MachineID   string
	PublicKey   []byte // Ed25519
	LastAttempt time.Time
	Source      string // host:port it last asked from
}

const (
	minNonce, maxNonce = 16, 64
	maxEphemeralKey    = 256
	maxEncryptedKey    = 64 << 10
)

// checkMachineID checks the form of a machine ID.
func checkMachineID(id string) error {
	b64, ok := strings.CutPrefix(id, keyquorumv1.MachineIDPrefix)
	if !ok {
		return cluster.Errorf(cluster.KindInvalid, "machine_id must start with %q", keyquorumv1.MachineIDPrefix)
	}
	sum, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sum) != sha256.Size {
		return cluster.Errorf(cluster.KindInvalid, "machine_id must be %q and the base64 of a SHA-256", keyquorumv1.MachineIDPrefix)
	}
	return nil
}

// machineService is MachineService onto Machines.
type machineService struct {
	keyquorumv1.UnimplementedMachineServiceServer
	s *Server
}

// errNoMachines is the answer of a node without the machine flow.
var errNoMachines = status.Error(codes.Unimplemented, "the machine flow (MachineService) is not enabled on this node")

func (m *machineService) GetTime(context.Context, *keyquorumv1.GetTimeRequest) (*keyquorumv1.GetTimeResponse, error) {
	if m.s.machines == nil {
		return nil, errNoMachines
	}
	return &keyquorumv1.GetTimeResponse{UnixNano: time.Now().UnixNano()}, nil
}

func (m *machineService) GetKey(ctx context.Context, req *keyquorumv1.GetKeyRequest) (*keyquorumv1.GetKeyResponse, error) {
	if m.s.machines == nil {
		return nil, errNoMachines
	}
	if err := checkMachineID(req.GetMachineId()); err != nil {
		return nil, err
	}
	switch n := len(req.GetNonce()); {
	case n < minNonce || n > maxNonce:
		return nil, cluster.Errorf(cluster.KindInvalid, "nonce must be %d to %d bytes, not %d", minNonce, maxNonce, n)
	case req.GetSignedAt() == 0:
		return nil, cluster.Errorf(cluster.KindInvalid, "signed_at is required")
	case len(req.GetSignature()) != ed25519.SignatureSize:
		return nil, cluster.Errorf(cluster.KindInvalid, "signature must be an Ed25519 signature of %d bytes, not %d", ed25519.SignatureSize, len(req.GetSignature()))
	case len(req.GetEphemeralPublicKey()) > maxEphemeralKey:
		return nil, cluster.Errorf(cluster.KindInvalid, "ephemeral_public_key is longer than %d bytes", maxEphemeralKey)
	}
	kr := &KeyRequest{
		MachineID:          req.GetMachineId(),
		Nonce:              req.GetNonce(),
		SignedAt:           time.Unix(0, req.GetSignedAt()),
		Signature:          req.GetSignature(),
		EphemeralPublicKey: req.GetEphemeralPublicKey(),
	}
	if p, ok := peer.FromContext(ctx); ok {
		kr.Source = p.Addr.String()
	}
	reply, err := m.s.machines.GetKey(ctx, kr)
	if err != nil {
		return nil, err
	}
	if reply == nil {
		reply = &KeyReply{}
	}
	out := &keyquorumv1.GetKeyResponse{EncryptedKey: reply.EncryptedKey}
	for _, p := range reply.Partials {
		out.Partials = append(out.Partials, &keyquorumv1.EncryptedPartial{Index: p.Index, Sealed: p.Sealed})
	}
	return out, nil
}

func (m *machineService) ListSessions(ctx context.Context, _ *keyquorumv1.ListSessionsRequest) (*keyquorumv1.ListSessionsResponse, error) {
	if m.s.machines == nil {
		return nil, errNoMachines
	}
	sessions, err := m.s.machines.ListSessions(ctx, principal(ctx).ID)
	if err != nil {
		return nil, err
	}
	out := &keyquorumv1.ListSessionsResponse{Sessions: make([]*keyquorumv1.Session, 0, len(sessions))}
	for _, s := range sessions {
		var last int64
		if !s.LastAttempt.IsZero() {
			last = s.LastAttempt.UnixNano()
		}
		out.Sessions = append(out.Sessions, &keyquorumv1.Session{MachineId: s.MachineID, PublicKey: s.PublicKey, LastAttempt: last, SourceAddress: s.Source})
	}
	return out, nil
}

func (m *machineService) SubmitKey(ctx context.Context, req *keyquorumv1.SubmitKeyRequest) (*keyquorumv1.SubmitKeyResponse, error) {
	if m.s.machines == nil {
		return nil, errNoMachines
	}
	if err := checkMachineID(req.GetMachineId()); err != nil {
		return nil, err
	}
	if n := len(req.GetEncryptedKey()); n == 0 || n > maxEncryptedKey {
		return nil, cluster.Errorf(cluster.KindInvalid, "encrypted_key must be 1 to %d bytes, not %d", maxEncryptedKey, n)
	}
	sg, err := signedFrom(req.GetCommand(), "command")
	if err != nil {
		return nil, err
	}
	if err := cluster.CheckSigned(principal(ctx), sg, fsm.TypeSubmitKey); err != nil {
		return nil, err
	}
	if err := m.s.machines.SubmitKey(ctx, req.GetMachineId(), req.GetEncryptedKey(), sg); err != nil {
		return nil, err
	}
	return &keyquorumv1.SubmitKeyResponse{}, nil
}
