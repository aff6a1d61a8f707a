// Package anthropic is a Provider for Anthropic's Messages API with SSE
// streaming (message_start, content_block_delta, message_delta, message_stop,
// ping and error events).
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type request struct {
	Model         string    `json:"model"`
	MaxTokens     int       `json:"max_tokens"`
	System        string    `json:"system,omitempty"`
	Messages      []message `json:"messages"`
	Stream        bool      `json:"stream"`
	Temperature   *float64  `json:"temperature,omitempty"`
	TopP          *float64  `json:"top_p,omitempty"`
	StopSequences []string  `json:"stop_sequences,omitempty"`
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
	Delta *struct {
		Type       string `json:"type"`
		Text       string `json:"text"`
		StopReason string `json:"stop_reason"`
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
	body := request{Model: req.Model, MaxTokens: req.MaxTokens, Stream: true,
		Temperature: req.Temperature, TopP: req.TopP, StopSequences: req.Stop}
	if body.MaxTokens <= 0 {
		body.MaxTokens = DefaultMaxTokens
	}
	var sys []string
	for _, m := range req.Messages {
		if m.Role == moltbot.RoleSystem {
			sys = append(sys, m.Content)
			continue
		}
		body.Messages = append(body.Messages, message{Role: string(m.Role), Content: m.Content})
	}
	body.System = strings.Join(sys, "\n\n")
	buf, err := json.Marshal(&body)
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
		case "content_block_delta":
			if e.Delta != nil && e.Delta.Type == "text_delta" && e.Delta.Text != "" {
				if err := fn(inference.Delta{Text: e.Delta.Text}); err != nil {
					return res, err
				}
			}
		case "message_delta":
			if e.Delta != nil && e.Delta.StopReason != "" {
				res.FinishReason = finishReason(e.Delta.StopReason)
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
	}
	return s
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
