package anthropic

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/testutil"
)

func FuzzStream(f *testing.F) {
	f.Add([]byte(strings.Join(okStream, "")), 200)
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n"), 200)
	f.Add([]byte(`{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}`), 400)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		c := New(Config{Name: "f", BaseURL: "http://fuzz", HTTP: &http.Client{Transport: testutil.BodyTransport{Status: status, ContentType: "text/event-stream", Body: body}}})
		_, err := c.Chat(context.Background(), &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}},
			func(inference.Delta) error { return nil })
		if err != nil {
			if _, ok := inference.AsError(err); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
		}
	})
}
