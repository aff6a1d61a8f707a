package openaiwire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var requestSeeds = []string{
	`{"model":"moltbot","stream":false,"messages":[{"role":"user","content":"lorem ipsum dolor"}]}`,
	`{"model":"moltbot","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi \"there\"\n\u00e9 \ud83e\udd16"}]}`,
	` { "model" : "m" , "messages" : [ {"role":"user","content":"x","annotations":{"id": [1, 2.5, null, true]}} ] , "max_tokens" : 5 , "max_completion_tokens" : null , "temperature" : 0.7 , "top_p" : 1e-1 , "stop" : "END" , "seed" : -42 , "n" : 1 } `,
	`{"messages":[{"role":"user","content":[{"type":"text","text":"parts"}]}]}`,
	`{"messages":null,"stop":["a","b"],"stream":null,"model":null}`,
	`{"Model":"x"}`,
	`{"model":"a","model":"b"}`,
	`{"max_tokens":1.0}`,
	`{"temperature":1e999}`,
	`{"messages":[null]}`,
	`[1]`,
	`{"messages":[{"role":"user","content":"x","name":"n"}]} x`,
	`{"model":"m","messages":[],"metadata":{"id":"1"}}`,
	`{"model":"m","messages":[],"frobnicate":true}`,
	`{"model":"m","stream_options":{"include_usage":true,"include_obfuscation":false}}`,
	`{"messages":[{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`,
}

// A body with a member the fast path does not read goes the slow way,
// known (encoding/json decodes it) or not (the gateway refuses it by name).
func TestDecodeChatRequestLeavesOthers(t *testing.T) {
	for _, s := range requestSeeds[len(requestSeeds)-4:] {
		if DecodeChatRequest([]byte(s), &ChatRequest{}) {
			t.Errorf("%s: taken", s)
		}
	}
}

func TestDecodeChatRequest(t *testing.T) {
	for _, s := range requestSeeds {
		checkDecodeChatRequest(t, []byte(s))
	}
	for _, s := range requestSeeds[:3] {
		if !DecodeChatRequest([]byte(s), &ChatRequest{}) {
			t.Errorf("%s: not taken", s)
		}
	}
	var r ChatRequest
	if !DecodeChatRequest([]byte(requestSeeds[1]), &r) || !r.Stream || !r.IncludeUsage() || len(r.Messages) != 2 || r.Messages[1].Content.Text() != "hi \"there\"\né 🤖" {
		t.Errorf("the usual request was not taken as it should be: %+v", r)
	}
}

// FuzzDecodeChatRequest: whatever body the fast path takes, it decodes
// exactly as encoding/json does.
func FuzzDecodeChatRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkDecodeChatRequest)
}

func checkDecodeChatRequest(t *testing.T, body []byte) {
	var fast ChatRequest
	if !DecodeChatRequest(body, &fast) {
		return
	}
	var slow ChatRequest
	if err := json.Unmarshal(body, &slow); err != nil {
		t.Fatalf("%q: the fast path took it, encoding/json: %v", body, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q:\nfast %#v\nslow %#v", body, fast, slow)
	}
}

// BenchmarkDecodeChatRequest: the floor's request (bench.Prompt(64)), one
// pass against encoding/json.
func BenchmarkDecodeChatRequest(b *testing.B) {
	body := []byte(`{"messages":[{"content":"` + strings.Repeat("lorem ipsum ", 21) + `","role":"user"}],"model":"moltbot","stream":true,"stream_options":{"include_usage":true}}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r ChatRequest
			if !DecodeChatRequest(body, &r) {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r ChatRequest
			if err := json.NewDecoder(bytes.NewReader(body)).Decode(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
