package chat

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

// fakeEmbedder knows the chain and p/*; it reports tokens per call.
type fakeEmbedder struct {
	calls  int
	tokens int
	err    error
}

func (f *fakeEmbedder) ResolveModel(model string) error {
	if model == "" || model == moltbot.ChainModel || strings.HasPrefix(model, "p/") {
		return nil
	}
	return &moltbot.Error{Code: moltbot.ENotFound, Param: "model", Message: "model " + model + " not found"}
}

func (f *fakeEmbedder) Embed(ctx context.Context, req *moltbot.EmbedRequest) (*moltbot.Embeddings, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	out := &moltbot.Embeddings{Usage: moltbot.Usage{PromptTokens: f.tokens}, Served: moltbot.ModelRef{Provider: "p", Model: "e"}}
	for range req.Input {
		out.Vectors = append(out.Vectors, []float32{1, 2})
	}
	return out, nil
}

func TestEmbedChecksAndCharges(t *testing.T) {
	em := &fakeEmbedder{tokens: 7}
	pol := &fakePolicy{calls: 3, models: map[string][]string{"a": {moltbot.ChainModel}}}
	s := New(newFake(), pol, Config{MaxMessageBytes: 8, Embedder: em})
	ctx, p := context.Background(), tenantA()
	out, err := s.Embed(ctx, p, moltbot.EmbedRequest{Input: []string{"a", "b"}})
	if err != nil || len(out.Vectors) != 2 {
		t.Fatalf("%+v %v", out, err)
	}
	if pol.charged != 7 || pol.calls != 2 {
		t.Errorf("charged %d, calls left %d", pol.charged, pol.calls)
	}
	for _, tc := range []struct {
		req   moltbot.EmbedRequest
		code  string
		param string
	}{
		{moltbot.EmbedRequest{}, moltbot.EInvalid, "input"},
		{moltbot.EmbedRequest{Input: []string{"a", ""}}, moltbot.EInvalid, "input[1]"},
		{moltbot.EmbedRequest{Input: []string{"123456789"}}, moltbot.ETooLarge, "input[0]"},
		{moltbot.EmbedRequest{Input: make([]string, MaxEmbedInputs+1)}, moltbot.ETooLarge, "input"},
		{moltbot.EmbedRequest{Input: []string{"a"}, Dimensions: -1}, moltbot.EInvalid, "dimensions"},
		{moltbot.EmbedRequest{Input: []string{"a"}, Model: "q/x"}, moltbot.ENotFound, "model"},
		{moltbot.EmbedRequest{Input: []string{"a"}, Model: "p/e"}, moltbot.EForbidden, "model"}, // not on a's list
	} {
		_, err := s.Embed(ctx, p, tc.req)
		var e *moltbot.Error
		if !errors.As(err, &e) || e.Code != tc.code || e.Param != tc.param {
			t.Errorf("%+v: %v, want %s naming %s", tc.req, err, tc.code, tc.param)
		}
	}
	if em.calls != 1 || pol.calls != 2 {
		t.Errorf("a refused request reached the model (%d calls) or spent the limits (%d left)", em.calls, pol.calls)
	}
	// A failed call is not charged; past the rate limit, 429.
	em.err = &moltbot.Error{Code: moltbot.EUnavailable, Message: "down"}
	if _, err := s.Embed(ctx, p, moltbot.EmbedRequest{Input: []string{"a"}}); code(err) != moltbot.EUnavailable || pol.charged != 7 {
		t.Fatalf("%v, charged %d", err, pol.charged)
	}
	em.err = nil
	s.Embed(ctx, p, moltbot.EmbedRequest{Input: []string{"a"}})
	if _, err := s.Embed(ctx, p, moltbot.EmbedRequest{Input: []string{"a"}}); code(err) != moltbot.ERateLimited {
		t.Fatalf("past the limit: %v", err)
	}
}

func TestEmbedWithoutEmbedder(t *testing.T) {
	s := New(newFake(), nil, Config{})
	if _, err := s.Embed(context.Background(), tenantA(), moltbot.EmbedRequest{Input: []string{"a"}}); code(err) != moltbot.ENotFound {
		t.Fatal(err)
	}
}
