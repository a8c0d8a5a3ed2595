package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// A machine's unlock (keyagent) is a release whose partials every holder
// seals to the machine's ephemeral key: the coordinating node relays them
// with the key's ciphertext and the public polynomial, and the machine
// checks each proof and combines. No node sees the key. When the
// machine's rule needs an approval, the coordinator spends an approved use
// on the request through the log, or records the request as a pending
// session that every node lists; both entries carry the request the
// machine signed, so a node can do neither for a request the machine did
// not make.

// MachineUnlock is what a machine (or an operator: Release) gets for a
// release request with an ephemeral key: the wire type the agent reads
// (vocab.UnlockReply), checked and opened by api.OpenRelease.
type MachineUnlock = SealedRelease

// SealedPartial is a holder's partial sealed to the request's ephemeral
// key (vocab.SealedPartial).
type SealedPartial = api.SealedPartial

// sessionEvery bounds how often one machine's waiting attempts are written
// to the log.
const sessionEvery = 5 * time.Second

// MachineUnlock coordinates a machine's signed release request from addr,
// or an operator's (Release): any request with an ephemeral key. Only a
// machine's may wait for an approval. With hold > 0, a request answered
// pending is held until an approval or a denial of the machine applies
// here, for at most hold and MaxUnlockHold (unlockhold.go), then answered
// again: held says whether it was held.
func (n *Node) MachineUnlock(ctx context.Context, sg *fsm.Signed, addr string, hold time.Duration) (_ *MachineUnlock, held bool, err error) {
	cmd := decodeCommand(sg)
	_, key := labelsOf(cmd)
	defer func(start time.Time) { n.observe(ctx, opUnlock, key, start, err) }(time.Now())
	out, err := n.unlock(ctx, sg, cmd, addr)
	if hold <= 0 || KindOf(err) != KindPendingApproval {
		return out, false, err
	}
	decided, held := n.holdPending(ctx, sg, key, hold)
	if !decided {
		return nil, held, err
	}
	out, err = n.unlock(ctx, sg, cmd, addr)
	return out, true, err
}

// unlock is MachineUnlock, unobserved: Release calls it too. cmd is sg's
// command as its caller decoded it (decodeCommand: nil when sg's payload
// does not parse), for what unlock reads of it before the checks; the
// checks decode and verify sg themselves.
func (n *Node) unlock(ctx context.Context, sg *fsm.Signed, cmd *fsm.Command, addr string) (*MachineUnlock, error) {
	defer n.traceStep(sg, "coordinator: the whole unlock")()
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	if cmd == nil || cmd.Release == nil || len(cmd.Release.Ephemeral) == 0 {
		return nil, Errorf(KindInvalid, "an unlock needs a signed release request with an ephemeral key")
	}
	endVerify := n.traceStep(sg, "coordinator: check locally")
	if err := n.verifyLocally(ctx, sg); err != nil {
		return nil, err
	}
	endVerify()
	call := sealedPartialCall(n)
	// The leader asks the holders while its heartbeat round is in flight,
	// and sends them its read when the round confirms it
	// (partialRequest.ReadFollows): its read stands for theirs, which
	// costs a release less than their own reads would, each another
	// heartbeat round behind a call to this node. A leader whose round
	// fails asks again below, at a read it gets as any node does.
	var early *speculation[SealedPartial]
	if _, leader := n.cons.leader(); leader == n.id.NodeID {
		if out, err, done := n.unlockAhead(ctx, sg, call); done {
			return out, err
		}
	} else {
		endSpeculate := n.traceStep(sg, "coordinator: speculate")
		early = speculate(ctx, n, sg, call)
		endSpeculate()
	}
	defer early.discard()
	for attempt := 0; ; attempt++ {
		var (
			pending   bool // refused until an operator approves
			usable    bool
			lastTried int64
		)
		a, err := n.coordinatorRead(ctx, sg, func(s *fsm.State, _ *authorized, refused *fsm.Error) {
			if refused == nil || refused.Code != fsm.CodePending {
				return
			}
			pending = true
			usable = s.UsableApproval(sg.Signer, cmd.Release.Key)
			if ss := s.Sessions[sg.Signer]; ss != nil {
				lastTried = ss.LastAt
			}
		})
		if pending {
			if usable && attempt == 0 {
				if err := n.spendApproval(ctx, sg, cmd); err == nil {
					continue // read again: the grant is in the log
				}
			}
			n.recordSession(ctx, &fsm.RecordSession{Addr: addr, Release: sg}, sg.Signer, cmd.Release.Key, lastTried)
		}
		if err != nil {
			return nil, err
		}
		return gatherSealed(ctx, n, a, call, early)
	}
}

// unlockAhead is unlock on the leader with its read confirmed during the
// gathering (coordinatorReadAhead). done is false when it could not: this
// node is not a ready leader, its state refuses sg (a pending approval,
// say), or its heartbeat round did not confirm its leadership; the caller
// then reads as any node does. The coordinator records its decision once
// the round has confirmed the read, before anything is returned.
func (n *Node) unlockAhead(ctx context.Context, sg *fsm.Signed, call holderCall[SealedPartial]) (_ *MachineUnlock, _ error, done bool) {
	a, basis, ok := n.coordinatorReadAhead(ctx, sg)
	if !ok {
		return nil, nil, false
	}
	out, err := gatherSealed(ctx, n, a, call, nil)
	if _, rerr := a.readAfter.wait(ctx); rerr != nil {
		if ctx.Err() != nil {
			return nil, rerr, true
		}
		// The round failed. Nothing left a holder: each waits for the
		// read, this one too.
		return nil, nil, false
	}
	if derr := n.decide(roleCoordinator, sg, basis, nil); derr != nil {
		return nil, derr, true
	}
	return out, err, true
}

// gatherSealed gathers the holders' sealed partials for a's read (gather)
// into what the client opens. The coordinator cannot check sealed
// partials: the client does, and asks again if one is wrong.
func gatherSealed(ctx context.Context, n *Node, a *authorized, call holderCall[SealedPartial], early *speculation[SealedPartial]) (*MachineUnlock, error) {
	endGather := n.traceStep(a.request, "coordinator: gather")
	partials, err := gather(ctx, n, a, call, a.partialFor(a.epoch), holdersListed, early, func(own, others []*SealedPartial) ([]SealedPartial, error) {
		var all []SealedPartial
		for _, p := range append(own, others...) {
			all = append(all, *p)
		}
		return all, nil
	})
	endGather()
	if err != nil {
		return nil, err
	}
	sort.Slice(partials, func(i, j int) bool { return partials[i].Index < partials[j].Index })
	return &MachineUnlock{ClusterID: a.clusterID, Key: a.key.Name, Version: a.key.Version, Epoch: a.epoch,
		Threshold: a.threshold, Poly: a.poly, R: a.key.R, Sealed: a.key.Sealed, Partials: partials}, nil
}

// sealedPartialCall asks a holder for its partial sealed to the request's
// ephemeral key.
func sealedPartialCall(n *Node) holderCall[SealedPartial] {
	return holderCall[SealedPartial]{path: "/internal/v1/sealed-partial", local: n.answerSealedPartial,
		index: func(p *SealedPartial) uint32 { return p.Index }}
}

// spendApproval spends one approved use on the machine's request sg (cmd
// decoded): the entry carries sg, which every replica checks.
func (n *Node) spendApproval(ctx context.Context, sg *fsm.Signed, cmd *fsm.Command) error {
	use, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeUseApproval, UseApproval: &fsm.UseApproval{
		Machine: sg.Signer, Key: cmd.Release.Key, Nonce: cmd.Nonce, Request: sg}})
	if err != nil {
		return err
	}
	_, err = n.submit(ctx, use)
	return err
}

// recordSession lists a machine's waiting request, which rs carries, at
// most every sessionEvery per machine. It is best effort: the machine
// asks again.
func (n *Node) recordSession(ctx context.Context, rs *fsm.RecordSession, machine, key string, lastTried int64) {
	if time.Since(time.Unix(0, lastTried)) < sessionEvery {
		return
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeRecordSession, RecordSession: rs})
	if err != nil {
		return
	}
	if _, err := n.submit(ctx, sg); err != nil {
		n.log.Warn("recording a pending session", "machine", machine, "key", key, "err", err)
	}
}

func (n *Node) handleSealedPartial(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req partialRequest
	if err := readPartialRequest(r, &req); err != nil {
		writeRPC(w, nil, err)
		return
	}
	n.traceSince(req.Request, "holder: read the request", start)
	p, err := n.answerSealedPartial(r.Context(), &req)
	defer n.traceStep(req.Request, "holder: write the answer")()
	writeRPC(w, p, err)
}

// answerSealedPartial is a holder's side of a blind release (a machine's
// unlock, an operator's release): the partial sealed to the request's
// ephemeral key, which the holder takes from the request the machine or
// operator signed, not from the coordinator.
func (n *Node) answerSealedPartial(ctx context.Context, req *partialRequest) (*SealedPartial, error) {
	return holderAnswer(ctx, n, req, func(cmd *fsm.Command, key *fsm.Key, rctx []byte, share holderShare) (*SealedPartial, error) {
		eph := cmd.Release.Ephemeral
		if len(eph) == 0 {
			return nil, Errorf(KindInvalid, "a gateway node's release is not answered sealed")
		}
		if cmd.Release.Seal == fsm.SealShare {
			// Share mode: the value alone, sealed with the share; the
			// client's AEAD tag decides (docs/coordinator.md, "Share mode").
			defer n.traceStep(req.Request, "holder: share seal")()
			index, sealed, err := share.sealValue(eph)
			if errors.Is(err, shamir.ErrInvalidPoint) || errors.Is(err, shamir.ErrX25519LowOrder) || errors.Is(err, shamir.ErrX25519Twist) {
				return nil, Errorf(KindInvalid, "sealing to the request's ephemeral key: %v", err)
			}
			if err != nil {
				return nil, err
			}
			return &SealedPartial{Index: index, Node: n.id.NodeID, Sealed: sealed}, nil
		}
		endPartial := n.traceStep(req.Request, "holder: partial")
		p, err := share.partial()
		endPartial()
		if err != nil {
			return nil, err
		}
		defer n.traceStep(req.Request, "holder: seal")()
		plain, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		ct, err := shamir.SealX25519(rand.Reader, eph, fsm.PartialSealInfo(rctx, p.Index), plain)
		if err != nil {
			return nil, Errorf(KindInvalid, "sealing to the request's ephemeral key: %v", err)
		}
		return &SealedPartial{Index: p.Index, Node: n.id.NodeID, R: ct.R, Sealed: ct.Sealed}, nil
	})
}

// Machines lists the registered machines, at a linearizable read.
func (n *Node) Machines(ctx context.Context) ([]*fsm.Machine, error) {
	var out []*fsm.Machine
	err := n.consistent(ctx, func(s *fsm.State) {
		for _, m := range s.Machines {
			c := *m
			out = append(out, &c)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Sessions lists the machines waiting for an approval, at a linearizable
// read.
func (n *Node) Sessions(ctx context.Context) ([]*fsm.Session, error) {
	var out []*fsm.Session
	err := n.consistent(ctx, func(s *fsm.State) {
		for _, ss := range s.Sessions {
			c := *ss
			out = append(out, &c)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].LastAt > out[j].LastAt })
	return out, err
}

// SubmitKey commits a passphrase an operator sealed to a machine's key,
// for the machine to take once (klefki's SubmitKey). sg is the operator's
// signed submit_key command: the node only relays it.
func (n *Node) SubmitKey(ctx context.Context, sg *fsm.Signed) error {
	var cmd struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(sg.Payload, &cmd) != nil || cmd.Type != fsm.TypeSubmitKey {
		return Errorf(KindInvalid, "SubmitKey takes an operator's signed %s command", fsm.TypeSubmitKey)
	}
	_, err := n.submit(ctx, sg)
	return err
}

// TakeSubmittedKey hands a machine the passphrase submitted for it, and
// removes it through the log with the machine's GetKey req: it is
// delivered once. With none submitted, it records the machine as waiting
// (from addr) and answers not_found. It checks req first on this node's
// applied state (fsm.State.VerifyGetKey: a known machine's signature,
// made within fsm.MaxClockSkew of this node's clock) and spends its nonce
// in the node's nonce cache, the one the share holders use, before any
// read index; then again at the read. Every replica checks req again when
// it applies the entry.
func (n *Node) TakeSubmittedKey(ctx context.Context, req *fsm.GetKeyRequest, addr string) ([]byte, error) {
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	now := now()
	verify := func(s *fsm.State) *fsm.Error {
		_, e := s.VerifyGetKey(req, now)
		return e
	}
	if err := errOrNil(n.checkLocally(ctx, verify)); err != nil {
		return nil, err
	}
	if err := n.nonces.use("get-key/"+req.Machine+"/"+hex.EncodeToString(req.Nonce), time.Unix(0, req.SignedAt), now); err != nil {
		return nil, err
	}
	machine := req.Machine
	var k *fsm.SubmittedKey
	var lastTried int64
	var ferr *fsm.Error
	if err := n.consistent(ctx, func(s *fsm.State) {
		if ferr = verify(s); ferr != nil {
			return
		}
		if sk := s.Submitted[machine]; sk != nil {
			c := *sk
			k = &c
		}
		if ss := s.Sessions[machine]; ss != nil {
			lastTried = ss.LastAt
		}
	}); err != nil {
		return nil, err
	}
	if ferr != nil {
		return nil, fromFSM(ferr)
	}
	if k == nil {
		n.recordSession(ctx, &fsm.RecordSession{Addr: addr, GetKey: req}, machine, "", lastTried)
		return nil, Errorf(KindNotFound, "no key has been submitted for machine %s yet: an operator lists it with keyctl session list", machine)
	}
	sum := sha256.Sum256(k.Sealed)
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeDelivered, Delivered: &fsm.Delivered{Machine: machine, SHA256: sum[:], Request: req}})
	if err != nil {
		return nil, err
	}
	// Once the removal may have happened, the machine must get the key:
	// it is sealed to the machine, so a second delivery harms nothing.
	if _, err := n.submit(ctx, sg); err != nil && Definite(err) {
		return nil, err
	}
	return k.Sealed, nil
}
