package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/openaiwire"
)

// Every parser of outside input here is fuzzed, seeded with real requests:
// the schema generator (tool parameters and response formats come from
// clients), the Anthropic request, the OpenAI and Ollama chat requests as
// the simulator converts them, and the embedding requests. None may panic;
// what they accept must be usable.

func FuzzSchemaValue(f *testing.F) {
	for _, s := range realSchemas {
		f.Add([]byte(s), uint64(1))
	}
	f.Add([]byte(`{"type":["integer","null"],"minimum":-1e300,"multipleOf":7}`), uint64(3))
	f.Add([]byte(`{"items":[{"type":"string"}],"additionalItems":false,"minItems":1}`), uint64(9))
	f.Fuzz(func(t *testing.T, schema []byte, seed uint64) {
		v, err := SchemaValue(schema, seed)
		if err != nil {
			return
		}
		if !json.Valid(v) {
			t.Fatalf("%s: invalid JSON %s", schema, v)
		}
		again, _ := SchemaValue(schema, seed)
		if !bytes.Equal(v, again) {
			t.Fatalf("%s: not deterministic", schema)
		}
		// allOf is merged, not intersected: a value may miss a schema that
		// two branches describe differently, so only the rest is checked.
		if bytes.Contains(schema, []byte("allOf")) {
			return
		}
		root, _ := decodeJSON(schema)
		val, _ := decodeJSON(v)
		if err := validate(root, root, val, "$"); err != nil {
			t.Fatalf("%s\nvalue %s\n%v", schema, v, err)
		}
	})
}

func FuzzToolArguments(f *testing.F) {
	f.Add([]byte(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"type":"string"}`))
	f.Fuzz(func(t *testing.T, params []byte) {
		v, err := ToolArguments(params, 1)
		if err == nil && (len(v) == 0 || v[0] != '{' || !json.Valid(v)) {
			t.Fatalf("%s: arguments %s", params, v)
		}
	})
}

// respondAll runs the engine on req at zero delay and checks the pieces:
// a tool call's first delta names it, arguments add up to JSON.
func respondAll(t *testing.T, req *inference.Request) {
	t.Helper()
	e := NewEngine(Options{Tokens: 4, Seed: 1})
	var calls []string
	_, err := e.Respond(context.Background(), req, func(d inference.Delta) error {
		if tc := d.ToolCall; tc != nil {
			if tc.Index == len(calls) {
				if tc.ID == "" || tc.Name == "" {
					t.Fatalf("call %d starts without id or name: %+v", tc.Index, tc)
				}
				calls = append(calls, "")
			}
			calls[tc.Index] += tc.Arguments
		}
		return nil
	})
	if err != nil {
		return
	}
	for _, c := range calls {
		if !json.Valid([]byte(c)) {
			t.Fatalf("arguments %q", c)
		}
	}
}

func FuzzParseAnthropic(f *testing.F) {
	f.Add([]byte(`{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`))
	f.Add([]byte(`{"model":"c","max_tokens":64,"stream":true,"system":[{"type":"text","text":"be brief"}],"tools":` + claudeTools + `,"tool_choice":{"type":"any","disable_parallel_tool_use":true},"messages":[{"role":"user","content":"both"}]}`))
	f.Add([]byte(`{"model":"c","max_tokens":64,"tools":` + claudeTools + `,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"text","text":"ok"},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location":"SF"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"15"}]},{"type":"text","text":"and?"}]}]}`))
	f.Add([]byte(`{"model":"c","max_tokens":64,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"aGk="}},{"type":"text","text":"what?"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, _, err := parseAnthropic(body)
		if err != nil {
			if err.Msg == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if req.Model == "" || req.MaxTokens < 1 || len(req.Messages) == 0 {
			t.Fatalf("accepted %s as %+v", body, req)
		}
		respondAll(t, req)
	})
}

func FuzzOpenAIChatRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":` + openaiTools + `,"tool_choice":"required","parallel_tool_calls":true}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_1","content":"r"}],"tools":` + openaiTools + `}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"data:image/png;base64,aGk="}}]}],"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object","properties":{"a":{"type":"integer"}}}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var wreq openaiwire.ChatRequest
		if json.Unmarshal(body, &wreq) != nil || openaiPlain(&wreq) {
			return
		}
		req, err := openaiToRequest(&wreq)
		if err != nil {
			if err.Msg == "" || err.Param == "" {
				t.Fatalf("an error without a message or a field: %+v", err)
			}
			return
		}
		respondAll(t, req)
	})
}

func FuzzOllamaChatRequest(f *testing.F) {
	f.Add([]byte(`{"model":"llama3.2","messages":[{"role":"user","content":"weather?"}],"tools":` + openaiTools + `}`))
	f.Add([]byte(`{"model":"llava","messages":[{"role":"user","content":"x","images":["aGk="]}],"format":"json"}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},{"role":"tool","tool_name":"f","content":"r"}],"format":{"type":"object","properties":{"a":{"type":"string"}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var in ollamaRequest
		if json.Unmarshal(body, &in) != nil || in.plain() {
			return
		}
		req, err := ollamaToRequest(&in)
		if err != nil {
			if err.Msg == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		respondAll(t, req)
	})
}

func FuzzEmbeddingRequests(f *testing.F) {
	f.Add([]byte(`{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"base64","dimensions":8}`))
	f.Add([]byte(`{"model":"nomic-embed-text","input":"why is the sky blue?"}`))
	f.Add([]byte(`{"model":"e","input":[[1,2]]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if req, err := parseOpenAIEmbedding(bytes.NewReader(body)); err == nil {
			if req.Model == "" || len(req.Input) == 0 {
				t.Fatalf("accepted %s", body)
			}
			dims := 0
			if req.Dimensions != nil {
				dims = *req.Dimensions
			}
			if len(req.Input) < 64 {
				if v, err := Embed(req.Model, req.Input, dims); err == nil && len(v) != len(req.Input) {
					t.Fatalf("%d vectors for %d inputs", len(v), len(req.Input))
				}
			}
		}
		var in struct{ Input any }
		if json.Unmarshal(body, &in) == nil {
			if texts, err := ollamaEmbedInput(in.Input); err != nil && !strings.Contains(err.Error(), "invalid input type") {
				t.Fatalf("error %v", err)
			} else if err == nil && len(texts) > 0 && len(texts) < 64 {
				Embed("e", texts, 0)
			}
		}
	})
}
