package cluster

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
)

// TestNodePortSpeaksBothHTTPVersions: nodes call each other over HTTP/1.1
// (alpnRPC1), and a node still answers a peer that offers HTTP/2 alone. A
// node of an earlier version offers both and its node port answers HTTP/2
// alone, so the two speak HTTP/1.1 one way and HTTP/2 the other.
func TestNodePortSpeaksBothHTTPVersions(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 1)
	target := c.nodes[0].cfg.RaftAddr
	member := c.nodes[0].n.cons.current().tls.cert
	for proto, major := range map[string]int{alpnRPC: 2, alpnRPC1: 1} {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{member},
			InsecureSkipVerify: true, NextProtos: []string{proto}}
		hc := &http.Client{Timeout: opTimeout, Transport: &http.Transport{
			// A transport that may do HTTP/2 adds both protocols to its
			// configuration: the dial offers exactly proto.
			TLSClientConfig: cfg.Clone(),
			DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
			},
			ForceAttemptHTTP2: true}}
		resp, err := hc.Get("https://" + target + statusPath)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != major {
			t.Errorf("%s: %s over HTTP/%d (ALPN %q), want 200 over HTTP/%d", proto, resp.Status, resp.ProtoMajor, resp.TLS.NegotiatedProtocol, major)
		}
		hc.CloseIdleConnections()
	}
	rpcTLS := c.nodes[0].n.cons.current().rpcClient.Transport.(*http.Transport).TLSClientConfig
	if len(rpcTLS.NextProtos) == 0 || rpcTLS.NextProtos[0] != alpnRPC1 {
		t.Errorf("a node asks for %q first, want %q", rpcTLS.NextProtos, alpnRPC1)
	}
}
