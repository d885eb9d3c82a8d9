package controllers_test

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// managerLog captures every line the manager logs, at every verbosity, while a spec has
// started it: the secret scan reads it. Off otherwise, so that the scale specs' logs cost
// nothing and take no memory.
var managerLog = &captureLog{}

type captureLog struct {
	on  atomic.Bool
	buf syncLog
}

// start clears the capture and turns it on until the returned function is called.
func (c *captureLog) start() (stop func()) {
	c.buf.mu.Lock()
	c.buf.b = nil
	c.buf.mu.Unlock()
	c.on.Store(true)
	return func() { c.on.Store(false) }
}

func (c *captureLog) String() string { return c.buf.String() }

func (c *captureLog) handler() slog.Handler {
	return gatedHandler{Handler: slog.NewJSONHandler(&c.buf, &slog.HandlerOptions{Level: slog.Level(-100)}), on: &c.on}
}

// gatedHandler passes records on only while on is set.
type gatedHandler struct {
	slog.Handler
	on *atomic.Bool
}

func (h gatedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.on.Load() && h.Handler.Enabled(ctx, l)
}

func (h gatedHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return gatedHandler{Handler: h.Handler.WithAttrs(a), on: h.on}
}

func (h gatedHandler) WithGroup(name string) slog.Handler {
	return gatedHandler{Handler: h.Handler.WithGroup(name), on: h.on}
}
