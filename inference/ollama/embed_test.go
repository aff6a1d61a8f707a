package ollama

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/ollama/ollama/api"
)

// embedAnswer is an /api/embed answer as Ollama writes it (docs.ollama.com/api/embed).
const embedAnswer = `{"model":"nomic-embed-text","embeddings":[[0.010071029,-0.0017594862,0.05007221],[-0.5,0.25,1e-7]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}`

// fakeEmbed is an Ollama server answering /api/embed with status and body,
// recording each request as an api.EmbedRequest and as raw bytes.
func fakeEmbed(t *testing.T, status int, body string) (*httptest.Server, func() (api.EmbedRequest, []byte, *http.Request)) {
	t.Helper()
	var mu sync.Mutex
	var got api.EmbedRequest
	var raw []byte
	var hreq *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/embed" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		raw, hreq = b, r
		got = api.EmbedRequest{}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("request is not an api.EmbedRequest: %v: %s", err, b)
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() (api.EmbedRequest, []byte, *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		return got, raw, hreq
	}
}

func embed(t *testing.T, url string, req *inference.EmbedRequest) (inference.EmbedResult, error) {
	t.Helper()
	c, err := New(Config{Name: "local", BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	return c.Embed(context.Background(), req)
}

func TestEmbed(t *testing.T) {
	srv, got := fakeEmbed(t, 200, embedAnswer)
	res, err := embed(t, srv.URL, &inference.EmbedRequest{Model: "nomic-embed-text", Input: []string{"Why is the sky blue?", "héllo \"x\""}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float32{{0.010071029, -0.0017594862, 0.05007221}, {-0.5, 0.25, 1e-7}}
	if fmt.Sprint(res.Vectors) != fmt.Sprint(want) || res.Usage.PromptTokens != 8 || res.Model != "nomic-embed-text" {
		t.Errorf("result %+v", res)
	}
	req, raw, h := got()
	if req.Model != "nomic-embed-text" || fmt.Sprint(req.Input) != `[Why is the sky blue? héllo "x"]` || req.Truncate == nil || *req.Truncate || req.Dimensions != 0 {
		t.Errorf("request %s", raw)
	}
	if strings.Contains(string(raw), "dimensions") {
		t.Errorf("dimensions sent unasked: %s", raw)
	}
	if h.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(h.Header.Get("User-Agent"), "ollama/") {
		t.Errorf("headers %v", h.Header)
	}

	// dimensions, when asked, is sent.
	if _, err := embed(t, srv.URL, &inference.EmbedRequest{Model: "m", Input: []string{"a", "b"}, Dimensions: 3}); err != nil {
		t.Fatal(err)
	}
	if req, raw, _ := got(); req.Dimensions != 3 {
		t.Errorf("request %s", raw)
	}
}

// The body written by hand is what json.Marshal writes for the same
// api.EmbedRequest, but for its options (null, left out).
func TestEmbedRequestMatchesAPI(t *testing.T) {
	no := false
	for _, req := range []inference.EmbedRequest{
		{Model: "nomic-embed-text", Input: []string{"a"}},
		{Model: "m:latest", Input: []string{"<&>", "\u2028 \x01 é", ""}, Dimensions: 256},
	} {
		got := appendEmbedRequest(nil, &req)
		input := make([]any, len(req.Input))
		for i, s := range req.Input {
			input[i] = s
		}
		want, _ := json.Marshal(api.EmbedRequest{Model: req.Model, Input: input, Truncate: &no, Dimensions: req.Dimensions})
		want = []byte(strings.Replace(string(want), `,"options":null`, "", 1))
		if string(got) != string(want) {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	}
}

func TestEmbedErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		kind   inference.Kind
		msg    string
	}{
		{"missing model", 404, `{"error":"model 'nomic' not found"}`, inference.KindModelNotFound, "not found"},
		{"too long", 400, `{"error":"input exceeds maximum context length"}`, inference.KindBadRequest, "maximum context length"},
		{"down", 500, `{"error":"llama runner process has terminated"}`, inference.KindUnavailable, "terminated"},
		{"busy", 503, `{"error":"server busy, please try again.  maximum pending requests exceeded"}`, inference.KindUnavailable, "busy"},
		{"too few", 200, `{"model":"m","embeddings":[[1,2]]}`, inference.KindUnavailable, "1 vectors for 2 inputs"},
		{"ragged", 200, `{"model":"m","embeddings":[[1,2],[1]]}`, inference.KindUnavailable, "vector 1 has 1 dimensions"},
		{"empty vector", 200, `{"model":"m","embeddings":[[],[]]}`, inference.KindUnavailable, "vector 0 has 0 dimensions"},
		{"not json", 200, `<html>`, inference.KindUnavailable, "malformed embeddings response"},
		{"out of range", 200, `{"embeddings":[[1e39],[1]]}`, inference.KindUnavailable, "malformed embeddings response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := fakeEmbed(t, tc.status, tc.body)
			_, err := embed(t, srv.URL, &inference.EmbedRequest{Model: "nomic", Input: []string{"a", "b"}})
			e, ok := inference.AsError(err)
			if !ok || e.Kind != tc.kind || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("err = %v (%T), want %s with %q", err, err, tc.kind, tc.msg)
			}
		})
	}
}

// An answer larger than its bound is refused as it arrives, not held.
func TestEmbedBodyBound(t *testing.T) {
	limit := inference.EmbedBodyLimit(1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"embeddings":[[`)
		chunk := strings.Repeat("0.125,", 1024)
		for n := int64(0); n <= limit; n += int64(len(chunk)) {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		io.WriteString(w, `1]]}`)
	}))
	defer srv.Close()
	_, err := embed(t, srv.URL, &inference.EmbedRequest{Model: "m", Input: []string{"a"}})
	if e, ok := inference.AsError(err); !ok || !strings.Contains(e.Message, "larger than") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzEmbedResponseMatchesEncodingJSON: whatever answer the one-pass
// reader takes, encoding/json reads the same from it.
func FuzzEmbedResponseMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		embedAnswer,
		`{"model":"all-minilm","embeddings":[]}`,
		`{"embeddings":[[1,2],[3,4]],"prompt_eval_count":2,"extra":{"a":[null,true]}}`,
		`{"Embeddings":[[1]]}`,
		`{"embeddings":[[1]],"embeddings":[[2]]}`,
		`{"embeddings":null,"model":"m"}`,
		`{"model":"m\u00e9","embeddings":[[-0,1E+2]],"prompt_eval_count":-1}`,
		` {"embeddings":[[1e39]]} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := fastEmbedResponse(b)
		if !ok {
			return
		}
		var slow embedResponse
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("%q: the fast path took it; encoding/json: %v", b, err)
		}
		if fast.Model != slow.Model || fast.Usage.PromptTokens != slow.PromptEvalCount || len(fast.Vectors) != len(slow.Embeddings) ||
			(fast.Vectors == nil) != (slow.Embeddings == nil) {
			t.Fatalf("%q: fast %+v slow %+v", b, fast, slow)
		}
		for i := range fast.Vectors {
			if len(fast.Vectors[i]) != len(slow.Embeddings[i]) {
				t.Fatalf("%q: vector %d: %v != %v", b, i, fast.Vectors[i], slow.Embeddings[i])
			}
			for k := range fast.Vectors[i] {
				if math.Float32bits(fast.Vectors[i][k]) != math.Float32bits(slow.Embeddings[i][k]) {
					t.Fatalf("%q: vector %d: %v != %v", b, i, fast.Vectors[i], slow.Embeddings[i])
				}
			}
		}
	})
}

// FuzzEmbed feeds arbitrary answers to the client: it ends with vectors
// that pass CheckVectors or an *inference.Error, never a panic.
func FuzzEmbed(f *testing.F) {
	f.Add([]byte(embedAnswer), 200)
	f.Add([]byte(`{"error":"model 'x' not found"}`), 404)
	f.Add([]byte(`{"embeddings":[[1],[2]]}`), 200)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		c, err := New(Config{Name: "f", BaseURL: "http://fuzz", HTTP: &http.Client{Transport: testutil.BodyTransport{Status: status, ContentType: "application/json", Body: body}}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Embed(context.Background(), &inference.EmbedRequest{Model: "m", Input: []string{"a", "b"}})
		if err != nil {
			if _, ok := inference.AsError(err); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if status/100 != 2 {
			t.Fatalf("status %d accepted", status)
		}
		if err := inference.CheckVectors("f", res.Vectors, 2); err != nil {
			t.Fatal(err)
		}
	})
}
