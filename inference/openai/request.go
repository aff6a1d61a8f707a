package openai

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// What a request carries beyond text: tools, a response format, images and
// tool calls in the history. A plain-text request never reaches this file's
// encoders (AppendRequest looks for parts and tools first), so the hot path
// stays the one inference.AppendChatHead writes.

// checkRequest refuses what the body could not carry: a number JSON has no
// word for, a tool's schema or a call's arguments that are not JSON, an
// image without its bytes. It names the field, as the gateway would.
func checkRequest(provider string, req *inference.Request) error {
	for _, f := range []struct {
		name string
		v    *float64
	}{{"temperature", req.Temperature}, {"top_p", req.TopP}, {"presence_penalty", req.PresencePenalty}, {"frequency_penalty", req.FrequencyPenalty}} {
		if f.v != nil && (math.IsNaN(*f.v) || math.IsInf(*f.v, 0)) {
			return inference.Errorf(inference.KindBadRequest, provider, "%s is not a finite number", f.name)
		}
	}
	for i, t := range req.Tools {
		if t.Parameters != nil && !json.Valid(t.Parameters) {
			return inference.Errorf(inference.KindBadRequest, provider, "tools[%d].function.parameters is not valid JSON", i)
		}
	}
	if f := req.ResponseFormat; f != nil && f.Schema != nil && !json.Valid(f.Schema) {
		return inference.Errorf(inference.KindBadRequest, provider, "response_format.json_schema.schema is not valid JSON")
	}
	for i := range req.Messages {
		for j, p := range req.Messages[i].Parts {
			switch {
			case p.Type == moltbot.PartImage && len(p.Data) == 0:
				return inference.Errorf(inference.KindBadRequest, provider, "messages[%d].parts[%d]: image without its bytes", i, j)
			case p.Type == moltbot.PartToolCall && p.Arguments != "" && !json.Valid([]byte(p.Arguments)):
				return inference.Errorf(inference.KindBadRequest, provider, "messages[%d].tool_calls: arguments of call %q are not valid JSON", i, p.CallID)
			}
		}
	}
	return nil
}

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

// appendHead is inference.AppendChatHead for messages with parts: images
// become content parts (data: URLs), an assistant's tool calls its
// tool_calls, a tool result a tool message (one per result).
func appendHead(b []byte, req *inference.Request) []byte {
	b = append(b, `{"model":`...)
	b = jsonw.String(b, req.Model)
	b = append(b, `,"messages":[`...)
	n := 0
	msg := func(role moltbot.Role) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"role":`...)
		b = jsonw.String(b, string(role))
	}
	for i := range req.Messages {
		m := &req.Messages[i]
		switch {
		case m.Role == moltbot.RoleTool:
			results := 0
			for _, p := range m.Parts {
				if p.Type != moltbot.PartToolResult {
					continue
				}
				results++
				msg(m.Role)
				b = append(b, `,"tool_call_id":`...)
				b = jsonw.String(b, p.CallID)
				b = append(b, `,"content":`...)
				b = jsonw.String(b, p.Content)
				b = append(b, '}')
			}
			if results == 0 {
				// A tool message without its result part: its text is all
				// there is to send.
				msg(m.Role)
				b = append(b, `,"content":`...)
				b = jsonw.String(b, m.Content)
				b = append(b, '}')
			}
		case has(m.Parts, moltbot.PartToolCall):
			msg(m.Role)
			b = append(b, `,"content":`...)
			if m.Content == "" {
				b = append(b, "null"...) // OpenAI's own shape of a reply that only calls tools
			} else {
				b = jsonw.String(b, m.Content)
			}
			b = append(b, `,"tool_calls":[`...)
			c := 0
			for _, p := range m.Parts {
				if p.Type != moltbot.PartToolCall {
					continue
				}
				if c > 0 {
					b = append(b, ',')
				}
				c++
				b = append(b, `{"id":`...)
				b = jsonw.String(b, p.CallID)
				b = append(b, `,"type":"function","function":{"name":`...)
				b = jsonw.String(b, p.Name)
				b = append(b, `,"arguments":`...)
				args := p.Arguments
				if args == "" {
					args = "{}"
				}
				b = jsonw.String(b, args)
				b = append(b, "}}"...)
			}
			b = append(b, "]}"...)
		case has(m.Parts, moltbot.PartImage):
			msg(m.Role)
			b = append(b, `,"content":[`...)
			c := 0
			for _, p := range m.Parts {
				if p.Type != moltbot.PartText && p.Type != moltbot.PartImage {
					continue
				}
				if c > 0 {
					b = append(b, ',')
				}
				c++
				if p.Type == moltbot.PartText {
					b = append(b, `{"type":"text","text":`...)
					b = jsonw.String(b, p.Text)
					b = append(b, '}')
					continue
				}
				b = append(b, `{"type":"image_url","image_url":{"url":"data:`...)
				b = appendMIME(b, p.MIME)
				b = append(b, ";base64,"...)
				b = base64.StdEncoding.AppendEncode(b, p.Data)
				b = append(b, `"}}`...)
			}
			b = append(b, "]}"...)
		default:
			msg(m.Role)
			b = append(b, `,"content":`...)
			b = jsonw.String(b, m.Content)
			b = append(b, '}')
		}
	}
	return append(b, ']')
}

// appendMIME writes a data: URL's media type inside a JSON string: the
// bytes a media type may hold, and nothing that would end the string or
// the URL's header (a type with anything else is sent as
// application/octet-stream).
func appendMIME(b []byte, mime string) []byte {
	if mime == "" {
		return append(b, "application/octet-stream"...)
	}
	for i := 0; i < len(mime); i++ {
		c := mime[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '/' || c == '+' || c == '-' || c == '.' || c == '_') {
			return append(b, "application/octet-stream"...)
		}
	}
	return append(b, mime...)
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

// appendExtras appends the request's fields beyond the sampling knobs:
// penalties, the end user, tools, tool_choice, parallel_tool_calls and
// response_format, each as OpenAI names it.
func appendExtras(b []byte, req *inference.Request) []byte {
	if req.PresencePenalty != nil {
		b = append(b, `,"presence_penalty":`...)
		b = strconv.AppendFloat(b, *req.PresencePenalty, 'g', -1, 64)
	}
	if req.FrequencyPenalty != nil {
		b = append(b, `,"frequency_penalty":`...)
		b = strconv.AppendFloat(b, *req.FrequencyPenalty, 'g', -1, 64)
	}
	if req.User != "" {
		b = append(b, `,"user":`...)
		b = jsonw.String(b, req.User)
	}
	if len(req.Tools) > 0 {
		b = append(b, `,"tools":[`...)
		for i, t := range req.Tools {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"type":"function","function":{"name":`...)
			b = jsonw.String(b, t.Name)
			if t.Description != "" {
				b = append(b, `,"description":`...)
				b = jsonw.String(b, t.Description)
			}
			// Parameters are optional on OpenAI's wire (no parameters: a
			// function without arguments), so nil is left out.
			if t.Parameters != nil {
				b = append(b, `,"parameters":`...)
				b = append(b, t.Parameters...)
			}
			if t.Strict {
				b = append(b, `,"strict":true`...)
			}
			b = append(b, "}}"...)
		}
		b = append(b, ']')
	}
	if c := req.ToolChoice; c != nil && c.Mode != "" {
		b = append(b, `,"tool_choice":`...)
		if c.Mode == moltbot.ToolChoiceFunction {
			b = append(b, `{"type":"function","function":{"name":`...)
			b = jsonw.String(b, c.Name)
			b = append(b, "}}"...)
		} else {
			b = jsonw.String(b, c.Mode)
		}
	}
	if p := req.ParallelToolCalls; p != nil {
		b = append(b, `,"parallel_tool_calls":`...)
		b = strconv.AppendBool(b, *p)
	}
	if f := req.ResponseFormat; f != nil && f.Type != "" {
		b = append(b, `,"response_format":{"type":`...)
		b = jsonw.String(b, f.Type)
		if f.Type == moltbot.FormatJSONSchema {
			b = append(b, `,"json_schema":{"name":`...)
			b = jsonw.String(b, f.Name)
			if f.Schema != nil {
				b = append(b, `,"schema":`...)
				b = append(b, f.Schema...)
			}
			if f.Strict {
				b = append(b, `,"strict":true`...)
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return b
}

// toolCall is a tool call of a chunk's delta (a piece of one: Index says
// which) or of a whole completion's message.
type toolCall struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// toolCalls puts a reply's tool calls (or pieces of them) together: it
// gives each piece its call's index, and refuses an index that skips ahead
// (a call must start at the next index), so that a server cannot make the
// receiver grow its list of calls without bound.
type toolCalls struct {
	n int // calls started
}

// delta returns the inference.Delta of piece, the i-th of its list, or an
// error naming the bad index; ok false means the piece carries nothing.
func (tc *toolCalls) delta(piece *toolCall, i int) (d inference.Delta, ok bool, err error) {
	idx := i
	if piece.Index != nil {
		idx = *piece.Index
	}
	if idx < 0 || idx > tc.n {
		return d, false, fmt.Errorf("tool_calls: index %d out of order (%d calls so far)", idx, tc.n)
	}
	if idx == tc.n {
		tc.n++
	}
	if piece.ID == "" && piece.Function.Name == "" && piece.Function.Arguments == "" {
		return d, false, nil
	}
	return inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: idx, ID: piece.ID, Name: piece.Function.Name, Arguments: piece.Function.Arguments}}, true, nil
}
