package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/quic-go/quic-go"

	"github.com/keyquorum/keyquorum/cluster"
	grpcgw "github.com/keyquorum/keyquorum/gateway/grpc"
	"github.com/keyquorum/keyquorum/gateway/tlv"
)

// startTLVAndGRPC starts the Keyless SSL and gRPC gateways when their
// addresses are set, each over TCP and, with --quic, over QUIC on the same
// port number.
func startTLVAndGRPC(n *cluster.Node, g gatewayFlags, log *slog.Logger) ([]gateway, error) {
	var out []gateway
	cert := n.ServingCert()
	if g.tlvAddr != "" {
		clientCAs, err := tlvClientCAs(n, g.tlvClientCA)
		if err != nil {
			return out, err
		}
		var opts []tlv.Option
		if g.tlvRSADecrypt == "padded" { // checked when parsed (rsaDecryptFlag)
			opts = append(opts, tlv.WithPaddedRSADecrypt())
		}
		keys := tlv.NewClusterKeys(n)
		srv := tlv.NewServer(keys, log, opts...)
		tc := tlsPerClient(tlv.ServerTLSConfig, cert, clientCAs)
		ln, err := net.Listen("tcp", g.tlvAddr)
		if err != nil {
			return out, fmt.Errorf("TLV on %s: %w", g.tlvAddr, err)
		}
		go func() {
			if err := srv.Serve(tls.NewListener(n.Metrics().CountConnections(ln, "tlv"), tc)); err != nil {
				log.Error("TLV server", "err", err)
			}
		}()
		out = append(out, gateway{name: "tlv", shutdown: func(ctx context.Context) error {
			defer keys.Close() // drop the assembled keys held in memory
			return srv.Shutdown(ctx)
		}})
		if g.quic {
			qc := tlsPerClient(tlv.ServerQUICConfig, cert, clientCAs)
			ql, err := quic.ListenAddr(g.tlvAddr, qc, srv.QUICConfig())
			if err != nil {
				return out, fmt.Errorf("TLV over QUIC on %s: %w", g.tlvAddr, err)
			}
			go func() {
				if err := srv.ServeQUIC(ql); err != nil {
					log.Error("TLV QUIC server", "err", err)
				}
			}()
			out = append(out, gateway{name: "tlv-quic", shutdown: func(context.Context) error { return ql.Close() }})
		}
	}
	if g.grpcAddr != "" {
		srv := grpcgw.NewServer(n, grpcMachines(n), log, grpcgw.WithMetrics(n.Metrics()))
		base := &tls.Config{GetCertificate: cert.GetCertificate}
		ln, err := net.Listen("tcp", g.grpcAddr)
		if err != nil {
			return out, fmt.Errorf("gRPC on %s: %w", g.grpcAddr, err)
		}
		go func() {
			if err := srv.Serve(tls.NewListener(ln, grpcgw.ServerTLSConfig(base, grpcgw.ALPN))); err != nil {
				log.Error("gRPC server", "err", err)
			}
		}()
		out = append(out, gateway{name: "grpc", shutdown: srv.Shutdown})
		if g.quic {
			ql, err := quic.ListenAddr(g.grpcAddr, grpcgw.ServerTLSConfig(base, grpcgw.ALPNQUIC), srv.QUICConfig())
			if err != nil {
				return out, fmt.Errorf("gRPC over QUIC on %s: %w", g.grpcAddr, err)
			}
			go func() {
				if err := srv.ServeQUIC(ql); err != nil {
					log.Error("gRPC QUIC server", "err", err)
				}
			}()
			out = append(out, gateway{name: "grpc-quic", shutdown: func(context.Context) error { return ql.Close() }})
		}
	}
	return out, nil
}

// tlvClientCAs returns the pool of CAs whose certificates keyless clients
// present: the file's, or else the cluster CA, once the node has joined.
func tlvClientCAs(n *cluster.Node, file string) (func() (*x509.CertPool, error), error) {
	if file != "" {
		pemCA, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--tlv-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemCA) {
			return nil, fmt.Errorf("--tlv-client-ca %s holds no PEM certificate", file)
		}
		return func() (*x509.CertPool, error) { return pool, nil }, nil
	}
	return func() (*x509.CertPool, error) {
		ca, _ := n.Membership()
		pool := x509.NewCertPool()
		if ca == nil || !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("the node has not joined a cluster: no client CA yet")
		}
		return pool, nil
	}, nil
}

// tlsPerClient makes a gateway's TLS configuration (tlv.ServerTLSConfig
// or ServerQUICConfig) per handshake, with the node's certificate and the
// client CAs of the moment. NextProtos is set outside too: QUIC reads it
// before any handshake.
func tlsPerClient(gateway func(base *tls.Config) *tls.Config, cert *cluster.ServingCert, clientCAs func() (*x509.CertPool, error)) *tls.Config {
	return &tls.Config{
		NextProtos: gateway(&tls.Config{}).NextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool, err := clientCAs()
			if err != nil {
				return nil, err
			}
			return gateway(&tls.Config{GetCertificate: cert.GetCertificate, ClientCAs: pool}), nil
		},
	}
}

// grpcMachines is the machine flow of the gRPC gateway.
func grpcMachines(n *cluster.Node) grpcgw.Machines { return grpcgw.NewClusterMachines(n) }
