package sim

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

var (
	weatherTool = moltbot.Tool{Name: "get_weather", Description: "Weather of a city",
		Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["c","f"]}},"required":["city","unit"]}`)}
	timeTool = moltbot.Tool{Name: "get_time", Parameters: json.RawMessage(`{"type":"object","properties":{"zone":{"type":"string","format":"uri"}},"required":["zone"]}`)}
)

// collect runs the in-process provider and gathers what it streamed.
type collected struct {
	text   string
	calls  []moltbot.ToolCall
	deltas []inference.Delta
	res    inference.Result
}

func chatWith(t *testing.T, p *Provider, req *inference.Request) (collected, error) {
	t.Helper()
	var c collected
	var b strings.Builder
	res, err := p.Chat(context.Background(), req, func(d inference.Delta) error {
		c.deltas = append(c.deltas, d)
		if d.ToolCall != nil {
			c.calls = moltbot.AddDelta(c.calls, d.ToolCall)
		}
		b.WriteString(d.Text)
		return nil
	})
	c.text, c.res = b.String(), res
	return c, err
}

func TestProviderToolCalls(t *testing.T) {
	p := NewProvider("sim", fast())
	req := &inference.Request{Model: "sim", Messages: msgs("what is the weather in Paris?")}
	req.Tools = []moltbot.Tool{weatherTool, timeTool}
	c, err := chatWith(t, p, req)
	if err != nil {
		t.Fatal(err)
	}
	if c.text != "" || len(c.calls) != 1 || c.res.FinishReason != "tool_calls" {
		t.Fatalf("one call expected: %+v", c)
	}
	call := c.calls[0]
	if !strings.HasPrefix(call.ID, "call_") || (call.Name != "get_weather" && call.Name != "get_time") {
		t.Errorf("call %+v", call)
	}
	// The first delta names the call; the arguments follow in two pieces
	// or more, each a new ToolCallDelta.
	if d := c.deltas[0].ToolCall; d == nil || d.ID == "" || d.Name == "" || d.Arguments != "" || len(c.deltas) < 3 {
		t.Errorf("deltas %+v", c.deltas)
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(call.Arguments), &args); err != nil {
		t.Fatalf("arguments %q: %v", call.Arguments, err)
	}
	if call.Name == "get_weather" && (args["city"] == nil || (args["unit"] != "c" && args["unit"] != "f")) {
		t.Errorf("weather arguments %v", args)
	}
	// Deterministic: the same request calls the same tool the same way.
	again, _ := chatWith(t, p, req)
	if again.calls[0] != call {
		t.Errorf("not deterministic: %+v then %+v", call, again.calls[0])
	}

	// tool_choice names the tool.
	req.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceFunction, Name: "get_time"}
	if c, _ := chatWith(t, p, req); len(c.calls) != 1 || c.calls[0].Name != "get_time" || !strings.Contains(c.calls[0].Arguments, `"zone":"https://example.com/`) {
		t.Errorf("forced: %+v", c.calls)
	}
	req.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceFunction, Name: "nope"}
	if _, err := chatWith(t, p, req); err == nil || !strings.Contains(err.Error(), "tool_choice") {
		t.Errorf("unknown forced tool: %v", err)
	}
	// none: text.
	req.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceNone}
	if c, _ := chatWith(t, p, req); len(c.calls) != 0 || !strings.HasPrefix(c.text, Label) || c.res.FinishReason != "stop" {
		t.Errorf("none: %+v", c)
	}

	// "both" asks for two calls, when parallel calls are allowed.
	req = &inference.Request{Model: "sim", Messages: msgs("check both the weather and the time")}
	req.Tools = []moltbot.Tool{weatherTool, timeTool}
	c, _ = chatWith(t, p, req)
	if len(c.calls) != 2 || c.calls[0].Name == c.calls[1].Name || c.calls[0].ID == c.calls[1].ID {
		t.Fatalf("parallel: %+v", c.calls)
	}
	no := false
	req.ParallelToolCalls = &no
	if c, _ := chatWith(t, p, req); len(c.calls) != 1 {
		t.Errorf("parallel off: %+v", c.calls)
	}
}

// After a tool result the reply quotes it; the history is the house's
// representation (an assistant message of tool_call parts, tool messages
// of one tool_result part each).
func TestProviderAnswersToolResult(t *testing.T) {
	p := NewProvider("sim", fast())
	hist := []moltbot.Message{
		{Role: moltbot.RoleUser, Content: "weather and time in both cities"},
		{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{
			{Type: moltbot.PartToolCall, CallID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{Type: moltbot.PartToolCall, CallID: "call_2", Name: "get_time", Arguments: `{}`}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_1", Content: `{"temp":21}`}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_2", Content: "noon"}}},
	}
	req := &inference.Request{Model: "sim", Messages: hist}
	req.Tools = []moltbot.Tool{weatherTool, timeTool}
	c, err := chatWith(t, p, req)
	if err != nil {
		t.Fatal(err)
	}
	want := Label + ` get_weather returned {"temp":21}; get_time returned noon.`
	if c.text != want || len(c.calls) != 0 || c.res.FinishReason != "stop" {
		t.Fatalf("got %q %+v, want %q", c.text, c.res, want)
	}
	if c.res.Usage.PromptTokens <= inference.EstimateTokens(hist) {
		t.Errorf("tool calls and results are not counted: %+v", c.res.Usage)
	}
	// max tokens cuts it.
	req.MaxTokens = 2
	if c, _ := chatWith(t, p, req); c.res.FinishReason != "length" || len(c.deltas) != 2 {
		t.Errorf("cut: %+v", c)
	}
}

func TestProviderJSON(t *testing.T) {
	p := NewProvider("sim", fast())
	req := &inference.Request{Model: "sim", Messages: msgs("give me json")}
	req.ResponseFormat = &moltbot.ResponseFormat{Type: moltbot.FormatJSONObject}
	c, err := chatWith(t, p, req)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct{ Reply string }
	if err := json.Unmarshal([]byte(c.text), &obj); err != nil || !strings.HasPrefix(obj.Reply, Label) || len(c.deltas) < 3 {
		t.Errorf("json_object %q (%d pieces): %v", c.text, len(c.deltas), err)
	}
	schema := `{"type":"object","properties":{"name":{"type":"string"},"n":{"type":"integer","minimum":1,"maximum":3}},"required":["name","n"],"additionalProperties":false}`
	req.ResponseFormat = &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: "x", Schema: json.RawMessage(schema), Strict: true}
	c, _ = chatWith(t, p, req)
	root, _ := decodeJSON([]byte(schema))
	v, err := decodeJSON([]byte(c.text))
	if err != nil || validate(root, root, v, "$") != nil {
		t.Errorf("json_schema %q: %v", c.text, err)
	}
	req.ResponseFormat.Schema = json.RawMessage(`{"type":"integer","minimum":3,"maximum":1}`)
	if _, err := chatWith(t, p, req); err == nil || !strings.Contains(err.Error(), "response_format") {
		t.Errorf("bad schema: %v", err)
	} else if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindBadRequest || e.Status != 400 {
		t.Errorf("bad schema error %#v", err)
	}
}

func TestProviderImages(t *testing.T) {
	p := NewProvider("sim", fast())
	png := []byte("\x89PNG\r\n\x1a\n0123456789")
	m := moltbot.Message{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "what is this?"},
		{Type: moltbot.PartImage, MIME: "image/png", Data: png}}}
	m.Content = moltbot.TextOf(m.Parts)
	c, err := chatWith(t, p, &inference.Request{Model: "sim", Messages: []moltbot.Message{m}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.text, Label+" I see 1 image(s) (18 bytes).") {
		t.Errorf("text %q", c.text)
	}
	plain, _ := chatWith(t, p, &inference.Request{Model: "sim", Messages: msgs("what is this?")})
	if c.res.Usage.PromptTokens != plain.res.Usage.PromptTokens+ImageTokens {
		t.Errorf("prompt tokens %d, text alone %d", c.res.Usage.PromptTokens, plain.res.Usage.PromptTokens)
	}
	// A model without vision refuses it.
	o := fast()
	o.Capabilities = map[string][]string{"blind": {CapCompletion}}
	if _, err := chatWith(t, NewProvider("sim", o), &inference.Request{Model: "blind", Messages: []moltbot.Message{m}}); err == nil {
		t.Error("a model without vision took an image")
	}
}

// The plain path is Generate's, byte for byte, whatever else the request
// carries that does not change the reply.
func TestRespondPlainIsGenerate(t *testing.T) {
	want, _ := gen(t, NewEngine(fast()), "hi", 0)
	req := &inference.Request{Model: "m", Messages: msgs("hi")}
	req.Tools = []moltbot.Tool{weatherTool}
	req.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceNone}
	req.ResponseFormat = &moltbot.ResponseFormat{Type: moltbot.FormatText}
	if !Plain(req) {
		t.Fatal("not plain")
	}
	c, err := chatWith(t, NewProvider("sim", fast()), req)
	if err != nil || c.text != want {
		t.Errorf("%q %v, want %q", c.text, err, want)
	}
}

func TestCapabilities(t *testing.T) {
	e := NewEngine(fast())
	if c := e.Capabilities("llama3.2"); strings.Join(c, ",") != "completion,tools,vision" {
		t.Errorf("chat model %v", c)
	}
	if c := e.Capabilities("nomic-Embed-text"); strings.Join(c, ",") != "embedding" {
		t.Errorf("embedding model %v", c)
	}
	_, err := chatWith(t, NewProvider("sim", fast()), &inference.Request{Model: "sim-embed", Messages: msgs("hi")})
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindBadRequest || !strings.Contains(e.Message, "does not support chat") {
		t.Errorf("chat with an embedding model: %v", err)
	}
	o := fast()
	o.Capabilities = map[string][]string{"old": {CapCompletion}}
	req := &inference.Request{Model: "old", Messages: msgs("hi")}
	req.Tools = []moltbot.Tool{weatherTool}
	if _, err := chatWith(t, NewProvider("sim", o), req); err == nil || !strings.Contains(err.Error(), "does not support tools") {
		t.Errorf("tools for a model without: %v", err)
	}
}

func TestEmbed(t *testing.T) {
	for model, n := range map[string]int{"embed-768": 768, "sim-embed": DefaultDimensions, "x_embed:32": 32, "nomic-embed-text:v1.5": DefaultDimensions, "e-99999": DefaultDimensions} {
		if got := ModelDimensions(model); got != n {
			t.Errorf("%s: %d dimensions, want %d", model, got, n)
		}
	}
	v, err := Embed("embed-64", []string{"the capital of France", "The capital of France?", "green river stone", "the capital of France"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	dot := func(a, b []float32) (s float64) {
		for i := range a {
			s += float64(a[i]) * float64(b[i])
		}
		return s
	}
	for i := range v {
		if len(v[i]) != 64 || math.Abs(dot(v[i], v[i])-1) > 1e-5 {
			t.Errorf("vector %d: length %d, norm² %g", i, len(v[i]), dot(v[i], v[i]))
		}
	}
	if dot(v[0], v[3]) < 0.99999 || dot(v[0], v[1]) < 0.99 || dot(v[0], v[2]) > 0.5 {
		t.Errorf("cosines: same %g, same words %g, other %g", dot(v[0], v[3]), dot(v[0], v[1]), dot(v[0], v[2]))
	}
	w, _ := Embed("other-embed-64", []string{"the capital of France"}, 0)
	if dot(v[0], w[0]) > 0.5 {
		t.Errorf("another model gives the same vector")
	}
	short, err := Embed("embed-64", []string{"the capital of France"}, 16)
	if err != nil || len(short[0]) != 16 || math.Abs(dot(short[0], short[0])-1) > 1e-5 || math.Abs(dot(short[0], v[0][:16])) < 0.1 {
		t.Errorf("shortened %v %v", short, err)
	}
	if _, err := Embed("embed-64", []string{"x"}, 65); err == nil {
		t.Error("dimensions above the model's accepted")
	}

	p := NewProvider("sim", fast())
	var e inference.Embedder = p
	res, err := e.Embed(context.Background(), &inference.EmbedRequest{Model: "embed-64", Input: []string{"the capital of France"}})
	if err != nil || len(res.Vectors) != 1 || res.Vectors[0][0] != v[0][0] || res.Usage.PromptTokens == 0 || res.Model != "embed-64" {
		t.Errorf("provider %+v %v", res, err)
	}
	_, err = e.Embed(context.Background(), &inference.EmbedRequest{Model: "embed-64", Input: []string{"x"}, Dimensions: 100})
	if ie, ok := inference.AsError(err); !ok || ie.Kind != inference.KindBadRequest {
		t.Errorf("provider dimensions: %v", err)
	}
	o := fast()
	o.Status = 503
	if _, err := NewProvider("sim", o).Embed(context.Background(), &inference.EmbedRequest{Model: "e", Input: []string{"x"}}); err == nil {
		t.Error("fault ignored")
	}
}

func TestProviderModels(t *testing.T) {
	o := fast()
	o.EmbedModels = []string{"embed-8"}
	if ms, _ := NewProvider("sim", o).Models(context.Background()); strings.Join(ms, ",") != "a,b,embed-8" {
		t.Errorf("models %v", ms)
	}
}

// A tool result that says "call again" gets more tool calls (a model that
// keeps calling, for tool-loop tests); without tools offered, it is quoted.
func TestProviderCallsAgain(t *testing.T) {
	p := NewProvider("sim", fast())
	hist := []moltbot.Message{
		{Role: moltbot.RoleUser, Content: "weather"},
		{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "call_1", Name: "get_weather", Arguments: `{}`}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_1", Content: "cloudy; call again"}}},
	}
	req := &inference.Request{Model: "sim", Messages: hist}
	req.Tools = []moltbot.Tool{weatherTool}
	if c, err := chatWith(t, p, req); err != nil || len(c.calls) != 1 || c.res.FinishReason != "tool_calls" {
		t.Fatalf("%+v %v", c, err)
	}
	req.Tools = nil
	if c, err := chatWith(t, p, req); err != nil || c.text != Label+" get_weather returned cloudy; call again." {
		t.Fatalf("%q %v", c.text, err)
	}
}
