package grpc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// ClusterMachines is klefki's flow on a cluster: machines are those
// registered with keyctl machine add, named on the wire by klefki's
// "SHA256:" IDs. A GetKey is checked here, by the node that answers it:
// the machine's signature over its nonce and time together, the time
// within fsm.MaxClockSkew of this node's clock, and the nonce not seen by
// this node in that window. What it returns is sealed to the machine's
// key, so a replayed request, even to another node, gets nothing it could
// open. Keys released by quorum (client-side combine) go through the
// REST unlock, whose request every holder checks (keyagent uses it).
type ClusterMachines struct {
	svc cluster.MachineService

	mu     sync.Mutex
	nonces map[string]time.Time // machine/nonce -> when it may be forgotten
	swept  time.Time
}

// NewClusterMachines adapts a node's machine service to the gRPC gateway.
func NewClusterMachines(svc cluster.MachineService) *ClusterMachines {
	return &ClusterMachines{svc: svc, nonces: map[string]time.Time{}}
}

var _ Machines = (*ClusterMachines)(nil)

// machine finds the active machine with a klefki ID.
func (c *ClusterMachines) machine(ctx context.Context, klefkiID string) (*fsm.Machine, error) {
	list, err := c.svc.Machines(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range list {
		if keyquorumv1.MachineID(m.PublicKey) == klefkiID {
			if m.State != fsm.MachineActive {
				return nil, cluster.Errorf(cluster.KindDenied, "machine %s (%s) is revoked", klefkiID, m.Name)
			}
			return m, nil
		}
	}
	return nil, cluster.Errorf(cluster.KindUnauthenticated, "machine %s is not registered", klefkiID)
}

// GetKey implements Machines.
func (c *ClusterMachines) GetKey(ctx context.Context, req *KeyRequest) (*KeyReply, error) {
	m, err := c.machine(ctx, req.MachineID)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(m.PublicKey, req.SigningInput(), req.Signature) {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "the signature of machine %s does not verify", req.MachineID)
	}
	now := time.Now()
	if d := now.Sub(req.SignedAt); d > fsm.MaxClockSkew || d < -fsm.MaxClockSkew {
		return nil, cluster.Errorf(cluster.KindClockSkew, "the request was signed %v from this node's time, more than %v: check the machine's clock", d.Round(time.Second), fsm.MaxClockSkew)
	}
	if !c.useNonce(m.ID+"/"+hex.EncodeToString(req.Nonce), now) {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "the request's nonce was already used: a replay is refused")
	}
	// The node logs what it does for the machine (the delivery, or the
	// machine as waiting) with the request the machine signed, which every
	// replica checks again.
	gk := &fsm.GetKeyRequest{Machine: m.ID, Nonce: req.Nonce, SignedAt: req.SignedAt.UnixNano(),
		Ephemeral: req.EphemeralPublicKey, Signature: req.Signature}
	sealed, err := c.svc.TakeSubmittedKey(ctx, gk, req.Source)
	if err != nil {
		return nil, err
	}
	return &KeyReply{EncryptedKey: sealed}, nil
}

// useNonce records a nonce for twice the clock skew; false if it was seen.
func (c *ClusterMachines) useNonce(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) > time.Minute {
		for k, until := range c.nonces {
			if now.After(until) {
				delete(c.nonces, k)
			}
		}
		c.swept = now
	}
	if until, seen := c.nonces[key]; seen && now.Before(until) {
		return false
	}
	c.nonces[key] = now.Add(2 * fsm.MaxClockSkew)
	return true
}

// ListSessions implements Machines: the machines waiting for a key or an
// approval.
func (c *ClusterMachines) ListSessions(ctx context.Context, operator string) ([]Session, error) {
	list, err := c.svc.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Session, 0, len(list))
	for _, s := range list {
		out = append(out, Session{MachineID: keyquorumv1.MachineID(s.PublicKey), PublicKey: s.PublicKey,
			LastAttempt: time.Unix(0, s.LastAt), Source: s.Addr})
	}
	return out, nil
}

// SubmitKey implements Machines. encryptedKey must be sealed to the
// machine's key by the operator's client, and cmd, the operator's signed
// submit_key, must be for that machine and that key: the node relays cmd
// to the log as it is.
func (c *ClusterMachines) SubmitKey(ctx context.Context, machineID string, encryptedKey []byte, cmd *fsm.Signed) error {
	m, err := c.machine(ctx, machineID)
	if err != nil {
		return err
	}
	var payload fsm.Command
	if err := json.Unmarshal(cmd.Payload, &payload); err != nil || payload.SubmitKey == nil {
		return cluster.Errorf(cluster.KindInvalid, "the signed command is not a submit_key")
	}
	if payload.SubmitKey.Machine != m.ID || !bytes.Equal(payload.SubmitKey.Sealed, encryptedKey) {
		return cluster.Errorf(cluster.KindInvalid, "the signed submit_key is not for machine %s (%s) and this encrypted_key", machineID, m.ID)
	}
	return c.svc.SubmitKey(ctx, cmd)
}
