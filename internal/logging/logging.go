// Package logging builds moltbot's slog logger: JSON or text, a level, and a
// redaction pass so that a value under a secret-looking key (api_key, token,
// authorization, password, secret) never reaches the log, whatever its type.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/moltbot/moltbot"
)

// ParseLevel reads debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

var secretWords = []string{"key", "token", "secret", "password", "authorization", "credential"}

// IsSecretKey reports whether an attribute key names a secret.
func IsSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// Redacted is what a secret value is replaced with.
const Redacted = "[REDACTED]"

func redact(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindGroup && IsSecretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	return a
}

// New returns a logger writing to w in format ("json" or "text") at level.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: redact}
	switch format {
	case "json", "":
		return slog.New(WithRequestIDs(slog.NewJSONHandler(w, opts))), nil
	case "text":
		return slog.New(WithRequestIDs(slog.NewTextHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("unknown log format %q (want json or text)", format)
}

// WithRequestIDs wraps h so that a record logged with a context that
// carries a request id (moltbot.WithRequestID) names it as request_id.
func WithRequestIDs(h slog.Handler) slog.Handler { return ridHandler{h} }

type ridHandler struct{ slog.Handler }

func (h ridHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := moltbot.RequestID(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ridHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ridHandler{h.Handler.WithAttrs(as)}
}
func (h ridHandler) WithGroup(name string) slog.Handler { return ridHandler{h.Handler.WithGroup(name)} }
