package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moltbot/moltbot/configs"
)

// A node whose embedding chain is an Ollama model, then an OpenAI one,
// each a fake server speaking its real API: the first answers; down, the
// second does, over the same node and config as cmd runs.
func TestEmbeddingsEndToEnd(t *testing.T) {
	var ollamaDown atomic.Bool
	ollama := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		switch r.URL.Path {
		case "/api/tags":
			io.WriteString(w, `{"models":[{"name":"nomic-embed-text:latest","model":"nomic-embed-text:latest"}]}`)
		case "/api/embed":
			var req struct {
				Model    string   `json:"model"`
				Input    []string `json:"input"`
				Truncate *bool    `json:"truncate"`
			}
			json.NewDecoder(r.Body).Decode(&req)
			if ollamaDown.Load() {
				w.WriteHeader(500)
				io.WriteString(w, `{"error":"llama runner process has terminated: exit status 2"}`)
				return
			}
			if req.Model != "nomic-embed-text" || req.Truncate == nil || *req.Truncate {
				w.WriteHeader(400)
				fmt.Fprintf(w, `{"error":"unexpected request %+v"}`, req)
				return
			}
			io.WriteString(w, `{"model":"nomic-embed-text","embeddings":[[0.5,-0.25,0.125]],"total_duration":1,"load_duration":1,"prompt_eval_count":4}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer ollama.Close()
	openai := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/models":
			io.WriteString(w, `{"object":"list","data":[{"id":"text-embedding-3-small","object":"model"}]}`)
		case "/v1/embeddings":
			raw := make([]byte, 12)
			for i, f := range []float32{1, 2, 3} {
				binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
			}
			fmt.Fprintf(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":"%s"}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}`,
				base64.StdEncoding.EncodeToString(raw))
		default:
			http.NotFound(w, r)
		}
	}))
	defer openai.Close()
	yaml := fmt.Sprintf(`server: {port: 0, shutdown_timeout: 2s}
log: {level: error}
providers:
  - {name: local, type: ollama, url: "%s"}
  - {name: cloud, type: openai, url: "%s/v1"}
models:
  primary: local/llama3.2
  embeddings:
    primary: local/nomic-embed-text
    fallback: [cloud/text-embedding-3-small]
    dimensions: 3
`, ollama.URL, openai.URL)
	cfg, err := configs.Parse("embed.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: t.TempDir()}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	embed := func() (int, string, string) {
		resp, err := http.Post(n.URL()+"/v1/embeddings", "application/json", strings.NewReader(`{"input":"hello","model":"moltbot"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Moltbot-Provider"), string(b)
	}
	if code, served, body := embed(); code != 200 || served != "local/nomic-embed-text" || !strings.Contains(body, `"embedding":[0.5,-0.25,0.125]`) ||
		!strings.Contains(body, `"usage":{"prompt_tokens":4,"total_tokens":4}`) {
		t.Fatalf("%d %s %s", code, served, body)
	}
	ollamaDown.Store(true)
	if code, served, body := embed(); code != 200 || served != "cloud/text-embedding-3-small" || !strings.Contains(body, `"embedding":[1,2,3]`) {
		t.Fatalf("%d %s %s", code, served, body)
	}
}

// An embedding chain that names a provider without an embeddings API
// keeps the node from starting, and says which.
func TestEmbeddingsChainNeedsAnEmbedder(t *testing.T) {
	yaml := `server: {port: 0}
log: {level: error}
providers:
  - {name: claude, type: anthropic, url: "http://127.0.0.1:9", api_keys: [x]}
models:
  primary: claude/sonnet
  embeddings: {primary: claude/sonnet}
`
	cfg, err := configs.Parse("embed.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: t.TempDir()}
	err = n.Start()
	if err == nil {
		n.Shutdown(context.Background())
	}
	if err == nil || !strings.Contains(err.Error(), `provider "claude" (type anthropic) has no embeddings API`) {
		t.Fatalf("err = %v", err)
	}
}
