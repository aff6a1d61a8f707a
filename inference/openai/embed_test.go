package openai

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
	"sync"
	"testing"

	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/testutil"
)

// embeddingRequest is OpenAI's request body (platform.openai.com/docs/api-reference/embeddings/create).
type embeddingRequest struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	EncodingFormat string   `json:"encoding_format"`
	Dimensions     *int     `json:"dimensions"`
}

// b64 encodes v as OpenAI's base64 embeddings: little-endian float32s.
func b64(v ...float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// list writes an embedding list as OpenAI does, each embedding given as
// raw JSON (a base64 string or an array of numbers), in the order given
// with the index given.
func list(idx []int, embs ...string) string {
	var b strings.Builder
	b.WriteString(`{"object":"list","data":[`)
	for k, e := range embs {
		if k > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"object":"embedding","index":%d,"embedding":%s}`, idx[k], e)
	}
	b.WriteString(`],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`)
	return b.String()
}

func fakeEmbeddings(t *testing.T, status int, body string) (*httptest.Server, func() (embeddingRequest, string)) {
	t.Helper()
	var mu sync.Mutex
	var got embeddingRequest
	var raw string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/embeddings" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer sk-test" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", r.Header)
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		raw, got = string(b), embeddingRequest{}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("request: %v: %s", err, b)
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() (embeddingRequest, string) {
		mu.Lock()
		defer mu.Unlock()
		return got, raw
	}
}

func embedOf(t *testing.T, srv *httptest.Server, req *inference.EmbedRequest) (inference.EmbedResult, error) {
	t.Helper()
	return New(Config{Name: "cloud", BaseURL: srv.URL + "/v1", APIKey: "sk-test"}).Embed(context.Background(), req)
}

func TestEmbed(t *testing.T) {
	a, b := []float32{0.5, -0.25, 1e-7}, []float32{3, math.SmallestNonzeroFloat32, float32(math.Copysign(0, -1))}
	for _, tc := range []struct {
		name string
		body string
	}{
		{"base64", list([]int{0, 1}, `"`+b64(a...)+`"`, `"`+b64(b...)+`"`)},
		{"floats", list([]int{0, 1}, `[0.5,-0.25,1e-7]`, `[3,1e-45,-0]`)},
		{"out of order", list([]int{1, 0}, `"`+b64(b...)+`"`, `[0.5,-0.25,1e-7]`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, got := fakeEmbeddings(t, 200, tc.body)
			res, err := embedOf(t, srv, &inference.EmbedRequest{Model: "text-embedding-3-small", Input: []string{"hello", "wörld"}})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(res.Vectors) != fmt.Sprint([][]float32{a, b}) || res.Usage.PromptTokens != 8 || res.Model != "text-embedding-3-small" {
				t.Errorf("result %+v", res)
			}
			req, raw := got()
			if req.Model != "text-embedding-3-small" || fmt.Sprint(req.Input) != "[hello wörld]" || req.EncodingFormat != "base64" || req.Dimensions != nil {
				t.Errorf("request %s", raw)
			}
		})
	}
	srv, got := fakeEmbeddings(t, 200, list([]int{0}, `"`+b64(1, 2)+`"`))
	if _, err := embedOf(t, srv, &inference.EmbedRequest{Model: "m", Input: []string{"x"}, Dimensions: 2}); err != nil {
		t.Fatal(err)
	}
	if req, raw := got(); req.Dimensions == nil || *req.Dimensions != 2 {
		t.Errorf("request %s", raw)
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
		{"dimensions refused", 400, `{"error":{"message":"This model does not support specifying dimensions.","type":"invalid_request_error","param":null,"code":null}}`,
			inference.KindBadRequest, "does not support specifying dimensions"},
		{"no model", 404, `{"error":{"message":"The model 'x' does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}`,
			inference.KindModelNotFound, "does not exist"},
		{"overloaded", 503, `{"error":{"message":"overloaded","type":"server_error"}}`, inference.KindUnavailable, "overloaded"},
		{"too few", 200, list([]int{0}, `[1]`), inference.KindUnavailable, "1 embeddings for 2 inputs"},
		{"index twice", 200, list([]int{1, 1}, `[1]`, `[2]`), inference.KindUnavailable, "index 1 given twice"},
		{"index out of range", 200, list([]int{0, 5}, `[1]`, `[2]`), inference.KindUnavailable, "out of range"},
		{"ragged", 200, list([]int{0, 1}, `[1,2]`, `[2]`), inference.KindUnavailable, "vector 1 has 1 dimensions"},
		{"not float32s", 200, list([]int{0, 1}, `"AAA="`, `"AAA="`), inference.KindUnavailable, "not a whole number of float32s"},
		{"NaN", 200, list([]int{0, 1}, `"`+b64(float32(math.NaN()))+`"`, `"`+b64(1)+`"`), inference.KindUnavailable, "holds NaN"},
		{"not json", 200, `{"data":`, inference.KindUnavailable, "malformed embeddings response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := fakeEmbeddings(t, tc.status, tc.body)
			_, err := embedOf(t, srv, &inference.EmbedRequest{Model: "m", Input: []string{"a", "b"}})
			e, ok := inference.AsError(err)
			if !ok || e.Kind != tc.kind || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("err = %v (%T), want %s with %q", err, err, tc.kind, tc.msg)
			}
		})
	}
}

// FuzzEmbeddingListMatchesEncodingJSON: whatever list the one-pass reader
// takes, the encoding/json reader reads the same from it.
func FuzzEmbeddingListMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		list([]int{0, 1}, `"`+b64(0.5, -1)+`"`, `"`+b64(2, 3)+`"`),
		list([]int{1, 0}, `[0.5,-0.25]`, `[1e-7,3]`),
		`{"object":"list","data":[{"object":"embedding","embedding":[1]}],"model":"m","usage":null}`,
		`{"data":[{"index":0,"embedding":"AAAAAA=="}],"Usage":{"prompt_tokens":1}}`,
		`{"data":[{"index":0,"embedding":"AAAA\/A=="}]}`,
		`{"data":[{"index":-1,"embedding":[]}],"usage":{"prompt_tokens":3,"total_tokens":"x"}}`,
		`{"data":[{"embedding":null}]}`,
		`{"data":[{}],"model":"m\u00e9"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := fastEmbeddingList(b)
		if !ok {
			return
		}
		slow, err := slowEmbeddingList(b)
		if err != nil {
			t.Fatalf("%q: the fast path took it; encoding/json: %v", b, err)
		}
		if fast.model != slow.model || fast.usage != slow.usage || fmt.Sprint(fast.items) != fmt.Sprint(slow.items) || len(fast.all) != len(slow.all) {
			t.Fatalf("%q:\nfast %+v\nslow %+v", b, fast, slow)
		}
		for k := range fast.all {
			if math.Float32bits(fast.all[k]) != math.Float32bits(slow.all[k]) {
				t.Fatalf("%q: [%d] %v != %v", b, k, fast.all[k], slow.all[k])
			}
		}
	})
}

// FuzzEmbed feeds arbitrary answers to the client: vectors that pass
// CheckVectors or an *inference.Error, never a panic.
func FuzzEmbed(f *testing.F) {
	f.Add([]byte(list([]int{0, 1}, `"`+b64(1, 2)+`"`, `[3,4]`)), 200)
	f.Add([]byte(`{"error":{"message":"nope"}}`), 429)
	f.Add([]byte(`{"data":[{"embedding":[1]},{"embedding":[2]}]}`), 200)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		c := New(Config{Name: "f", BaseURL: "http://fuzz/v1", HTTP: &http.Client{Transport: testutil.BodyTransport{Status: status, ContentType: "application/json", Body: body}}})
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
