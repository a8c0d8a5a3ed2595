package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/gateway/tlv"
)

// tlvRows measures signatures per second through node 1's Keyless SSL
// gateway with assembled keys (released once by quorum, then kept for
// their assemble_ttl) and with an rsa-threshold key (every signature by a
// quorum of the three nodes), next to the bare crypto/ecdsa and crypto/rsa
// rate of one core. Client and nodes share this machine's cores.
func tlvRows(ctx context.Context, c *client.Client, tlvAddr, caFile, certFile, keyFile string, conns, inflight int, window time.Duration) ([]row, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pemCA, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	conf := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool}

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte("bench"))
	var rows []row
	for _, k := range []struct {
		name   string
		priv   crypto.Signer
		op     tlv.Op
		target string
	}{
		{"ECDSA P-256", ec, tlv.OpECDSASignSHA256, ""},
		{"RSA-2048", rk, tlv.OpRSASignSHA256, ""},
	} {
		der, err := x509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			return nil, err
		}
		pub, err := x509.MarshalPKIXPublicKey(k.priv.Public())
		if err != nil {
			return nil, err
		}
		typ := fsm.KeyTypeECDSA
		if k.op == tlv.OpRSASignSHA256 {
			typ = fsm.KeyTypeRSA
		}
		ck := &fsm.CreateKey{Name: "bench/tlv-" + typ, Type: typ, Public: pub, AssembleTTL: 10 * time.Minute,
			Access: &fsm.Access{Gateways: []string{fsm.GatewayTLV}, ClientCerts: [][]byte{pair.Certificate[0]}}}
		if _, err := c.CreateSealed(ctx, ck, der); err != nil {
			return nil, err
		}
		ski, err := tlv.SKI(k.priv.Public())
		if err != nil {
			return nil, err
		}
		bare := testing.Benchmark(func(b *testing.B) {
			for range b.N {
				k.priv.Sign(rand.Reader, digest[:], crypto.SHA256)
			}
		})
		bareRate := 1e9 / float64(bare.NsPerOp())
		n, errs, err := tlvLoad(ctx, tlvAddr, conf, conns, inflight, window, &tlv.Request{Op: k.op, SKI: ski, Payload: digest[:]})
		if err != nil {
			return nil, err
		}
		rate := float64(n) / window.Seconds()
		rows = append(rows,
			row{fmt.Sprintf("bare: %s signatures per second, one core", k.name), fmt.Sprintf("%.0f", bareRate), "-"},
			row{fmt.Sprintf("TLV %s signatures per second (%d connections x %d in flight, %d errors)", k.name, conns, inflight, errs),
				fmt.Sprintf("%.0f (%.0f%% of bare per core)", rate, 100*rate/bareRate), ">= 60% of bare per core"})
		if k.op != tlv.OpRSASignSHA256 {
			continue
		}
		// The same RSA key, imported again as an rsa-threshold key: no
		// node holds it, each signature is t shares and a combination.
		access := &fsm.Access{Gateways: []string{fsm.GatewayTLV}, ClientCerts: [][]byte{pair.Certificate[0]}}
		tk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		if _, err := c.CreateThresholdRSA(ctx, "bench/tlv-rsa-threshold", tk, access); err != nil {
			return nil, err
		}
		tski, err := tlv.SKI(&tk.PublicKey)
		if err != nil {
			return nil, err
		}
		n, errs, err = tlvLoad(ctx, tlvAddr, conf, conns, inflight, window, &tlv.Request{Op: k.op, SKI: tski, Payload: digest[:]})
		if err != nil {
			return nil, err
		}
		rate = float64(n) / window.Seconds()
		rows = append(rows, row{fmt.Sprintf("TLV threshold %s signatures per second, by quorum (%d connections x %d in flight, %d errors)", k.name, conns, inflight, errs),
			fmt.Sprintf("%.0f (%.1f%% of bare per core)", rate, 100*rate/bareRate), "-"})
	}
	return rows, nil
}

// tlvLoad keeps inflight requests pipelined on each of conns connections
// for the window and counts the answers.
func tlvLoad(ctx context.Context, addr string, conf *tls.Config, conns, inflight int, window time.Duration, req *tlv.Request) (ok, errs int64, err error) {
	var cs []*tlv.Conn
	for range conns {
		c, err := tlv.Dial(ctx, addr, conf.Clone())
		if err != nil {
			return 0, 0, err
		}
		defer c.Close()
		// The first request releases the key by quorum; the window
		// measures the signatures after it. The gateway finds a new key
		// once its node has applied it and its index is rebuilt (at most
		// every second): until then it answers key not found.
		for try := 0; ; try++ {
			_, err := c.Do(ctx, req)
			if err == nil {
				break
			}
			if try == 20 || !strings.Contains(err.Error(), "not found") {
				return 0, 0, fmt.Errorf("first TLV request: %w", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		cs = append(cs, c)
	}
	var okN, errN atomic.Int64
	deadline := time.Now().Add(window)
	var wg sync.WaitGroup
	for _, c := range cs {
		for range inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := *req
				for time.Now().Before(deadline) {
					if _, err := c.Do(ctx, &r); err != nil {
						errN.Add(1)
					} else {
						okN.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	return okN.Load(), errN.Load(), nil
}
