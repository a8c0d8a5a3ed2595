package grpc

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// ClusterMachines is klefki's flow on a cluster: machines are those
// registered with keyctl machine add, named on the wire by klefki's
// "SHA256:" IDs. A GetKey is checked by the node (cluster.Node's
// TakeSubmittedKey), first on its applied state, before any read index:
// the machine known, its signature over its nonce and time together, the
// time within fsm.MaxClockSkew of the node's clock, and the nonce not
// seen by the node in that window (the node's one nonce cache). What it
// returns is sealed to the machine's key, so a replayed request, even to
// another node, gets nothing it could open. Keys released by quorum
// (client-side combine) go through the REST unlock, whose request every
// holder checks (keyagent uses it).
type ClusterMachines struct {
	svc cluster.MachineService
}

// NewClusterMachines adapts a node's machine service to the gRPC gateway.
func NewClusterMachines(svc cluster.MachineService) *ClusterMachines {
	return &ClusterMachines{svc: svc}
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

// GetKey implements Machines: it converts klefki's request for the node,
// which checks it.
func (c *ClusterMachines) GetKey(ctx context.Context, req *KeyRequest) (*KeyReply, error) {
	m := c.svc.LocalMachine(req.MachineID)
	if m == nil {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "machine %s is not registered", req.MachineID)
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
