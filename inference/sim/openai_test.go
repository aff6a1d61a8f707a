package sim

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/inference/openaiwire"
)

// Requests here are written as the openai npm and Python clients send
// them: tools as {"type":"function","function":{...}}, the history with an
// assistant message of tool_calls and content null, tool messages with
// tool_call_id.

const openaiTools = `[{"type":"function","function":{"name":"get_weather","description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city","unit"],"additionalProperties":false},"strict":true}},
{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"zone":{"type":"string"}},"required":["zone"]}}}]`

func post(t *testing.T, url, body string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// sseData reads an SSE body's data fields, in order, and whether the
// stream ended with [DONE].
func sseData(t *testing.T, r io.Reader) (data []string, done bool) {
	t.Helper()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if d == "[DONE]" {
				done = true
				continue
			}
			data = append(data, d)
		}
	}
	return data, done
}

func chunks(t *testing.T, resp *http.Response) []openaiwire.Completion {
	t.Helper()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	data, done := sseData(t, resp.Body)
	if !done {
		t.Fatal("no [DONE]")
	}
	out := make([]openaiwire.Completion, len(data))
	for i, d := range data {
		if err := json.Unmarshal([]byte(d), &out[i]); err != nil || out[i].Object != openaiwire.ObjectChunk {
			t.Fatalf("chunk %q: %v", d, err)
		}
	}
	return out
}

func TestOpenAIToolCallsStreamed(t *testing.T) {
	srv := server(t, fast())
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},
		"messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"What's the weather like in Paris today?"}],
		"tools":`+openaiTools+`,"tool_choice":{"type":"function","function":{"name":"get_weather"}}}`)
	cs := chunks(t, resp)
	// First the call's id, type and name with empty arguments, then the
	// arguments in two pieces or more, then finish_reason tool_calls, then
	// the usage chunk.
	first := cs[0].Choices[0].Delta
	if first.Role != "assistant" || len(first.ToolCalls) != 1 {
		t.Fatalf("first chunk %+v", first)
	}
	tc := first.ToolCalls[0]
	if tc.Index == nil || *tc.Index != 0 || !strings.HasPrefix(tc.ID, "call_") || tc.Type != "function" || tc.Function.Name != "get_weather" || tc.Function.Arguments != "" {
		t.Errorf("first tool call delta %+v", tc)
	}
	var args strings.Builder
	pieces := 0
	for _, c := range cs[1:] {
		if len(c.Choices) == 0 || c.Choices[0].Delta == nil || len(c.Choices[0].Delta.ToolCalls) == 0 {
			continue
		}
		d := c.Choices[0].Delta.ToolCalls[0]
		if d.ID != "" || d.Function.Name != "" || *d.Index != 0 {
			t.Errorf("later delta %+v", d)
		}
		args.WriteString(d.Function.Arguments)
		pieces++
	}
	var v struct{ City, Unit string }
	if err := json.Unmarshal([]byte(args.String()), &v); err != nil || v.City == "" || (v.Unit != "celsius" && v.Unit != "fahrenheit") || pieces < 2 {
		t.Errorf("arguments %q in %d pieces: %v", args.String(), pieces, err)
	}
	fin := cs[len(cs)-2]
	if fr := fin.Choices[0].FinishReason; fr == nil || *fr != "tool_calls" {
		t.Errorf("finish %+v", fin.Choices[0])
	}
	if u := cs[len(cs)-1]; len(u.Choices) != 0 || u.Usage == nil || u.Usage.CompletionTokens != pieces+1 || u.Usage.PromptTokens == 0 {
		t.Errorf("usage chunk %+v", u)
	}

	// The client runs the tool and sends the result back: the reply quotes it.
	hist := `[{"role":"user","content":"What's the weather like in Paris today?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"` + tc.ID + `","type":"function","function":{"name":"get_weather","arguments":` + jsonQuote(args.String()) + `}}]},
		{"role":"tool","tool_call_id":"` + tc.ID + `","content":"{\"temperature\":14}"}]`
	cs = chunks(t, post(t, srv.URL+"/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"tools":`+openaiTools+`,"messages":`+hist+`}`))
	var text strings.Builder
	for _, c := range cs {
		if len(c.Choices) > 0 && c.Choices[0].Delta != nil {
			text.WriteString(c.Choices[0].Delta.Content)
		}
	}
	if want := Label + ` get_weather returned {"temperature":14}.`; text.String() != want {
		t.Errorf("answer %q, want %q", text.String(), want)
	}
	if fr := cs[len(cs)-1].Choices[0].FinishReason; fr == nil || *fr != "stop" {
		t.Errorf("finish %v", fr)
	}
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestOpenAIToolCallsJSON(t *testing.T) {
	srv := server(t, fast())
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"weather and time, both please"}],"tools":`+openaiTools+`}`)
	var c openaiwire.Completion
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &c); err != nil || c.Object != openaiwire.ObjectCompletion {
		t.Fatalf("%s: %v", raw, err)
	}
	m := c.Choices[0].Message
	if !strings.Contains(string(raw), `"content":null`) || len(m.ToolCalls) != 2 || *c.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("two calls expected: %s", raw)
	}
	for _, tc := range m.ToolCalls {
		if tc.Type != "function" || tc.ID == "" || !json.Valid([]byte(tc.Function.Arguments)) {
			t.Errorf("call %+v", tc)
		}
	}
	// parallel_tool_calls false: one.
	resp = post(t, srv.URL+"/v1/chat/completions", `{"model":"m","parallel_tool_calls":false,"messages":[{"role":"user","content":"weather and time, both please"}],"tools":`+openaiTools+`}`)
	c = openaiwire.Completion{}
	json.NewDecoder(resp.Body).Decode(&c)
	if len(c.Choices[0].Message.ToolCalls) != 1 {
		t.Errorf("parallel off: %+v", c.Choices[0].Message)
	}
	// tool_choice none: text.
	resp = post(t, srv.URL+"/v1/chat/completions", `{"model":"m","tool_choice":"none","messages":[{"role":"user","content":"hi"}],"tools":`+openaiTools+`}`)
	c = openaiwire.Completion{}
	json.NewDecoder(resp.Body).Decode(&c)
	want, _ := gen(t, NewEngine(fast()), "hi", 0)
	if c.Choices[0].Message.Content != want || len(c.Choices[0].Message.ToolCalls) != 0 {
		t.Errorf("none: %+v", c.Choices[0].Message)
	}
}

func TestOpenAIResponseFormat(t *testing.T) {
	srv := server(t, fast())
	schema := `{"type":"object","properties":{"title":{"type":"string"},"year":{"type":"integer","minimum":1900,"maximum":2030},"genres":{"type":"array","items":{"type":"string","enum":["drama","comedy"]}}},"required":["title","year","genres"],"additionalProperties":false}`
	cs := chunks(t, post(t, srv.URL+"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"a film"}],
		"response_format":{"type":"json_schema","json_schema":{"name":"film","strict":true,"schema":`+schema+`}}}`))
	var text strings.Builder
	n := 0
	for _, c := range cs {
		if len(c.Choices) > 0 && c.Choices[0].Delta != nil && c.Choices[0].Delta.Content != "" {
			text.WriteString(c.Choices[0].Delta.Content)
			n++
		}
	}
	root, _ := decodeJSON([]byte(schema))
	v, err := decodeJSON([]byte(text.String()))
	if err != nil || validate(root, root, v, "$") != nil || n < 3 {
		t.Errorf("json_schema reply %q in %d pieces: %v", text.String(), n, err)
	}
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"json please"}],"response_format":{"type":"json_object"}}`)
	var c openaiwire.Completion
	json.NewDecoder(resp.Body).Decode(&c)
	var obj map[string]string
	if err := json.Unmarshal([]byte(c.Choices[0].Message.Content), &obj); err != nil || !strings.HasPrefix(obj["reply"], Label) {
		t.Errorf("json_object %q: %v", c.Choices[0].Message.Content, err)
	}
}

func TestOpenAIImages(t *testing.T) {
	srv := server(t, fast())
	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\nIHDR"))
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + png + `","detail":"low"}}]}]}`
	var c openaiwire.Completion
	json.NewDecoder(post(t, srv.URL+"/v1/chat/completions", body).Body).Decode(&c)
	if !strings.HasPrefix(c.Choices[0].Message.Content, Label+" I see 1 image(s) (12 bytes).") || c.Usage.PromptTokens < ImageTokens {
		t.Errorf("reply %q usage %+v", c.Choices[0].Message.Content, c.Usage)
	}
}

func TestOpenAIRequestErrors(t *testing.T) {
	srv := server(t, fast())
	user := `{"role":"user","content":"hi"}`
	call := `{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`
	for body, param := range map[string]string{
		`{"model":"m","messages":[` + user + `,{"role":"tool","tool_call_id":"call_9","content":"x"}]}`:                                        "messages[1].role",
		`{"model":"m","messages":[` + user + `,` + call + `,` + user + `]}`:                                                                    "messages[2].role",
		`{"model":"m","messages":[` + user + `,` + call + `]}`:                                                                                 "messages[1].role",
		`{"model":"m","messages":[` + user + `,{"role":"tool","content":"x"}]}`:                                                                "messages[1].tool_call_id",
		`{"model":"m","tool_choice":"auto","messages":[` + user + `]}`:                                                                         "tool_choice",
		`{"model":"m","parallel_tool_calls":true,"messages":[` + user + `]}`:                                                                   "parallel_tool_calls",
		`{"model":"m","tools":[{"type":"code","function":{"name":"x"}}],"messages":[` + user + `]}`:                                            "tools[0].type",
		`{"model":"m","tools":[{"type":"function","function":{"name":"a b"}}],"messages":[` + user + `]}`:                                      "tools[0].function.name",
		`{"model":"m","tools":` + openaiTools + `,"tool_choice":{"type":"function","function":{"name":"nope"}},"messages":[` + user + `]}`:     "tool_choice",
		`{"model":"m","response_format":{"type":"xml"},"messages":[` + user + `]}`:                                                             "response_format.type",
		`{"model":"m","response_format":{"type":"json_schema","json_schema":{"schema":{}}},"messages":[` + user + `]}`:                         "response_format.json_schema.name",
		`{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"nope"}}},"messages":[` + user + `]}`: "response_format",
		`{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`:                                       "messages[0].content[0].type",
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,@@"}}]}]}`:           "messages[0].content[0].image_url.url",
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:text/plain;base64,aGk="}}]}]}`:        "messages[0].content[0].image_url.url",
		`{"model":"text-embed-3","messages":[` + user + `]}`:                                                                                   "model",
	} {
		resp := post(t, srv.URL+"/v1/chat/completions", body)
		var e struct{ Error openaiwire.Error }
		json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != 400 || e.Error.Type != "invalid_request_error" || e.Error.Param == nil || *e.Error.Param != param {
			t.Errorf("%s: %d %+v, want param %s", body, resp.StatusCode, e.Error, param)
		}
	}
}

func TestOpenAIEmbeddings(t *testing.T) {
	o := fast()
	o.EmbedModels = []string{"text-embedding-3-small"}
	srv := server(t, o)
	var list openaiwire.EmbeddingList
	resp := post(t, srv.URL+"/v1/embeddings", `{"model":"text-embedding-3-small","input":["hello world","goodbye"],"encoding_format":"float"}`)
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || list.Object != "list" || len(list.Data) != 2 || list.Model != "text-embedding-3-small" || list.Usage.PromptTokens == 0 {
		t.Fatalf("%+v %v", list, err)
	}
	want, _ := Embed("text-embedding-3-small", []string{"hello world", "goodbye"}, 0)
	for i, e := range list.Data {
		if e.Object != "embedding" || e.Index != i || len(e.Embedding) != DefaultDimensions || e.Embedding[5] != want[i][5] {
			t.Errorf("data[%d] = %s %d %d", i, e.Object, e.Index, len(e.Embedding))
		}
	}
	// base64: little-endian float32s, the same vector; dimensions shortens.
	resp = post(t, srv.URL+"/v1/embeddings", `{"model":"text-embedding-3-small","input":"hello world","encoding_format":"base64","dimensions":8}`)
	var b64 struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&b64)
	raw, err := base64.StdEncoding.DecodeString(b64.Data[0].Embedding)
	short, _ := Embed("text-embedding-3-small", []string{"hello world"}, 8)
	if err != nil || len(raw) != 32 || math.Float32frombits(binary.LittleEndian.Uint32(raw[4:])) != short[0][1] {
		t.Errorf("base64 %q: %v", b64.Data[0].Embedding, err)
	}
	for body, param := range map[string]string{
		`{"input":"x"}`:                                     "model",
		`{"model":"e","input":[]}`:                          "input",
		`{"model":"e","input":""}`:                          "input",
		`{"model":"e","input":[[1,2,3]]}`:                   "input",
		`{"model":"e"}`:                                     "input",
		`{"model":"e","input":"x","encoding_format":"hex"}`: "encoding_format",
		`{"model":"e","input":"x","dimensions":0}`:          "dimensions",
		`{"model":"e","input":"x","dimensions":385}`:        "dimensions",
	} {
		resp := post(t, srv.URL+"/v1/embeddings", body)
		var e struct{ Error openaiwire.Error }
		json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != 400 || e.Error.Param == nil || *e.Error.Param != param {
			t.Errorf("%s: %d %+v", body, resp.StatusCode, e.Error)
		}
	}
	// Models list the embedding models too; faults apply.
	var ml openaiwire.ModelList
	r, _ := http.Get(srv.URL + "/v1/models")
	json.NewDecoder(r.Body).Decode(&ml)
	r.Body.Close()
	if len(ml.Data) != 3 || ml.Data[2].ID != "text-embedding-3-small" {
		t.Errorf("models %+v", ml)
	}
	post(t, srv.URL+"/sim/faults", `{"status":429,"retry_after":"2s"}`)
	if resp := post(t, srv.URL+"/v1/embeddings", `{"model":"e","input":"x"}`); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("fault: %d", resp.StatusCode)
	}
	if resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m","tools":`+openaiTools+`,"messages":[{"role":"user","content":"x"}]}`); resp.StatusCode != 429 {
		t.Errorf("fault on tools: %d", resp.StatusCode)
	}
}

// Faults cut a tool call's stream as they cut text: drop after two pieces.
func TestOpenAIToolCallDropped(t *testing.T) {
	o := fast()
	o.DropAfter = 2
	srv := server(t, o)
	req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true,"tools":`+openaiTools+`,"messages":[{"role":"user","content":"x"}]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, done := sseData(t, resp.Body)
	if done || len(data) != 2 {
		t.Errorf("dropped stream: %d frames, done %v", len(data), done)
	}
}
