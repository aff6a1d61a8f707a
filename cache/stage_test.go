package cache

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
)

var _ actors.AroundModel = (*Stage)(nil)

// model is a fake provider: it streams its pieces (text, tool call
// pieces), waiting at hold for gate when there is one, and counts calls.
type model struct {
	calls  atomic.Int64
	gate   chan struct{}
	hold   int
	text   []string
	tools  bool         // end with a tool call in three pieces
	fail   atomic.Int64 // calls left that fail before any token
	finish string
}

func (m *model) pieces() []inference.Delta {
	var out []inference.Delta
	for _, s := range m.text {
		out = append(out, inference.Delta{Text: s})
	}
	if m.tools {
		out = append(out,
			inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: 0, ID: "call_1", Name: "get_weather"}},
			inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: 0, Arguments: `{"city":`}},
			inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: 0, Arguments: `"Oslo"}`}})
	}
	return out
}

func (m *model) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	m.calls.Add(1)
	if m.fail.Add(-1) >= 0 {
		return inference.Result{}, &inference.Error{Kind: inference.KindUnavailable, Provider: "fake", Message: "injected failure"}
	}
	for i, d := range m.pieces() {
		if i == m.hold && m.gate != nil {
			select {
			case <-m.gate:
			case <-ctx.Done():
				return inference.Result{}, inference.Classify(ctx, "fake", ctx.Err())
			}
		}
		if err := fn(d); err != nil {
			return inference.Result{}, err
		}
	}
	finish := m.finish
	if finish == "" {
		finish = "stop"
	}
	return inference.Result{FinishReason: finish, Usage: moltbot.Usage{PromptTokens: 5, CompletionTokens: len(m.text)}}, nil
}

func (m *model) Models(context.Context) ([]string, error) { return []string{"m"}, nil }

type env struct {
	rt    *actors.Runtime
	c     *Cache
	stage *Stage
	met   *metrics.Registry
}

// waiting is how many turns wait for the flights in the air.
func (e *env) waiting() int {
	e.stage.mu.Lock()
	defer e.stage.mu.Unlock()
	n := 0
	for _, f := range e.stage.flights {
		n += f.refs
	}
	return n
}

func start(t testing.TB, p inference.Provider, cfg Config) *env {
	t.Helper()
	met := metrics.New("test")
	if cfg.Type == "" {
		cfg.Type = TypeMemory
	}
	cfg.Metrics = met
	c := newCache(t, cfg)
	stage := NewStage(c)
	return &env{rt: newRuntime(t, p, met, stage), c: c, stage: stage, met: met}
}

// newRuntime is a runtime whose chain is p alone, with the stage given
// around its model calls (none when nil).
func newRuntime(t testing.TB, p inference.Provider, met *metrics.Registry, stage *Stage) *actors.Runtime {
	t.Helper()
	cfg := actors.Config{
		Providers: []actors.ProviderSpec{{Name: "m", Type: "fake", Provider: p, MaxInFlight: 64, MaxQueue: 64, Timeout: 20 * time.Second}},
		Chain:     []moltbot.ModelRef{{Provider: "m", Model: "m"}},
		Store:     storage.NewMemory(), Metrics: met, HealthInterval: time.Hour,
	}
	if stage != nil {
		cfg.Around = []actors.AroundModel{stage}
	}
	rt, err := actors.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	return rt
}

// answer is what a request got.
type answer struct {
	chunks []moltbot.Chunk
	comp   *moltbot.Completion
	result string // CacheControl's
	err    error
}

// req is a stateless completion.
type req struct {
	tenant string
	stream bool
	mode   moltbot.CacheMode
	opts   moltbot.ChatOptions
	text   string
}

func zero() moltbot.ChatOptions { return moltbot.ChatOptions{Temperature: f64(0)} }

func (e *env) complete(ctx context.Context, r req) answer {
	if r.tenant != "" {
		ctx = moltbot.WithPrincipal(ctx, &moltbot.Principal{Tenant: r.tenant, Space: r.tenant})
	}
	cc := &moltbot.CacheControl{Mode: r.mode}
	ctx = moltbot.WithCacheControl(ctx, cc)
	if r.text == "" {
		r.text = "what is the weather?"
	}
	var a answer
	var mu sync.Mutex
	var fn moltbot.StreamFunc
	if r.stream {
		fn = func(c moltbot.Chunk) error {
			mu.Lock()
			a.chunks = append(a.chunks, c)
			mu.Unlock()
			return nil
		}
	}
	a.comp, a.err = e.rt.Complete(ctx, []moltbot.Message{{Role: moltbot.RoleUser, Content: r.text}}, r.opts, fn)
	a.result = cc.Result()
	return a
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func text(chunks []moltbot.Chunk) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString(c.Content)
	}
	return b.String()
}

// A hit replays the stored reply in the pieces it streamed in, tool call
// pieces included, and asks no model.
func TestHitReplaysTheSameChunks(t *testing.T) {
	m := &model{text: []string{"It ", "is ", "sunny"}, tools: true}
	e := start(t, m, Config{})
	first := e.complete(ctx(t), req{tenant: "acme", stream: true, opts: zero()})
	if first.err != nil || first.result != moltbot.CacheMiss || first.comp.Cache != moltbot.CacheMiss {
		t.Fatalf("first: %+v", first)
	}
	if len(first.chunks) != 6 || first.comp.FinishReason != "tool_calls" {
		t.Fatalf("first streamed %d chunks, finish %q", len(first.chunks), first.comp.FinishReason)
	}
	second := e.complete(ctx(t), req{tenant: "acme", stream: true, opts: zero()})
	if second.err != nil || second.result != moltbot.CacheHit || second.comp.Cache != moltbot.CacheHit {
		t.Fatalf("second: %+v", second)
	}
	if !reflect.DeepEqual(first.chunks, second.chunks) {
		t.Errorf("replayed pieces differ:\n%+v\n%+v", first.chunks, second.chunks)
	}
	if !reflect.DeepEqual(second.comp.ToolCalls, first.comp.ToolCalls) || second.comp.Content != "It is sunny" || second.comp.Served != first.comp.Served {
		t.Errorf("completion %+v", second.comp)
	}
	// Without a stream: the same reply.
	third := e.complete(ctx(t), req{tenant: "acme", opts: zero()})
	if third.err != nil || third.comp.Content != "It is sunny" || third.result != moltbot.CacheHit || len(third.comp.ToolCalls) != 1 {
		t.Errorf("third: %+v", third)
	}
	if n := m.calls.Load(); n != 1 {
		t.Errorf("model calls: %d, want 1", n)
	}
	if h := e.met.Get(metrics.CacheHits, TypeMemory); h != 2 {
		t.Errorf("memory hits %d", h)
	}
}

// A reply first made without a stream is kept whole: a stream that hits
// it gets it in one piece (and a piece per tool call).
func TestUnstreamedReplyReplaysWhole(t *testing.T) {
	m := &model{text: []string{"a", "b"}, tools: true}
	e := start(t, m, Config{})
	if a := e.complete(ctx(t), req{tenant: "acme", opts: zero()}); a.err != nil || a.result != moltbot.CacheMiss {
		t.Fatalf("%+v", a)
	}
	a := e.complete(ctx(t), req{tenant: "acme", stream: true, opts: zero()})
	if a.err != nil || len(a.chunks) != 2 || a.chunks[0].Content != "ab" || a.chunks[1].ToolCall.Arguments != `{"city":"Oslo"}` {
		t.Fatalf("%+v", a)
	}
}

// What varies is not cached unless asked; a client may bypass the cache
// or refresh an entry.
func TestWhatIsCached(t *testing.T) {
	m := &model{text: []string{"x"}}
	e := start(t, m, Config{})
	for i, tc := range []struct {
		r      req
		result string
		calls  int64
	}{
		{req{tenant: "acme"}, "", 1},                             // no temperature: varies
		{req{tenant: "acme"}, "", 2},                             // again
		{req{tenant: "acme", mode: moltbot.CacheUse}, "miss", 3}, // asked
		{req{tenant: "acme", mode: moltbot.CacheUse}, "hit", 3},
		{req{tenant: "acme", opts: moltbot.ChatOptions{Seed: i64(3)}}, "miss", 4}, // a seed
		{req{tenant: "acme", opts: moltbot.ChatOptions{Seed: i64(3)}}, "hit", 4},
		{req{tenant: "acme", opts: moltbot.ChatOptions{Seed: i64(3)}, mode: moltbot.CacheBypass}, "", 5},
		{req{tenant: "acme", opts: moltbot.ChatOptions{Seed: i64(3)}, mode: moltbot.CacheRefresh}, "miss", 6},
		{req{tenant: "acme", opts: moltbot.ChatOptions{Seed: i64(3)}}, "hit", 6},
		{req{opts: zero()}, "", 7}, // no tenant: never cached
		{req{opts: zero()}, "", 8},
	} {
		a := e.complete(ctx(t), tc.r)
		if a.err != nil || a.result != tc.result || a.comp.Cache != tc.result {
			t.Errorf("%d: %+v: result %q (%q), want %q; %v", i, tc.r, a.result, a.comp.Cache, tc.result, a.err)
		}
		if n := m.calls.Load(); n != tc.calls {
			t.Errorf("%d: %d model calls, want %d", i, n, tc.calls)
		}
	}
}

// Tenants never share an entry, whatever they ask.
func TestTenantsIsolated(t *testing.T) {
	m := &model{text: []string{"x"}}
	e := start(t, m, Config{})
	for _, tenant := range []string{"acme", "bob", "acme:inc2", "acme", "bob"} {
		e.complete(ctx(t), req{tenant: tenant, opts: zero(), mode: moltbot.CacheUse})
	}
	if n := m.calls.Load(); n != 3 {
		t.Errorf("model calls %d, want 3 (acme, bob, acme's next incarnation)", n)
	}
	res, err := e.c.Purge(ctx(t), "acme")
	if err != nil || res.Removed[TypeMemory] != 2 {
		t.Fatalf("purge acme: %+v %v", res, err)
	}
	if a := e.complete(ctx(t), req{tenant: "bob", opts: zero()}); a.result != moltbot.CacheHit {
		t.Errorf("bob's entry went with acme's purge: %+v", a)
	}
}

// Errors are never stored, nor replies cut off.
func TestFailuresNotStored(t *testing.T) {
	m := &model{text: []string{"x"}}
	m.fail.Store(1)
	e := start(t, m, Config{})
	if a := e.complete(ctx(t), req{tenant: "acme", opts: zero()}); a.err == nil {
		t.Fatal("the injected failure did not fail")
	}
	if a := e.complete(ctx(t), req{tenant: "acme", opts: zero()}); a.err != nil || a.result != moltbot.CacheMiss {
		t.Fatalf("after a failure: %+v", a)
	}
	if a := e.complete(ctx(t), req{tenant: "acme", opts: zero()}); a.result != moltbot.CacheHit || m.calls.Load() != 2 {
		t.Fatalf("the good reply was not stored: %+v, %d calls", a, m.calls.Load())
	}
	// A finish the model did not reach (a content filter, an unknown
	// reason) is not stored.
	m2 := &model{text: []string{"x"}, finish: "content_filter"}
	e2 := start(t, m2, Config{})
	for range 2 {
		e2.complete(ctx(t), req{tenant: "acme", opts: zero()})
	}
	if m2.calls.Load() != 2 {
		t.Errorf("a filtered reply was stored: %d calls", m2.calls.Load())
	}
}

// A conversation's turn is cached on its whole context: the same opening
// in another conversation of the tenant hits, the next turn (a longer
// context) does not.
func TestConversationTurns(t *testing.T) {
	p := sim.NewProvider("m", sim.Options{Tokens: 6, Seed: 1})
	calls := &counting{Provider: p}
	e := start(t, calls, Config{})
	c := ctx(t)
	turn := func(conv, text string) (*actors.TurnResult, []moltbot.Chunk, string) {
		cc := &moltbot.CacheControl{}
		var chunks []moltbot.Chunk
		res, err := e.rt.Turn(moltbot.WithCacheControl(c, cc), "acme", conv, moltbot.TurnInput{Content: text, Options: zero()},
			func(ch moltbot.Chunk) error { chunks = append(chunks, ch); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return res, chunks, cc.Result()
	}
	for _, id := range []string{"c1", "c2"} {
		if _, err := e.rt.Create(c, "acme", actors.CreateOptions{ID: id, System: "be brief"}); err != nil {
			t.Fatal(err)
		}
	}
	r1, ch1, res1 := turn("c1", "hello")
	r2, ch2, res2 := turn("c2", "hello")
	if res1 != moltbot.CacheMiss || res2 != moltbot.CacheHit || r1.Message.Content != r2.Message.Content || !reflect.DeepEqual(ch1, ch2) {
		t.Fatalf("%s %s %q %q", res1, res2, r1.Message.Content, r2.Message.Content)
	}
	if _, _, res := turn("c1", "hello"); res != moltbot.CacheMiss {
		t.Errorf("the next turn of c1 (a longer context): %s", res)
	}
	conv, err := e.rt.Get(c, "acme", "c2")
	if err != nil || len(conv.Messages) != 2 || conv.Messages[1].Content != r1.Message.Content {
		t.Fatalf("the hit's reply is not stored in c2: %+v %v", conv, err)
	}
	if calls.n.Load() != 2 {
		t.Errorf("model calls %d", calls.n.Load())
	}
}

type counting struct {
	inference.Provider
	n atomic.Int64
}

func (c *counting) Chat(ctx context.Context, r *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	c.n.Add(1)
	return c.Provider.Chat(ctx, r, fn)
}

// N identical requests at once make one model call; those that came
// while it ran get its reply, and those that stream get its pieces (the
// ones already sent, then the rest).
func TestIdenticalRequestsShareOneCall(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			m := &model{text: []string{"a", "b", "c", "d"}, gate: make(chan struct{}), hold: 2}
			e := start(t, m, Config{})
			const n = 8
			out := make([]answer, n)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[0] = e.complete(ctx(t), req{tenant: "acme", stream: stream, opts: zero()})
			}()
			testutil.Eventually(t, 10*time.Second, "the leader's call", func() bool { return m.calls.Load() == 1 })
			for i := 1; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out[i] = e.complete(ctx(t), req{tenant: "acme", stream: stream, opts: zero()})
				}()
			}
			testutil.Eventually(t, 10*time.Second, "followers joined", func() bool { return e.met.Get(metrics.CacheShared) == n-1 })
			close(m.gate)
			wg.Wait()
			if c := m.calls.Load(); c != 1 {
				t.Fatalf("%d model calls, want 1", c)
			}
			misses := 0
			for i, a := range out {
				if a.err != nil || a.comp.Content != "abcd" {
					t.Fatalf("%d: %+v", i, a)
				}
				if a.result == moltbot.CacheMiss {
					misses++
				}
				if stream && (len(a.chunks) != 4 || text(a.chunks) != "abcd") {
					t.Errorf("%d streamed %+v", i, a.chunks)
				}
			}
			if misses != 1 {
				t.Errorf("%d misses, want the leader's only", misses)
			}
			if a := e.complete(ctx(t), req{tenant: "acme", stream: stream, opts: zero()}); a.result != moltbot.CacheHit {
				t.Errorf("after: %+v", a)
			}
		})
	}
}

// A follower that leaves does not hurt the call; a leader that leaves
// does not end it for those who follow.
func TestLeavingAFlight(t *testing.T) {
	t.Run("follower", func(t *testing.T) {
		m := &model{text: []string{"a", "b"}, gate: make(chan struct{}), hold: 1}
		e := start(t, m, Config{})
		lead := make(chan answer, 1)
		go func() { lead <- e.complete(ctx(t), req{tenant: "acme", stream: true, opts: zero()}) }()
		testutil.Eventually(t, 10*time.Second, "the leader's call", func() bool { return m.calls.Load() == 1 })
		fctx, cancel := context.WithCancel(ctx(t))
		follow := make(chan answer, 1)
		go func() { follow <- e.complete(fctx, req{tenant: "acme", stream: true, opts: zero()}) }()
		testutil.Eventually(t, 10*time.Second, "the follower joined", func() bool { return e.met.Get(metrics.CacheShared) == 1 })
		cancel()
		if a := <-follow; moltbot.ErrorCode(a.err) != moltbot.EInvalid {
			t.Fatalf("the follower: %+v", a)
		}
		close(m.gate)
		if a := <-lead; a.err != nil || a.comp.Content != "ab" || text(a.chunks) != "ab" {
			t.Fatalf("the leader: %+v", a)
		}
		if a := e.complete(ctx(t), req{tenant: "acme", opts: zero()}); a.result != moltbot.CacheHit {
			t.Errorf("not stored: %+v", a)
		}
	})
	t.Run("leader", func(t *testing.T) {
		m := &model{text: []string{"a", "b"}, gate: make(chan struct{}), hold: 1}
		e := start(t, m, Config{})
		lctx, cancel := context.WithCancel(ctx(t))
		lead := make(chan answer, 1)
		go func() { lead <- e.complete(lctx, req{tenant: "acme", stream: true, opts: zero()}) }()
		testutil.Eventually(t, 10*time.Second, "the leader's call", func() bool { return m.calls.Load() == 1 })
		follow := make(chan answer, 1)
		go func() { follow <- e.complete(ctx(t), req{tenant: "acme", stream: true, opts: zero()}) }()
		testutil.Eventually(t, 10*time.Second, "the follower joined", func() bool { return e.met.Get(metrics.CacheShared) == 1 })
		cancel()
		testutil.Eventually(t, 10*time.Second, "the leader left", func() bool { return e.waiting() == 1 })
		close(m.gate)
		if a := <-follow; a.err != nil || a.comp.Content != "ab" || text(a.chunks) != "ab" {
			t.Fatalf("the follower: %+v", a)
		}
		if a := <-lead; a.err == nil {
			t.Errorf("the leader that left: %+v", a)
		}
		if m.calls.Load() != 1 {
			t.Errorf("%d calls", m.calls.Load())
		}
	})
	t.Run("everyone", func(t *testing.T) {
		// The last to leave ends the call: the model sees it canceled.
		m := &model{text: []string{"a", "b"}, gate: make(chan struct{}), hold: 1}
		e := start(t, m, Config{})
		lctx, cancel := context.WithCancel(ctx(t))
		lead := make(chan answer, 1)
		go func() { lead <- e.complete(lctx, req{tenant: "acme", stream: true, opts: zero()}) }()
		testutil.Eventually(t, 10*time.Second, "the leader's call", func() bool { return m.calls.Load() == 1 })
		cancel()
		if a := <-lead; a.err == nil {
			t.Fatalf("%+v", a)
		}
		close(m.gate)
		if a := e.complete(ctx(t), req{tenant: "acme", opts: zero()}); a.err != nil || a.result != moltbot.CacheMiss || m.calls.Load() != 2 {
			t.Errorf("after: %+v, %d calls", a, m.calls.Load())
		}
	})
}

// A model call that panics (a bug in the router: the pipeline turns it
// into the turn's error) leaves no flight behind: the next identical turn
// makes a call of its own.
func TestPanicInASharedCall(t *testing.T) {
	c := newCache(t, Config{Type: TypeMemory})
	s := NewStage(c)
	tr := baseTurn()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		s.AroundModel(ctx(t), tr, func(moltbot.Chunk) error { return nil }, func(context.Context, moltbot.StreamFunc) (*moltbot.Completion, error) {
			panic("a router bug")
		})
	}()
	if len(s.flights) != 0 {
		t.Fatalf("a dead flight stays: %d", len(s.flights))
	}
	comp, err := s.AroundModel(ctx(t), tr, func(moltbot.Chunk) error { return nil }, func(context.Context, moltbot.StreamFunc) (*moltbot.Completion, error) {
		return &moltbot.Completion{Content: "ok", FinishReason: "stop"}, nil
	})
	if err != nil || comp.Content != "ok" || comp.Cache != moltbot.CacheMiss {
		t.Fatalf("after: %+v %v", comp, err)
	}
}
