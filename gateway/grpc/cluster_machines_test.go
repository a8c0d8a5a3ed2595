package grpc

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// relayService is a node's machine service that records what ClusterMachines
// relays to the log.
type relayService struct {
	cluster.MachineService
	machine   *fsm.Machine
	submitted []*fsm.Signed
	getKeys   []*fsm.GetKeyRequest
}

func (r *relayService) Machines(context.Context) ([]*fsm.Machine, error) {
	return []*fsm.Machine{r.machine}, nil
}

func (r *relayService) LocalMachine(klefkiID string) *fsm.Machine {
	if keyquorumv1.MachineID(r.machine.PublicKey) == klefkiID {
		return r.machine
	}
	return nil
}

func (r *relayService) SubmitKey(_ context.Context, cmd *fsm.Signed) error {
	r.submitted = append(r.submitted, cmd)
	return nil
}

func (r *relayService) TakeSubmittedKey(_ context.Context, req *fsm.GetKeyRequest, _ string) ([]byte, error) {
	r.getKeys = append(r.getKeys, req)
	return []byte("sealed"), nil
}

// TestClusterMachinesRelayWhatWasSigned: the node relays the operator's
// submit_key only for the machine and key of the call, and hands the log
// the machine's GetKey exactly as signed, so every replica can check it.
func TestClusterMachinesRelayWhatWasSigned(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	opPub, opKey, _ := ed25519.GenerateKey(rand.Reader)
	m := &fsm.Machine{ID: fsm.PrincipalID(pub), Name: "m1", PublicKey: pub, State: fsm.MachineActive}
	svc := &relayService{machine: m}
	cm := NewClusterMachines(svc)
	ctx := context.Background()
	klefki := keyquorumv1.MachineID(pub)
	submit := func(machine string, sealed []byte) *fsm.Signed {
		sg, err := fsm.Sign(fsm.PrincipalID(opPub), opKey, &fsm.Command{Type: fsm.TypeSubmitKey, Nonce: make([]byte, 16), IssuedAt: time.Now().UnixNano(),
			SubmitKey: &fsm.SubmittedKey{Machine: machine, Sealed: sealed}})
		if err != nil {
			t.Fatal(err)
		}
		return sg
	}
	if err := cm.SubmitKey(ctx, klefki, []byte("pass"), submit("another", []byte("pass"))); cluster.KindOf(err) != cluster.KindInvalid {
		t.Errorf("a command for another machine: %v, want invalid", err)
	}
	if err := cm.SubmitKey(ctx, klefki, []byte("pass"), submit(m.ID, []byte("other"))); cluster.KindOf(err) != cluster.KindInvalid {
		t.Errorf("a command for another key: %v, want invalid", err)
	}
	if len(svc.submitted) != 0 {
		t.Fatalf("relayed %d mismatched commands", len(svc.submitted))
	}
	good := submit(m.ID, []byte("pass"))
	if err := cm.SubmitKey(ctx, klefki, []byte("pass"), good); err != nil || len(svc.submitted) != 1 || svc.submitted[0] != good {
		t.Fatalf("the operator's command: %v, relayed %v", err, svc.submitted)
	}

	nonce := make([]byte, 16)
	rand.Read(nonce)
	at := time.Now()
	req := &KeyRequest{MachineID: klefki, Nonce: nonce, SignedAt: at}
	req.Signature = ed25519.Sign(priv, req.SigningInput())
	if _, err := cm.GetKey(ctx, req); err != nil {
		t.Fatal(err)
	}
	gk := svc.getKeys[0]
	if gk.Machine != m.ID || !ed25519.Verify(pub, fsm.GetKeySigningInput(fsm.KlefkiID(pub), gk.Nonce, gk.SignedAt, gk.Ephemeral), gk.Signature) {
		t.Errorf("the relayed GetKey %+v does not verify as the replicas check it", gk)
	}
}
