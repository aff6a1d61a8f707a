package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/skills/kb"
	"github.com/moltbot/moltbot/storage"
)

// kbServer is a node without auth (every call the operator's, in the
// default tenant) whose turns search knowledge base "support" by default.
func kbServer(t *testing.T) string {
	t.Helper()
	met := metrics.New("test")
	db := storage.NewMemory()
	st, err := kb.Open(kb.Config{KV: db.Namespace(storage.KB)})
	if err != nil {
		t.Fatal(err)
	}
	stage := kb.NewStage(st, kb.StageConfig{Default: []string{"support"}})
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "sim", Type: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 6, Seed: 1}),
		MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second}}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store: db, Metrics: met, HealthInterval: time.Hour, Before: []actors.BeforeModel{stage}})
	if err != nil {
		t.Fatal(err)
	}
	mg := manage.New(manage.Config{Runtime: rt, KB: &manage.KB{Store: st}})
	srv := httptest.NewServer(New(chat.New(rt, nil, chat.Config{Metrics: met}), mg, Config{Metrics: met, Version: "test", MaxBodyBytes: 1 << 20}))
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
	})
	return srv.URL
}

// exampleBody is the shipped document set as an add request's body.
func exampleBody(t *testing.T) string {
	dir := filepath.Join("..", "examples", "kb", "lumen")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, map[string]string{"name": e.Name(), "text": string(b)})
	}
	b, _ := json.Marshal(map[string]any{"documents": docs})
	return string(b)
}

func TestKBEndpoints(t *testing.T) {
	url := kbServer(t)
	// Before any document: a turn passes the stage by (it idles).
	if resp, body := send(t, "POST", url+"/v1/chat/completions", `{"model":"moltbot","messages":[{"role":"user","content":"How long does a card refund take?"}]}`); resp.StatusCode != 200 || strings.Contains(body, "citations") {
		t.Fatalf("no documents: %d %s", resp.StatusCode, body)
	}
	if resp, body := send(t, "POST", url+"/v1/admin/kb/support/documents", exampleBody(t)); resp.StatusCode != 200 || !strings.Contains(body, `"added":10`) {
		t.Fatalf("add: %d %s", resp.StatusCode, body)
	}
	resp, body := send(t, "GET", url+"/v1/admin/kb", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"name":"support"`) || !strings.Contains(body, `"name":"zh-配送.md"`) {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if resp, body := send(t, "GET", url+"/v1/admin/kb/none", ""); resp.StatusCode != 404 {
		t.Fatalf("an unknown base: %d %s", resp.StatusCode, body)
	}
	resp, body = send(t, "POST", url+"/v1/admin/kb/support/search", `{"query":"运单号在哪里看","k":2}`)
	var sr manage.KBSearchResult
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &sr) != nil || !sr.Hit || len(sr.Results) != 2 || sr.Results[0].Document != "zh-配送.md" {
		t.Fatalf("search: %d %s", resp.StatusCode, body)
	}

	// A completion cites its sources: the extension field, whole and streamed.
	q := `{"model":"moltbot","messages":[{"role":"user","content":"How long does a card refund take?"}]%s}`
	resp, body = send(t, "POST", url+"/v1/chat/completions", fmt.Sprintf(q, ""))
	var comp struct {
		Citations []moltbot.Citation `json:"citations"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &comp) != nil || len(comp.Citations) == 0 ||
		comp.Citations[0].Document != "returns.md" || comp.Citations[0].Heading != "Returns and Refunds > Refunds > Refund timing" || comp.Citations[0].N != 1 {
		t.Fatalf("completion: %d %s", resp.StatusCode, body)
	}
	resp, body = send(t, "POST", url+"/v1/chat/completions", fmt.Sprintf(q, `,"stream":true`))
	if resp.StatusCode != 200 || !strings.Contains(body, `"finish_reason":"stop"}],"citations":[{"n":1,"kb":"support","document":"returns.md"`) {
		t.Fatalf("stream: %d %s", resp.StatusCode, body)
	}
	// A miss answers "no answer" without the model.
	resp, body = send(t, "POST", url+"/v1/chat/completions", `{"model":"moltbot","messages":[{"role":"user","content":"今天天气怎么样"}]}`)
	if resp.StatusCode != 200 || !strings.Contains(body, kb.DefaultNoAnswer) || strings.Contains(body, "citations") {
		t.Fatalf("miss: %d %s", resp.StatusCode, body)
	}

	// A conversation's reply keeps its citations.
	if resp, body := send(t, "POST", url+"/v1/conversations", `{"id":"kbc"}`); resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	resp, body = send(t, "POST", url+"/v1/conversations/kbc/messages", `{"content":"可以用支付宝付款吗"}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"citations":[{"n":1,"kb":"support","document":"zh-账户与支付.md","heading":"账户与支付 > 支付方式"`) {
		t.Fatalf("turn: %d %s", resp.StatusCode, body)
	}
	if resp, body := send(t, "GET", url+"/v1/conversations/kbc", ""); resp.StatusCode != 200 || !strings.Contains(body, `"document":"zh-账户与支付.md"`) {
		t.Fatalf("conversation: %d %s", resp.StatusCode, body)
	}

	// Removal.
	if resp, body := send(t, "DELETE", url+"/v1/admin/kb/support/documents/zh-账户与支付.md", ""); resp.StatusCode != 200 || !strings.Contains(body, `"deleted":1`) {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	if resp, _ := send(t, "DELETE", url+"/v1/admin/kb/support/documents/zh-账户与支付.md", ""); resp.StatusCode != 404 {
		t.Fatalf("delete twice: %d", resp.StatusCode)
	}
	if resp, body := send(t, "DELETE", url+"/v1/admin/kb/support", ""); resp.StatusCode != 200 || !strings.Contains(body, `"deleted":9`) {
		t.Fatalf("delete the base: %d %s", resp.StatusCode, body)
	}
	if _, body := send(t, "GET", url+"/v1/admin/kb", ""); !strings.Contains(body, `"knowledge_bases":[]`) {
		t.Fatalf("list after: %s", body)
	}
}

func TestKBEndpointsRefuse(t *testing.T) {
	url := kbServer(t)
	many := `{"documents":[` + strings.Repeat(`{"name":"a.md","text":"x"},`, MaxKBDocsPerRequest) + `{"name":"b.md","text":"x"}]}`
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/v1/admin/kb/support/documents", `{"documents":[{"name":"a.md","txt":"x"}]}`, 400, `unknown field \"txt\"`},
		{"POST", "/v1/admin/kb/support/documents", `{"documents":[]}`, 400, "no documents"},
		{"POST", "/v1/admin/kb/support/documents", `{"documents":`, 400, ""},
		{"POST", "/v1/admin/kb/bad.name!/documents", `{"documents":[{"name":"a.md","text":"x"}]}`, 400, "knowledge base name"},
		{"POST", "/v1/admin/kb/support/documents", `{"documents":[{"name":"../a.md","text":"x"}]}`, 400, "document name"},
		{"POST", "/v1/admin/kb/support/documents", `{"documents":[{"name":"a.md","text":"` + strings.Repeat("x", kb.MaxDocBytes+1) + `"}]}`, 413, "split it"},
		{"POST", "/v1/admin/kb/support/documents", `{"documents":[{"name":"a.md","text":"` + strings.Repeat("x", MaxKBBody) + `"}]}`, 413, "larger than"},
		{"POST", "/v1/admin/kb/support/documents", many, 413, "at most 200"},
		{"POST", "/v1/admin/kb/support/search", `{"query":""}`, 400, "query is empty"},
		{"POST", "/v1/admin/kb/support/search", `{"query":"x","k":99}`, 400, "k must be"},
		{"POST", "/v1/admin/kb/support/search", `{"query":"x"}`, 404, "not found"},
		{"PUT", "/v1/admin/kb/support", "", 405, ""},
		{"GET", "/v1/admin/kb/support/search", "", 405, ""},
	} {
		resp, body := send(t, tc.method, url+tc.path, tc.body)
		if resp.StatusCode != tc.code || !strings.Contains(body, tc.want) || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s: %d %.200s, want %d with %q", tc.method, tc.path, resp.StatusCode, body, tc.code, tc.want)
		}
	}
	if _, body := send(t, "GET", url+"/v1/admin/kb", ""); !strings.Contains(body, `"knowledge_bases":[]`) {
		t.Fatalf("a refused request stored something: %s", body)
	}
}
