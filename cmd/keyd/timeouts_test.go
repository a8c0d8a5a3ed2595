package main

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/gateway/https"
)

// TestHTTPListenersDropSilentClients: keyd's API and kxd listeners
// disconnect a client that opens a connection and sends nothing, and one
// that sends half a request, with the timeouts keyd gives them.
func TestHTTPListenersDropSilentClients(t *testing.T) {
	ports, err := cluster.FreeLoopbackPorts(4)
	if err != nil {
		t.Fatal(err)
	}
	to := https.DefaultTimeouts(time.Second)
	to.ReadHeader = time.Second
	r, err := startNode(nodeFlags{
		id: "n1", dataDir: filepath.Join(t.TempDir(), "n1"), requestTimeout: time.Second,
		apiAddr: ports[0], raftAddr: ports[1], gossipAddr: ports[2],
		gateways: gatewayFlags{kxdAddr: ports[3]},
		timeouts: &to,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer r.shutdown()
	client := selfSignedClient(t)
	for name, addr := range map[string]string{"api": ports[0], "kxd": ports[3]} {
		t.Run(name+"/silent", func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitClosedByServer(t, c)
		})
		t.Run(name+"/half request", func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{client}, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "GET /v1/a HTTP/1.1\r\nHost: n1\r\n"); err != nil {
				t.Fatal(err)
			}
			waitClosedByServer(t, c)
		})
	}
}

// waitClosedByServer reads c until the server closes it. The deadline is
// a safety net against a hang: reaching it means the server kept the
// connection, which fails the test.
func waitClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server kept the connection open")
	}
}

// selfSignedClient is a client certificate, for kxd's handshake, which
// asks for one.
func selfSignedClient(t *testing.T) tls.Certificate {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(nil)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
