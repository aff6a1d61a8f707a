package ollama

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/ollama/ollama/api"
)

// modelServer answers /api/show, /api/ps and the loading /api/chat as
// Ollama 0.17 does (bodies trimmed of fields moltbot does not read).
func modelServer(t *testing.T, loads *[]string) *httptest.Server {
	t.Helper()
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req map[string]any
		_ = json.Unmarshal(body, &req)
		switch r.URL.Path {
		case "/api/show":
			switch req["model"] {
			case "llama3.2":
				io.WriteString(w, `{"modelfile":"# Modelfile","parameters":"stop \"<|eot_id|>\"","template":"{{ .Prompt }}",`+
					`"details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"3.2B","quantization_level":"Q4_K_M"},`+
					`"model_info":{"general.architecture":"llama","general.parameter_count":3212749888,"llama.context_length":131072,"llama.embedding_length":3072},`+
					`"capabilities":["completion","tools"],"modified_at":"2025-01-01T00:00:00Z"}`)
			case "llava":
				io.WriteString(w, `{"details":{"family":"llama"},"model_info":{"general.architecture":"llama","llama.context_length":4096},"capabilities":["completion","vision"]}`)
			case "nomic-embed-text":
				io.WriteString(w, `{"details":{"family":"nomic-bert"},"model_info":{"general.architecture":"nomic-bert","nomic-bert.context_length":2048},"capabilities":["embedding"]}`)
			case "old":
				io.WriteString(w, `{"details":{"family":"llama"},"model_info":{}}`)
			default:
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `{"error":"model 'nope' not found"}`)
			}
		case "/api/ps":
			io.WriteString(w, `{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":3000000000,"digest":"a80c4f17acd5","details":{"family":"llama"},"expires_at":"2026-12-01T20:00:00Z","size_vram":0,"context_length":4096}]}`)
		case "/api/chat":
			if m, _ := req["messages"].([]any); len(m) != 0 || req["stream"] != false {
				t.Errorf("load request %s", body)
			}
			*loads = append(*loads, req["model"].(string))
			if req["model"] == "nope" {
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `{"error":"model \"nope\" not found, try pulling it first"}`)
				return
			}
			io.WriteString(w, `{"model":"llama3.2","created_at":"2026-12-01T19:00:00Z","message":{"role":"assistant","content":""},"done_reason":"load","done":true}`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
}

func TestDescribeLoadedLoad(t *testing.T) {
	var loads []string
	srv := modelServer(t, &loads)
	defer srv.Close()
	c, err := New(Config{Name: "local", BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for model, want := range map[string]moltbot.Capabilities{
		"llama3.2":         {Known: true, Tools: true, JSONSchema: true, ContextLength: 131072},
		"llava":            {Known: true, Vision: true, JSONSchema: true, ContextLength: 4096},
		"nomic-embed-text": {Known: true, Embeddings: true, ContextLength: 2048},
		"old":              {},
	} {
		got, err := c.Describe(ctx, model)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", model, got, err, want)
		}
	}
	if _, err := c.Describe(ctx, "nope"); err == nil {
		t.Fatal("a missing model described")
	} else if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindModelNotFound {
		t.Fatalf("%#v", err)
	}
	loaded, err := c.Loaded(ctx)
	if err != nil || len(loaded) != 1 || loaded[0] != "llama3.2:latest" {
		t.Fatalf("%v %v", loaded, err)
	}
	if err := c.Load(ctx, "llama3.2"); err != nil {
		t.Fatal(err)
	}
	err = c.Load(ctx, "nope")
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindModelNotFound || !strings.Contains(e.Message, "pulling") {
		t.Fatalf("%#v", err)
	}
	if len(loads) != 2 {
		t.Fatalf("loads %v", loads)
	}
}

// keep_alive goes with every call and with the load, where api.ChatRequest
// puts it and as api.Duration writes it ("30m0s", or -1 for good).
func TestKeepAlive(t *testing.T) {
	req := &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}},
		ChatOptions: moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: moltbot.FormatJSONObject}, Tools: []moltbot.Tool{{Name: "f"}}}}
	for _, d := range []time.Duration{30 * time.Minute, -1} {
		got, err := appendRequest(nil, req, &d)
		if err != nil {
			t.Fatal(err)
		}
		areq := apiRequest(req)
		areq.KeepAlive = &api.Duration{Duration: d}
		want, _ := json.Marshal(areq)
		if string(got) != string(want) {
			t.Fatalf("keep_alive %s\n got %s\nwant %s", d, got, want)
		}
	}
	var loads []string
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		loads = append(loads, r.URL.Path)
		io.WriteString(w, `{"model":"m","created_at":"2026-12-01T19:00:00Z","message":{"role":"assistant","content":""},"done_reason":"load","done":true}`)
	}))
	defer srv.Close()
	keep := time.Duration(-1)
	c, _ := New(Config{Name: "local", BaseURL: srv.URL, KeepAlive: &keep})
	if err := c.Load(context.Background(), "m"); err != nil || string(body) != `{"model":"m","messages":[],"stream":false,"keep_alive":-1}` {
		t.Fatalf("%v %s", err, body)
	}
}
