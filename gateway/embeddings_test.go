package gateway

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
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/openai"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/storage"
)

// embedder is an in-process provider that embeds: for input i, a vector of
// dims values that depend on the text and i (a sine, so that tiny, negative
// and fractional numbers all appear); down makes it fail as a server that
// is down would.
type embedder struct {
	dims  int
	down  atomic.Bool
	calls atomic.Int64
}

func (p *embedder) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	return inference.Result{FinishReason: "stop"}, fn(inference.Delta{Text: "ok"})
}

func (p *embedder) Models(context.Context) ([]string, error) { return []string{"m"}, nil }

func (p *embedder) Embed(ctx context.Context, req *inference.EmbedRequest) (inference.EmbedResult, error) {
	p.calls.Add(1)
	if p.down.Load() {
		return inference.EmbedResult{}, &inference.Error{Kind: inference.KindUnavailable, Provider: "e", Message: "connection refused"}
	}
	out := inference.EmbedResult{Model: req.Model, Usage: moltbot.Usage{PromptTokens: 3 * len(req.Input)}}
	all := make([]float32, len(req.Input)*p.dims)
	for i, s := range req.Input {
		for k := 0; k < p.dims; k++ {
			all[i*p.dims+k] = vectorValue(s, i, k)
		}
		out.Vectors = append(out.Vectors, all[i*p.dims:(i+1)*p.dims])
	}
	return out, nil
}

func vectorValue(s string, i, k int) float32 {
	return float32(math.Sin(float64(len(s)*31+i*7+k)) * math.Pow(10, float64(k%9-6)))
}

type embedEnv struct {
	url    string
	e1, e2 *embedder
	met    *metrics.Registry
	keys   map[string]string
}

// setupEmbeddings wires a node as cmd/moltbot does, with the embedding
// chain e1/m -> e2/m (4 dimensions each; none with noChain); with tenants,
// auth is on and each tenant has a chat key named after it.
func setupEmbeddings(t testing.TB, noChain bool, tenants ...auth.Tenant) *embedEnv {
	t.Helper()
	env := &embedEnv{e1: &embedder{dims: 4}, e2: &embedder{dims: 4}, met: metrics.New("test"), keys: map[string]string{}}
	store := storage.NewMemory()
	specs := []actors.ProviderSpec{
		{Name: "e1", Type: "fake", Provider: env.e1, MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second},
		{Name: "e2", Type: "fake", Provider: env.e2, MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second},
	}
	cfg := actors.Config{Providers: specs, Chain: []moltbot.ModelRef{{Provider: "e1", Model: "m"}}, Store: store, Metrics: env.met, HealthInterval: time.Hour}
	if !noChain {
		cfg.Embeddings.Models = []moltbot.ModelRef{{Provider: "e1", Model: "m"}, {Provider: "e2", Model: "m"}}
	}
	rt, err := actors.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var as *auth.Service
	var pol chat.Policy
	if len(tenants) > 0 {
		if as, err = auth.New(auth.Config{Enabled: true, Tenants: tenants}, store); err != nil {
			t.Fatal(err)
		}
		pol = as
		for _, tn := range tenants {
			k, _, err := as.CreateKey(tn.ID, tn.ID, auth.ScopeChat, 0)
			if err != nil {
				t.Fatal(err)
			}
			env.keys[tn.ID] = k
		}
	}
	c := chat.New(rt, pol, chat.Config{MaxMessageBytes: 64, Metrics: env.met, Embedder: actors.EmbeddingsOf(rt)})
	srv := httptest.NewServer(New(c, manage.New(manage.Config{Auth: as, Runtime: rt}), Config{MaxBodyBytes: 64 << 10, Metrics: env.met, Version: "test"}))
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
		if as != nil {
			as.Close()
		}
	})
	env.url = srv.URL
	return env
}

func (e *embedEnv) post(t testing.TB, key, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/v1/embeddings", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+e.keys[key])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestEmbeddingsFloat(t *testing.T) {
	e := setupEmbeddings(t, false)
	resp, b := e.post(t, "", `{"input":["hello","wörld"],"model":"moltbot","encoding_format":"float","user":"u1"}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Moltbot-Provider") != "e1/m" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, b)
	}
	var list openaiwire.EmbeddingList
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if list.Object != "list" || list.Model != "e1/m" || len(list.Data) != 2 || list.Usage.PromptTokens != 6 || list.Usage.TotalTokens != 6 {
		t.Fatalf("%s", b)
	}
	for i, d := range list.Data {
		want := []float32{vectorValue([]string{"hello", "wörld"}[i], i, 0), vectorValue([]string{"hello", "wörld"}[i], i, 1),
			vectorValue([]string{"hello", "wörld"}[i], i, 2), vectorValue([]string{"hello", "wörld"}[i], i, 3)}
		if d.Object != "embedding" || d.Index != i || !sameBits(d.Embedding, want) {
			t.Errorf("data[%d] = %+v, want %v", i, d, want)
		}
	}
	// OpenAI's usage has no completion_tokens.
	if strings.Contains(string(b), "completion_tokens") {
		t.Errorf("usage: %s", b)
	}
}

// moltbot's own OpenAI client, which asks for base64, against moltbot: the
// vectors arrive bit for bit; a plain string input is one text.
func TestEmbeddingsBase64ThroughOpenAIClient(t *testing.T) {
	e := setupEmbeddings(t, false)
	c := openai.New(openai.Config{Name: "moltbot", BaseURL: e.url})
	input := []string{"a", "bb", "the third text"}
	res, err := c.Embed(context.Background(), &inference.EmbedRequest{Model: "moltbot", Input: input})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range res.Vectors {
		want := make([]float32, 4)
		for k := range want {
			want[k] = vectorValue(input[i], i, k)
		}
		if !sameBits(v, want) {
			t.Errorf("vector %d = %v, want %v", i, v, want)
		}
	}
	if res.Model != "e1/m" || res.Usage.PromptTokens != 9 {
		t.Errorf("%+v", res)
	}
	resp, b := e.post(t, "", `{"input":"one","encoding_format":"base64"}`)
	var list struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &list) != nil || len(list.Data) != 1 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	raw, err := base64.StdEncoding.DecodeString(list.Data[0].Embedding)
	if err != nil || len(raw) != 16 || math.Float32frombits(binary.LittleEndian.Uint32(raw[4:])) != vectorValue("one", 0, 1) {
		t.Fatalf("%v %x", err, raw)
	}
}

// The first model of the chain down, the next answers and says so.
func TestEmbeddingsFailover(t *testing.T) {
	e := setupEmbeddings(t, false)
	e.e1.down.Store(true)
	resp, b := e.post(t, "", `{"input":"x"}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Moltbot-Provider") != "e2/m" || resp.Header.Get("X-Moltbot-Failovers") != "1" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, b)
	}
	e.e2.down.Store(true)
	resp, b = e.post(t, "", `{"input":"x"}`)
	if resp.StatusCode != 502 || !strings.Contains(string(b), "connection refused") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestEmbeddingsBadRequests(t *testing.T) {
	e := setupEmbeddings(t, false)
	many, _ := json.Marshal(map[string]any{"input": make([]string, chat.MaxEmbedInputs+1)})
	for _, tc := range []struct {
		body   string
		status int
		param  string
		msg    string
	}{
		{`{}`, 400, "input", "input is required"},
		{`{"input":null}`, 400, "input", "input is required"},
		{`{"input":""}`, 400, "input[0]", "must not be empty"},
		{`{"input":["a",""]}`, 400, "input[1]", "must not be empty"},
		{`{"input":[]}`, 400, "input", "non-empty"},
		{`{"input":[1,2,3]}`, 400, "input", "token arrays are not supported"},
		{`{"input":[[1,2],[3]]}`, 400, "input", "token arrays are not supported"},
		{`{"input":{"a":1}}`, 400, "input", "expected a string or an array of strings"},
		{`{"input":["a",2]}`, 400, "input", "expected a string or an array of strings"},
		{`{"input":"a","encoding_format":"int8"}`, 400, "encoding_format", `"float" or "base64"`},
		{`{"input":"a","dimensions":0}`, 400, "dimensions", "at least 1"},
		{`{"input":"a","dimensions":"8"}`, 400, "dimensions", "expected a number"},
		{`{"input":"a","model":"nope/x"}`, 404, "model", "not found"},
		{`{"input":"a","model":7}`, 400, "model", "expected a string"},
		{`{"input":"` + strings.Repeat("x", 65) + `"}`, 413, "input[0]", "at most 64"},
		{string(many), 413, "input", "at most 2048"},
		{`{"input":"a"} {}`, 400, "", "more than one JSON value"},
	} {
		resp, b := e.post(t, "", tc.body)
		var eb errBody
		if resp.StatusCode != tc.status || json.Unmarshal(b, &eb) != nil || eb.Error.Param == nil && tc.param != "" ||
			eb.Error.Param != nil && *eb.Error.Param != tc.param || !strings.Contains(eb.Error.Message, tc.msg) {
			t.Errorf("%.80s: %d %s; want %d naming %q", tc.body, resp.StatusCode, b, tc.status, tc.param)
		}
	}
	if n := e.e1.calls.Load() + e.e2.calls.Load(); n != 0 {
		t.Errorf("%d refused requests reached a model", n)
	}
	resp, _ := do(t, "GET", e.url+"/v1/embeddings", "")
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestEmbeddingsWithoutChain(t *testing.T) {
	e := setupEmbeddings(t, true)
	resp, b := e.post(t, "", `{"input":"x"}`)
	if resp.StatusCode != 404 || !strings.Contains(string(b), "models.embeddings.primary") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	// One model by name still embeds.
	if resp, b := e.post(t, "", `{"input":"x","model":"e2/m"}`); resp.StatusCode != 200 || resp.Header.Get("X-Moltbot-Provider") != "e2/m" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// With auth: a key is required, the tenant's allow-list holds, and the
// input's tokens are charged against its tokens_per_minute.
func TestEmbeddingsAuthAllowListAndCharge(t *testing.T) {
	e := setupEmbeddings(t, false, auth.Tenant{ID: "a", Models: []string{"e2/m"}}, auth.Tenant{ID: "b", Limits: auth.Limits{TokensPerMinute: 5}})
	if resp, b := e.post(t, "", `{"input":"x"}`); resp.StatusCode != 401 {
		t.Fatalf("no key: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.post(t, "a", `{"input":"x"}`); resp.StatusCode != 403 || !strings.Contains(string(b), `is not allowed for tenant`) {
		t.Fatalf("chain not on the list: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.post(t, "a", `{"input":"x","model":"e2/m"}`); resp.StatusCode != 200 {
		t.Fatalf("allowed model: %d %s", resp.StatusCode, b)
	}
	// b spends 6 tokens of its 5 a minute: the next call waits.
	if resp, b := e.post(t, "b", `{"input":["x","y"]}`); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if resp, b := e.post(t, "b", `{"input":"x"}`); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over its tokens: %d %s", resp.StatusCode, b)
	}
}

// The body written by hand is what encoding/json writes for the same list
// (but for usage, which OpenAI writes without completion_tokens).
func TestEmbeddingsBodyMatchesEncodingJSON(t *testing.T) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.1, 1e-6, 9.99e-7, 1e-7, -1.5e-10, 123456.78, 1e20, 1e21, 3.4028235e38,
		math.SmallestNonzeroFloat32, 0.010071029, -0.0017594862}
	for k := 0; k < 2000; k++ {
		vals = append(vals, vectorValue("x", k, k))
	}
	out := &moltbot.Embeddings{Vectors: [][]float32{vals, vals[:3]}, Usage: moltbot.Usage{PromptTokens: 12}, Served: moltbot.ModelRef{Provider: "p", Model: "m<&>"}, Failovers: 2}
	w := httptest.NewRecorder()
	writeEmbeddings(w, out, false)
	type usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	}
	want := struct {
		Object string                 `json:"object"`
		Data   []openaiwire.Embedding `json:"data"`
		Model  string                 `json:"model"`
		Usage  usage                  `json:"usage"`
	}{Object: "list", Model: "p/m<&>", Usage: usage{12, 12},
		Data: []openaiwire.Embedding{{Object: "embedding", Index: 0, Embedding: vals}, {Object: "embedding", Index: 1, Embedding: vals[:3]}}}
	wb, _ := json.Marshal(want)
	if got := strings.TrimSuffix(w.Body.String(), "\n"); got != string(wb) {
		for i := range got {
			if i >= len(wb) || got[i] != wb[i] {
				t.Fatalf("differs at byte %d:\n got %.120s\nwant %.120s", i, got[max(i-40, 0):], wb[max(i-40, 0):])
			}
		}
		t.Fatalf("got %d bytes, want %d", len(got), len(wb))
	}
	if w.Header().Get("X-Moltbot-Failovers") != "2" {
		t.Error(w.Header())
	}
}

// FuzzEmbeddings sends arbitrary bodies: every answer is JSON, never a 5xx.
func FuzzEmbeddings(f *testing.F) {
	f.Add(`{"input":"hello"}`)
	f.Add(`{"input":["a","b"],"encoding_format":"base64","dimensions":4,"model":"e2/m"}`)
	f.Add(`{"input":[[1,2]],"encoding_format":"float"}`)
	f.Add(`{"input":"a","dimensions":-3,"user":7}`)
	e := setupEmbeddings(f, false)
	f.Fuzz(func(t *testing.T, body string) {
		resp, b := e.post(t, "", body)
		if resp.StatusCode >= 500 {
			t.Fatalf("%q: %d %s", body, resp.StatusCode, b)
		}
		if !json.Valid(b) {
			t.Fatalf("%q: invalid JSON %s", body, b)
		}
	})
}

// BenchmarkEmbeddings is the endpoint end to end over loopback: eight
// texts, 768 dimensions, from an in-process provider.
func BenchmarkEmbeddings(b *testing.B) {
	for _, format := range []string{"float", "base64"} {
		b.Run(format, func(b *testing.B) {
			e := setupEmbeddings(b, false)
			e.e1.dims = 768
			texts := make([]string, 8)
			for i := range texts {
				texts[i] = fmt.Sprintf("text number %d", i)
			}
			body, _ := json.Marshal(map[string]any{"input": texts, "encoding_format": format})
			b.ReportAllocs()
			for b.Loop() {
				resp, err := http.Post(e.url+"/v1/embeddings", "application/json", strings.NewReader(string(body)))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}

// BenchmarkEmbeddingsBody compares the hand-written body with encoding/json
// on eight 768-dimension vectors.
func BenchmarkEmbeddingsBody(b *testing.B) {
	out := &moltbot.Embeddings{Served: moltbot.ModelRef{Provider: "p", Model: "m"}}
	for i := 0; i < 8; i++ {
		v := make([]float32, 768)
		for k := range v {
			v[k] = vectorValue("x", i, k)
		}
		out.Vectors = append(out.Vectors, v)
	}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		w := httptest.NewRecorder()
		for b.Loop() {
			w.Body.Reset()
			writeEmbeddings(w, out, false)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		w := httptest.NewRecorder()
		for b.Loop() {
			w.Body.Reset()
			list := openaiwire.EmbeddingList{Object: "list", Model: out.Served.String()}
			for i, v := range out.Vectors {
				list.Data = append(list.Data, openaiwire.Embedding{Object: "embedding", Index: i, Embedding: v})
			}
			writeJSON(w, http.StatusOK, list)
		}
	})
}
