package anthropic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

func ev(typ, data string) string { return "event: " + typ + "\ndata: " + data + "\n\n" }

var okStream = []string{
	ev("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}`),
	ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
	ev("ping", `{"type": "ping"}`),
	ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`),
	": comment\n\n",
	ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}`),
	ev("content_block_stop", `{"type":"content_block_stop","index":0}`),
	ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}`),
	ev("message_stop", `{"type":"message_stop"}`),
}

func fake(t *testing.T, status int, frames ...string) (*httptest.Server, *request) {
	var got request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-api-key") != "ak" || r.Header.Get("anthropic-version") != APIVersion {
			t.Errorf("headers = %v", r.Header)
		}
		if r.URL.Path == "/v1/models" {
			fmt.Fprint(w, `{"data":[{"id":"claude-3-5-haiku","type":"model"}],"has_more":false}`)
			return
		}
		if r.URL.Path != "/v1/messages" {
			http.NotFound(w, r)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(status)
		for _, f := range frames {
			fmt.Fprint(w, f)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func chat(srv *httptest.Server) (string, inference.Result, error) {
	c := New(Config{Name: "claude", BaseURL: srv.URL, APIKey: "ak"})
	var b strings.Builder
	res, err := c.Chat(context.Background(), &inference.Request{Model: "claude-3-5-haiku", Messages: []moltbot.Message{
		{Role: moltbot.RoleSystem, Content: "sys"}, {Role: moltbot.RoleUser, Content: "hi"}}}, func(d inference.Delta) error { b.WriteString(d.Text); return nil })
	return b.String(), res, err
}

func TestChat(t *testing.T) {
	srv, got := fake(t, 200, okStream...)
	text, res, err := chat(srv)
	if err != nil {
		t.Fatal(err)
	}
	if text != "Hello there" || res.Usage != (moltbot.Usage{PromptTokens: 25, CompletionTokens: 15}) || res.FinishReason != "stop" || res.Model != "claude-3-5-haiku" {
		t.Errorf("text %q result %+v", text, res)
	}
	if got.System != "sys" || len(got.Messages) != 1 || got.Messages[0].Role != "user" || got.MaxTokens != DefaultMaxTokens || !got.Stream {
		t.Errorf("request = %+v", got)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name   string
		status int
		frames []string
		kind   inference.Kind
		msg    string
	}{
		{"overloaded status", 529, []string{`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`}, inference.KindUnavailable, "Overloaded"},
		{"invalid", 400, []string{`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}`}, inference.KindBadRequest, "prompt is too long"},
		{"error event", 200, append(okStream[:4:4], ev("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)), inference.KindUnavailable, "Overloaded"},
		{"cut", 200, okStream[:4], inference.KindStream, "ended"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := fake(t, tc.status, tc.frames...)
			_, _, err := chat(srv)
			e, ok := inference.AsError(err)
			if !ok || e.Kind != tc.kind || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("err = %v, want kind %v with %q", err, tc.kind, tc.msg)
			}
		})
	}
}

func TestModels(t *testing.T) {
	srv, _ := fake(t, 200)
	got, err := New(Config{Name: "c", BaseURL: srv.URL + "/v1/", APIKey: "ak"}).Models(context.Background())
	if err != nil || len(got) != 1 || got[0] != "claude-3-5-haiku" {
		t.Fatalf("%v %v", got, err)
	}
}
