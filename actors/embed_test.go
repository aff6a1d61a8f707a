package actors

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
)

// embedFake is a provider that also embeds: vectors of its dims (or of
// the length asked for, when it shortens), or its err.
type embedFake struct {
	fake
	mu       sync.Mutex
	dims     int
	shortens bool
	err      *inference.Error
	tokens   int
	asked    []int // the Dimensions of each call
	hold     chan struct{}
}

func (f *embedFake) Embed(ctx context.Context, req *inference.EmbedRequest) (inference.EmbedResult, error) {
	f.mu.Lock()
	f.asked = append(f.asked, req.Dimensions)
	dims, err, hold, tokens := f.dims, f.err, f.hold, f.tokens
	if req.Dimensions > 0 && f.shortens {
		dims = req.Dimensions
	}
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return inference.EmbedResult{}, inference.Classify(ctx, "f", ctx.Err())
		}
	}
	if err != nil {
		return inference.EmbedResult{}, err
	}
	out := inference.EmbedResult{Model: req.Model, Usage: moltbot.Usage{PromptTokens: tokens}}
	for i := range req.Input {
		v := make([]float32, dims)
		v[0] = float32(i + 1)
		out.Vectors = append(out.Vectors, v)
	}
	return out, nil
}

func (f *embedFake) set(do func(f *embedFake)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	do(f)
}

func (f *embedFake) calls() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.asked...)
}

func newEmbedFake(dims int) *embedFake { return &embedFake{fake: fake{chat: echo}, dims: dims} }

// startEmbed starts a runtime whose chat chain is a/m and whose embedding
// chain is the models given, each "provider/m" of its own provider.
func startEmbed(t *testing.T, dims int, models map[string]*embedFake, order ...string) (*env, Embeddings) {
	t.Helper()
	var specs []ProviderSpec
	var chain []moltbot.ModelRef
	for _, name := range order {
		specs = append(specs, spec(name, models[name]))
		chain = append(chain, moltbot.ModelRef{Provider: name, Model: "m"})
	}
	e := start(t, []string{order[0] + "/m"}, specs, func(c *Config) {
		c.Embeddings = EmbedChain{Models: chain, Dimensions: dims}
	})
	return e, EmbeddingsOf(e.rt)
}

func embedReq(model string, dims int, input ...string) *moltbot.EmbedRequest {
	return &moltbot.EmbedRequest{Model: model, Input: input, Dimensions: dims}
}

// The first model down, the next of the same dimension answers; the
// failover is counted; usage a server did not report is estimated.
func TestEmbedFailsOver(t *testing.T) {
	a, b := newEmbedFake(3), newEmbedFake(3)
	a.err = &inference.Error{Kind: inference.KindUnavailable, Provider: "a", Message: "down"}
	b.tokens = 0
	e, emb := startEmbed(t, 0, map[string]*embedFake{"a": a, "b": b}, "a", "b")
	out, err := emb.Embed(ctx(t), embedReq("", 0, "hello", "world"))
	if err != nil {
		t.Fatal(err)
	}
	if out.Served.String() != "b/m" || out.Failovers != 1 || len(out.Vectors) != 2 || len(out.Vectors[1]) != 3 || out.Vectors[1][0] != 2 {
		t.Fatalf("%+v", out)
	}
	if out.Usage.PromptTokens != inference.EstimateInputTokens([]string{"hello", "world"}) || out.Usage.CompletionTokens != 0 {
		t.Errorf("usage %+v", out.Usage)
	}
	if e.met.Get(metrics.Failovers, "a/m", "b/m", "unavailable") != 1 {
		t.Error("failover not counted")
	}
	if e.met.Get(metrics.InferenceRequests, "b", "m", "ok") != 1 || e.met.Get(metrics.InferenceRequests, "a", "m", "unavailable") != 1 {
		t.Error("calls not counted")
	}
}

// A bad request is answered at once: another model would refuse it too.
func TestEmbedBadRequestReturns(t *testing.T) {
	a, b := newEmbedFake(3), newEmbedFake(3)
	a.err = &inference.Error{Kind: inference.KindBadRequest, Provider: "a", Status: 400, Message: "input exceeds maximum context length"}
	_, emb := startEmbed(t, 0, map[string]*embedFake{"a": a, "b": b}, "a", "b")
	_, err := emb.Embed(ctx(t), embedReq("moltbot", 0, "x"))
	if code(err) != moltbot.EInvalid || !strings.Contains(err.Error(), "maximum context length") {
		t.Fatalf("err = %v", err)
	}
	if len(b.calls()) != 0 {
		t.Error("a bad request went on to the next model")
	}
}

// The chain's dimension is its first answer's: a model that gives another
// is discarded once (counted), then skipped without being asked, and never
// served in its place; the model of the chain's dimension after it is.
func TestEmbedSkipsAnotherDimension(t *testing.T) {
	a, b, c := newEmbedFake(3), newEmbedFake(5), newEmbedFake(3)
	e, emb := startEmbed(t, 0, map[string]*embedFake{"a": a, "b": b, "c": c}, "a", "b", "c")
	if out, err := emb.Embed(ctx(t), embedReq("", 0, "x")); err != nil || out.Served.String() != "a/m" {
		t.Fatalf("%+v %v", out, err)
	}
	a.set(func(f *embedFake) {
		f.err = &inference.Error{Kind: inference.KindTimeout, Provider: "a", Message: "timed out"}
	})
	for i := 0; i < 2; i++ {
		out, err := emb.Embed(ctx(t), embedReq("", 0, "x"))
		if err != nil || out.Served.String() != "c/m" || len(out.Vectors[0]) != 3 || out.Failovers != 2 {
			t.Fatalf("request %d: %+v %v", i, out, err)
		}
	}
	if n := len(b.calls()); n != 1 {
		t.Errorf("the model of another dimension was asked %d times, want once", n)
	}
	if e.met.Get(metrics.EmbedMismatches, "b", "m") != 1 {
		t.Error("mismatch not counted")
	}
	if e.met.Get(metrics.Failovers, "b/m", "c/m", "dimensions") != 2 {
		t.Error("skips not counted as failovers")
	}
	// Asked by name, the model answers in its own dimension: the chain's
	// rule is for the chain.
	if out, err := emb.Embed(ctx(t), embedReq("b/m", 0, "x")); err != nil || len(out.Vectors[0]) != 5 {
		t.Fatalf("%+v %v", out, err)
	}
	// With every model of the chain's dimension down, the client gets an
	// error, not vectors it cannot compare with its others.
	c.set(func(f *embedFake) {
		f.err = &inference.Error{Kind: inference.KindUnavailable, Provider: "c", Message: "down"}
	})
	_, err := emb.Embed(ctx(t), embedReq("", 0, "x"))
	if code(err) != moltbot.EUnavailable || !strings.Contains(err.Error(), "b/m: skipped (gives 5 dimensions, the chain 3)") {
		t.Fatalf("err = %v", err)
	}
}

// A configured dimension holds from the first request.
func TestEmbedConfiguredDimension(t *testing.T) {
	a, b := newEmbedFake(4), newEmbedFake(3)
	_, emb := startEmbed(t, 3, map[string]*embedFake{"a": a, "b": b}, "a", "b")
	for i := 0; i < 2; i++ {
		out, err := emb.Embed(ctx(t), embedReq("", 0, "x"))
		if err != nil || out.Served.String() != "b/m" {
			t.Fatalf("%+v %v", out, err)
		}
	}
	if n := len(a.calls()); n != 1 {
		t.Errorf("a was asked %d times", n)
	}
}

// A request's dimensions go to the models that can give them: one that
// gave another length when asked is skipped for such requests, one whose
// own length it is is asked without "dimensions"; when none can, 400.
func TestEmbedRequestDimensions(t *testing.T) {
	a, b := newEmbedFake(3), newEmbedFake(3)
	b.shortens = true
	_, emb := startEmbed(t, 0, map[string]*embedFake{"a": a, "b": b}, "a", "b")
	if _, err := emb.Embed(ctx(t), embedReq("", 0, "x")); err != nil { // learns a's 3
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		out, err := emb.Embed(ctx(t), embedReq("", 2, "x"))
		if err != nil || out.Served.String() != "b/m" || len(out.Vectors[0]) != 2 {
			t.Fatalf("%+v %v", out, err)
		}
	}
	if got := a.calls(); len(got) != 2 || got[1] != 2 {
		t.Errorf("a was asked %v; want once unasked, once for 2, then skipped", got)
	}
	// 3 is a's own length: asked without dimensions.
	if out, err := emb.Embed(ctx(t), embedReq("", 3, "x")); err != nil || out.Served.String() != "a/m" {
		t.Fatalf("%+v %v", out, err)
	}
	if got := a.calls(); got[len(got)-1] != 0 {
		t.Errorf("a was asked for its own length: %v", got)
	}
	b.set(func(f *embedFake) { f.shortens = false })
	_, err := emb.Embed(ctx(t), embedReq("", 7, "x"))
	var me *moltbot.Error
	if code(err) != moltbot.EInvalid || !errors.As(err, &me) || me.Param != "dimensions" || !strings.Contains(err.Error(), "no model can give 7-dimensional vectors") {
		t.Fatalf("err = %v", err)
	}
}

// Embedding calls share the provider's slots with chat: with its one slot
// held and no queue, the call is refused busy and the next model answers.
func TestEmbedUsesProviderSlots(t *testing.T) {
	a, b := newEmbedFake(3), newEmbedFake(3)
	release := make(chan struct{})
	a.fake.chat = blocking(release)
	specs := []ProviderSpec{spec("a", a), spec("b", b)}
	specs[0].MaxInFlight, specs[0].MaxQueue = 1, 0
	e := start(t, []string{"a/m"}, specs, func(c *Config) {
		c.Embeddings = EmbedChain{Models: []moltbot.ModelRef{{Provider: "a", Model: "m"}, {Provider: "b", Model: "m"}}}
	})
	done := make(chan error, 1)
	go func() {
		_, err := e.rt.Complete(context.Background(), oneMsg, moltbot.ChatOptions{}, nil)
		done <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the chat call holds a's slot", func() bool { return a.fake.calls.Load() > 0 })
	out, err := EmbeddingsOf(e.rt).Embed(ctx(t), embedReq("", 0, "x"))
	close(release)
	if err != nil || out.Served.String() != "b/m" {
		t.Fatalf("%+v %v", out, err)
	}
	if len(a.calls()) != 0 {
		t.Error("the embedding call ran beside the chat call in a's one slot")
	}
	if e.met.Get(metrics.Failovers, "a/m", "b/m", "busy") != 1 {
		t.Error("busy failover not counted")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Without an embedding chain the error says how to configure one; a
// provider without an embeddings API is refused by name, and at start.
func TestEmbedResolve(t *testing.T) {
	e := start(t, []string{"a/m"}, []ProviderSpec{spec("a", &fake{chat: echo}), spec("b", newEmbedFake(3))}, nil)
	emb := EmbeddingsOf(e.rt)
	testutil.Eventually(t, 5*time.Second, "health checked: b lists m", func() bool { return emb.ResolveModel("b/m") == nil })
	if err := emb.ResolveModel(""); code(err) != moltbot.ENotFound || !strings.Contains(err.Error(), "models.embeddings.primary") {
		t.Fatalf("err = %v", err)
	}
	if err := emb.ResolveModel("a/m"); code(err) != moltbot.EInvalid || !strings.Contains(err.Error(), "no embeddings API") {
		t.Fatalf("err = %v", err)
	}
	if err := emb.ResolveModel("b/nope"); code(err) != moltbot.ENotFound {
		t.Fatalf("err = %v", err)
	}
	_, err := New(Config{Providers: []ProviderSpec{spec("a", &fake{chat: echo})}, Chain: []moltbot.ModelRef{{Provider: "a", Model: "m"}},
		Store: e.store, HealthInterval: time.Hour, Embeddings: EmbedChain{Models: []moltbot.ModelRef{{Provider: "a", Model: "m"}}}})
	if err == nil || !strings.Contains(err.Error(), "no embeddings API") {
		t.Fatalf("err = %v", err)
	}
}

// embedDescriber is a describer (caps_test.go) that embeds too.
type embedDescriber struct{ *describer }

func (d embedDescriber) Embed(_ context.Context, req *inference.EmbedRequest) (inference.EmbedResult, error) {
	out := inference.EmbedResult{}
	for range req.Input {
		out.Vectors = append(out.Vectors, []float32{1, 2, 3})
	}
	return out, nil
}

// An embedding model (one its server says embeds and does not complete)
// is not loaded ahead: the chat call that loads a model would be refused
// for it at every health check. Its first embedding call loads it. Chain
// models that complete still are: here after it, so that its load proves
// the embedding model's was passed over.
func TestEmbeddingModelNotPreloaded(t *testing.T) {
	d := &describer{fake: fake{chat: echo}, caps: map[string]moltbot.Capabilities{
		"emb":  {Known: true, Embeddings: true},
		"chat": {Known: true, JSONSchema: true, Embeddings: true},
	}}
	e := start(t, []string{"b/m"}, []ProviderSpec{spec("d", embedDescriber{d}), spec("b", &fake{chat: echo})}, func(c *Config) {
		c.Embeddings = EmbedChain{Models: []moltbot.ModelRef{{Provider: "d", Model: "emb"}, {Provider: "d", Model: "chat"}}}
	})
	testutil.Eventually(t, 5*time.Second, "the completing model preloaded", func() bool { return !e.rt.providers.Get("d").Cold("chat") })
	if n := d.loads.Load(); n != 1 {
		t.Fatalf("%d loads; want the completing model's only", n)
	}
	if out, err := EmbeddingsOf(e.rt).Embed(ctx(t), embedReq("", 0, "x")); err != nil || out.Served.String() != "d/emb" {
		t.Fatalf("%+v %v", out, err)
	}
}

// The embedding chain's models are listed with the others (GET /v1/models),
// as embedding models when nothing else is known of them.
func TestEmbedChainListed(t *testing.T) {
	e, _ := startEmbed(t, 0, map[string]*embedFake{"a": newEmbedFake(3), "b": newEmbedFake(3)}, "a", "b")
	var found bool
	for _, m := range e.rt.Models() {
		if m.ID == "b/m" {
			found = m.Caps.Known && m.Caps.Embeddings && !m.Caps.Tools
		}
	}
	if !found {
		t.Fatalf("%+v", e.rt.Models())
	}
}
