package openai

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/testutil"
)

// FuzzStream feeds arbitrary bytes as an SSE response: the client must end
// with a result or an *inference.Error, never panic or hang, and never
// pass on a tool call whose index skips ahead.
func FuzzStream(f *testing.F) {
	f.Add([]byte(sseChunk("hi")+finish+usage+"data: [DONE]\n\n"), 200)
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":null}}]}\n\n: x\r\n\r\ndata: [DONE]"), 200)
	f.Add([]byte(`{"error":{"message":"nope"}}`), 429)
	f.Add([]byte(strings.Join(toolStream, "")), 200)
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":3,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n"), 200)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		c := New(Config{Name: "f", BaseURL: "http://fuzz/v1", HTTP: &http.Client{Transport: testutil.BodyTransport{Status: status, ContentType: "text/event-stream", Body: body}}})
		n := 0
		_, err := c.Chat(context.Background(), &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}},
			func(d inference.Delta) error {
				// The calls passed on start at the next index: a
				// receiver's list of calls grows by one at a time.
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
		if status/100 != 2 && err == nil {
			t.Fatalf("status %d accepted", status)
		}
	})
}

// FuzzScanChunkMatchesSlow: whatever chunk the fast path takes, it reads
// exactly as scanChunkSlow (jsonparser, encoding/json for usage and tool
// calls) does; in particular it never takes a chunk with a piece of a tool
// call (the fast path reads none, so it would lose it).
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
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"city\": \"Paris\"}"}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":"x","tool_calls":null}}]}`,
		`{"choices":[{"index":0,"delta":{"content":"x","tool_calls":[]}}]}`,
		`{"choices":[{"delta":{"Tool_Calls":[{"index":0}]}}]}`,
		`{"choices":[{"delta":{}},{"delta":{"tool_calls":[{"index":0}]}}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
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
			(fast.usage == nil) != (slow.usage == nil) || fast.usage != nil && *fast.usage != *slow.usage ||
			!reflect.DeepEqual(fast.calls, slow.calls) {
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
		`{"choices":[{"delta":{"content":"a","tool_calls":null}},{"delta":{"tool_calls":[ ]}}]}`,
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
		`{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}`,
		`{"choices":[{"delta":{}},{"delta":{"tool_calls":[{"index":0}]}}]}`,
		`{"choices":[{"delta":{"TOOL_CALLS":null}}]}`,
	} {
		if _, ok := fastChunk([]byte(s), true); ok {
			t.Errorf("taken: %s", s)
		}
	}
}

// sameScan fails t when a (a fast reading of data) differs from
// scanChunkSlow's.
func sameScan(t *testing.T, data []byte, wantModel bool, a scanned) {
	t.Helper()
	slow, err := scanChunkSlow(data, wantModel)
	if err != nil {
		t.Fatalf("%q: the shape took it, the slow path failed: %v", data, err)
	}
	if a.content != slow.content || a.finish != slow.finish || a.model != slow.model || a.errMsg != slow.errMsg ||
		(a.usage == nil) != (slow.usage == nil) || a.usage != nil && *a.usage != *slow.usage || !reflect.DeepEqual(a.calls, slow.calls) {
		t.Fatalf("%q: shape %+v (usage %v), slow %+v (usage %v)", data, a, a.usage, slow, slow.usage)
	}
}

// FuzzShapeMatchesSlow: a chunk that a shape learned from another chunk
// takes reads exactly as scanChunkSlow reads it. Each input is learned
// from first; then the second chunk is read, and a third made of the
// first with its text replaced by arbitrary bytes between quotes (the
// case the shape exists for: it must refuse a replacement that is not one
// valid string, an unescaped quote or an invalid escape in it, or a
// second value smuggled in).
func FuzzShapeMatchesSlow(f *testing.F) {
	chunk := `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"sim","system_fingerprint":"x","choices":[{"index":0,"delta":{"content":"%s"},"logprobs":null,"finish_reason":null}]}`
	f.Add([]byte(strings.Replace(chunk, "%s", "a", 1)), []byte(strings.Replace(chunk, "%s", " token", 1)), []byte(` b\"c\u00e9`), true, true)
	f.Add([]byte(strings.Replace(chunk, "%s", "a", 1)), []byte(strings.Replace(chunk, "%s", `x","content":"y`, 1)), []byte(`x","content":"y`), false, true)
	f.Add([]byte(`{"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}],"model":"m"}`), []byte(`{"choices":[{"delta":{"content":"b"},"finish_reason":"stop"}],"model":"m"}`), []byte(`\x`), true, false)
	f.Add([]byte(`{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}`), []byte(`{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"c"}}]}`), []byte(`"`), false, false)
	f.Add([]byte(`{"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`), []byte(`{"choices":[{"delta":{"content":"b"}}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`), []byte(`\ud83e`), true, true)
	f.Fuzz(func(t *testing.T, first, second, text []byte, model1, model2 bool) {
		var s shape
		out, err := s.scan(first, model1)
		if err == nil && out.ce != 0 {
			// What it learned from: that chunk again, with another text.
			third := append(append(append(append([]byte(nil), first[:out.cs]...), '"'), text...), '"')
			third = append(third, first[out.ce:]...)
			if got, ok := s.match(third, model2); ok {
				sameScan(t, third, model2, got)
			}
		}
		if got, ok := s.match(second, model2); ok {
			sameScan(t, second, model2, got)
		}
		// scan, hit or not, is scanChunk.
		got, err := s.scan(second, model2)
		want, werr := scanChunk(second, model2)
		if (err == nil) != (werr == nil) || err == nil && (got.content != want.content || got.finish != want.finish || got.model != want.model ||
			got.errMsg != want.errMsg || (got.usage == nil) != (want.usage == nil) || !reflect.DeepEqual(got.calls, want.calls)) {
			t.Fatalf("%q after %q: scan %+v %v, scanChunk %+v %v", second, first, got, err, want, werr)
		}
	})
}

// A stream's text chunks take the shape (else FuzzShapeMatchesSlow would
// pass on nothing): after the first text chunk, each next one is read
// without a scan; a chunk of another shape (the finish, the usage) is
// scanned and read as scanChunk reads it.
func TestShapeTakesTextChunks(t *testing.T) {
	chunk := func(delta, finish string) []byte {
		return []byte(`{"id":"chatcmpl-sim1","object":"chat.completion.chunk","created":1796190393,"model":"sim","system_fingerprint":"moltbot-sim","choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + finish + `}]}`)
	}
	var s shape
	steps := []struct {
		data    []byte
		model   bool
		hit     bool
		content string
	}{
		{chunk(`{"role":"assistant","content":"[simulated]"}`, "null"), true, false, "[simulated]"},
		{chunk(`{"content":" blue"}`, "null"), false, false, " blue"}, // another shape: learned
		{chunk(`{"content":" house"}`, "null"), false, true, " house"},
		{chunk(`{"content":" \"quoted\" \u00e9\n"}`, "null"), false, true, " \"quoted\" é\n"},
		{chunk(`{"content":""}`, "null"), false, true, ""},
		{chunk(`{"content":" house"}`, "null"), true, false, " house"},        // learned without its model
		{chunk(`{"content":" a","content":"b"}`, "null"), false, false, " a"}, // scanned: the slow path
		{chunk(`{"content":" x\q"}`, "null"), false, false, ""},
		{chunk(`{}`, `"stop"`), false, false, ""},
		{chunk(`{"content":" cloud"}`, "null"), false, true, " cloud"},
	}
	for i, st := range steps {
		_, hit := s.match(st.data, st.model)
		got, err := s.scan(st.data, st.model)
		want, werr := scanChunk(st.data, st.model)
		if hit != st.hit || (err == nil) != (werr == nil) || got.content != want.content || got.finish != want.finish || got.model != want.model {
			t.Fatalf("step %d %s: hit %v (want %v), scan %+v %v, scanChunk %+v %v", i, st.data, hit, st.hit, got, err, want, werr)
		}
		if err == nil && got.content != st.content {
			t.Fatalf("step %d: content %q, want %q", i, got.content, st.content)
		}
	}
}

// A shape keeps no large chunk: one with more than maxShape bytes around
// its text is read (scanned) but not learned, so a server that sends huge
// chunks costs a call no second copy of them beside the reader's.
func TestShapeKeepsNoLargeChunk(t *testing.T) {
	big := []byte(`{"id":"` + strings.Repeat("x", maxShape) + `","choices":[{"delta":{"content":"a"}}]}`)
	var s shape
	if out, err := s.scan(big, true); err != nil || out.content != "a" || s.known {
		t.Fatalf("content %q, err %v, learned %v", out.content, err, s.known)
	}
	small := []byte(`{"id":"x","choices":[{"delta":{"content":"a"}}]}`)
	if out, err := s.scan(small, true); err != nil || out.content != "a" || !s.known || cap(s.buf) > 2*maxShape {
		t.Fatalf("content %q, err %v, learned %v, kept %d bytes", out.content, err, s.known, cap(s.buf))
	}
}
