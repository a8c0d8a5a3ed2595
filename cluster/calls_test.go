package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzCallFrame feeds arbitrary bytes to the node call protocol's frame
// reader and parser (calls.go), as a peer's connection carries them: they
// must refuse or parse, never panic, and what they parse encodes back to
// the same frame.
func FuzzCallFrame(f *testing.F) {
	req, _ := requestFrame(7, http.MethodPost, "/internal/v1/partial", []byte(`{"read_index":3}`))
	f.Add(req)
	status, _ := requestFrame(1, http.MethodGet, statusPath, nil)
	f.Add(status)
	f.Add(finishFrame(appendFrameHead(nil, frameCancel, 7)))
	f.Add(finishFrame(append(appendFrameHead(nil, frameFollow, 7), (&leaderRead{Index: 9, Chain: make([]byte, 32)}).appendFollowed(nil)...)))
	f.Add(finishFrame(append(appendFrameHead(nil, frameAnswer, 7), 0, 200, '{', '}')))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 1, 'P', 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := readCallFrame(bufio.NewReader(bytes.NewReader(data)), nil)
		if err != nil {
			return
		}
		fr, err := parseCallFrame(b)
		if err != nil {
			return
		}
		var again []byte
		switch fr.kind {
		case frameRequest:
			if again, err = requestFrame(fr.id, fr.method, fr.path, fr.body); err != nil {
				t.Fatalf("a parsed request does not encode: %v", err)
			}
		case frameCancel:
			again = finishFrame(appendFrameHead(nil, frameCancel, fr.id))
		case frameFollow:
			again = finishFrame(append(appendFrameHead(nil, frameFollow, fr.id), fr.body...))
		case frameAnswer:
			h := appendFrameHead(nil, frameAnswer, fr.id)
			again = finishFrame(append(binary.BigEndian.AppendUint16(h, uint16(fr.status)), fr.body...))
		}
		if !bytes.Equal(again[4:], b) {
			t.Fatalf("frame %x parsed as %+v encodes as %x", b, fr, again[4:])
		}
	})
}

// FuzzFollowedRead feeds arbitrary bytes to the parser of a leader's read
// that follows its request (parseFollowedRead), as a follow frame's body
// carries them: it must refuse or parse, never panic, and what it parses
// encodes back to the same bytes.
func FuzzFollowedRead(f *testing.F) {
	f.Add((&leaderRead{Index: 9, Chain: make([]byte, 32)}).appendFollowed(nil))
	f.Add((&leaderRead{Index: 1}).appendFollowed(nil))
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, 8+maxChainHash+1))
	f.Fuzz(func(t *testing.T, data []byte) {
		lr, err := parseFollowedRead(data)
		if err != nil {
			return
		}
		if again := lr.appendFollowed(nil); !bytes.Equal(again, data) {
			t.Fatalf("%x parsed as %+v encodes as %x", data, lr, again)
		}
	})
}

// TestCallFrameLimits: a frame longer than a body and a path allow is
// refused from its length, before its bytes are read, and a request of a
// method other than GET and POST, or with a path that is not absolute, is
// refused.
func TestCallFrameLimits(t *testing.T) {
	t.Parallel()
	var huge [4]byte
	binary.BigEndian.PutUint32(huge[:], maxCallFrame+1)
	if _, err := readCallFrame(bufio.NewReader(bytes.NewReader(huge[:])), nil); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("a frame of %d bytes: %v, want refused for its length", maxCallFrame+1, err)
	}
	if _, err := requestFrame(1, http.MethodPost, "/internal/v1/partial", make([]byte, maxRPCBody+1)); err == nil {
		t.Errorf("a request body past maxRPCBody was framed")
	}
	for name, payload := range map[string][]byte{
		"method DELETE":     append([]byte{'D', 0, 1}, '/'),
		"a relative path":   append([]byte{'P', 0, 1}, 'x'),
		"an empty path":     {'P', 0, 0},
		"a path past bytes": {'P', 0, 9, '/'},
	} {
		b := append([]byte{frameRequest, 0, 0, 0, 0, 0, 0, 0, 1}, payload...)
		if fr, err := parseCallFrame(b); err == nil {
			t.Errorf("%s: parsed as %+v", name, fr)
		}
	}
}

// nodePortCall makes one call on the node port at target over the node
// call protocol (alpnCall), presenting cert, and returns the answer's
// status and body.
func nodePortCall(target string, cert tls.Certificate, method, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c, err := dialTLS(ctx, tcpNetwork{}, target, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true, NextProtos: []string{alpnCall}})
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	cc := &clientConn{c: c, pending: map[uint64]chan callFrame{}}
	go cc.readAnswers()
	return cc.call(ctx, method, path, body, nil)
}

// TestNodeCallsOnOneConnection: calls made at once on one connection each
// get their own answer, a call whose caller gives up is cancelled on the
// answering node, and a handler's panic ends the connection, not the node.
func TestNodeCallsOnOneConnection(t *testing.T) {
	t.Parallel()
	cert := selfSignedNodeCert(t)
	cancelled := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		w.Write(b.Bytes())
	})
	mux.HandleFunc("POST /panic", func(w http.ResponseWriter, r *http.Request) { panic("a handler's bug") })
	mux.HandleFunc("POST /hang", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(cancelled)
	})
	client, server := callPair(t, cert, mux, alpnCall)
	defer server.close()
	done := make(chan error, 50)
	for i := range 50 {
		go func() {
			want := []byte{byte(i), 'x'}
			status, got, err := client.call(context.Background(), http.MethodPost, "/echo", want, nil)
			switch {
			case err != nil:
				done <- err
			case status != http.StatusOK || !bytes.Equal(got, want):
				done <- &Error{Kind: KindInternal, Message: "call " + string(want) + " answered " + string(got)}
			default:
				done <- nil
			}
		}()
	}
	for range 50 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := client.call(ctx, http.MethodPost, "/hang", nil, nil); err == nil {
		t.Fatal("a call past its caller's deadline answered")
	}
	select {
	case <-cancelled:
	case <-time.After(opTimeout):
		t.Fatal("the answering node's call was not cancelled when its caller gave up")
	}
	// A handler that panics ends its connection, not the node.
	if _, _, err := client.call(context.Background(), http.MethodPost, "/panic", nil, nil); err == nil {
		t.Fatal("a call whose handler panicked answered")
	}
}

// callPair is a callServer with handler and a clientConn to it, over
// loopback TLS with cert on both ends, speaking proto (alpnCallFollow or
// alpnCall).
func callPair(t *testing.T, cert tls.Certificate, handler http.Handler, proto string) (*clientConn, *callServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert, NextProtos: []string{proto}}
	s := &callServer{handler: handler, log: slog.New(slog.DiscardHandler)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		s.serveConn(tc)
	}()
	c, err := dialTLS(context.Background(), tcpNetwork{}, ln.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{alpnCallFollow, alpnCall}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cc := &clientConn{c: c, follows: c.ConnectionState().NegotiatedProtocol == alpnCallFollow, pending: map[uint64]chan callFrame{}}
	go cc.readAnswers()
	return cc, s
}

// TestACallsFollowReachesItsHandler: on a connection of version 2 a
// caller's follow frame reaches the handler of its own call, which may wait
// for it; calls waiting for their follows do not hold the connection's
// places (maxCallsInFlight): here more of them than that wait until every
// one has arrived, then their follows are sent; a follow whose body fails
// cancels the call instead; a peer of version 1 is sent no follow (it
// would end the connection at the frame): the call is refused as
// errNoFollow before anything is sent.
func TestACallsFollowReachesItsHandler(t *testing.T) {
	t.Parallel()
	cert := selfSignedNodeCert(t)
	const calls = maxCallsInFlight + 20
	var arrived atomic.Int32
	gate := make(chan struct{})
	cancelled := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /follow", func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == calls {
			close(gate)
		}
		b, err := callFollow(r)(r.Context())
		if err != nil {
			close(cancelled)
			return
		}
		w.Write(b)
	})
	client, server := callPair(t, cert, mux, alpnCallFollow)
	defer server.close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	done := make(chan error, calls)
	for i := range calls {
		go func() {
			want := []byte{byte(i), byte(i >> 8), 'f'}
			fw := &follow{ready: gate, body: func() ([]byte, error) { return want, nil }}
			status, got, err := client.call(ctx, http.MethodPost, "/follow", nil, fw)
			switch {
			case err != nil:
				done <- err
			case status != http.StatusOK || !bytes.Equal(got, want):
				done <- &Error{Kind: KindInternal, Message: "call " + string(want) + " answered " + string(got)}
			default:
				done <- nil
			}
		}()
	}
	for range calls {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	ready := make(chan struct{})
	close(ready)
	failed := &follow{ready: ready, body: func() ([]byte, error) { return nil, errors.New("the round failed") }}
	arrived.Store(-1 << 20) // the gate is closed already
	if _, _, err := client.call(context.Background(), http.MethodPost, "/follow", nil, failed); err == nil {
		t.Fatal("a call whose follow failed answered")
	}
	select {
	case <-cancelled:
	case <-time.After(opTimeout):
		t.Fatal("the answering node's call was not cancelled when its follow failed")
	}

	old, oldServer := callPair(t, cert, mux, alpnCall)
	defer oldServer.close()
	if _, _, err := old.call(context.Background(), http.MethodPost, "/follow", nil, failed); !errors.Is(err, errNoFollow) {
		t.Fatalf("a call with a follow to a peer of version 1: %v, want %v", err, errNoFollow)
	}
}

// selfSignedNodeCert is a throwaway certificate for a bare call server and
// client, which check no certificate themselves (the node's handler does).
func selfSignedNodeCert(t *testing.T) tls.Certificate {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}, &x509.Certificate{SerialNumber: big.NewInt(1)}, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestNodeCallsReachAPeerOfAnEarlierVersion: a peer that takes the
// node-to-node calls over HTTP/2 only (a node of an earlier version, during
// a rolling upgrade) refuses the node call protocol in the TLS handshake,
// and is called over HTTP/2 instead, never with a follow.
func TestNodeCallsReachAPeerOfAnEarlierVersion(t *testing.T) {
	t.Parallel()
	cert := selfSignedNodeCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /internal/v1/readindex", func(w http.ResponseWriter, r *http.Request) {
		writeRPC(w, readIndexReply{Index: 7}, nil)
	})
	srv := &http.Server{Handler: mux, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError), TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAnyClientCert, NextProtos: []string{alpnRaft, alpnRPC}}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	client := func(proto string) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{proto}}
	}
	run := &raftRun{calls: &callClient{network: tcpNetwork{}, tls: client(alpnCall), legacy: &http.Client{Transport: &http.Transport{
		TLSClientConfig: client(alpnRPC), ForceAttemptHTTP2: true}}}}
	defer run.calls.close()
	var c consensus
	for range 2 {
		var got readIndexReply
		if _, err := c.callWith(context.Background(), run, ln.Addr().String(), "/internal/v1/readindex", struct{}{}, &got); err != nil || got.Index != 7 {
			t.Fatalf("a call to an HTTP/2-only peer: %+v, %v", got, err)
		}
	}
	// A call with a follow is not sent to it (HTTP/2 has no follow): the
	// caller asks again without one (callHolder).
	fw := &follow{ready: make(chan struct{}), body: func() ([]byte, error) { return nil, nil }}
	var got readIndexReply
	if sent, err := c.callOn(context.Background(), run, ln.Addr().String(), "/internal/v1/readindex", struct{}{}, fw, &got); sent || !errors.Is(err, errNoFollow) {
		t.Fatalf("a call with a follow to an HTTP/2-only peer: sent %v, %v; want %v", sent, err, errNoFollow)
	}
}
