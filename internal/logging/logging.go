// Package logging builds moltbot's slog logger: JSON or text, a level, and a
// redaction pass so that a value under a secret-looking key (api_key, token,
// authorization, password, secret) never reaches the log, whatever its type,
// while what only names a secret
// (key_id) stays readable; durations carry their unit.
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

// secretWords are the words of an attribute key that name a secret:
// "api_key", "X-Api-Key", "access_token", "Authorization", "keys" (a
// list of them), "signingKey", "client_secret".
var secretWords = []string{"key", "keys", "token", "secret", "secrets", "password", "passwd", "authorization", "credential", "credentials", "cookie"}

// notSecretLast are the last words of keys that name something about a
// secret, not the secret: "key_id", "kid", "token_ttl", "keys_count".
var notSecretLast = []string{"id", "ids", "kid", "count", "ttl", "expires", "name", "kind", "type", "scope", "fingerprint"}

// IsSecretKey reports whether an attribute key names a secret. The key is
// cut into words at '_', '-', '.' and a lower-to-upper case change; a key
// is secret when a word is a secret word or ends with one ("apikey",
// "signingkey"), unless its last word says it is about the secret, not
// the secret (an id, a count, a lifetime: "key_id" is not secret).
func IsSecretKey(k string) bool {
	words := splitWords(k)
	if len(words) == 0 {
		return false
	}
	if len(words) > 1 || words[0] == "kid" {
		last := words[len(words)-1]
		for _, w := range notSecretLast {
			if last == w {
				return false
			}
		}
	}
	for _, word := range words {
		for _, w := range secretWords {
			if strings.HasSuffix(word, w) {
				return true
			}
		}
	}
	return false
}

// splitWords cuts an attribute key into lower-case words.
func splitWords(k string) []string {
	var words []string
	start := 0
	flush := func(end int) {
		if end > start {
			words = append(words, strings.ToLower(k[start:end]))
		}
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_' || c == '-' || c == '.' || c == ' ':
			flush(i)
			start = i + 1
		case i > start && c >= 'A' && c <= 'Z' && k[i-1] >= 'a' && k[i-1] <= 'z':
			flush(i)
			start = i
		}
	}
	flush(len(k))
	return words
}

// Redacted is what a secret value is replaced with.
const Redacted = "[REDACTED]"

// replaceAttr redacts secrets and writes a duration with its unit
// ("1.5s", "200ms"), where the JSON handler would write bare nanoseconds.
func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindGroup:
		return a
	case slog.KindDuration:
		return slog.String(a.Key, a.Value.Duration().String())
	}
	if IsSecretKey(a.Key) {
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
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: replaceAttr}
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
