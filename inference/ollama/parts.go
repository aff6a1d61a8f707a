package ollama

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/jsonw"
	"github.com/ollama/ollama/api"
)

// What a request carries beyond text, in Ollama's words: images are a
// message's images (raw bytes, base64 on the wire), an assistant's tool
// calls its tool_calls (arguments a JSON object, not a JSON text as
// OpenAI's), a tool result a "tool" message with tool_name and
// tool_call_id, tools api.Tool, and a response format the request's
// format ("json", or the schema itself). These are written with
// json.Marshal of api's own types: what the ollama CLI would send, which
// is what the server decodes into. They are rare; the plain-text request
// never comes here.

// plain reports whether every message is text only (no parts), as
// inference.AppendChatHead writes them.
func plain(msgs []moltbot.Message) bool {
	for i := range msgs {
		if msgs[i].Parts != nil || msgs[i].Role == moltbot.RoleTool {
			return false
		}
	}
	return true
}

// appendHead is inference.AppendChatHead for messages with parts.
func appendHead(b []byte, req *inference.Request) ([]byte, error) {
	b = append(b, `{"model":`...)
	b = jsonw.String(b, req.Model)
	b = append(b, `,"messages":[`...)
	// names maps a call id to its tool, for the tool_name of its result:
	// the latest call of that id before the result (ids such as "call_0"
	// come back in later replies).
	var names map[string]string
	n := 0
	for i := range req.Messages {
		msgs, err := apiMessages(&req.Messages[i], i, &names)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if n > 0 {
				b = append(b, ',')
			}
			n++
			if m == nil { // text only: as AppendChatHead writes it
				b = append(b, `{"role":`...)
				b = jsonw.String(b, string(req.Messages[i].Role))
				b = append(b, `,"content":`...)
				b = jsonw.String(b, req.Messages[i].Content)
				b = append(b, '}')
				continue
			}
			raw, err := json.Marshal(m)
			if err != nil {
				return nil, fmt.Errorf("messages[%d]: %v", i, err)
			}
			b = append(b, raw...)
		}
	}
	return append(b, ']'), nil
}

// textOnly stands for a message sent as its role and content.
var textOnly = []*api.Message{nil}

// apiMessages returns message i as Ollama's messages: textOnly for one of
// text, one per result for a tool message, else one with its images and
// tool calls. names collects the tool calls' names for later results.
func apiMessages(m *moltbot.Message, i int, names *map[string]string) ([]*api.Message, error) {
	if m.Role == moltbot.RoleTool {
		var out []*api.Message
		for _, p := range m.Parts {
			if p.Type == moltbot.PartToolResult {
				out = append(out, &api.Message{Role: string(m.Role), Content: p.Content, ToolName: (*names)[p.CallID], ToolCallID: p.CallID})
			}
		}
		if out == nil {
			return textOnly, nil
		}
		return out, nil
	}
	var out *api.Message
	for j, p := range m.Parts {
		switch p.Type {
		case moltbot.PartImage:
			if len(p.Data) == 0 {
				return nil, fmt.Errorf("messages[%d].parts[%d]: image without its bytes", i, j)
			}
			if out == nil {
				out = &api.Message{Role: string(m.Role), Content: m.Content}
			}
			out.Images = append(out.Images, api.ImageData(p.Data))
		case moltbot.PartToolCall:
			args, err := arguments(p.Arguments)
			if err != nil {
				return nil, fmt.Errorf("messages[%d].tool_calls: arguments of call %q: %v", i, p.CallID, err)
			}
			if out == nil {
				out = &api.Message{Role: string(m.Role), Content: m.Content}
			}
			out.ToolCalls = append(out.ToolCalls, api.ToolCall{ID: p.CallID,
				Function: api.ToolCallFunction{Index: len(out.ToolCalls), Name: p.Name, Arguments: args}})
			if *names == nil {
				*names = map[string]string{}
			}
			(*names)[p.CallID] = p.Name
		}
	}
	if out == nil {
		return textOnly, nil
	}
	return []*api.Message{out}, nil
}

// arguments reads a call's arguments, a JSON text, as the object Ollama's
// wire holds ("" is no arguments).
func arguments(s string) (api.ToolCallFunctionArguments, error) {
	args := api.NewToolCallFunctionArguments()
	t := bytes.TrimLeft([]byte(s), " \t\r\n")
	if len(t) == 0 {
		return args, nil
	}
	if t[0] != '{' {
		return args, fmt.Errorf("not a JSON object")
	}
	if err := json.Unmarshal(t, &args); err != nil {
		return args, err
	}
	return args, nil
}

// emptyObject is the schema of a tool that takes no parameters.
var emptyObject = json.RawMessage(`{"type":"object","properties":{}}`)

// appendKeepAlive appends ,"keep_alive": as api.Duration marshals it: -1
// for a negative duration (for good), else its text in quotes ("30m0s").
func appendKeepAlive(b []byte, d time.Duration) []byte {
	b = append(b, `,"keep_alive":`...)
	if d < 0 {
		return append(b, "-1"...)
	}
	b = append(b, '"')
	b = append(b, d.String()...)
	return append(b, '"')
}

// appendFormatAndTools appends format and tools, in api.ChatRequest's
// order. Ollama has no tool_choice: "none" offers no tools, a named
// function only that one; "required" and parallel_tool_calls cannot be
// said and are left to the model (the API table says so).
func appendFormatAndTools(b []byte, req *inference.Request, keepAlive *time.Duration) ([]byte, error) {
	if f := req.ResponseFormat; f.JSON() {
		b = append(b, `,"format":`...)
		if f.Type == moltbot.FormatJSONSchema && f.Schema != nil {
			// json.Marshal compacts a RawMessage (and checks it), as it
			// does api.ChatRequest's Format.
			raw, err := json.Marshal(f.Schema)
			if err != nil {
				return nil, fmt.Errorf("response_format.json_schema.schema: %v", err)
			}
			b = append(b, raw...)
		} else {
			b = append(b, `"json"`...)
		}
	}
	if keepAlive != nil {
		b = appendKeepAlive(b, *keepAlive)
	}
	if len(req.Tools) == 0 || req.ToolChoice != nil && req.ToolChoice.Mode == moltbot.ToolChoiceNone {
		return b, nil
	}
	tools := make(api.Tools, 0, len(req.Tools))
	for i, t := range req.Tools {
		if c := req.ToolChoice; c != nil && c.Mode == moltbot.ToolChoiceFunction && c.Name != t.Name {
			continue
		}
		params := t.Parameters
		if params == nil {
			params = emptyObject
		}
		at := api.Tool{Type: "function", Function: api.ToolFunction{Name: t.Name, Description: t.Description}}
		if err := json.Unmarshal(params, &at.Function.Parameters); err != nil {
			return nil, fmt.Errorf("tools[%d].function.parameters: %v", i, err)
		}
		tools = append(tools, at)
	}
	if len(tools) == 0 {
		return nil, fmt.Errorf("tool_choice: no tool named %q", req.ToolChoice.Name)
	}
	raw, err := json.Marshal(tools)
	if err != nil {
		return nil, fmt.Errorf("tools: %v", err)
	}
	b = append(b, `,"tools":`...)
	return append(b, raw...), nil
}

// toolDelta is a whole tool call of the stream as a delta: the reply's
// index-th call, its arguments a JSON text, its id the server's or
// call_<index> (older servers send none, and a tool result must name one).
func toolDelta(tc *api.ToolCall, index int) (inference.Delta, error) {
	args, err := json.Marshal(tc.Function.Arguments)
	if err != nil {
		return inference.Delta{}, err
	}
	id := tc.ID
	if id == "" {
		id = "call_" + strconv.Itoa(index)
	}
	return inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: index, ID: id, Name: tc.Function.Name, Arguments: string(args)}}, nil
}
