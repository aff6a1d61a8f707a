package ollama

import (
	"context"
	"net/http"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/testutil"
)

// FuzzStream feeds arbitrary NDJSON to the Ollama client.
func FuzzStream(f *testing.F) {
	f.Add([]byte(line("a", false)+line("b", false)+line("", true)), 200)
	f.Add([]byte(line("a", false)+`{"error":"boom"}`+"\n"), 200)
	f.Add([]byte(`{"error":"model not found"}`), 404)
	f.Add([]byte("not json\n"), 200)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		c, err := New(Config{Name: "f", BaseURL: "http://fuzz", HTTP: &http.Client{Transport: testutil.BodyTransport{Status: status, ContentType: "application/x-ndjson", Body: body}}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Chat(context.Background(), &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}},
			func(string) error { return nil })
		if err != nil {
			if _, ok := inference.AsError(err); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
		}
	})
}
