// Package anthropic is a Provider for Anthropic's Messages API with SSE
// streaming (message_start, content_block_start, content_block_delta,
// content_block_stop, message_delta, message_stop, ping and error events).
// Text deltas are the reply's text; a tool_use block is a tool call, its
// input_json_delta pieces the call's arguments (request.go says how the
// request maps).
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sse"
)

// APIVersion is the anthropic-version header sent with every request.
const APIVersion = "2023-06-01"

// DefaultMaxTokens is sent when the request gives none: the API requires it.
const DefaultMaxTokens = 1024

// Config configures a client.
type Config struct {
	Name    string
	BaseURL string // https://api.anthropic.com (with or without /v1)
	APIKey  string
	// Creds, when set, supplies the key per call (a key pool); it wins over APIKey.
	Creds *inference.Credentials
	HTTP  *http.Client
}

// Client is an Anthropic provider.
type Client struct {
	name  string
	base  string // ends with /v1
	creds *inference.Credentials
	http  *http.Client
}

// TypeName is the provider type of the Anthropic Messages API in a config.
const TypeName = "anthropic"

func init() {
	inference.Register(inference.Type{Name: TypeName, NeedsURL: true, New: func(s inference.Spec) (inference.Provider, error) {
		return New(Config{Name: s.Name, BaseURL: s.URL, Creds: s.Creds, HTTP: s.HTTP}), nil
	}})
}

// New returns a client for cfg.
func New(cfg Config) *Client {
	base := strings.TrimRight(cfg.BaseURL, "/")
	if !strings.HasSuffix(base, "/v1") {
		base += "/v1"
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = inference.NewHTTPClient(16)
	}
	creds := cfg.Creds
	if creds == nil {
		creds = inference.NewKeyPool([]string{cfg.APIKey})
	}
	return &Client{name: cfg.Name, base: base, creds: creds, http: hc}
}

func (c *Client) do(ctx context.Context, mk func() (*http.Request, error)) (*http.Response, error) {
	return inference.DoWithKeys(ctx, c.name, c.creds, c.http, func() (*http.Request, error) {
		r, err := mk()
		if err == nil {
			r.Header.Set("anthropic-version", APIVersion)
		}
		return r, err
	}, func(r *http.Request, key string) {
		r.Header.Set("x-api-key", key)
	}, func(resp *http.Response) *inference.Error {
		return inference.FromStatus(c.name, resp.StatusCode, ParseError(inference.ReadErrorBody(resp.Body)), resp.Header)
	})
}

type usage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

type event struct {
	Type    string `json:"type"`
	Message *struct {
		Model string `json:"model"`
		Usage usage  `json:"usage"`
	} `json:"message"`
	// Index is the content block of a content_block_* event.
	Index        int `json:"index"`
	ContentBlock *struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"content_block"`
	Delta *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *usage `json:"usage"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// ParseError reads Anthropic's {"type":"error","error":{"type","message"}} body.
func ParseError(body []byte) string {
	var e event
	if json.Unmarshal(body, &e) == nil && e.Error != nil && e.Error.Message != "" {
		if e.Error.Type != "" {
			return e.Error.Type + ": " + e.Error.Message
		}
		return e.Error.Message
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

// Chat implements inference.Provider. System messages become the top-level
// system prompt, as the Messages API requires.
func (c *Client) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	body, jsonTool, err := buildRequest(req)
	if err != nil {
		return inference.Result{}, &inference.Error{Kind: inference.KindBadRequest, Provider: c.name, Message: err.Error(), Err: err}
	}
	buf, err := json.Marshal(body)
	if err != nil {
		return inference.Result{}, inference.Errorf(inference.KindBadRequest, c.name, "encode request: %v", err)
	}
	resp, err := c.do(ctx, func() (*http.Request, error) {
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/messages", bytes.NewReader(buf))
		if err != nil {
			return nil, err
		}
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set("Accept", "text/event-stream")
		return hreq, nil
	})
	if err != nil {
		return inference.Result{}, err
	}
	defer resp.Body.Close()
	var res inference.Result
	r := sse.NewReader(resp.Body, 4<<20)
	stopped := false
	st := stream{jsonTool: jsonTool}
	for {
		ev, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if stopped {
					return res, nil
				}
				return res, inference.StreamEnded(c.name)
			}
			return res, inference.Classify(ctx, c.name, err)
		}
		var e event
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: "malformed stream event: " + err.Error()}
		}
		typ := e.Type
		if typ == "" {
			typ = ev.Type
		}
		switch typ {
		case "message_start":
			if e.Message != nil {
				res.Model = e.Message.Model
				res.Usage.PromptTokens = e.Message.Usage.InputTokens
				res.Usage.CompletionTokens = e.Message.Usage.OutputTokens
			}
		case "content_block_start":
			d, ok, err := st.start(&e)
			if err != nil {
				return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: err.Error()}
			}
			if ok {
				if err := fn(d); err != nil {
					return res, err
				}
			}
		case "content_block_delta":
			if e.Delta == nil {
				break
			}
			var d inference.Delta
			switch e.Delta.Type {
			case "text_delta":
				d.Text = e.Delta.Text
			case "input_json_delta":
				d, err = st.input(e.Index, e.Delta.PartialJSON)
				if err != nil {
					return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: err.Error()}
				}
			}
			if d.Text != "" || d.ToolCall != nil {
				if err := fn(d); err != nil {
					return res, err
				}
			}
		case "content_block_stop":
			if d, ok := st.stop(e.Index); ok {
				if err := fn(d); err != nil {
					return res, err
				}
			}
		case "message_delta":
			if e.Delta != nil && e.Delta.StopReason != "" {
				res.FinishReason = finishReason(e.Delta.StopReason)
				if res.FinishReason == "tool_calls" && st.calls == 0 {
					// Only the JSON reply's tool was called: a reply.
					res.FinishReason = "stop"
				}
			}
			if e.Usage != nil {
				res.Usage.CompletionTokens = e.Usage.OutputTokens
				if e.Usage.InputTokens > 0 {
					res.Usage.PromptTokens = e.Usage.InputTokens
				}
			}
		case "message_stop":
			stopped = true
			return res, nil
		case "error":
			msg := "stream error"
			kind := inference.KindStream
			if e.Error != nil {
				msg = e.Error.Type + ": " + e.Error.Message
				if e.Error.Type == "overloaded_error" {
					kind = inference.KindUnavailable
				}
			}
			return res, &inference.Error{Kind: kind, Provider: c.name, Message: msg}
		}
	}
}

// finishReason maps Anthropic's stop_reason to OpenAI's finish_reason.
func finishReason(s string) string {
	switch s {
	case "end_turn", "stop_sequence":
		return "stop"
	case "max_tokens":
		return "length"
	case "tool_use":
		return "tool_calls"
	}
	return s
}

// Kinds of content blocks that stream tool input.
const (
	blockOther = iota // text, thinking, a server tool's use: no input to pass on
	blockTool         // a tool call
	blockJSON         // the JSON reply's tool: its input is the reply's text
)

// blockState is what a reply's content block is to the client.
type blockState struct {
	kind int
	call int  // its index among the reply's tool calls (blockTool)
	sent bool // some of its input was passed on
}

// stream follows a reply's content blocks: which are tool calls (and
// their index among the calls), which is the JSON reply.
type stream struct {
	jsonTool string
	blocks   []blockState // by the block's index
	calls    int
}

// start reads a content_block_start: a tool_use block starts a tool call
// (the delta with its id and name), or the JSON reply.
func (s *stream) start(e *event) (inference.Delta, bool, error) {
	// Blocks are numbered from 0 in order; a gap would have the list grow
	// at the server's word.
	if e.Index < 0 || e.Index > len(s.blocks) {
		return inference.Delta{}, false, fmt.Errorf("content block %d started after %d blocks", e.Index, len(s.blocks))
	}
	b := blockState{kind: blockOther}
	var d inference.Delta
	if cb := e.ContentBlock; cb != nil && cb.Type == "tool_use" {
		if s.jsonTool != "" && cb.Name == s.jsonTool {
			b.kind = blockJSON
		} else {
			b.kind, b.call = blockTool, s.calls
			s.calls++
			d.ToolCall = &moltbot.ToolCallDelta{Index: b.call, ID: cb.ID, Name: cb.Name}
		}
	}
	if e.Index == len(s.blocks) {
		s.blocks = append(s.blocks, b)
	} else {
		s.blocks[e.Index] = b
	}
	return d, d.ToolCall != nil, nil
}

// input reads a piece of block i's input: more of a call's arguments, or
// of the JSON reply's text.
func (s *stream) input(i int, partial string) (inference.Delta, error) {
	if i < 0 || i >= len(s.blocks) {
		return inference.Delta{}, fmt.Errorf("input_json_delta for content block %d, which did not start", i)
	}
	b := &s.blocks[i]
	if partial == "" {
		return inference.Delta{}, nil
	}
	switch b.kind {
	case blockTool:
		b.sent = true
		return inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: b.call, Arguments: partial}}, nil
	case blockJSON:
		b.sent = true
		return inference.Delta{Text: partial}, nil
	}
	return inference.Delta{}, nil
}

// stop reads a content_block_stop: a call (or JSON reply) whose input
// never came gets "{}", so that its arguments are a JSON text.
func (s *stream) stop(i int) (inference.Delta, bool) {
	if i < 0 || i >= len(s.blocks) || s.blocks[i].sent {
		return inference.Delta{}, false
	}
	b := &s.blocks[i]
	switch b.kind {
	case blockTool:
		b.sent = true
		return inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: b.call, Arguments: "{}"}}, true
	case blockJSON:
		b.sent = true
		return inference.Delta{Text: "{}"}, true
	}
	return inference.Delta{}, false
}

// Models implements inference.Provider with GET /v1/models.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	resp, err := c.do(ctx, func() (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/models", nil)
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return inference.ReadModelList(c.name, resp.Body)
}
