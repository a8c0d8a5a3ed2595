package cluster

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/hashicorp/raft"
)

// TestRaftCallBeforeRaftRunsIsHeld: a restarted node opens its node port
// before Raft restores its snapshot (consensus.start), and the leader's
// AppendEntries that comes meanwhile is neither refused nor left to time
// out: the port's TLS and membership checks pass it to the term guard,
// which holds it for half the call timeout and then answers notStarted,
// the answer on which the leader's transport asks again rather than count
// a failure (TestLateRaftCostsTheLeaderNoFailedCall; docs/scale.md "The
// leader's backoff").
func TestRaftCallBeforeRaftRunsIsHeld(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	l := c.leader()
	var f *testNode
	for _, tn := range c.members() {
		if tn != l {
			f = tn
			break
		}
	}
	c.stop(f)

	// The follower's port as consensus.start opens it, with its own
	// credentials and the cluster's membership, and Raft's transport on
	// it; no Raft reads the transport yet, as during a restore.
	own := stealCreds(t, f.cfg.DataDir)
	nt, err := newNodeTLS(&own.m, &own.id)
	if err != nil {
		t.Fatal(err)
	}
	nt.member = l.n.isMember
	mux, err := listenNodePort(tcpNetwork{}, f.cfg.RaftAddr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer mux.close()
	routes := mux.open(nt)
	advertise, err := net.ResolveTCPAddr("tcp", f.cfg.RaftAddr)
	if err != nil {
		t.Fatal(err)
	}
	held := newTermGuard(raft.NewNetworkTransport(&streamLayer{chanListener: routes.raft, tls: nt, network: tcpNetwork{}, advertise: advertise}, 1, raftCallTimeout, io.Discard),
		raftCallTimeout, raft.NewInmemStore(), f.cfg.HeartbeatTimeout, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer held.Close()

	// The leader's call, with the leader's credentials.
	leader := stealCreds(t, l.cfg.DataDir).raftTransport(t)
	type answer struct {
		resp raft.AppendEntriesResponse
		err  error
	}
	done := make(chan answer, 1)
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte(l.id()), Addr: []byte(l.cfg.RaftAddr)}, Term: 7, LeaderCommitIndex: 42}
	go func() {
		var a answer
		a.err = leader.AppendEntries(raft.ServerID(f.id()), raft.ServerAddress(f.cfg.RaftAddr), req, &a.resp)
		done <- a
	}()

	a := <-done
	if a.err == nil || a.err.Error() != notStarted {
		t.Fatalf("the leader's call to a port whose Raft has not started: %+v, %v; want the answer %q", a.resp, a.err, notStarted)
	}
}
