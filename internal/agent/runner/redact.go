package runner

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// minSecret is the shortest secret that is redacted: replacing a one- or two-letter string
// everywhere would garble every message and hide nothing worth hiding.
const minSecret = 3

// redactor replaces known secrets (passwords, private keys read from the mounted Secrets) in
// strings. It is a safety net: drivers do not log credentials, but an error from a library
// could quote them. Safe for concurrent use.
type redactor struct {
	mu      sync.RWMutex
	secrets []string
	r       *strings.Replacer
}

func (r *redactor) add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		s = strings.TrimSpace(s)
		if len(s) >= minSecret {
			r.secrets = append(r.secrets, s)
		}
	}
	pairs := make([]string, 0, 2*len(r.secrets))
	for _, s := range r.secrets {
		pairs = append(pairs, s, "[REDACTED]")
	}
	r.r = strings.NewReplacer(pairs...)
}

// redact returns s without any known secret.
func (r *redactor) redact(s string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.r == nil {
		return s
	}
	return r.r.Replace(s)
}

// redactHandler is a slog.Handler that passes every message and string-like attribute through
// a redactor before the inner handler formats it.
type redactHandler struct {
	inner slog.Handler
	r     *redactor
}

func (h redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.r.redact(v.String()))
	case slog.KindGroup:
		as := v.Group()
		out := make([]slog.Attr, len(as))
		for i, x := range as {
			out[i] = h.attr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		// Errors and Stringers are formatted here so that their text is redacted too.
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.r.redact(x.Error()))
		case interface{ String() string }:
			return slog.String(a.Key, h.r.redact(x.String()))
		case []byte:
			return slog.String(a.Key, h.r.redact(string(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (h redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = h.attr(a)
	}
	return redactHandler{inner: h.inner.WithAttrs(out), r: h.r}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{inner: h.inner.WithGroup(name), r: h.r}
}
