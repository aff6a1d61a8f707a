package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Stage is the output cache as a turn-pipeline stage (an
// actors.AroundModel: it wraps the model call, after the stages before
// the model). A turn it may cache is looked up; a hit replays the stored
// pieces and the model is not asked. On a miss, the turn joins an
// identical one in flight (same key, and both stream or neither) or leads
// a new model call that others may join, whose reply, when complete, is
// stored. With the semantic tier on, a turn that misses is looked up by
// the meaning of its last user message among the replies stored for the
// same context (semantic.go) before it calls the model. Safe for
// concurrent use.
type Stage struct {
	c      *Cache
	shared counter

	mu      sync.Mutex
	flights map[flightKey]*flight
}

// NewStage returns the stage over c.
func NewStage(c *Cache) *Stage {
	return &Stage{c: c, shared: c.cfg.Metrics.Counter(metrics.CacheShared), flights: map[flightKey]*flight{}}
}

// AroundModel implements actors.AroundModel.
func (s *Stage) AroundModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc,
	next func(context.Context, moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	cc := moltbot.CacheControlOf(ctx)
	mode := moltbot.CacheAuto
	if cc != nil {
		mode = cc.Mode
	}
	// Not for the cache: asked so, a request whose reply varies, or one
	// whose tenant is unknown (its entries would belong to nobody).
	if mode == moltbot.CacheBypass || t.Tenant == "" || mode == moltbot.CacheAuto && !Deterministic(&t.Options) {
		return next(ctx, fn)
	}
	k := KeyOf(t)
	if mode != moltbot.CacheRefresh {
		if e := s.c.Get(ctx, k); e != nil {
			setResult(cc, moltbot.CacheHit)
			return replay(e, t.Visible, fn)
		}
	}
	fk := flightKey{sum: k.Sum, visible: t.Visible}
	var p *probe
	if sem := s.c.sem; sem != nil {
		if text, ok := semanticText(t); ok && !s.inFlight(fk) {
			// By meaning: an identical turn in flight is joined below
			// instead, without an embedding.
			if p = sem.prepare(ctx, t, text); p != nil && mode != moltbot.CacheRefresh {
				if e, _ := sem.find(ctx, p); e != nil {
					if cc != nil {
						cc.SetSemanticHit()
					}
					return replay(e, t.Visible, fn)
				}
			}
		}
	}
	s.mu.Lock()
	if f := s.flights[fk]; f != nil {
		f.refs++
		s.mu.Unlock()
		s.shared.Inc()
		setResult(cc, moltbot.CacheHit)
		return s.follow(ctx, fk, f, t.Visible, fn)
	}
	f := &flight{refs: 1}
	var fctx context.Context
	fctx, f.cancel = detached(ctx)
	s.flights[fk] = f
	s.mu.Unlock()
	setResult(cc, moltbot.CacheMiss)
	return s.lead(ctx, fctx, fk, k, p, f, fn, next)
}

// inFlight reports whether a model call of key fk is in the air.
func (s *Stage) inFlight(fk flightKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flights[fk] != nil
}

func setResult(cc *moltbot.CacheControl, r string) {
	if cc != nil {
		cc.SetResult(r)
	}
}

// replay answers a turn from e.
func replay(e *Entry, visible bool, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	start := time.Now()
	if visible {
		if err := e.replay(fn); err != nil {
			return nil, err
		}
	}
	c := e.completion()
	c.TTFT = time.Since(start)
	return c, nil
}

// flightKey names a model call that identical turns share. Turns that
// stream and turns that do not never share one: the router redoes a reply
// that broke mid-way only when nobody saw it.
type flightKey struct {
	sum     [sha256.Size]byte
	visible bool
}

// flight is one model call shared by identical turns: its leader's and
// those that joined (followers). The call runs on the leader's goroutine,
// under a context that ends when every turn has left (or at the leader's
// deadline), not when the leader's client leaves.
type flight struct {
	refs   int // turns waiting for it (Stage.mu)
	cancel context.CancelFunc

	mu     sync.Mutex
	chunks []moltbot.Chunk // the pieces so far
	subs   []chan struct{} // followers' wake-ups
	done   bool            // comp and err are set
	comp   *moltbot.Completion
	err    error
}

// detached is ctx's values and deadline without its cancellation.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	d := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(d, dl)
	}
	return context.WithCancel(d)
}

// add records a piece and wakes the followers.
func (f *flight) add(c moltbot.Chunk) {
	f.mu.Lock()
	f.chunks = append(f.chunks, c)
	f.wake()
	f.mu.Unlock()
}

// wake pokes every follower (f.mu held).
func (f *flight) wake() {
	for _, w := range f.subs {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// finish records the call's end. comp is kept as a copy: the leader's
// caller may change its own.
func (f *flight) finish(comp *moltbot.Completion, err error) {
	if comp != nil {
		c := *comp
		comp = &c
	}
	f.mu.Lock()
	f.comp, f.err, f.done = comp, err, true
	f.wake()
	f.mu.Unlock()
}

// leave takes a turn off f; the last one to leave cancels the call. It
// returns how many remain.
func (s *Stage) leave(fk flightKey, f *flight) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.refs--
	if f.refs == 0 {
		if s.flights[fk] == f {
			delete(s.flights, fk)
		}
		f.cancel()
	}
	return f.refs
}

// lead makes the model call of flight f for its leader, whose context is
// ctx and stream fn, and stores the reply when it is complete. If the
// leader leaves (its context ends, its stream fails) while others follow,
// the call goes on for them; the leader's turn then ends with the call,
// with its own error.
func (s *Stage) lead(ctx, fctx context.Context, fk flightKey, k Key, p *probe, f *flight, fn moltbot.StreamFunc,
	next func(context.Context, moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	defer f.cancel()
	defer func() {
		// A panic in the model call (the pipeline turns it into the
		// leader's error) must not leave a flight that nobody finishes:
		// its followers, and every identical turn after, would wait on it.
		if r := recover(); r != nil {
			s.mu.Lock()
			if s.flights[fk] == f {
				delete(s.flights, fk)
			}
			s.mu.Unlock()
			f.finish(nil, moltbot.Errorf(moltbot.EInternal, "the shared model call failed; the turn was not answered"))
			panic(r)
		}
	}()
	var gone atomic.Bool // the leader left
	var fnErr error      // why, when its stream failed (the call's goroutine writes it)
	var shown atomic.Int64
	leave := func() int {
		if !gone.CompareAndSwap(false, true) {
			return -1
		}
		return s.leave(fk, f)
	}
	stop := context.AfterFunc(ctx, func() { leave() })
	comp, err := next(fctx, func(c moltbot.Chunk) error {
		f.add(c)
		if gone.Load() {
			return nil
		}
		if err := fn(c); err != nil {
			fnErr = err
			if leave() == 0 {
				return err // nobody else waits: stop the call
			}
			return nil
		}
		shown.Add(1)
		return nil
	})
	stop()
	if comp != nil {
		comp.Cache = moltbot.CacheMiss
	}
	if err == nil && storable(comp) {
		exp := s.c.expires()
		if s.c.Put(k, newEntry(comp, f.chunks, exp)) && p != nil {
			s.c.sem.add(p, k, exp)
		}
	}
	s.mu.Lock()
	if s.flights[fk] == f {
		delete(s.flights, fk)
	}
	s.mu.Unlock()
	f.finish(comp, err)
	if gone.Load() {
		f.mu.Lock()
		seen := f.chunks[:shown.Load()]
		f.mu.Unlock()
		if fnErr != nil {
			return partial(seen), fnErr
		}
		return partial(seen), ctxErr(ctx)
	}
	return comp, err
}

// follow waits for flight f for a turn that joined it: the pieces already
// streamed, then the rest as they come, then the reply. A follower that
// leaves (its context ends, its stream fails) does not touch the call.
func (s *Stage) follow(ctx context.Context, fk flightKey, f *flight, visible bool, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	wake := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs = append(f.subs, wake)
	f.mu.Unlock()
	i := 0
	for {
		f.mu.Lock()
		chunks, done, comp, err := f.chunks, f.done, f.comp, f.err
		f.mu.Unlock()
		for ; visible && i < len(chunks); i++ {
			if ferr := fn(chunks[i]); ferr != nil {
				s.leave(fk, f)
				return partial(chunks[:i]), ferr
			}
		}
		if done {
			if comp == nil {
				return nil, err
			}
			c := *comp
			c.ToolCalls = append([]moltbot.ToolCall(nil), comp.ToolCalls...)
			c.Cache = moltbot.CacheHit
			return &c, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			s.leave(fk, f)
			return partial(chunks[:i]), ctxErr(ctx)
		}
	}
}

// partial is the reply as far as a turn that left saw it (stored with
// the conversation, marked incomplete), or nil when it saw nothing.
func partial(seen []moltbot.Chunk) *moltbot.Completion {
	if len(seen) == 0 {
		return nil
	}
	var b strings.Builder
	var calls []moltbot.ToolCall
	for i := range seen {
		if seen[i].ToolCall != nil {
			calls = moltbot.AddDelta(calls, seen[i].ToolCall)
		} else {
			b.WriteString(seen[i].Content)
		}
	}
	last := seen[len(seen)-1]
	return &moltbot.Completion{Content: b.String(), ToolCalls: calls, Served: last.Served, Failovers: last.Failovers}
}

// ctxErr is why a turn whose context ended left, as the router says it.
func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &moltbot.Error{Code: moltbot.ETimeout, Message: "the request timed out (server.request_timeout)", Err: ctx.Err()}
	}
	return &moltbot.Error{Code: moltbot.EInvalid, Message: "request canceled", Err: ctx.Err()}
}

// storable reports whether a reply may be stored: one the model finished
// (stopped, reached max_tokens, or asked for tools). A failed or cut-off
// reply never is.
func storable(c *moltbot.Completion) bool {
	if c == nil {
		return false
	}
	switch c.FinishReason {
	case "stop", "length", "tool_calls":
		return true
	}
	return false
}
