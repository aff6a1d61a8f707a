package actors

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
)

// fake is a scriptable provider.
type fake struct {
	name  string
	calls atomic.Int64
	chat  func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error)
	mu    sync.Mutex
	seen  [][]moltbot.Message
}

func (f *fake) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.seen = append(f.seen, req.Messages)
	f.mu.Unlock()
	return f.chat(ctx, req, fn)
}

func (f *fake) Models(context.Context) ([]string, error) { return []string{"m"}, nil }

func (f *fake) lastSeen() []moltbot.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[len(f.seen)-1]
}

func fails(kind inference.Kind) func(context.Context, *inference.Request, inference.DeltaFunc) (inference.Result, error) {
	return func(context.Context, *inference.Request, inference.DeltaFunc) (inference.Result, error) {
		return inference.Result{}, &inference.Error{Kind: kind, Provider: "bad", Message: "scripted " + kind.String()}
	}
}

func echo(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	last := req.Messages[len(req.Messages)-1].Content
	for _, w := range strings.Fields("echo: " + last) {
		if err := fn(inference.Delta{Text: w + " "}); err != nil {
			return inference.Result{}, err
		}
	}
	return inference.Result{FinishReason: "stop", Usage: moltbot.Usage{PromptTokens: 1, CompletionTokens: 2}}, nil
}

// blocking waits until release is closed or ctx ends.
func blocking(release chan struct{}) func(context.Context, *inference.Request, inference.DeltaFunc) (inference.Result, error) {
	return func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		select {
		case <-release:
			return echo(ctx, req, fn)
		case <-ctx.Done():
			return inference.Result{}, inference.Classify(ctx, "slow", ctx.Err())
		}
	}
}

type env struct {
	rt    *Runtime
	store *storage.Memory
	met   *metrics.Registry
}

func start(t *testing.T, chain []string, specs []ProviderSpec, tweak func(*Config)) *env {
	t.Helper()
	store := storage.NewMemory()
	met := metrics.New("test")
	cfg := Config{Providers: specs, Store: store, Metrics: met, RestartBackoff: 5 * time.Millisecond, HealthInterval: time.Hour}
	for _, c := range chain {
		ref, err := moltbot.ParseModelRef(c)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Chain = append(cfg.Chain, ref)
	}
	if tweak != nil {
		tweak(&cfg)
	}
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	return &env{rt: rt, store: store, met: met}
}

func spec(name string, p inference.Provider) ProviderSpec {
	return ProviderSpec{Name: name, Type: "fake", Provider: p, MaxInFlight: 8, MaxQueue: 8, Timeout: 10 * time.Second}
}

func simSpec() ProviderSpec {
	return spec("sim", sim.NewProvider("sim", sim.Options{Tokens: 5, Seed: 1}))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func code(err error) string { return moltbot.ErrorCode(err) }

func TestTurnStreamsAndPersists(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{System: "be brief"})
	if err != nil {
		t.Fatal(err)
	}
	var chunks []string
	res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hello", Options: moltbot.ChatOptions{}}, func(ch moltbot.Chunk) error {
		if ch.Served.String() != "sim/sim" {
			t.Errorf("chunk served by %v", ch.Served)
		}
		chunks = append(chunks, ch.Content)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(chunks, "") != res.Message.Content || !strings.HasPrefix(res.Message.Content, sim.Label) || len(chunks) != 5 {
		t.Errorf("chunks %q vs message %q", chunks, res.Message.Content)
	}
	if res.Message.Model != "sim/sim" || res.Completion.Failovers != 0 || res.Version != 3 {
		t.Errorf("result %+v", res)
	}
	stored, err := e.store.Get("default", c.ID)
	if err != nil || len(stored.Messages) != 2 || stored.Messages[0].Content != "hello" || stored.Messages[1].Content != res.Message.Content || stored.System != "be brief" {
		t.Fatalf("stored %+v %v", stored, err)
	}
	// create + user + reply: three synced writes.
	if e.store.SyncPuts != 3 {
		t.Errorf("synced puts = %d, want 3", e.store.SyncPuts)
	}
	got, _ := e.rt.Get(ctx(t), "default", c.ID)
	if len(got.Messages) != 2 {
		t.Errorf("get: %+v", got)
	}
	if _, err := e.rt.Create(ctx(t), "default", CreateOptions{ID: c.ID}); code(err) != moltbot.EConflict {
		t.Errorf("duplicate create: %v", err)
	}
}

func TestUnknownConversationAndModel(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	if _, err := e.rt.Turn(ctx(t), "default", "nope", moltbot.TurnInput{Content: "hi", Options: moltbot.ChatOptions{}}, nil); code(err) != moltbot.ENotFound {
		t.Errorf("turn on missing: %v", err)
	}
	if _, err := e.rt.Get(ctx(t), "default", "nope"); code(err) != moltbot.ENotFound {
		t.Errorf("get missing: %v", err)
	}
	if err := e.rt.Delete(ctx(t), "default", "nope", ""); code(err) != moltbot.ENotFound {
		t.Errorf("delete missing: %v", err)
	}
	if _, err := e.rt.Get(ctx(t), "default", "../etc"); code(err) != moltbot.ENotFound {
		t.Errorf("get bad id: %v", err)
	}
	for _, m := range []string{"nope/x", "gpt-9"} {
		_, err := e.rt.Complete(ctx(t), []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}, moltbot.ChatOptions{Model: m}, nil)
		if code(err) != moltbot.ENotFound || !strings.Contains(err.Error(), m) {
			t.Errorf("model %q: %v", m, err)
		}
	}
	// A bare model name found in the chain, and the chain name itself.
	for _, m := range []string{"sim", "moltbot", ""} {
		if _, err := e.rt.Complete(ctx(t), []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}, moltbot.ChatOptions{Model: m}, nil); err != nil {
			t.Errorf("model %q: %v", m, err)
		}
	}
	if _, err := e.rt.Create(ctx(t), "default", CreateOptions{Model: "ghost/x"}); code(err) != moltbot.ENotFound {
		t.Errorf("create with unknown model: %v", err)
	}
}

// A stream that breaks after tokens: the client saw "partial ", so the
// conversation stores exactly that, marked incomplete (stream_failure:
// terminate, the default), and the fallback is not asked.
func TestBrokenStreamStoresWhatTheUserSaw(t *testing.T) {
	broken := &fake{chat: func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		fn(inference.Delta{Text: "partial "})
		return inference.Result{}, inference.StreamEnded("broken")
	}}
	simP := &fake{chat: echo}
	e := start(t, []string{"broken/m", "sim/m"}, []ProviderSpec{spec("broken", broken), spec("sim", simP)}, nil)
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	var seen string
	_, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", Options: moltbot.ChatOptions{}}, func(ch moltbot.Chunk) error { seen += ch.Content; return nil })
	if code(err) != moltbot.EUnavailable || seen != "partial " || simP.calls.Load() != 0 {
		t.Fatalf("err %v seen %q fallback calls %d", err, seen, simP.calls.Load())
	}
	stored, _ := e.store.Get("default", c.ID)
	if len(stored.Messages) != 2 || stored.Messages[1].Content != "partial " || !stored.Messages[1].Incomplete || stored.Messages[1].Model != "broken/m" {
		t.Fatalf("stored %+v", stored.Messages)
	}
	// The conversation still works.
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "again", Options: moltbot.ChatOptions{Model: "sim/m"}}, nil); err != nil {
		t.Fatal(err)
	}
	stored, _ = e.store.Get("default", c.ID)
	if len(stored.Messages) != 4 {
		t.Fatalf("stored %+v", stored.Messages)
	}
	// A client that did not stream saw nothing: a failure mid-reply is
	// retried on the fallback from scratch and nothing partial is stored.
	c2, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	res, err := e.rt.Turn(ctx(t), "default", c2.ID, moltbot.TurnInput{Content: "quiet", Options: moltbot.ChatOptions{}}, nil)
	if err != nil || res.Message.Model != "sim/m" || res.Message.Content != "echo: quiet " || res.Completion.Failovers != 1 {
		t.Fatalf("non-streaming: %+v %v", res, err)
	}
}

func TestTurnsQueueInOrder(t *testing.T) {
	e := start(t, []string{"p/m"}, []ProviderSpec{spec("p", &fake{chat: echo})}, func(c *Config) { c.MaxQueuedTurns = 16 })
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: fmt.Sprint("q", i), Options: moltbot.ChatOptions{}}, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _ := e.rt.Get(ctx(t), "default", c.ID)
	if len(got.Messages) != 20 {
		t.Fatalf("%d messages", len(got.Messages))
	}
	for i := 0; i < 20; i += 2 {
		u, a := got.Messages[i], got.Messages[i+1]
		if u.Role != moltbot.RoleUser || a.Role != moltbot.RoleAssistant || a.Content != "echo: "+u.Content+" " {
			t.Fatalf("turn %d interleaved: %+v %+v", i/2, u, a)
		}
	}
}

func TestConversationBusy(t *testing.T) {
	release := make(chan struct{})
	e := start(t, []string{"p/m"}, []ProviderSpec{spec("p", &fake{chat: blocking(release)})}, func(c *Config) { c.MaxQueuedTurns = 0 })
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	done := make(chan error, 1)
	go func() {
		_, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "first", Options: moltbot.ChatOptions{}}, nil)
		done <- err
	}()
	testutil.Eventually(t, 5*time.Second, "first turn running", func() bool { return e.rt.Status().Providers[0].InFlight == 1 })
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "second", Options: moltbot.ChatOptions{}}, nil); code(err) != moltbot.EBusy {
		t.Fatalf("second: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPassivationAndReactivation(t *testing.T) {
	e := start(t, []string{"p/m"}, []ProviderSpec{spec("p", &fake{chat: echo})}, func(c *Config) { c.IdleTimeout = 100 * time.Millisecond })
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "remember me", Options: moltbot.ChatOptions{}}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "passivation", func() bool { return e.rt.ActiveConversations() == 0 })
	if e.met.Sum(metrics.Passivations) == 0 {
		t.Error("passivation not counted")
	}
	got, err := e.rt.Get(ctx(t), "default", c.ID)
	if err != nil || len(got.Messages) != 2 || got.Messages[0].Content != "remember me" {
		t.Fatalf("after reactivation: %+v %v", got, err)
	}
	if e.met.Get(metrics.Activations, "snapshot") == 0 {
		t.Error("reactivation from snapshot not counted")
	}
}

// passivated waits (up to 10 s) until another passivation is counted: the
// race below needs conversations going away between turns, and a sleep
// would only make that likely.
func passivated(met *metrics.Registry) bool {
	before := met.Sum(metrics.Passivations)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if met.Sum(metrics.Passivations) > before {
			return true
		}
	}
	return false
}

// Hammer conversations whose actors passivate constantly: every request must
// get its answer (none may reach a stopped mailbox) and no turn may be lost.
func TestPassivationRace(t *testing.T) {
	e := start(t, []string{"p/m"}, []ProviderSpec{spec("p", &fake{chat: echo})}, func(c *Config) {
		c.IdleTimeout = time.Millisecond
		c.MaxQueuedTurns = 100
	})
	const convs, turns = 8, 25
	ids := make([]string, convs)
	for i := range ids {
		c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = c.ID
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < turns; j++ {
				c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := e.rt.Turn(c, "default", id, moltbot.TurnInput{Content: fmt.Sprint("m", j), Options: moltbot.ChatOptions{}}, nil)
				if err == nil {
					_, err = e.rt.Get(c, "default", id)
				}
				cancel()
				if err != nil {
					t.Errorf("%s turn %d: %v", id, j, err)
					return
				}
				if j%5 == 0 && !passivated(e.met) {
					t.Errorf("%s turn %d: no conversation passivated within 10 s", id, j)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		got, err := e.rt.Get(ctx(t), "default", id)
		if err != nil || len(got.Messages) != 2*turns {
			t.Fatalf("%s: %d messages, %v", id, len(got.Messages), err)
		}
	}
	if e.met.Sum(metrics.Passivations) == 0 {
		t.Error("no passivation happened: the test proved nothing")
	}
}

func TestDeleteDuringTurn(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e := start(t, []string{"p/m"}, []ProviderSpec{spec("p", &fake{chat: blocking(release)})}, nil)
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	done := make(chan error, 1)
	go func() {
		_, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", Options: moltbot.ChatOptions{}}, nil)
		done <- err
	}()
	testutil.Eventually(t, 5*time.Second, "turn running", func() bool { return e.rt.Status().Providers[0].InFlight == 1 })
	if err := e.rt.Delete(ctx(t), "default", c.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := <-done; code(err) != moltbot.ENotFound {
		t.Fatalf("turn after delete: %v", err)
	}
	if _, err := e.store.Get("default", c.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("still stored: %v", err)
	}
	if _, err := e.rt.Get(ctx(t), "default", c.ID); code(err) != moltbot.ENotFound {
		t.Fatalf("get after delete: %v", err)
	}
	// The id can be used again.
	if _, err := e.rt.Create(ctx(t), "default", CreateOptions{ID: c.ID}); err != nil {
		t.Fatal(err)
	}
}

func TestClientCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e := start(t, []string{"p/m"}, []ProviderSpec{spec("p", &fake{chat: blocking(release)})}, nil)
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.rt.Turn(cctx, "default", c.ID, moltbot.TurnInput{Content: "hi", Options: moltbot.ChatOptions{}}, nil)
		done <- err
	}()
	testutil.Eventually(t, 5*time.Second, "turn running", func() bool { return e.rt.Status().Providers[0].InFlight == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("canceled turn succeeded")
	}
	testutil.Eventually(t, 5*time.Second, "call ended", func() bool { return e.rt.Status().Providers[0].InFlight == 0 })
	got, _ := e.rt.Get(ctx(t), "default", c.ID)
	if len(got.Messages) != 1 {
		t.Fatalf("messages %+v", got.Messages)
	}
}

func TestStoreFailureRejectsTurn(t *testing.T) {
	p := &fake{chat: echo}
	e := start(t, []string{"p/m"}, []ProviderSpec{spec("p", p)}, nil)
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	e.store.SetFail(errors.New("disk full"))
	_, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", Options: moltbot.ChatOptions{}}, nil)
	if code(err) != moltbot.EUnavailable || p.calls.Load() != 0 {
		t.Fatalf("err %v, model calls %d: the model must not be asked before the user turn is stored", err, p.calls.Load())
	}
	e.store.SetFail(nil)
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", Options: moltbot.ChatOptions{}}, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := e.rt.Get(ctx(t), "default", c.ID)
	if len(got.Messages) != 2 {
		t.Fatalf("messages %+v", got.Messages)
	}
}

func TestContextTrimmed(t *testing.T) {
	p := &fake{chat: echo}
	e := start(t, []string{"p/m"}, []ProviderSpec{spec("p", p)}, func(c *Config) { c.MaxContextTokens = 200 })
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{System: "SYSTEM PROMPT"})
	long := strings.Repeat("word ", 30) // ~38 tokens
	for i := 0; i < 8; i++ {
		if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: fmt.Sprint(i, long), Options: moltbot.ChatOptions{MaxTokens: 50}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	seen := p.lastSeen()
	if seen[0].Role != moltbot.RoleSystem || seen[0].Content != "SYSTEM PROMPT" || seen[1].Role != moltbot.RoleUser {
		t.Fatalf("context does not start with system then user: %+v", seen[:2])
	}
	if inference.EstimateTokens(seen) > 150 || !strings.HasPrefix(seen[len(seen)-1].Content, "7") || len(seen) >= 16 {
		t.Fatalf("context not trimmed: %d messages, %d tokens", len(seen), inference.EstimateTokens(seen))
	}
	got, _ := e.rt.Get(ctx(t), "default", c.ID)
	if len(got.Messages) != 16 {
		t.Fatalf("the stored history was trimmed too: %d", len(got.Messages))
	}
	_, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: strings.Repeat("x", 4000), Options: moltbot.ChatOptions{}}, nil)
	if code(err) != moltbot.EInvalid || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("oversized message: %v", err)
	}
}

func TestShutdownFailsNewWork(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	e.rt.Shutdown(context.Background())
	if _, err := e.rt.Create(ctx(t), "default", CreateOptions{}); code(err) != moltbot.EShutdown {
		t.Fatalf("create after shutdown: %v", err)
	}
	if err := e.rt.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkTurnSim(b *testing.B) {
	store := storage.NewMemory()
	rt, err := New(Config{Providers: []ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 16, Seed: 1}), MaxInFlight: 64}},
		Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: store, HealthInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	c, _ := rt.Create(context.Background(), "default", CreateOptions{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%32 == 0 { // keep the conversation short so the benchmark measures a turn, not history growth
			c, _ = rt.Create(context.Background(), "default", CreateOptions{})
		}
		if _, err := rt.Turn(context.Background(), "default", c.ID, moltbot.TurnInput{Content: "hello there", Options: moltbot.ChatOptions{}}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
