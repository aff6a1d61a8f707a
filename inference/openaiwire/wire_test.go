package openaiwire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

func TestDecodeRequest(t *testing.T) {
	var r ChatRequest
	err := json.Unmarshal([]byte(`{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"stop":"x",
		"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}},{"type":"text","text":"b"}]},{"role":"assistant","content":null}]}`), &r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "m" || !r.Stream || !r.IncludeUsage() || *r.MaxTokens != 5 || r.MaxCompletionTokens != nil || len(r.Stop) != 1 || r.Stop[0] != "x" {
		t.Errorf("request %+v", r)
	}
	m := r.Messages
	if m[0].Content.Text() != "be brief" || m[0].Content.NotText() != -1 || m[1].Content.Text() != "ab" || m[1].Content.NotText() != 1 ||
		m[2].Content != nil || m[2].Content.Text() != "" {
		t.Errorf("contents %+v", m)
	}
	for body, param := range map[string]string{`{"messages":[{"role":"user","content":5}]}`: "content", `{"stop":{"a":1}}`: "stop"} {
		var fe *FieldError
		if err := json.Unmarshal([]byte(body), &r); !errors.As(err, &fe) || fe.Param != param {
			t.Errorf("%s: %v", body, err)
		}
	}
	var many ChatRequest
	if err := json.Unmarshal([]byte(`{"stop":["a","b"],"max_completion_tokens":3}`), &many); err != nil || len(many.Stop) != 2 || *many.MaxCompletionTokens != 3 {
		t.Errorf("%+v %v", many, err)
	}
}

// What the Append functions write reads back as the API's objects.
func TestAppendReadsBack(t *testing.T) {
	u := moltbot.Usage{PromptTokens: 3, CompletionTokens: 4}
	odd := "q\"uote \\ <tag> \u2028 é"
	var c Completion
	b := AppendMessage(AppendHead(nil, "id-"+odd, ObjectCompletion, 1700000000, "p/"+odd, "fp"), "hello "+odd, "stop", u)
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if c.ID != "id-"+odd || c.Object != ObjectCompletion || c.Created != 1700000000 || c.Model != "p/"+odd || c.SystemFingerprint != "fp" ||
		c.Choices[0].Message.Content != "hello "+odd || c.Choices[0].Message.Role != "assistant" || *c.Choices[0].FinishReason != "stop" ||
		*c.Usage != (Usage{3, 4, 7}) {
		t.Errorf("completion %s", b)
	}
	for i, chunk := range [][]byte{
		AppendDelta(AppendHead(nil, "i", ObjectChunk, 1, "m", "fp"), odd, true),
		AppendDelta(AppendHead(nil, "i", ObjectChunk, 1, "m", "fp"), "x", false),
		AppendFinish(AppendHead(nil, "i", ObjectChunk, 1, "m", "fp"), "length"),
		AppendUsageChunk(AppendHead(nil, "i", ObjectChunk, 1, "m", "fp"), u),
	} {
		var c Completion
		if err := json.Unmarshal(chunk, &c); err != nil || c.Object != ObjectChunk {
			t.Fatalf("chunk %d %s: %v", i, chunk, err)
		}
		switch i {
		case 0:
			if d := c.Choices[0].Delta; d.Role != "assistant" || d.Content != odd || c.Choices[0].FinishReason != nil {
				t.Errorf("first delta %s", chunk)
			}
		case 1:
			if d := c.Choices[0].Delta; d.Role != "" || d.Content != "x" {
				t.Errorf("delta %s", chunk)
			}
		case 2:
			if *c.Choices[0].FinishReason != "length" {
				t.Errorf("finish %s", chunk)
			}
		case 3:
			if len(c.Choices) != 0 || c.Usage.TotalTokens != 7 {
				t.Errorf("usage %s", chunk)
			}
		}
	}
	var e Completion
	if err := json.Unmarshal(AppendError(nil, "no "+odd, "invalid_request_error", "messages", ""), &e); err != nil ||
		e.Error.Message != "no "+odd || *e.Error.Param != "messages" || e.Error.Code != nil {
		t.Errorf("error %+v %v", e.Error, err)
	}
}

// A chunk costs no allocation once the buffer has grown.
func TestAppendAllocs(t *testing.T) {
	b := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		b = AppendDelta(AppendHead(b[:0], "chatcmpl-1", ObjectChunk, 1, "p/m", "fp"), "token", false)
	}); n != 0 {
		t.Errorf("%v allocations a chunk", n)
	}
}

// FuzzContent: a content decodes or fails with a FieldError or a JSON
// error, never panics, and a string content reads back as itself.
func FuzzContent(f *testing.F) {
	for _, s := range []string{`"hi"`, `null`, `[{"type":"text","text":"a"}]`, `[{"type":"image_url"}]`, `5`, `[1]`, `"\u00e9"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c Content
		err := json.Unmarshal([]byte(s), &c)
		var str string
		if json.Unmarshal([]byte(s), &str) == nil && strings.HasPrefix(strings.TrimSpace(s), `"`) {
			if err != nil || c.Text() != str || c.NotText() != -1 {
				t.Fatalf("string %s: %q %v", s, c.Text(), err)
			}
		}
		_ = c.Text()
	})
}
