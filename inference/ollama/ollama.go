// Package ollama is a Provider for a local Ollama server, through Ollama's own
// Go client (github.com/ollama/ollama/api): /api/chat streamed as NDJSON.
package ollama

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/ollama/ollama/api"
)

// Config configures a client.
type Config struct {
	Name    string
	BaseURL string // http://127.0.0.1:11434
	HTTP    *http.Client
}

// Client is an Ollama provider.
type Client struct {
	name string
	api  *api.Client
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = inference.NewHTTPClient(8)
	}
	return &Client{name: cfg.Name, api: api.NewClient(u, hc)}, nil
}

// Chat implements inference.Provider.
func (c *Client) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	stream := true
	areq := &api.ChatRequest{
		Model:    req.Model,
		Messages: make([]api.Message, len(req.Messages)),
		Stream:   &stream,
		Options:  map[string]any{},
	}
	for i, m := range req.Messages {
		areq.Messages[i] = api.Message{Role: string(m.Role), Content: m.Content}
	}
	if req.MaxTokens > 0 {
		areq.Options["num_predict"] = req.MaxTokens
	}
	if req.Temperature != nil {
		areq.Options["temperature"] = *req.Temperature
	}
	if req.TopP != nil {
		areq.Options["top_p"] = *req.TopP
	}
	if len(req.Stop) > 0 {
		areq.Options["stop"] = req.Stop
	}
	if req.Seed != nil {
		areq.Options["seed"] = *req.Seed
	}
	var res inference.Result
	done := false
	var fnErr error
	err := c.api.Chat(ctx, areq, func(r api.ChatResponse) error {
		if r.Model != "" {
			res.Model = r.Model
		}
		if r.Message.Content != "" {
			if err := fn(r.Message.Content); err != nil {
				fnErr = err
				return err
			}
		}
		if r.Done {
			done = true
			res.FinishReason = r.DoneReason
			if res.FinishReason == "" {
				res.FinishReason = "stop"
			}
			res.Usage = moltbot.Usage{PromptTokens: r.PromptEvalCount, CompletionTokens: r.EvalCount}
		}
		return nil
	})
	if fnErr != nil {
		return res, fnErr
	}
	if err != nil {
		return res, c.classify(ctx, err)
	}
	if !done {
		return res, inference.StreamEnded(c.name)
	}
	return res, nil
}

func (c *Client) classify(ctx context.Context, err error) error {
	var se api.StatusError
	if errors.As(err, &se) {
		e := inference.FromStatus(c.name, se.StatusCode, se.ErrorMessage, nil)
		if se.StatusCode == http.StatusNotFound || strings.Contains(se.ErrorMessage, "not found") {
			e.Kind = inference.KindModelNotFound
		}
		return e
	}
	var ae api.AuthorizationError
	if errors.As(err, &ae) {
		return &inference.Error{Kind: inference.KindAuth, Provider: c.name, Status: ae.StatusCode, Message: "unauthorized"}
	}
	if ctx.Err() != nil {
		return inference.Classify(ctx, c.name, err)
	}
	e := inference.Classify(ctx, c.name, err)
	if e.Kind == inference.KindUnavailable && e.Message == "" {
		// Ollama's client turns an {"error": ...} line mid-stream into a plain
		// error, and a JSON decoding failure into another: both break the stream.
		var ue *url.Error
		if !errors.As(err, &ue) {
			e.Kind, e.Message = inference.KindStream, err.Error()
		}
	}
	return e
}

// Models implements inference.Provider with GET /api/tags.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	list, err := c.api.List(ctx)
	if err != nil {
		return nil, c.classify(ctx, err)
	}
	out := make([]string, 0, len(list.Models))
	for _, m := range list.Models {
		out = append(out, m.Name)
	}
	return out, nil
}
