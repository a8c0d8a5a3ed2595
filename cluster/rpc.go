package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// The node-to-node protocol: JSON requests and answers on the node port,
// in frames of our own (calls.go; HTTP/2 for nodes of an earlier version),
// both sides authenticated by node certificates (see nodeTLS).
//
//	POST /internal/v1/apply      a fsm.Signed, on the leader -> fsm.Result
//	POST /internal/v1/readindex  on the leader -> readIndexReply
//	POST /internal/v1/partial    partialRequest, on a share holder -> shamir.Partial
//	POST /internal/v1/exchange   partialRequest, on a Tang share holder -> shamir.P256Partial
//	POST /internal/v1/rsa-share  partialRequest, on a threshold RSA share holder -> rsaShareAnswer
//	POST /internal/v1/sealed-partial  partialRequest of a machine, on a share holder -> SealedPartial
//	GET  /internal/v1/status     -> nodeStatus
//
// Errors are an Error with the HTTP status of its kind (vocab's one table;
// kindNotLeader, which has no row, answers 500); the caller takes the kind
// from the body, never from the status.

// kindNotLeader tells a caller to find the leader again. It never leaves
// the node-to-node protocol.
const kindNotLeader Kind = "not_leader"

const maxRPCBody = 1 << 20

// statusPath is the one node-to-node call a node that is not a member may
// make (peers.go).
const statusPath = "/internal/v1/status"

func (n *Node) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	n.cons.routes(mux)
	mux.HandleFunc("POST /internal/v1/partial", n.handlePartial)
	mux.HandleFunc("POST /internal/v1/exchange", n.handleExchange)
	mux.HandleFunc("POST /internal/v1/rsa-share", n.handleRSAShare)
	mux.HandleFunc("POST /internal/v1/sealed-partial", n.handleSealedPartial)
	mux.HandleFunc("POST /internal/v1/frost-commit", n.handleFROSTCommit)
	mux.HandleFunc("POST /internal/v1/transit-decrypt", n.handleTransitDecrypt)
	mux.HandleFunc("POST /internal/v1/frost-sign", n.handleFROSTSign)
	mux.HandleFunc("GET "+statusPath, n.handleStatus)
	return mux
}

func writeRPC(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Kind: KindInternal, Message: err.Error()}
		}
		w.WriteHeader(e.Kind.HTTPStatus())
		json.NewEncoder(w).Encode(e)
		return
	}
	json.NewEncoder(w).Encode(v)
}

func readRPC(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRPCBody)).Decode(v); err != nil {
		return Errorf(KindInvalid, "request body: %v", err)
	}
	return nil
}

// readPartialRequest reads a coordinator's partialRequest and notes who
// sent it, and where the leader's read that follows it arrives.
func readPartialRequest(r *http.Request, req *partialRequest) error {
	if err := readRPC(r, req); err != nil {
		return err
	}
	req.from, req.follow = peerNode(r), callFollow(r)
	return nil
}

// peerNode is the node ID in the certificate of a node-to-node request's
// connection (membersOnly checked that it is a current member's), or "".
func peerNode(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	role, id, err := CertRole(r.TLS.PeerCertificates[0])
	if err != nil || role != RoleNode {
		return ""
	}
	return id
}

// routes serves the consensus's node-to-node calls on mux.
func (c *consensus) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /internal/v1/apply", c.handleApply)
	mux.HandleFunc("POST /internal/v1/readindex", c.handleReadIndex)
}

func (c *consensus) handleApply(w http.ResponseWriter, r *http.Request) {
	run, err := c.running()
	if err != nil {
		writeRPC(w, nil, err)
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRPCBody))
	if err != nil {
		writeRPC(w, nil, Errorf(KindInvalid, "request body: %v", err))
		return
	}
	if run.raft.State() != raft.Leader {
		writeRPC(w, nil, Errorf(kindNotLeader, "node %s is not the leader", c.nodeID))
		return
	}
	f := run.raft.Apply(data, time.Until(deadline(r.Context())))
	if err := f.Error(); err != nil {
		if notTaken(err) {
			writeRPC(w, nil, Errorf(kindNotLeader, "node %s: %v", c.nodeID, err))
			return
		}
		writeRPC(w, nil, Errorf(KindUnknownOutcome, "node %s: %v", c.nodeID, err))
		return
	}
	writeRPC(w, f.Response(), nil)
}

type readIndexReply struct {
	Index uint64 `json:"index"`
	Chain []byte `json:"chain,omitempty"` // the leader's chain hash at Index (chain.go)
}

func (c *consensus) handleReadIndex(w http.ResponseWriter, r *http.Request) {
	m, err := c.leaderReadIndex()
	writeRPC(w, readIndexReply{Index: m.Index, Chain: m.Hash}, err)
}

// call posts a JSON body to a peer's node port and decodes the answer.
// sent reports whether the request may have reached the peer.
func (c *consensus) call(ctx context.Context, addr, path string, body, out any) (sent bool, err error) {
	run, err := c.running()
	if err != nil {
		return false, err
	}
	return c.callWith(ctx, run, addr, path, body, out)
}

func (c *consensus) callWith(ctx context.Context, run *raftRun, addr, path string, body, out any) (sent bool, err error) {
	return c.callOn(ctx, run, addr, path, body, nil, out)
}

// callFollowed is call with fw's body sent after the request, on the same
// call (a follow frame, calls.go). A peer that takes no follow frames gets
// nothing, and the error is errNoFollow.
func (c *consensus) callFollowed(ctx context.Context, addr, path string, body any, fw *follow, out any) (sent bool, err error) {
	run, err := c.running()
	if err != nil {
		return false, err
	}
	return c.callOn(ctx, run, addr, path, body, fw, out)
}

func (c *consensus) callOn(ctx context.Context, run *raftRun, addr, path string, body any, fw *follow, out any) (sent bool, err error) {
	method, b := http.MethodGet, []byte(nil)
	if body != nil {
		method = http.MethodPost
		if b, err = json.Marshal(body); err != nil {
			return false, err
		}
	}
	// A connection found ended is replaced once: the peer may have
	// restarted since the last call.
	for attempt := 0; ; attempt++ {
		cc, legacy, err := run.calls.conn(ctx, addr)
		if err != nil {
			var op *net.OpError
			dialFailed := errors.As(err, &op) && op.Op == "dial"
			return !dialFailed, fmt.Errorf("calling %s: %w", addr, err)
		}
		if legacy {
			if fw != nil {
				return false, errNoFollow
			}
			return c.callHTTP2(ctx, run, addr, method, path, b, out)
		}
		status, answer, err := cc.call(ctx, method, path, b, fw)
		if errors.Is(err, errCallNotSent) && attempt == 0 {
			continue
		}
		if errors.Is(err, errNoFollow) {
			return false, err
		}
		if err != nil {
			return !errors.Is(err, errCallNotSent), fmt.Errorf("calling %s: %w", addr, err)
		}
		return true, readReply(addr, status, answer, out)
	}
}

// callHTTP2 is callWith to a peer of an earlier version, which takes the
// node-to-node calls over HTTP/2 only.
func (c *consensus) callHTTP2(ctx context.Context, run *raftRun, addr, method, path string, body []byte, out any) (sent bool, err error) {
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := run.calls.legacy.Do(req)
	if err != nil {
		var op *net.OpError
		dialFailed := errors.As(err, &op) && op.Op == "dial"
		return !dialFailed, fmt.Errorf("calling %s: %w", addr, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxRPCBody))
	if err != nil {
		return true, fmt.Errorf("calling %s: reply: %w", addr, err)
	}
	return true, readReply(addr, resp.StatusCode, answer, out)
}

// readReply decodes a peer's answer into out, or the error it answered:
// its kind is the body's, whatever the status.
func readReply(addr string, status int, answer []byte, out any) error {
	if status != http.StatusOK {
		var e Error
		if err := json.Unmarshal(answer, &e); err != nil || e.Kind == "" {
			return fmt.Errorf("calling %s: status %d %s", addr, status, http.StatusText(status))
		}
		return &e
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("calling %s: reply: %w", addr, err)
	}
	return nil
}

// tlsConnListener lets http.Server see the *tls.Conn the port mux
// accepted, so it serves HTTP/2 on it.
type tlsConnListener struct{ *chanListener }
