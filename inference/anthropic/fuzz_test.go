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

// FuzzStream feeds arbitrary bytes as an SSE response, to a request with
// tools and a JSON response format: the client ends with a result or an
// *inference.Error, never a panic or a hang, and the calls it passes on
// start at the next index (a receiver's list of calls grows by one).
func FuzzStream(f *testing.F) {
	f.Add([]byte(strings.Join(okStream, "")), 200)
	f.Add([]byte(strings.Join(toolStream, "")), 200)
	f.Add([]byte(strings.Join(jsonStream(DefaultJSONTool), "")), 200)
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n"), 200)
	f.Add([]byte(`{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}`), 400)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		c := New(Config{Name: "f", BaseURL: "http://fuzz", HTTP: &http.Client{Transport: testutil.BodyTransport{Status: status, ContentType: "text/event-stream", Body: body}}})
		n := 0
		_, err := c.Chat(context.Background(), &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}},
			ChatOptions: moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "get_weather"}}, ResponseFormat: &moltbot.ResponseFormat{Type: moltbot.FormatJSONObject}}},
			func(d inference.Delta) error {
				if c := d.ToolCall; c != nil {
					if c.Index < 0 || c.Index > n {
						t.Fatalf("call index %d after %d calls", c.Index, n)
					}
					n = max(n, c.Index+1)
				}
				return nil
			})
		if err != nil {
			if _, ok := inference.AsError(err); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
		}
	})
}
