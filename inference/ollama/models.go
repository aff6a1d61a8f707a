package ollama

import (
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/jsonw"
	"github.com/ollama/ollama/api"
)

// Describe implements inference.Describer with POST /api/show: Ollama
// lists a model's capabilities ("completion", "tools", "vision",
// "embedding", ...) and its context length in model_info
// ("<architecture>.context_length"). Ollama holds every model to a JSON
// Schema (format is a grammar), so JSONSchema is true for any model that
// completes.
func (c *Client) Describe(ctx context.Context, model string) (moltbot.Capabilities, error) {
	show, err := c.api.Show(ctx, &api.ShowRequest{Model: model})
	if err != nil {
		return moltbot.Capabilities{}, c.classify(ctx, err)
	}
	return capabilitiesOf(show), nil
}

// capabilitiesOf reads what /api/show says a model can do. A server too
// old to list capabilities (before 0.6.4) says nothing: unknown.
func capabilitiesOf(show *api.ShowResponse) moltbot.Capabilities {
	var caps moltbot.Capabilities
	for _, c := range show.Capabilities {
		caps.Known = true
		switch string(c) {
		case "completion":
			caps.JSONSchema = true
		case "tools":
			caps.Tools = true
		case "vision":
			caps.Vision = true
		case "embedding":
			caps.Embeddings = true
		}
	}
	for k, v := range show.ModelInfo {
		if strings.HasSuffix(k, ".context_length") {
			if n, ok := v.(float64); ok && n > 0 && n < 1<<31 {
				caps.ContextLength = int(n)
			}
		}
	}
	return caps
}

// Loaded implements inference.Loader with GET /api/ps.
func (c *Client) Loaded(ctx context.Context) ([]string, error) {
	ps, err := c.api.ListRunning(ctx)
	if err != nil {
		return nil, c.classify(ctx, err)
	}
	out := make([]string, 0, len(ps.Models))
	for _, m := range ps.Models {
		out = append(out, m.Name)
	}
	return out, nil
}

// Load implements inference.Loader: a /api/chat without messages loads
// the model and answers when it is in memory (done_reason "load"). It is
// not streamed, and read here, not by api.Client.Chat (8 MiB a call).
func (c *Client) Load(ctx context.Context, model string) error {
	body := append([]byte(`{"model":`), jsonw.String(nil, model)...)
	body = append(body, `,"messages":[],"stream":false`...)
	if c.keep != nil {
		body = appendKeepAlive(body, *c.keep)
	}
	body = append(body, '}')
	req, err := c.newRequest(ctx, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return inference.Classify(ctx, c.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= http.StatusBadRequest {
		return c.statusError(resp)
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, drainAfterDone))
	if err != nil {
		return inference.Classify(ctx, c.name, err)
	}
	return nil
}
