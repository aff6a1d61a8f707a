package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// RequestError is a request the simulator refuses as a model server would:
// each wire answers it with its own 400 body, and the in-process Provider
// with an inference.Error of kind bad_request. Param names the field.
type RequestError struct {
	Param string
	Msg   string
}

func (e *RequestError) Error() string { return e.Msg }

func reqErr(param, format string, args ...any) *RequestError {
	return &RequestError{Param: param, Msg: fmt.Sprintf(format, args...)}
}

// Plain reports whether req asks for nothing but text: no tools it must
// consider, no JSON format, no images, and no tool result to answer. A plain
// request takes Generate's path, the benchmark floor, unchanged.
func Plain(req *inference.Request) bool {
	if req.ResponseFormat.JSON() {
		return false
	}
	if len(req.Tools) > 0 && (req.ToolChoice == nil || req.ToolChoice.Mode != moltbot.ToolChoiceNone) {
		return false
	}
	if n := len(req.Messages); n > 0 && req.Messages[n-1].Role == moltbot.RoleTool {
		return false
	}
	for i := range req.Messages {
		for j := range req.Messages[i].Parts {
			if req.Messages[i].Parts[j].Type == moltbot.PartImage {
				return false
			}
		}
	}
	return true
}

// ImageTokens is what one image adds to a reply's prompt tokens (the
// price of a low-detail image at OpenAI): a fixed count, so a test can
// predict it.
const ImageTokens = 85

// PromptTokens estimates req's prompt tokens: the text of its messages as
// inference.EstimateTokens counts it, plus the tool calls' arguments, the
// tool results, the tools offered and ImageTokens for each image.
func PromptTokens(req *inference.Request) int {
	n := inference.EstimateTokens(req.Messages)
	for i := range req.Messages {
		for _, p := range req.Messages[i].Parts {
			switch p.Type {
			case moltbot.PartImage:
				n += ImageTokens
			case moltbot.PartToolCall:
				n += (len(p.Name) + len(p.Arguments) + 3) / 4
			case moltbot.PartToolResult:
				n += (len(p.Content) + 3) / 4
			}
		}
	}
	for _, t := range req.Tools {
		n += (len(t.Name) + len(t.Description) + len(t.Parameters) + 3) / 4
	}
	return n
}

// Respond streams the reply to req through fn, honouring the timing and
// fault options as Generate does. What the reply is, in this order:
//
//   - tool calls, when tools are offered, tool_choice is not none and the
//     last message is not a tool result (or is one that says "call again":
//     a model that keeps calling tools, for tests of a tool loop's
//     limits): the tool tool_choice names, else
//     one picked by the prompt's hash; two (that one and the next) when
//     parallel calls are allowed, two or more tools are offered and the
//     prompt says "both" or "all". Arguments are made from each tool's
//     parameters schema (see schema.go). Each call goes out as a delta with
//     its ID and name, then its arguments in two or more pieces; the finish
//     reason is "tool_calls".
//   - JSON, when the format asks for it: a value of the schema
//     (json_schema), or {"reply": text} (json_object), in pieces of a few
//     bytes.
//   - text that quotes the tool results, when the last messages are tool
//     results: "[simulated] get_weather returned {...}."
//   - Generate's text, with " I see N image(s) (B bytes)." after the label
//     when the request holds images.
//
// A plain request (see Plain) is Generate's text exactly. Text and JSON are
// cut at req.MaxTokens pieces (finish reason "length"); tool calls are not.
// A request the simulator refuses is a *RequestError.
func (e *Engine) Respond(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (Reply, error) {
	if err := e.check(req); err != nil {
		return Reply{}, err
	}
	if Plain(req) {
		return e.Generate(ctx, req.Messages, req.MaxTokens, func(tok string) error { return fn(inference.Delta{Text: tok}) })
	}
	o := e.opts.Load()
	pieces, finish, err := plan(o, req)
	if err != nil {
		return Reply{}, err
	}
	p := pacer{ctx: ctx, o: o}
	defer p.stop()
	if err := p.start(); err != nil {
		return Reply{}, err
	}
	for _, d := range pieces {
		if err := p.next(); err != nil {
			return Reply{}, err
		}
		if err := fn(d); err != nil {
			return Reply{}, err
		}
		p.sent++
	}
	return Reply{Usage: moltbot.Usage{PromptTokens: PromptTokens(req), CompletionTokens: p.sent}, FinishReason: finish}, nil
}

// check refuses what the model cannot do: chat with an embedding model,
// tools or images for a model without the capability.
func (e *Engine) check(req *inference.Request) *RequestError {
	caps := e.Capabilities(req.Model)
	if !slices.Contains(caps, CapCompletion) {
		return reqErr("model", "%q does not support chat", req.Model)
	}
	if len(req.Tools) > 0 && !slices.Contains(caps, CapTools) {
		return reqErr("tools", "%s does not support tools", req.Model)
	}
	if !slices.Contains(caps, CapVision) {
		for i := range req.Messages {
			for _, p := range req.Messages[i].Parts {
				if p.Type == moltbot.PartImage {
					return reqErr("images", "%s does not support images", req.Model)
				}
			}
		}
	}
	return nil
}

// The capabilities of a model, as Ollama's /api/show names them.
const (
	CapCompletion = "completion"
	CapTools      = "tools"
	CapVision     = "vision"
	CapEmbedding  = "embedding"
)

// Capabilities are model's: Options.Capabilities[model] when set, else
// ["embedding"] for a name that contains "embed", else completion, tools
// and vision.
func (e *Engine) Capabilities(model string) []string {
	if c, ok := e.opts.Load().Capabilities[model]; ok {
		return c
	}
	if isEmbedModel(model) {
		return embedCaps
	}
	return chatCaps
}

// The default capabilities, shared: callers do not change them.
var (
	chatCaps  = []string{CapCompletion, CapTools, CapVision}
	embedCaps = []string{CapEmbedding}
)

func isEmbedModel(model string) bool { return strings.Contains(strings.ToLower(model), "embed") }

// plan makes every piece of a reply that is not plain text, and its
// finish reason.
func plan(o *Options, req *inference.Request) ([]inference.Delta, string, error) {
	msgs := req.Messages
	h := promptHash(o.Seed, msgs)
	afterTool := len(msgs) > 0 && msgs[len(msgs)-1].Role == moltbot.RoleTool
	if len(req.Tools) > 0 && afterTool && callAgain(msgs[len(msgs)-1]) {
		afterTool = false
	}
	if len(req.Tools) > 0 {
		choice := req.ToolChoice
		if choice != nil && choice.Mode == moltbot.ToolChoiceFunction && toolIndex(req.Tools, choice.Name) < 0 {
			return nil, "", reqErr("tool_choice", "tool_choice names the function %q, which is not among the tools", choice.Name)
		}
		if !afterTool && (choice == nil || choice.Mode != moltbot.ToolChoiceNone) {
			d, err := toolCalls(h, req)
			return d, "tool_calls", err
		}
	}
	var text []string
	if afterTool {
		text = quoteResults(msgs)
	} else {
		text = textTokens(o, h, msgs)
	}
	if f := req.ResponseFormat; f.JSON() {
		var v []byte
		if f.Type == moltbot.FormatJSONSchema && len(f.Schema) > 0 {
			var err error
			if v, err = SchemaValueFor(f.Schema, h, moltbot.LastUserText(msgs)); err != nil {
				return nil, "", &RequestError{Param: "response_format", Msg: "response_format: " + err.Error()}
			}
		} else {
			v = append([]byte(`{"reply":`), jsonString(strings.Join(text, ""))...)
			v = append(v, '}')
		}
		text = splitPieces(string(v), pieceBytes)
	}
	finish := "stop"
	if req.MaxTokens > 0 && len(text) > req.MaxTokens {
		text, finish = text[:req.MaxTokens], "length"
	}
	out := make([]inference.Delta, len(text))
	for i, t := range text {
		out[i].Text = t
	}
	return out, finish, nil
}

// callAgain reports whether a tool result says "call again".
func callAgain(m moltbot.Message) bool {
	if strings.Contains(m.Content, "call again") {
		return true
	}
	for _, p := range m.Parts {
		if p.Type == moltbot.PartToolResult && strings.Contains(p.Content, "call again") {
			return true
		}
	}
	return false
}

// pieceBytes is the size of a piece of JSON or of a tool call's arguments:
// about a token.
const pieceBytes = 8

// textTokens is Generate's text for the prompt, with the images mentioned
// after the label.
func textTokens(o *Options, h uint64, msgs []moltbot.Message) []string {
	n := o.Tokens
	out := make([]string, 0, n+1)
	out = append(out, token(h, 0, n))
	if k, size := countImages(msgs); k > 0 {
		out = append(out, fmt.Sprintf(" I see %d image(s) (%d bytes).", k, size))
	}
	for i := 1; i < n; i++ {
		out = append(out, token(h, i, n))
	}
	return out
}

func countImages(msgs []moltbot.Message) (n, size int) {
	for i := range msgs {
		for _, p := range msgs[i].Parts {
			if p.Type == moltbot.PartImage {
				n++
				size += len(p.Data)
			}
		}
	}
	return n, size
}

// quoteResults is the text that answers the trailing tool results: each
// result quoted verbatim after the name of the tool that made it (found by
// its call id among the earlier tool calls), so a test sees it went through.
func quoteResults(msgs []moltbot.Message) []string {
	first := len(msgs)
	for first > 0 && msgs[first-1].Role == moltbot.RoleTool {
		first--
	}
	var b strings.Builder
	b.WriteString(Label)
	n := 0
	quote := func(name, content string) {
		if n > 0 {
			b.WriteString(";")
		}
		n++
		b.WriteString(" ")
		b.WriteString(name)
		b.WriteString(" returned ")
		b.WriteString(content)
	}
	for _, m := range msgs[first:] {
		for _, p := range m.Parts {
			if p.Type == moltbot.PartToolResult {
				quote(toolName(msgs[:first], p), p.Content)
			}
		}
		if len(m.Parts) == 0 {
			// A tool message without parts (from a client that keeps text
			// only): its content is the result.
			quote("the tool", m.Content)
		}
	}
	b.WriteString(".")
	return splitWords(b.String())
}

func toolName(history []moltbot.Message, res moltbot.Part) string {
	if res.Name != "" {
		return res.Name
	}
	for i := len(history) - 1; i >= 0; i-- {
		for _, p := range history[i].Parts {
			if p.Type == moltbot.PartToolCall && p.CallID == res.CallID && p.Name != "" {
				return p.Name
			}
		}
	}
	if res.CallID != "" {
		return "tool call " + res.CallID
	}
	return "the tool"
}

// splitWords cuts s before each space: the pieces of a text reply.
func splitWords(s string) []string {
	var out []string
	for len(s) > 0 {
		i := strings.IndexByte(s[1:], ' ')
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

// splitPieces cuts s into pieces of about n bytes, never inside a UTF-8
// character, and into two at least when s has two bytes or more.
func splitPieces(s string, n int) []string {
	if len(s) < 2*n {
		n = max(1, len(s)/2)
	}
	var out []string
	for len(s) > 0 {
		i := min(n, len(s))
		for i < len(s) && s[i]&0xC0 == 0x80 {
			i++
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}

// toolCalls makes the tool-call pieces of a reply (see Respond).
func toolCalls(h uint64, req *inference.Request) ([]inference.Delta, error) {
	tools := req.Tools
	pick := int(splitmix(h) % uint64(len(tools)))
	parallel := req.ParallelToolCalls == nil || *req.ParallelToolCalls
	calls := []int{pick}
	if c := req.ToolChoice; c != nil && c.Mode == moltbot.ToolChoiceFunction {
		calls[0] = toolIndex(tools, c.Name)
	} else if parallel && len(tools) >= 2 && asksForMany(lastUserText(req.Messages)) {
		calls = append(calls, (pick+1)%len(tools))
	}
	var out []inference.Delta
	for k, ti := range calls {
		t := tools[ti]
		args, err := ToolArguments(t.Parameters, splitmix(h^hashString(14695981039346656037, t.Name)))
		if err != nil {
			return nil, &RequestError{Param: "tools", Msg: fmt.Sprintf("tools[%d] (%s): parameters: %v", ti, t.Name, err)}
		}
		id := callID(h, len(req.Messages), k)
		out = append(out, inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: k, ID: id, Name: t.Name}})
		for _, frag := range splitPieces(string(args), pieceBytes) {
			out = append(out, inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: k, Arguments: frag}})
		}
	}
	return out, nil
}

func toolIndex(tools []moltbot.Tool, name string) int {
	for i := range tools {
		if tools[i].Name == name {
			return i
		}
	}
	return -1
}

// callID names the k-th call of a reply: distinct across the turns of a
// conversation (the history's length changes) and the same on a retry.
func callID(h uint64, n, k int) string {
	v := splitmix(h ^ uint64(n)<<32 ^ uint64(k))
	return "call_" + strconv.FormatUint(v, 36)
}

func lastUserText(msgs []moltbot.Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == moltbot.RoleUser {
			return msgs[i].Content
		}
	}
	return ""
}

// asksForMany reports whether the prompt has the word "both" or "all".
func asksForMany(s string) bool {
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !('a' <= r && r <= 'z') }) {
		if w == "both" || w == "all" {
			return true
		}
	}
	return false
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}
