package cluster

import (
	"context"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// Requests whose signer authenticates them (a machine's unlock or GetKey,
// an operator's certificate and signed release) are checked first against
// this node's applied state: a signer it does not know, or a signature
// that does not verify, is refused before the node asks the leader for a
// read index or any other node for anything, so a flood of such requests
// costs the cluster nothing. A signer this node knows goes on to the
// linearizable path, which checks again at the read.

// localCatchUp bounds how long a node waits, asking no one, to apply the
// entries it knows are committed before it refuses a signer its state
// does not know (one added a moment ago, that it is about to apply).
const localCatchUp = 100 * time.Millisecond

// checkLocally runs check on this node's applied state. A refusal for a
// bad signature (an unknown signer included) is final once this node has
// applied what it knew to be committed, or after localCatchUp.
//
// A node whose state is empty (restarted with no snapshot, before a leader
// has replayed its log to it) knows no signer yet and decides nothing
// here: the request goes on to the linearizable path, which answers no
// quorum while the node hears no leader.
func (n *Node) checkLocally(ctx context.Context, check func(*fsm.State) *fsm.Error) *fsm.Error {
	var e *fsm.Error
	read := func() bool {
		n.fsm.Read(func(s *fsm.State) {
			if !s.Initialized() {
				e = nil
				return
			}
			e = check(s)
		})
		return e == nil || e.Code != fsm.CodeBadSignature
	}
	if read() {
		return e
	}
	if n.runtime() == nil {
		return e
	}
	commit := n.commitIndex()
	timer := time.NewTimer(localCatchUp)
	defer timer.Stop()
	for {
		applied, changed := n.watch()
		if applied >= commit {
			read()
			return e
		}
		select {
		case <-changed:
			if read() {
				return e
			}
		case <-timer.C:
			read()
			return e
		case <-ctx.Done():
			return e
		}
	}
}

// verifyLocally checks a signed release request's signer and signature on
// this node's applied state (fsm.State.VerifyRelease), before any read
// index.
func (n *Node) verifyLocally(ctx context.Context, sg *fsm.Signed) error {
	if _, err := n.joined(); err != nil {
		return err
	}
	now := now()
	return errOrNil(n.checkLocally(ctx, func(s *fsm.State) *fsm.Error {
		return verifyRequest(s, sg, now, callerOf(ctx))
	}))
}

// errOrNil keeps a nil *fsm.Error from becoming a non-nil error.
func errOrNil(e *fsm.Error) error {
	if e == nil {
		return nil
	}
	return fromFSM(e)
}

// LocalMachine is the machine whose klefki ID is klefkiID in this node's
// applied state, or nil: the gRPC gateway names a machine by it.
func (n *Node) LocalMachine(klefkiID string) *fsm.Machine {
	var m *fsm.Machine
	n.fsm.Read(func(s *fsm.State) {
		if found := s.MachineByKlefkiID(klefkiID); found != nil {
			c := *found
			m = &c
		}
	})
	return m
}
