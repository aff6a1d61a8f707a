package ollama

import (
	"context"
	"net/http"

	"github.com/ollama/ollama/api"
)

// Progress is one line of a pull's progress, as Ollama streams it.
type Progress struct {
	Status    string
	Digest    string
	Total     int64
	Completed int64
}

// Pull asks the Ollama at baseURL to pull model (POST /api/pull), calling
// fn with each line of its progress; an error says what Ollama said, or
// how to reach it (explain). hc nil: a default client.
func Pull(ctx context.Context, baseURL, model string, hc *http.Client, fn func(Progress) error) error {
	c, err := New(Config{Name: "ollama", BaseURL: baseURL, HTTP: hc})
	if err != nil {
		return err
	}
	err = c.api.Pull(ctx, &api.PullRequest{Model: model}, func(p api.ProgressResponse) error {
		return fn(Progress{Status: p.Status, Digest: p.Digest, Total: p.Total, Completed: p.Completed})
	})
	if err != nil {
		return c.explain(c.classify(ctx, err), "")
	}
	return nil
}
