package ollama

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

// line is one NDJSON line of /api/chat as Ollama writes it.
func line(content string, done bool) string {
	b, _ := json.Marshal(content)
	if done {
		return `{"model":"llama3.2","created_at":"2024-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}` + "\n"
	}
	return `{"model":"llama3.2","created_at":"2024-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":` + string(b) + `},"done":false}` + "\n"
}

type gotReq struct {
	Model    string            `json:"model"`
	Messages []json.RawMessage `json:"messages"`
	Stream   bool              `json:"stream"`
	Options  map[string]any    `json:"options"`
}

func fake(t *testing.T, status int, lines ...string) (*httptest.Server, *gotReq) {
	var got gotReq
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/tags":
			fmt.Fprint(w, `{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":2019393189}]}`)
			return
		case "/api/chat":
		default:
			http.NotFound(w, r)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(status)
		for _, l := range lines {
			fmt.Fprint(w, l)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func chat(t *testing.T, srv *httptest.Server) (string, inference.Result, error) {
	c, err := New(Config{Name: "local", BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	res, err := c.Chat(context.Background(), &inference.Request{Model: "llama3.2",
		Messages:    []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}},
		ChatOptions: moltbot.ChatOptions{MaxTokens: 5}}, func(s string) error { b.WriteString(s); return nil })
	return b.String(), res, err
}

func TestChat(t *testing.T) {
	srv, got := fake(t, 200, line("Hel", false), line("lo", false), line("", true))
	text, res, err := chat(t, srv)
	if err != nil {
		t.Fatal(err)
	}
	if text != "Hello" || res.Usage != (moltbot.Usage{PromptTokens: 26, CompletionTokens: 282}) || res.FinishReason != "stop" {
		t.Errorf("text %q res %+v", text, res)
	}
	if !got.Stream || got.Model != "llama3.2" || got.Options["num_predict"] != float64(5) {
		t.Errorf("request %+v", got)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name   string
		status int
		lines  []string
		kind   inference.Kind
		msg    string
	}{
		{"missing model", 404, []string{`{"error":"model \"llama3.2\" not found, try pulling it first"}`}, inference.KindModelNotFound, "not found"},
		{"server error", 500, []string{`{"error":"llama runner process has terminated"}`}, inference.KindUnavailable, "terminated"},
		{"bad request", 400, []string{`{"error":"invalid options"}`}, inference.KindBadRequest, "invalid options"},
		{"stream cut", 200, []string{line("a", false)}, inference.KindStream, "ended"},
		{"error mid-stream", 200, []string{line("a", false), `{"error":"out of memory"}` + "\n"}, inference.KindStream, "out of memory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := fake(t, tc.status, tc.lines...)
			_, _, err := chat(t, srv)
			e, ok := inference.AsError(err)
			if !ok || e.Kind != tc.kind || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("err = %v (%T), want kind %v with %q", err, err, tc.kind, tc.msg)
			}
		})
	}
}

func TestDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	_, err := c.Chat(context.Background(), &inference.Request{Model: "m"}, func(string) error { return nil })
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindUnavailable {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.Models(context.Background()); err == nil {
		t.Fatal("Models on a closed server succeeded")
	}
}

func TestModels(t *testing.T) {
	srv, _ := fake(t, 200)
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	got, err := c.Models(context.Background())
	if err != nil || len(got) != 1 || got[0] != "llama3.2:latest" {
		t.Fatalf("%v %v", got, err)
	}
}
