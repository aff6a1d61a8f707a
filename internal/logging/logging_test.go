package logging

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

func TestRedaction(t *testing.T) {
	var b bytes.Buffer
	l, err := New(&b, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("call", "api_key", "sk-live-123", "Authorization", "Bearer abc", "provider", "cloud", "keys", []string{"sk-1"})
	out := b.String()
	for _, secret := range []string{"sk-live-123", "Bearer abc", "sk-1"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q leaked: %s", secret, out)
		}
	}
	if !strings.Contains(out, `"provider":"cloud"`) {
		t.Errorf("ordinary field lost: %s", out)
	}
	if _, err := New(&b, "loud", "json"); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := New(&b, "info", "xml"); err == nil {
		t.Error("bad format accepted")
	}
}

func TestRequestIDInLogLines(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "info", "text")
	if err != nil {
		t.Fatal(err)
	}
	ctx := moltbot.WithRequestID(context.Background(), "req_1")
	log.With("a", 1).InfoContext(ctx, "with id")
	log.Info("without")
	out := buf.String()
	if !strings.Contains(out, "msg=\"with id\" a=1 request_id=req_1") || strings.Count(out, "request_id") != 1 {
		t.Errorf("log:\n%s", out)
	}
}
