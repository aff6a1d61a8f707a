package actors

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/failover"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
)

var oneMsg = []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}

// When every breaker is open the chain is tried anyway, in order: a model
// may have healed, and failing fast would fail every client.
func TestAllOpenStillTried(t *testing.T) {
	a := &fake{chat: echo}
	b := &fake{chat: echo}
	e := start(t, []string{"a/m", "b/m"}, []ProviderSpec{spec("a", a), spec("b", b)}, nil)
	testutil.Eventually(t, 5*time.Second, "health checked", func() bool { return e.rt.Ready() == nil })
	now := time.Now()
	e.rt.policy.Breaker("a", "m").Trip(now, time.Hour, false, "x")
	e.rt.policy.Breaker("b", "m").Trip(now, time.Hour, false, "x")
	if err := e.rt.Ready(); err == nil || !strings.Contains(err.Error(), "breaker open") {
		t.Fatalf("ready with every breaker open: %v", err)
	}
	comp, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, nil)
	if err != nil || comp.Served.String() != "a/m" {
		t.Fatalf("%+v %v", comp, err)
	}
}

// A model missing on its provider trips its breaker, is skipped and shown.
func TestModelMissing(t *testing.T) {
	missing := &fake{chat: fails(inference.KindModelNotFound)}
	e := start(t, []string{"a/m", "b/m"}, []ProviderSpec{spec("a", missing), spec("b", &fake{chat: echo})}, nil)
	for i := 0; i < 3; i++ {
		comp, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, nil)
		if err != nil || comp.Served.String() != "b/m" {
			t.Fatalf("%+v %v", comp, err)
		}
	}
	if missing.calls.Load() != 1 {
		t.Fatalf("a missing model was asked %d times", missing.calls.Load())
	}
	var st BreakerStatus
	for _, b := range e.rt.Breakers() {
		if b.Provider == "a" {
			st = b
		}
	}
	if !st.Missing || st.State != "open" {
		t.Fatalf("%+v", st)
	}
	if e.met.Get(metrics.Failovers, "a/m", "b/m", failover.ReasonMissing) != 2 {
		t.Error("skips not counted")
	}
}

// The caller goes away while two hedged attempts run: both are canceled
// and the callback is never called after chat returns.
func TestCancelDuringHedge(t *testing.T) {
	var started atomic.Int64
	slow := func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		started.Add(1)
		<-ctx.Done()
		return inference.Result{}, inference.Classify(ctx, "slow", ctx.Err())
	}
	a, b := &fake{chat: slow}, &fake{chat: slow}
	e := start(t, []string{"a/m", "b/m"}, []ProviderSpec{spec("a", a), spec("b", b)}, func(c *Config) {
		c.HedgeAfter = 10 * time.Millisecond
		c.Failover = failover.Config{Latency: time.Hour}
	})
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var after atomic.Bool
	go func() {
		_, err := e.rt.Complete(cctx, oneMsg, moltbot.ChatOptions{}, func(moltbot.Chunk) error {
			if after.Load() {
				t.Error("callback after return")
			}
			return nil
		})
		after.Store(true)
		done <- err
	}()
	testutil.Eventually(t, 5*time.Second, "both attempts running", func() bool { return started.Load() == 2 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("canceled request succeeded")
	}
	testutil.Eventually(t, 5*time.Second, "calls ended", func() bool {
		s := e.rt.Status()
		return s.Providers[0].InFlight == 0 && s.Providers[1].InFlight == 0
	})
	// Neither provider is blamed for the client leaving.
	for _, br := range e.rt.Breakers() {
		if br.Requests != 0 {
			t.Errorf("%+v", br)
		}
	}
}

// The client's callback failing (it disconnected) ends the call without
// trying other models.
func TestCallbackErrorStops(t *testing.T) {
	b := &fake{chat: echo}
	e := start(t, []string{"a/m", "b/m"}, []ProviderSpec{spec("a", &fake{chat: echo}), spec("b", b)}, nil)
	gone := errors.New("client gone")
	_, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, func(moltbot.Chunk) error { return gone })
	if !errors.Is(err, gone) || b.calls.Load() != 0 {
		t.Fatalf("err %v, fallback calls %d", err, b.calls.Load())
	}
}

// A model served on the second pass (every model was skipped, so they are
// tried anyway) was not failed over to: X-Moltbot-Failovers counts the
// models passed over on the pass that served, and no failover to itself
// is counted. Before, a primary marked missing by a stale health check
// answered with Failovers 1 and a primary->primary "model_missing" failover.
func TestSecondPassCountsNoSelfFailover(t *testing.T) {
	for _, tc := range []struct {
		name      string
		chain     []string
		a, b      *fake
		skip      func(e *env)
		served    string
		failovers int
		counted   uint64 // failovers in the metric
	}{
		{"one model marked missing", []string{"a/m"}, &fake{chat: echo}, nil,
			func(e *env) { e.rt.policy.Breaker("a", "m").SetMissing(true) }, "a/m", 0, 0},
		{"every breaker open", []string{"a/m", "b/m"}, &fake{chat: echo}, &fake{chat: echo},
			func(e *env) {
				e.rt.policy.Breaker("a", "m").Trip(time.Now(), time.Hour, false, "x")
				e.rt.policy.Breaker("b", "m").Trip(time.Now(), time.Hour, true, "x")
			}, "a/m", 0, 0},
		{"every breaker open, the first fails again", []string{"a/m", "b/m"}, &fake{chat: fails(inference.KindUnavailable)}, &fake{chat: echo},
			func(e *env) {
				e.rt.policy.Breaker("a", "m").Trip(time.Now(), time.Hour, false, "x")
				e.rt.policy.Breaker("b", "m").Trip(time.Now(), time.Hour, false, "x")
			}, "b/m", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specs := []ProviderSpec{spec("a", tc.a)}
			if tc.b != nil {
				specs = append(specs, spec("b", tc.b))
			}
			e := start(t, tc.chain, specs, nil)
			testutil.Eventually(t, 5*time.Second, "health checked", func() bool { return e.rt.Ready() == nil })
			for _, stream := range []bool{false, true} {
				tc.skip(e)
				var chunks []moltbot.Chunk
				var fn moltbot.StreamFunc
				if stream {
					fn = func(c moltbot.Chunk) error { chunks = append(chunks, c); return nil }
				}
				comp, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, fn)
				if err != nil || comp.Served.String() != tc.served || comp.Failovers != tc.failovers {
					t.Fatalf("stream %v: %+v %v, want served by %s after %d failovers", stream, comp, err, tc.served, tc.failovers)
				}
				for _, c := range chunks {
					if c.Failovers != tc.failovers {
						t.Fatalf("chunk %+v, want %d failovers", c, tc.failovers)
					}
				}
				if stream && len(chunks) == 0 {
					t.Fatal("no chunks")
				}
			}
			if got := e.met.Sum(metrics.Failovers); got != 2*tc.counted {
				t.Errorf("failovers counted %d, want %d", got, 2*tc.counted)
			}
			if got := e.met.Get(metrics.Failovers, "a/m", "a/m", failover.ReasonMissing); got != 0 {
				t.Errorf("a/m failed over to itself %d times", got)
			}
		})
	}
}

func TestFailoverBeforeFirstToken(t *testing.T) {
	for _, kind := range []inference.Kind{inference.KindUnavailable, inference.KindTimeout, inference.KindRateLimited,
		inference.KindModelNotFound, inference.KindBusy, inference.KindStream, inference.KindAuth} {
		t.Run(kind.String(), func(t *testing.T) {
			bad := &fake{chat: fails(kind)}
			e := start(t, []string{"bad/m", "sim/sim"}, []ProviderSpec{spec("bad", bad), simSpec()}, nil)
			comp, err := e.rt.Complete(ctx(t), []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}, moltbot.ChatOptions{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if comp.Served.String() != "sim/sim" || comp.Failovers != 1 {
				t.Errorf("completion %+v", comp)
			}
			if n := e.met.Get(metrics.Failovers, "bad/m", "sim/sim", kind.String()); n != 1 {
				t.Errorf("failover metric = %d", n)
			}
		})
	}
}

func TestNoFailoverOnBadRequest(t *testing.T) {
	bad := &fake{chat: fails(inference.KindBadRequest)}
	simP := &fake{chat: echo}
	e := start(t, []string{"bad/m", "sim/m"}, []ProviderSpec{spec("bad", bad), spec("sim", simP)}, nil)
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	_, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", Options: moltbot.ChatOptions{}}, nil)
	if code(err) != moltbot.EInvalid || simP.calls.Load() != 0 {
		t.Fatalf("err %v, fallback calls %d", err, simP.calls.Load())
	}
	stored, _ := e.store.Get("default", c.ID)
	if len(stored.Messages) != 1 || stored.Messages[0].Role != moltbot.RoleUser {
		t.Errorf("stored %+v: want the user turn only", stored.Messages)
	}
}

func TestAllFail(t *testing.T) {
	a := &fake{chat: fails(inference.KindUnavailable)}
	b := &fake{chat: fails(inference.KindTimeout)}
	e := start(t, []string{"a/m", "b/m"}, []ProviderSpec{spec("a", a), spec("b", b)}, nil)
	_, err := e.rt.Complete(ctx(t), []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}, moltbot.ChatOptions{}, nil)
	if code(err) != moltbot.ETimeout || !strings.Contains(err.Error(), "all 2 models failed") {
		t.Fatalf("err %v (%s)", err, code(err))
	}
}

// toolCaller streams one tool call in three pieces (as OpenAI does) and
// some text, and reports no finish reason of its own.
func toolCaller(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	for _, d := range []*moltbot.ToolCallDelta{
		{Index: 0, ID: "call_1", Name: "get_weather"},
		{Index: 0, Arguments: `{"city":`},
		{Index: 0, Arguments: `"Paris"}`},
		{Index: 1, ID: "call_2", Name: "get_time", Arguments: `{}`},
	} {
		if err := fn(inference.Delta{ToolCall: d}); err != nil {
			return inference.Result{}, err
		}
	}
	return inference.Result{}, nil
}

// Tool calls come through the router as they stream: a piece of a call is
// a first token (no failover threshold met), the pieces reach a streaming
// caller as they come, and the completion holds the calls put together,
// finish reason tool_calls.
func TestToolCallsThroughRouter(t *testing.T) {
	e := start(t, []string{"a/m", "b/m"}, []ProviderSpec{spec("a", &fake{chat: fails(inference.KindUnavailable)}), spec("b", &fake{chat: toolCaller})}, nil)
	var pieces []moltbot.ToolCallDelta
	comp, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "get_weather"}, {Name: "get_time"}}}, func(c moltbot.Chunk) error {
		if c.ToolCall == nil || c.Content != "" {
			t.Errorf("chunk %+v", c)
		} else {
			pieces = append(pieces, *c.ToolCall)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []moltbot.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}, {ID: "call_2", Name: "get_time", Arguments: `{}`}}
	if comp.Served.String() != "b/m" || comp.FinishReason != "tool_calls" || len(comp.ToolCalls) != 2 || comp.ToolCalls[0] != want[0] || comp.ToolCalls[1] != want[1] {
		t.Fatalf("%+v", comp)
	}
	if len(pieces) != 4 || pieces[1].Arguments != `{"city":` {
		t.Fatalf("pieces %+v", pieces)
	}
	// Not streamed: the same calls, assembled.
	comp, err = e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, nil)
	if err != nil || len(comp.ToolCalls) != 2 || comp.ToolCalls[0] != want[0] {
		t.Fatalf("%+v %v", comp, err)
	}
}

// A model that names no call (no id on a call's first piece) gets one
// from the router: the piece the caller sees and the completion carry the
// same id, a new one for each call.
func TestToolCallsWithoutIDs(t *testing.T) {
	anon := func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		for _, d := range []*moltbot.ToolCallDelta{{Index: 0, Name: "f"}, {Index: 0, Arguments: `{}`}, {Index: 1, Name: "g", Arguments: `{}`}} {
			if err := fn(inference.Delta{ToolCall: d}); err != nil {
				return inference.Result{}, err
			}
		}
		return inference.Result{}, nil
	}
	e := start(t, []string{"a/m"}, []ProviderSpec{spec("a", &fake{chat: anon})}, nil)
	var ids []string
	comp, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, func(c moltbot.Chunk) error {
		ids = append(ids, c.ToolCall.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(comp.ToolCalls) != 2 || !strings.HasPrefix(comp.ToolCalls[0].ID, "call_") || comp.ToolCalls[0].ID == comp.ToolCalls[1].ID ||
		len(ids) != 3 || ids[0] != comp.ToolCalls[0].ID || ids[1] != "" || ids[2] != comp.ToolCalls[1].ID {
		t.Fatalf("%+v, pieces' ids %q", comp.ToolCalls, ids)
	}
}

// A provider's own timeout (providers[].timeout) ends a call that is
// still waiting for its server, as a timeout: the router fails over and
// counts it so, the provider's metrics say "timeout", and its breaker
// records a failure. The call's context is the router's attempt, which the
// provider cancels with the cause context.DeadlineExceeded when its
// timer fires: the simulator waiting for its first token, and a provider
// that reports ctx.Err() (context.Canceled then) through
// inference.Classify. (The OpenAI client on a stalled server:
// inference/openai's TestTimeoutCauseIsATimeout.)
func TestProviderTimeoutFailsOver(t *testing.T) {
	slow := spec("slow", sim.NewProvider("slow", sim.Options{TTFT: time.Hour, Models: []string{"m"}}))
	slow.Timeout = 50 * time.Millisecond
	wait := spec("wait", &fake{chat: func(ctx context.Context, _ *inference.Request, _ inference.DeltaFunc) (inference.Result, error) {
		<-ctx.Done()
		return inference.Result{}, inference.Classify(ctx, "wait", ctx.Err())
	}})
	wait.Timeout = 50 * time.Millisecond
	e := start(t, []string{"slow/m", "wait/m", "sim/sim"}, []ProviderSpec{slow, wait, simSpec()}, nil)
	for _, stream := range []bool{false, true} {
		var fn moltbot.StreamFunc
		if stream {
			fn = func(moltbot.Chunk) error { return nil }
		}
		comp, err := e.rt.Complete(ctx(t), []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}, moltbot.ChatOptions{}, fn)
		if err != nil {
			t.Fatal(err)
		}
		if comp.Served.String() != "sim/sim" || comp.Failovers != 2 {
			t.Fatalf("completion %+v", comp)
		}
	}
	timeout := inference.KindTimeout.String()
	for _, f := range []struct{ from, to string }{{"slow/m", "wait/m"}, {"wait/m", "sim/sim"}} {
		if n := e.met.Get(metrics.Failovers, f.from, f.to, timeout); n != 2 {
			t.Errorf("failovers %s -> %s for a timeout = %d, want 2", f.from, f.to, n)
		}
	}
	for _, p := range []string{"slow", "wait"} {
		if n := e.met.Get(metrics.InferenceRequests, p, "m", timeout); n != 2 {
			t.Errorf("%s's calls that timed out = %d, want 2", p, n)
		}
		if st := e.rt.policy.Breaker(p, "m").Stats(time.Now()); st.Requests != 2 || st.ErrorRate != 1 {
			t.Errorf("%s's breaker: %+v", p, st)
		}
	}
}
