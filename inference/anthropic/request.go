package anthropic

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// The Messages API request, and how moltbot's requests map to it: system
// messages become the system prompt; a message with parts becomes content
// blocks (text, image, tool_use); a tool result is a tool_result block of
// a user message (consecutive results share one, as the API wants the
// roles to alternate); tools and tool_choice are Anthropic's own; a JSON
// response format is asked for by a tool the model must call, whose input
// is then the reply's text (see jsonTool). Anthropic has no presence or
// frequency penalty: they are not sent. The end user goes in
// metadata.user_id.

type request struct {
	Model         string      `json:"model"`
	MaxTokens     int         `json:"max_tokens"`
	System        string      `json:"system,omitempty"`
	Messages      []message   `json:"messages"`
	Stream        bool        `json:"stream"`
	Temperature   *float64    `json:"temperature,omitempty"`
	TopP          *float64    `json:"top_p,omitempty"`
	StopSequences []string    `json:"stop_sequences,omitempty"`
	Tools         []tool      `json:"tools,omitempty"`
	ToolChoice    *toolChoice `json:"tool_choice,omitempty"`
	Metadata      *metadata   `json:"metadata,omitempty"`
}

// message is a turn. Content is a string (text only, as it always was
// sent) or a list of blocks.
type message struct {
	Role    string `json:"role"`
	Content any    `json:"content"`
}

// block is a content block: text, image, tool_use or tool_result.
type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	Source    *imageSource    `json:"source,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   string          `json:"content,omitempty"`
}

// imageSource is an image block's bytes: {"type":"base64","media_type",
// "data"} (encoding/json writes Data as base64).
type imageSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type"`
	Data      []byte `json:"data"`
}

type tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// toolChoice is {"type":"auto"|"any"|"tool"|"none"}, with the tool's name
// for "tool"; disable_parallel_tool_use holds the model to one call.
type toolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

type metadata struct {
	UserID string `json:"user_id"`
}

// DefaultJSONTool names the tool that carries a JSON reply when the
// response format names none (json_object).
const DefaultJSONTool = "json_response"

// jsonToolDescription tells the model what the forced tool is for.
const jsonToolDescription = "Give your answer as this tool's input: a JSON value that its input schema describes."

// Schemas sent where the request has none: a tool without parameters, and
// json_object's "any object".
var (
	emptyObject = json.RawMessage(`{"type":"object","properties":{}}`)
	anyObject   = json.RawMessage(`{"type":"object"}`)
)

// buildRequest maps req to the Messages API. jsonTool is the name of the
// tool that carries a JSON reply ("" when req asks for none). The error
// names the field that does not fit.
func buildRequest(req *inference.Request) (body *request, jsonTool string, err error) {
	body = &request{Model: req.Model, MaxTokens: req.MaxTokens, Stream: true,
		Temperature: req.Temperature, TopP: req.TopP, StopSequences: req.Stop}
	if body.MaxTokens <= 0 {
		body.MaxTokens = DefaultMaxTokens
	}
	if req.User != "" {
		body.Metadata = &metadata{UserID: req.User}
	}
	var sys []string
	results := -1 // the message holding the latest tool results, while they last
	for i := range req.Messages {
		m := &req.Messages[i]
		if m.Role == moltbot.RoleSystem {
			sys = append(sys, m.Content)
			continue
		}
		if m.Role == moltbot.RoleTool && has(m.Parts, moltbot.PartToolResult) {
			var blocks []block
			if results >= 0 {
				blocks = body.Messages[results].Content.([]block)
			}
			for _, p := range m.Parts {
				if p.Type == moltbot.PartToolResult {
					blocks = append(blocks, block{Type: "tool_result", ToolUseID: p.CallID, Content: p.Content})
				}
			}
			if results >= 0 {
				body.Messages[results].Content = blocks
			} else {
				results = len(body.Messages)
				body.Messages = append(body.Messages, message{Role: string(moltbot.RoleUser), Content: blocks})
			}
			continue
		}
		blocks, err := contentBlocks(m, i)
		if err != nil {
			return nil, "", err
		}
		if m.Role == moltbot.RoleUser && results >= 0 {
			// The user's turn after tool results: the same turn, after
			// them (the API wants tool_result blocks first).
			if blocks == nil && m.Content != "" {
				blocks = []block{{Type: "text", Text: m.Content}}
			}
			body.Messages[results].Content = append(body.Messages[results].Content.([]block), blocks...)
			results = -1
			continue
		}
		results = -1
		role := m.Role
		if role == moltbot.RoleTool {
			// A tool message without its result: its text is all there is.
			role = moltbot.RoleUser
		}
		if blocks == nil {
			body.Messages = append(body.Messages, message{Role: string(role), Content: m.Content})
		} else {
			body.Messages = append(body.Messages, message{Role: string(role), Content: blocks})
		}
	}
	body.System = strings.Join(sys, "\n\n")
	jsonTool, err = tools(body, req)
	return body, jsonTool, err
}

// contentBlocks returns m's parts as blocks, or nil when m is text only.
func contentBlocks(m *moltbot.Message, i int) ([]block, error) {
	if !has(m.Parts, moltbot.PartImage) && !has(m.Parts, moltbot.PartToolCall) {
		return nil, nil
	}
	blocks := make([]block, 0, len(m.Parts))
	for j, p := range m.Parts {
		switch p.Type {
		case moltbot.PartText:
			if p.Text != "" { // the API refuses an empty text block
				blocks = append(blocks, block{Type: "text", Text: p.Text})
			}
		case moltbot.PartImage:
			if len(p.Data) == 0 {
				return nil, fmt.Errorf("messages[%d].parts[%d]: image without its bytes", i, j)
			}
			blocks = append(blocks, block{Type: "image", Source: &imageSource{Type: "base64", MediaType: p.MIME, Data: p.Data}})
		case moltbot.PartToolCall:
			input, err := object(p.Arguments)
			if err != nil {
				return nil, fmt.Errorf("messages[%d].tool_calls: arguments of call %q: %v", i, p.CallID, err)
			}
			blocks = append(blocks, block{Type: "tool_use", ID: p.CallID, Name: p.Name, Input: input})
		}
	}
	return blocks, nil
}

// object returns a call's arguments as a tool_use block's input, which
// must be a JSON object ("" is none: {}).
func object(args string) (json.RawMessage, error) {
	t := strings.TrimSpace(args)
	if t == "" {
		return json.RawMessage("{}"), nil
	}
	if t[0] != '{' || !json.Valid([]byte(t)) {
		return nil, fmt.Errorf("not a JSON object")
	}
	return json.RawMessage(t), nil
}

// tools sets body's tools and tool_choice, and adds the tool that carries
// a JSON reply, whose name it returns.
//
// With that tool, the model must answer through it: alone it is forced
// (tool_choice "tool"); beside the request's tools the model must call one
// of them or it ("any"), unless the request named a tool. Either way its
// input is the reply.
func tools(body *request, req *inference.Request) (string, error) {
	for i, t := range req.Tools {
		schema := t.Parameters
		if schema == nil {
			schema = emptyObject
		} else if !json.Valid(schema) {
			return "", fmt.Errorf("tools[%d].function.parameters is not valid JSON", i)
		}
		body.Tools = append(body.Tools, tool{Name: t.Name, Description: t.Description, InputSchema: schema})
	}
	var choice *toolChoice
	if c := req.ToolChoice; c != nil && len(req.Tools) > 0 {
		switch c.Mode {
		case moltbot.ToolChoiceAuto:
			choice = &toolChoice{Type: "auto"}
		case moltbot.ToolChoiceNone:
			choice = &toolChoice{Type: "none"}
		case moltbot.ToolChoiceRequired:
			choice = &toolChoice{Type: "any"}
		case moltbot.ToolChoiceFunction:
			choice = &toolChoice{Type: "tool", Name: c.Name}
		}
	}
	var jsonTool string
	if f := req.ResponseFormat; f.JSON() {
		jsonTool = DefaultJSONTool
		schema := anyObject
		if f.Type == moltbot.FormatJSONSchema {
			if f.Name != "" {
				jsonTool = f.Name
			}
			if f.Schema != nil {
				if !json.Valid(f.Schema) {
					return "", fmt.Errorf("response_format.json_schema.schema is not valid JSON")
				}
				schema = f.Schema
			}
		}
		for _, t := range req.Tools {
			if t.Name == jsonTool {
				return "", fmt.Errorf("response_format.json_schema.name: %q is also the name of a tool", jsonTool)
			}
		}
		body.Tools = append(body.Tools, tool{Name: jsonTool, Description: jsonToolDescription, InputSchema: schema})
		switch {
		case choice == nil && len(req.Tools) > 0, choice != nil && (choice.Type == "auto" || choice.Type == "any"):
			choice = &toolChoice{Type: "any"}
		case choice == nil || choice.Type == "none":
			// One JSON reply: one call.
			choice = &toolChoice{Type: "tool", Name: jsonTool, DisableParallelToolUse: true}
		}
	}
	if p := req.ParallelToolCalls; p != nil && !*p && len(body.Tools) > 0 {
		if choice == nil {
			choice = &toolChoice{Type: "auto"}
		}
		if choice.Type != "none" {
			choice.DisableParallelToolUse = true
		}
	}
	body.ToolChoice = choice
	return jsonTool, nil
}

// has reports whether parts hold one of type t.
func has(parts []moltbot.Part, t moltbot.PartType) bool {
	for i := range parts {
		if parts[i].Type == t {
			return true
		}
	}
	return false
}
