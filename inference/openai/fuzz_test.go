package openai

import (
	"context"
	"net/http"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/testutil"
)

// FuzzStream feeds arbitrary bytes as an SSE response: the client must end
// with a result or an *inference.Error, never panic or hang.
func FuzzStream(f *testing.F) {
	f.Add([]byte(sseChunk("hi")+finish+usage+"data: [DONE]\n\n"), 200)
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":null}}]}\n\n: x\r\n\r\ndata: [DONE]"), 200)
	f.Add([]byte(`{"error":{"message":"nope"}}`), 429)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		c := New(Config{Name: "f", BaseURL: "http://fuzz/v1", HTTP: &http.Client{Transport: testutil.BodyTransport{Status: status, ContentType: "text/event-stream", Body: body}}})
		_, err := c.Chat(context.Background(), &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}},
			func(string) error { return nil })
		if err != nil {
			if _, ok := inference.AsError(err); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
		}
		if status/100 != 2 && err == nil {
			t.Fatalf("status %d accepted", status)
		}
	})
}
