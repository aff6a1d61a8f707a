package openai

import (
	"context"
	"net/http"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/testutil"
)

// FuzzStream feeds arbitrary bytes as an SSE response: the client must end
// with a result or an *inference.Error, never panic or hang.
func FuzzStream(f *testing.F) {
	f.Add([]byte(sseChunk("hi")+finish+usage+"data: [DONE]\n\n"), 200)
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":null}}]}\n\n: x\r\n\r\ndata: [DONE]"), 200)
	f.Add([]byte(`{"error":{"message":"nope"}}`), 429)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		c := New(Config{Name: "f", BaseURL: "http://fuzz/v1", HTTP: &http.Client{Transport: testutil.BodyTransport{Status: status, ContentType: "text/event-stream", Body: body}}})
		_, err := c.Chat(context.Background(), &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}},
			func(inference.Delta) error { return nil })
		if err != nil {
			if _, ok := inference.AsError(err); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
		}
		if status/100 != 2 && err == nil {
			t.Fatalf("status %d accepted", status)
		}
	})
}

// FuzzScanChunkMatchesSlow: whatever chunk the fast path takes, it reads
// exactly as scanChunkSlow (jsonparser, encoding/json for usage) does.
func FuzzScanChunkMatchesSlow(f *testing.F) {
	for _, s := range []string{
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"sim","system_fingerprint":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"[simulated]"},"logprobs":null,"finish_reason":null}]}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"sim","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"sim","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":0}}}`,
		`{"choices":[{"index":0,"delta":{"content":"x"},"logprobs":{"content":[{"token":"x","logprob":-0.5e-3,"top_logprobs":[]}]},"finish_reason":"stop"}]}`,
		`{"choices":[{"delta":{"content":"Hi \"there\"\n\u00e9 \ud83e\udd16"}},{"delta":{"content":"b"}}],"obfuscation":"abc"}`,
		`{"choices":[{"delta":{"content":null}}],"usage":null,"error":null}`,
		`{"Model":"x","choices":[]}`,
		`{"error":{"message":"overloaded","type":"server_error"}}`,
		` { "model" : "m" , "choices" : [ { "delta" : { "content" : "a" } } ] } `,
		`{"choices":[{"delta":{"content":"\x"}}]}`,
		`{"choices":[{"delta":{"content":5}}]}`,
		`{"usage":{"prompt_tokens":1.5}}`,
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, wantModel bool) {
		fast, ok := fastChunk(data, wantModel)
		if !ok {
			return
		}
		slow, err := scanChunkSlow(data, wantModel)
		if err != nil {
			t.Fatalf("%q: fast path took it, the slow path failed: %v", data, err)
		}
		if fast.content != slow.content || fast.finish != slow.finish || fast.model != slow.model || fast.errMsg != slow.errMsg ||
			(fast.usage == nil) != (slow.usage == nil) || fast.usage != nil && *fast.usage != *slow.usage {
			t.Fatalf("%q: fast %+v (usage %v), slow %+v (usage %v)", data, fast, fast.usage, slow, slow.usage)
		}
	})
}

// The fast path takes the usual shapes (else it would be dead weight, and
// the fuzz test above would pass on nothing), and hands over what
// encoding/json would read otherwise: a key that folds to a known one, a
// key twice, a value of another type.
func TestFastChunkTakesTheUsualShapes(t *testing.T) {
	for _, s := range []string{
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"sim","system_fingerprint":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"[simulated]"},"logprobs":null,"finish_reason":null}]}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"sim","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":0}}}`,
		`{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}],"usage":null,"error":null}`,
	} {
		if _, ok := fastChunk([]byte(s), true); !ok {
			t.Errorf("not taken: %s", s)
		}
	}
	for _, s := range []string{
		`{"Model":"x","choices":[]}`,
		`{"model":"a","model":"b"}`,
		`{"choices":[{"delta":{"content":"a","Content":"b"}}]}`,
		`{"choices":[{"delta":{"content":5}}]}`,
		`{"usage":{"prompt_tokens":1.5}}`,
		`{"choices":[]} x`,
	} {
		if _, ok := fastChunk([]byte(s), true); ok {
			t.Errorf("taken: %s", s)
		}
	}
}
