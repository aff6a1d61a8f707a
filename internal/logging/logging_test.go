package logging

import (
	"bytes"
	"strings"
	"testing"
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
