// Package httpserve runs the small HTTP servers of the daemons (metrics,
// health, control and admin APIs) with the same timeouts, logging and
// shutdown everywhere.
//
// It owns the listeners and the serving goroutines of a Group; it knows
// nothing of what the handlers do.
package httpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Timeouts applied to every server: the APIs served here answer small
// requests, so a slow client is cut off rather than holding a connection.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 10 * time.Second
	// ShutdownTimeout bounds the graceful shutdown of each server.
	ShutdownTimeout = 2 * time.Second
)

// Group is a set of HTTP servers started together and shut down together.
// Its methods are not safe for concurrent use; call them from the
// goroutine that owns the daemon's lifecycle.
type Group struct {
	log     *slog.Logger
	fail    func(error)
	servers []*http.Server
	wg      sync.WaitGroup
}

// New returns a Group that logs to log and reports a server that stops
// with an error (not a shutdown) to fail.
func New(log *slog.Logger, fail func(error)) *Group {
	if log == nil {
		log = slog.Default()
	}
	return &Group{log: log, fail: fail}
}

// Serve listens on addr and serves h there until Shutdown. what names the
// server in logs and errors ("metrics", "control API").
func (g *Group) Serve(addr string, h http.Handler, what string) error {
	return g.ServeTLS(addr, h, what, nil)
}

// ServeTLS is Serve over TLS with cfg (nil: plain HTTP).
func (g *Group) ServeTLS(addr string, h http.Handler, what string, cfg *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener: %w", what, err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	g.servers = append(g.servers, srv)
	g.log.Info(what+" listening", "addr", ln.Addr().String(), "tls", cfg != nil)
	g.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && g.fail != nil {
			g.fail(fmt.Errorf("%s: %w", what, err))
		}
	})
	return nil
}

// Shutdown shuts every server down gracefully (ShutdownTimeout each) and
// waits for their goroutines.
func (g *Group) Shutdown() {
	for _, s := range g.servers {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		_ = s.Shutdown(ctx)
		cancel()
	}
	g.servers = nil
	g.wg.Wait()
}
