package cluster

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestRaftCallBeforeRaftRunsIsHeld: a restarted node opens its node port
// before Raft restores its snapshot (consensus.start), and the leader's
// AppendEntries that comes meanwhile is neither refused nor failed: the
// port's TLS and membership checks pass it to Raft's transport, which
// holds it until Raft answers. So the restore costs the leader no failed
// call, and no step of hashicorp/raft's backoff toward the follower
// (docs/scale.md "Restarting a node").
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
	mux, err := newPortMux(tcpNetwork{}, f.cfg.RaftAddr, nt, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer mux.close()
	advertise, err := net.ResolveTCPAddr("tcp", f.cfg.RaftAddr)
	if err != nil {
		t.Fatal(err)
	}
	held := raft.NewNetworkTransport(&streamLayer{chanListener: mux.raft, tls: nt, network: tcpNetwork{}, advertise: advertise}, 1, 2*time.Second, io.Discard)
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

	var rpc raft.RPC
	select {
	case rpc = <-held.Consumer():
	case a := <-done:
		t.Fatalf("the leader's call returned before the follower's Raft took it: %v", a.err)
	case <-time.After(opTimeout):
		t.Fatal("the leader's call never reached the follower's transport")
	}
	got, ok := rpc.Command.(*raft.AppendEntriesRequest)
	if !ok || got.LeaderCommitIndex != 42 {
		t.Fatalf("the follower's transport holds %T %+v, not the leader's AppendEntries", rpc.Command, rpc.Command)
	}
	select {
	case a := <-done:
		t.Fatalf("the leader's call returned before the follower answered it: %v", a.err)
	default:
	}
	rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true, LastLog: 42}, nil)
	a := <-done
	if a.err != nil || !a.resp.Success || a.resp.LastLog != 42 {
		t.Fatalf("the leader's call, answered once Raft runs: %+v, %v", a.resp, a.err)
	}
}
