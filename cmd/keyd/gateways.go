package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/gateway/https"
	"github.com/keyquorum/keyquorum/gateway/kxd"
)

// gatewayFlags are the flags of the gateways beside the HTTPS API. Each
// address is off when empty.
type gatewayFlags struct {
	quic                 bool
	kxdAddr              string
	smtpAddr, smtpFrom   string
	kxdHook              string
	tangDefault          string
	tlvAddr, tlvClientCA string
	tlvRSADecrypt        rsaDecryptFlag
	grpcAddr             string
	// consoleCert and consoleKey are the PEM files of the certificate
	// browsers get for the console (/ui/).
	consoleCert, consoleKey string
}

func (g *gatewayFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&g.quic, "quic", true, "also serve HTTP/3, and the TLV and gRPC gateways, over QUIC on the same port numbers (UDP)")
	fs.StringVar(&g.kxdAddr, "kxd-addr", "", "host:port of kxd's protocol for kxc (kxc's default port is 19840; off when empty)")
	fs.StringVar(&g.smtpAddr, "smtp-addr", "", "host:port of the mail relay for kxd keys' email_to (no e-mail when empty)")
	fs.StringVar(&g.smtpFrom, "smtp-from", "keyquorum@localhost", "sender of kxd access e-mails")
	fs.StringVar(&g.kxdHook, "kxd-hook", "", "program run on every kxd key access (see gateway/kxd/notify.go)")
	fs.StringVar(&g.tangDefault, "tang-default-key", "", "Tang key served at /adv and /rec (default: the only Tang key)")
	fs.StringVar(&g.tlvAddr, "tlv-addr", "", "host:port of Keyless SSL's TLV protocol (the keyless servers use 2407; off when empty)")
	fs.StringVar(&g.tlvClientCA, "tlv-client-ca", "", "PEM file of the CAs whose certificates TLV clients present (default: the cluster CA)")
	g.tlvRSADecrypt = "unpadded"
	fs.Var(&g.tlvRSADecrypt, "tlv-rsa-decrypt", "what TLV opcode 0x01 (RSA decrypt) answers: unpadded (the plaintext, as the C keyless server; Cloudflare's C client) or padded (the whole PKCS #1 block, as gokeyless' server; gokeyless' Go client)")
	fs.StringVar(&g.grpcAddr, "grpc-addr", "", "host:port of the gRPC API (off when empty)")
	fs.StringVar(&g.consoleCert, "console-cert", "", "PEM certificate (ECDSA or RSA) web browsers get for the console at /ui/ (default: a self-signed one made at start)")
	fs.StringVar(&g.consoleKey, "console-key", "", "PEM private key of --console-cert")
}

// rsaDecryptFlag is --tlv-rsa-decrypt: what TLV opcode 0x01 answers
// (gateway/tlv's package doc, "RSA decryption").
type rsaDecryptFlag string

func (f *rsaDecryptFlag) String() string { return string(*f) }

func (f *rsaDecryptFlag) Set(v string) error {
	if v != "unpadded" && v != "padded" {
		return fmt.Errorf("must be unpadded (the C keyless server's answer) or padded (gokeyless' server's), not %q", v)
	}
	*f = rsaDecryptFlag(v)
	return nil
}

// gateway is one running listener.
type gateway struct {
	name     string
	shutdown func(context.Context) error
}

// startGateways starts the gateways the flags turn on. The API server is
// already serving TCP on apiAddr. Every gateway serves the node's
// certificate (cluster.Node.ServingCert).
func startGateways(n *cluster.Node, api *https.Server, apiAddr string, g gatewayFlags, log *slog.Logger) ([]gateway, error) {
	var out []gateway
	fail := func(err error) ([]gateway, error) {
		for _, gw := range out {
			gw.shutdown(context.Background())
		}
		return nil, err
	}
	if g.quic {
		pc, err := net.ListenPacket("udp", apiAddr)
		if err != nil {
			return fail(fmt.Errorf("HTTP/3 on %s: %w", apiAddr, err))
		}
		go func() {
			if err := api.ServeQUIC(pc); err != nil {
				log.Error("HTTP/3 server", "err", err)
			}
		}()
		out = append(out, gateway{name: "http3", shutdown: func(context.Context) error { return pc.Close() }})
	}
	if g.kxdAddr != "" {
		notify := &kxd.Notifier{SMTPAddr: g.smtpAddr, From: g.smtpFrom, Hook: g.kxdHook}
		tc := kxd.TLSConfig(&tls.Config{GetCertificate: n.ServingCert().GetCertificate})
		srv := &http.Server{
			Handler:   n.Metrics().HTTP("kxd", kxd.Handler(kxd.NewClusterKeys(n), notify, log)),
			TLSConfig: tc,
			ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		api.Timeouts().Apply(srv)
		ln, err := net.Listen("tcp", g.kxdAddr)
		if err != nil {
			return fail(fmt.Errorf("kxd on %s: %w", g.kxdAddr, err))
		}
		go func() {
			if err := srv.ServeTLS(n.Metrics().CountConnections(ln, "kxd"), "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("kxd server", "err", err)
			}
		}()
		out = append(out, gateway{name: "kxd", shutdown: srv.Shutdown})
	}
	more, err := startTLVAndGRPC(n, g, log)
	out = append(out, more...)
	if err != nil {
		return fail(err)
	}
	return out, nil
}
