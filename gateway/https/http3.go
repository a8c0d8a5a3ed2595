package https

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/quic-go/quic-go/http3"
)

// ServeQUIC serves the same API over HTTP/3 on a UDP socket, until
// Shutdown. Once it runs, every answer over TCP advertises it with an
// Alt-Svc header, so clients that speak HTTP/3 move to it.
func (s *Server) ServeQUIC(conn net.PacketConn) error {
	h3 := &http3.Server{
		Handler:   s.http.Handler,
		TLSConfig: http3.ConfigureTLSConfig(s.tlsBase.Clone()),
		Port:      conn.LocalAddr().(*net.UDPAddr).Port,
		// A connection without a request for Idle is closed, and one
		// that sends nothing is closed by QUIC.
		IdleTimeout:    s.timeouts.Idle,
		MaxHeaderBytes: s.timeouts.MaxHeaderBytes,
		QUICConfig:     s.timeouts.quicConfig(),
	}
	s.h3.Store(h3)
	err := h3.Serve(conn)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// altSvc adds the Alt-Svc header of the HTTP/3 server, when one runs, to
// answers over TCP.
func altSvc(h3 *atomic.Pointer[http3.Server], next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if srv := h3.Load(); srv != nil && r.ProtoMajor < 3 {
			srv.SetQUICHeaders(w.Header())
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) shutdownQUIC(ctx context.Context) error {
	if h3 := s.h3.Load(); h3 != nil {
		return h3.Shutdown(ctx)
	}
	return nil
}
