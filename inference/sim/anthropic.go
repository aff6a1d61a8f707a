package sim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// This file serves Anthropic's Messages API, POST /v1/messages: a JSON
// message, or SSE with the API's events (message_start, content_block_start,
// ping, content_block_delta with text_delta or input_json_delta,
// content_block_stop, message_delta with the stop reason and usage,
// message_stop). x-api-key and anthropic-version are accepted and not
// checked, as the other endpoints take any key. Errors are
// {"type":"error","error":{"type","message"}} with the API's statuses.

type anthropicRequest struct {
	Model         string               `json:"model"`
	MaxTokens     *int                 `json:"max_tokens"`
	Messages      []anthropicMessage   `json:"messages"`
	System        json.RawMessage      `json:"system"` // a string or text blocks
	Stream        bool                 `json:"stream"`
	Temperature   *float64             `json:"temperature"`
	TopP          *float64             `json:"top_p"`
	TopK          *int                 `json:"top_k"`
	StopSequences []string             `json:"stop_sequences"`
	Tools         []anthropicTool      `json:"tools"`
	ToolChoice    *anthropicToolChoice `json:"tool_choice"`
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"` // a string or blocks
}

// anthropicBlock is a content block of any type; Type says which fields
// are used.
type anthropicBlock struct {
	Type      string           `json:"type"`
	Text      *string          `json:"text"`
	Source    *anthropicSource `json:"source"`
	ID        string           `json:"id"`
	Name      string           `json:"name"`
	Input     json.RawMessage  `json:"input"`
	ToolUseID string           `json:"tool_use_id"`
	Content   json.RawMessage  `json:"content"` // a tool result's: a string or blocks
	IsError   bool             `json:"is_error"`
}

type anthropicSource struct {
	Type      string `json:"type"` // base64 or url
	MediaType string `json:"media_type"`
	Data      string `json:"data"`
	URL       string `json:"url"`
}

type anthropicTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthropicToolChoice struct {
	Type                   string `json:"type"` // auto, any, tool, none
	Name                   string `json:"name"`
	DisableParallelToolUse *bool  `json:"disable_parallel_tool_use"`
}

// anthropicImageTypes are the media types the API takes for an image.
var anthropicImageTypes = []string{"image/jpeg", "image/png", "image/gif", "image/webp"}

// blocks reads content: a string (one text block) or a list of blocks.
func blocks(raw json.RawMessage, at string) ([]anthropicBlock, *RequestError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, reqErr(at, "%s: %v", at, err)
		}
		return []anthropicBlock{{Type: "text", Text: &s}}, nil
	}
	var out []anthropicBlock
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &out) != nil {
		return nil, reqErr(at, "%s: Input should be a valid string or a list of content blocks", at)
	}
	return out, nil
}

// parseAnthropic reads a Messages API request body as moltbot's request
// and whether it streams. It checks what the API checks (required fields,
// roles, block types, images, tools, tool_choice, and that tool results
// answer the tool_use blocks of the message before them, all of them); an
// error names the field the API's way ("messages.1.content.0.source").
// A user message's tool_result blocks become tool messages, in order.
func parseAnthropic(body []byte) (*inference.Request, bool, *RequestError) {
	var in anthropicRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, false, reqErr("", "invalid request body: %v", err)
	}
	switch {
	case in.Model == "":
		return nil, false, reqErr("model", "model: Field required")
	case in.MaxTokens == nil:
		return nil, false, reqErr("max_tokens", "max_tokens: Field required")
	case *in.MaxTokens < 1:
		return nil, false, reqErr("max_tokens", "max_tokens: Input should be greater than or equal to 1")
	case len(in.Messages) == 0:
		return nil, false, reqErr("messages", "messages: at least one message is required")
	}
	req := &inference.Request{Model: in.Model}
	req.MaxTokens = *in.MaxTokens
	req.Temperature, req.TopP, req.Stop = in.Temperature, in.TopP, in.StopSequences
	if sys := bytes.TrimSpace(in.System); len(sys) > 0 && string(sys) != "null" {
		bs, err := blocks(sys, "system")
		if err != nil {
			return nil, false, err
		}
		var b strings.Builder
		for i, blk := range bs {
			if blk.Type != "text" || blk.Text == nil {
				return nil, false, reqErr(fmt.Sprintf("system.%d", i), "system.%d: Input should be a text block", i)
			}
			b.WriteString(*blk.Text)
		}
		req.Messages = append(req.Messages, moltbot.Message{Role: moltbot.RoleSystem, Content: b.String()})
	}
	var uses []string // the tool_use ids of the last assistant message, unanswered
	usesAt := 0
	for i, m := range in.Messages {
		at := fmt.Sprintf("messages.%d", i)
		if m.Role != "user" && m.Role != "assistant" {
			return nil, false, reqErr(at+".role", "%s.role: Input should be 'user' or 'assistant'", at)
		}
		bs, err := blocks(m.Content, at+".content")
		if err != nil {
			return nil, false, err
		}
		if len(bs) == 0 || len(bs) == 1 && bs[0].Type == "text" && bs[0].Text != nil && *bs[0].Text == "" && !(m.Role == "assistant" && i == len(in.Messages)-1) {
			return nil, false, reqErr(at, "%s: all messages must have non-empty content except for the optional final assistant message", at)
		}
		if m.Role == "assistant" && len(uses) > 0 {
			// Right after another's tool_use: its calls go unanswered.
			return nil, false, unansweredUses(usesAt, uses)
		}
		msg := moltbot.Message{Role: moltbot.Role(m.Role)}
		var answered []string
		for j, blk := range bs {
			bat := fmt.Sprintf("%s.content.%d", at, j)
			switch blk.Type {
			case "text":
				if blk.Text == nil {
					return nil, false, reqErr(bat+".text", "%s.text: Field required", bat)
				}
				msg.Parts = append(msg.Parts, moltbot.Part{Type: moltbot.PartText, Text: *blk.Text})
			case "image":
				if m.Role != "user" {
					return nil, false, reqErr(bat+".type", "%s: images are only allowed in user messages", bat)
				}
				p, err := anthropicImage(blk.Source, bat+".source")
				if err != nil {
					return nil, false, err
				}
				msg.Parts = append(msg.Parts, p)
			case "tool_use":
				input := bytes.TrimSpace(blk.Input)
				switch {
				case m.Role != "assistant":
					return nil, false, reqErr(bat+".type", "%s: tool_use blocks are only allowed in assistant messages", bat)
				case blk.ID == "":
					return nil, false, reqErr(bat+".id", "%s.id: Field required", bat)
				case blk.Name == "":
					return nil, false, reqErr(bat+".name", "%s.name: Field required", bat)
				case len(input) == 0 || input[0] != '{':
					return nil, false, reqErr(bat+".input", "%s.input: Input should be a valid dictionary", bat)
				}
				msg.Parts = append(msg.Parts, moltbot.Part{Type: moltbot.PartToolCall, CallID: blk.ID, Name: blk.Name, Arguments: string(input)})
			case "tool_result":
				if m.Role != "user" {
					return nil, false, reqErr(bat+".type", "%s: tool_result blocks are only allowed in user messages", bat)
				}
				if blk.ToolUseID == "" {
					return nil, false, reqErr(bat+".tool_use_id", "%s.tool_use_id: Field required", bat)
				}
				if !slices.Contains(uses, blk.ToolUseID) {
					return nil, false, reqErr(bat, "%s: unexpected `tool_use_id` found in `tool_result` blocks: %s. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.", at, blk.ToolUseID)
				}
				answered = append(answered, blk.ToolUseID)
				text, err := toolResultText(blk.Content, bat+".content")
				if err != nil {
					return nil, false, err
				}
				req.Messages = append(req.Messages, moltbot.Message{Role: moltbot.RoleTool,
					Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: blk.ToolUseID, Content: text}}})
			case "thinking", "redacted_thinking":
				// A model's earlier thinking, given back: nothing to read.
			default:
				return nil, false, reqErr(bat+".type", "%s.type: the simulator does not take %q blocks (text, image, tool_use, tool_result)", bat, blk.Type)
			}
		}
		if m.Role == "user" && len(uses) > 0 {
			var missing []string
			for _, id := range uses {
				if !slices.Contains(answered, id) {
					missing = append(missing, id)
				}
			}
			if len(missing) > 0 {
				return nil, false, unansweredUses(usesAt, missing)
			}
		}
		uses = uses[:0]
		if m.Role == "assistant" {
			usesAt = i
			for _, p := range msg.Parts {
				if p.Type == moltbot.PartToolCall {
					uses = append(uses, p.CallID)
				}
			}
		}
		if len(msg.Parts) == 0 {
			continue // only tool results, already added
		}
		msg.Content = moltbot.TextOf(msg.Parts)
		if len(msg.Parts) == 1 && msg.Parts[0].Type == moltbot.PartText {
			msg.Parts = nil
		}
		req.Messages = append(req.Messages, msg)
	}
	if err := anthropicTools(req, &in); err != nil {
		return nil, false, err
	}
	return req, in.Stream, nil
}

func unansweredUses(at int, ids []string) *RequestError {
	return reqErr(fmt.Sprintf("messages.%d", at), "messages.%d: `tool_use` ids were found without `tool_result` blocks immediately after: %s. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", at, strings.Join(ids, ", "))
}

// anthropicImage reads an image block's source: base64 data of one of the
// API's media types, or a URL (counted, not fetched).
func anthropicImage(src *anthropicSource, at string) (moltbot.Part, *RequestError) {
	if src == nil {
		return moltbot.Part{}, reqErr(at, "%s: Field required", at)
	}
	switch src.Type {
	case "base64":
		if !slices.Contains(anthropicImageTypes, src.MediaType) {
			return moltbot.Part{}, reqErr(at+".media_type", "%s.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'", at)
		}
		data, err := base64.StdEncoding.DecodeString(src.Data)
		if err != nil || len(data) == 0 {
			return moltbot.Part{}, reqErr(at+".data", "%s.data: the image data is not valid base64", at)
		}
		return moltbot.Part{Type: moltbot.PartImage, MIME: src.MediaType, Data: data}, nil
	case "url":
		if !strings.HasPrefix(src.URL, "https://") && !strings.HasPrefix(src.URL, "http://") {
			return moltbot.Part{}, reqErr(at+".url", "%s.url: Input should be a valid URL", at)
		}
		return moltbot.Part{Type: moltbot.PartImage}, nil
	}
	return moltbot.Part{}, reqErr(at+".type", "%s.type: Input should be 'base64' or 'url'", at)
}

// toolResultText is a tool_result's content as text: a string, or the
// text of its text blocks.
func toolResultText(raw json.RawMessage, at string) (string, *RequestError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	bs, err := blocks(raw, at)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, blk := range bs {
		switch {
		case blk.Type == "text" && blk.Text != nil:
			b.WriteString(*blk.Text)
		case blk.Type == "image":
			if _, err := anthropicImage(blk.Source, fmt.Sprintf("%s.%d.source", at, i)); err != nil {
				return "", err
			}
		default:
			return "", reqErr(fmt.Sprintf("%s.%d.type", at, i), "%s.%d: a tool result holds text and image blocks", at, i)
		}
	}
	return b.String(), nil
}

// anthropicTools reads tools and tool_choice: custom tools only; choice
// auto, any (a call is required), tool (that one) or none, and
// disable_parallel_tool_use.
func anthropicTools(req *inference.Request, in *anthropicRequest) *RequestError {
	for i, t := range in.Tools {
		at := fmt.Sprintf("tools.%d", i)
		switch {
		case t.Type != "" && t.Type != "custom":
			return reqErr(at+".type", "%s.type: the simulator runs custom tools only, not %q", at, t.Type)
		case t.Name == "":
			return reqErr(at+".name", "%s.name: Field required", at)
		case !openaiToolName(t.Name):
			return reqErr(at+".name", "%s.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'", at)
		case len(bytes.TrimSpace(t.InputSchema)) == 0:
			return reqErr(at+".input_schema", "%s.input_schema: Field required", at)
		}
		req.Tools = append(req.Tools, moltbot.Tool{Name: t.Name, Description: t.Description, Parameters: t.InputSchema})
	}
	c := in.ToolChoice
	if c == nil {
		return nil
	}
	if len(req.Tools) == 0 {
		return reqErr("tool_choice", "tool_choice: tool_choice may only be specified while providing tools")
	}
	mode := ""
	switch c.Type {
	case "auto":
		mode = moltbot.ToolChoiceAuto
	case "any":
		mode = moltbot.ToolChoiceRequired
	case "none":
		mode = moltbot.ToolChoiceNone
	case "tool":
		if c.Name == "" {
			return reqErr("tool_choice.name", "tool_choice.name: Field required")
		}
		if toolIndex(req.Tools, c.Name) < 0 {
			return reqErr("tool_choice.name", "tool_choice.name: tool %q is not among the tools", c.Name)
		}
		mode = moltbot.ToolChoiceFunction
	default:
		return reqErr("tool_choice.type", "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
	}
	req.ToolChoice = &moltbot.ToolChoice{Mode: mode, Name: c.Name}
	if c.DisableParallelToolUse != nil && *c.DisableParallelToolUse {
		no := false
		req.ParallelToolCalls = &no
	}
	return nil
}

// anthropicErrorType is the error type the API gives a status.
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

func anthropicError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b := append([]byte(`{"type":"error","error":{"type":`), jsonw.String(nil, anthropicErrorType(status))...)
	b = append(b, `,"message":`...)
	b = jsonw.String(b, msg)
	w.Write(append(b, "},\"request_id\":\"req_sim\"}\n"...))
}

// anthropicStop is the API's stop_reason for a finish reason.
func anthropicStop(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls":
		return "tool_use"
	}
	return "end_turn"
}

// anthropicID turns the engine's call id into the API's kind ("toolu_...").
func anthropicID(id string) string {
	if rest, ok := strings.CutPrefix(id, "call_"); ok {
		return "toolu_" + rest
	}
	return id
}

func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		anthropicError(w, http.StatusRequestEntityTooLarge, "request body too large or unreadable: "+err.Error())
		return
	}
	req, stream, rerr := parseAnthropic(body)
	if rerr == nil {
		rerr = s.Engine.check(req)
	}
	if rerr != nil {
		anthropicError(w, http.StatusBadRequest, rerr.Msg)
		return
	}
	if fail, status, retry := s.Engine.Fail(); fail {
		setRetryAfter(w, retry)
		msg := "simulated failure"
		if status == 529 {
			msg = "Overloaded"
		}
		anthropicError(w, status, msg)
		return
	}
	msgID := "msg_sim" + jsonInt(time.Now().UnixNano())
	w.Header().Set("request-id", "req_sim"+jsonInt(time.Now().UnixNano()))
	if stream {
		s.anthropicStream(w, r, req, msgID)
		return
	}
	var text strings.Builder
	var calls []moltbot.ToolCall
	rep, err := s.Engine.Respond(r.Context(), req, func(d inference.Delta) error {
		if d.ToolCall != nil {
			calls = moltbot.AddDelta(calls, d.ToolCall)
		}
		text.WriteString(d.Text)
		return nil
	})
	if errors.Is(err, ErrDropped) {
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			anthropicError(w, http.StatusBadRequest, re.Msg)
		}
		return
	}
	b := appendAnthropicHead(nil, msgID, req.Model)
	b = append(b, `"content":[`...)
	n := 0
	if text.Len() > 0 {
		b = append(b, `{"type":"text","text":`...)
		b = jsonw.String(b, text.String())
		b = append(b, '}')
		n++
	}
	for _, c := range calls {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"type":"tool_use","id":`...)
		b = jsonw.String(b, anthropicID(c.ID))
		b = append(b, `,"name":`...)
		b = jsonw.String(b, c.Name)
		b = append(b, `,"input":`...)
		b = append(b, c.Arguments...)
		b = append(b, '}')
	}
	b = append(b, `],"stop_reason":`...)
	b = jsonw.String(b, anthropicStop(rep.FinishReason))
	b = append(b, `,"stop_sequence":null,"usage":{"input_tokens":`...)
	b = jsonw.Int(b, int64(rep.Usage.PromptTokens))
	b = append(b, `,"output_tokens":`...)
	b = jsonw.Int(b, int64(rep.Usage.CompletionTokens))
	b = append(b, "}}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// appendAnthropicHead opens a message object up to its content:
// {"id","type":"message","role":"assistant","model",
func appendAnthropicHead(b []byte, id, model string) []byte {
	b = append(b, `{"id":`...)
	b = jsonw.String(b, id)
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = jsonw.String(b, model)
	return append(b, ',')
}

// anthropicStream streams a reply as the API's SSE events. A text block
// opens at the first text piece; each tool call is a tool_use block opened
// by its first piece (id and name, input {}) and filled by input_json_delta
// events; a block closes when the next opens or the reply ends.
func (s *Server) anthropicStream(w http.ResponseWriter, r *http.Request, req *inference.Request, msgID string) {
	out := newStreamWriter(w, s.burst())
	event := func(b []byte, name string) []byte {
		b = append(b, "event: "...)
		b = append(b, name...)
		return append(b, "\ndata: "...)
	}
	// message_start goes with the first piece (or the end): a request the
	// engine refuses is then still an HTTP 400, as at the API.
	started := false
	start := func(b []byte) []byte {
		if started {
			return b
		}
		started = true
		out.header("text/event-stream")
		b = event(b, "message_start")
		b = append(b, `{"type":"message_start","message":`...)
		b = appendAnthropicHead(b, msgID, req.Model)
		b = append(b, `"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`...)
		b = jsonw.Int(b, int64(PromptTokens(req)))
		return append(b, `,"output_tokens":1}}}`+"\n\n"...)
	}
	block, open, pinged := -1, "", false
	closeBlock := func(b []byte) []byte {
		if open == "" {
			return b
		}
		open = ""
		b = event(b, "content_block_stop")
		b = append(b, `{"type":"content_block_stop","index":`...)
		b = jsonw.Int(b, int64(block))
		return append(b, "}\n\n"...)
	}
	startBlock := func(b []byte, kind string, d *moltbot.ToolCallDelta) []byte {
		b = closeBlock(b)
		block++
		open = kind
		b = event(b, "content_block_start")
		b = append(b, `{"type":"content_block_start","index":`...)
		b = jsonw.Int(b, int64(block))
		if d == nil {
			b = append(b, `,"content_block":{"type":"text","text":""}}`+"\n\n"...)
		} else {
			b = append(b, `,"content_block":{"type":"tool_use","id":`...)
			b = jsonw.String(b, anthropicID(d.ID))
			b = append(b, `,"name":`...)
			b = jsonw.String(b, d.Name)
			b = append(b, `,"input":{}}}`+"\n\n"...)
		}
		if !pinged {
			pinged = true
			b = event(b, "ping")
			b = append(b, `{"type": "ping"}`+"\n\n"...)
		}
		return b
	}
	delta := func(b []byte, typ, key, v string) []byte {
		b = event(b, "content_block_delta")
		b = append(b, `{"type":"content_block_delta","index":`...)
		b = jsonw.Int(b, int64(block))
		b = append(b, `,"delta":{"type":`...)
		b = jsonw.String(b, typ)
		b = append(b, ',')
		b = jsonw.String(b, key)
		b = append(b, ':')
		b = jsonw.String(b, v)
		return append(b, "}}\n\n"...)
	}
	rep, err := s.Engine.Respond(r.Context(), req, func(d inference.Delta) error {
		b := start(out.b[:0])
		switch {
		case d.ToolCall == nil:
			if open != "text" {
				b = startBlock(b, "text", nil)
			}
			b = delta(b, "text_delta", "text", d.Text)
		case d.ToolCall.ID != "":
			b = startBlock(b, "tool_use", d.ToolCall)
			if d.ToolCall.Arguments != "" {
				b = delta(b, "input_json_delta", "partial_json", d.ToolCall.Arguments)
			}
		default:
			b = delta(b, "input_json_delta", "partial_json", d.ToolCall.Arguments)
		}
		return out.send(b)
	})
	if errors.Is(err, ErrDropped) {
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			anthropicError(w, http.StatusBadRequest, re.Msg)
		}
		return // or the client left
	}
	b := closeBlock(start(out.b[:0]))
	b = event(b, "message_delta")
	b = append(b, `{"type":"message_delta","delta":{"stop_reason":`...)
	b = jsonw.String(b, anthropicStop(rep.FinishReason))
	b = append(b, `,"stop_sequence":null},"usage":{"output_tokens":`...)
	b = jsonw.Int(b, int64(rep.Usage.CompletionTokens))
	b = append(b, "}}\n\n"...)
	b = event(b, "message_stop")
	b = append(b, `{"type":"message_stop"}`+"\n\n"...)
	out.send(b)
}

// anthropicModels is GET /v1/models in the API's shape.
func (s *Server) anthropicModels(w http.ResponseWriter) {
	models := s.allModels()
	b := []byte(`{"data":[`)
	for i, m := range models {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"model","id":`...)
		b = jsonw.String(b, m)
		b = append(b, `,"display_name":`...)
		b = jsonw.String(b, m)
		b = append(b, `,"created_at":"1970-01-01T00:00:00Z"}`...)
	}
	b = append(b, `],"has_more":false,"first_id":`...)
	if len(models) > 0 {
		b = jsonw.String(b, models[0])
		b = append(b, `,"last_id":`...)
		b = jsonw.String(b, models[len(models)-1])
	} else {
		b = append(b, `null,"last_id":null`...)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, "}\n"...))
}
