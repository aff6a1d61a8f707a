package logging

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

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

// What is a secret by its key, and what only names one.
func TestIsSecretKey(t *testing.T) {
	for k, want := range map[string]bool{
		"api_key": true, "X-Api-Key": true, "apiKey": true, "access_token": true, "Authorization": true,
		"keys": true, "client_secret": true, "signingKey": true, "password": true, "Cookie": true, "token": true,
		"key_id": false, "keyId": false, "kid": false, "token_ttl": false, "prompt_tokens": false, "tokens": false,
		"provider": false, "keys_count": false, "successor": false, "": false,
	} {
		if got := IsSecretKey(k); got != want {
			t.Errorf("IsSecretKey(%q) = %v, want %v", k, got, want)
		}
	}
}

// A key id reads in the log, its key does not; durations carry a unit in
// JSON too.
func TestKeyIDAndDurationsInLogs(t *testing.T) {
	var b bytes.Buffer
	l, _ := New(&b, "info", "json")
	l.Info("api key created", "key_id", "k3x9ab2q", "api_key", "mb_k3x9ab2q_secret", "retry_in", 1500*time.Millisecond)
	out := b.String()
	if !strings.Contains(out, `"key_id":"k3x9ab2q"`) || strings.Contains(out, "mb_k3x9ab2q_secret") || !strings.Contains(out, `"retry_in":"1.5s"`) {
		t.Errorf("log: %s", out)
	}
}
