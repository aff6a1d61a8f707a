package chat

import (
	"context"
	"fmt"
	"iter"
	"runtime"
	"sync"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Stream is a turn's events, for the edge to read on its own goroutine
// (an HTTP handler writes only there, never on a provider's). Token events
// wait in a bounded queue that holds only what waits (a reader that keeps
// up holds one or two: no buffer is set aside per turn); an edge that falls
// EventBuffer events behind has its turn canceled with ESlowClient,
// counted in moltbot_chat_slow_clients_total. The last event is EventDone
// or EventError; Next then reports the end.
//
// An edge that stops reading early (its client left) calls Close, which
// cancels the turn and waits for it to end.
type Stream struct {
	mu     sync.Mutex
	q      []moltbot.Event  // waiting, from head
	inline [4]moltbot.Event // q's first backing array: a reader that keeps up never needs more
	spare  *[]moltbot.Event // q's backing array from spareQueues once it outgrew inline
	head   int
	ended  bool      // the last event is queued
	pushed bool      // an event was pushed (the first one yields: push)
	more   sync.Cond // signaled on a push (L is &mu): the reader waits on it
	max    int
	cancel context.CancelFunc
	// running counts the goroutine that runs the turn (one, or none for
	// a finished stream): Close waits for it. Neither it nor more is an
	// allocation of its own, as channels were.
	running sync.WaitGroup
	once    sync.Once
}

// newStream returns a stream whose turn the caller runs on a goroutine
// that calls st.running.Done when the turn has ended.
func newStream(max int, cancel context.CancelFunc) *Stream {
	st := &Stream{max: max, cancel: cancel}
	st.more.L = &st.mu
	st.q = st.inline[:0]
	st.running.Add(1)
	return st
}

// spareQueues are queues that outgrew a stream's inline array, kept for
// the next stream: a model that sends its tokens in one burst (a local
// model's, the zero-delay simulator's) fills 17 events before the edge
// reads one, and growing 4 -> 8 -> 16 -> 32 was 7 KB a turn. A stream
// takes one when its inline array is full and gives it back once its last
// event is read; a queue that grew past maxSpare is left to the collector.
var spareQueues = sync.Pool{New: func() any {
	q := make([]moltbot.Event, 0, 32)
	return &q
}}

const maxSpare = 128

// push queues a token event; false when EventBuffer events wait already.
func (st *Stream) push(ev moltbot.Event) bool {
	st.mu.Lock()
	if len(st.q)-st.head >= st.max {
		st.mu.Unlock()
		return false
	}
	st.appendLocked(ev)
	first := !st.pushed
	st.pushed = true
	st.mu.Unlock()
	st.more.Signal()
	if first {
		// The first token is the one a user waits for: let the edge,
		// just woken on this processor, write it now. Without this, a
		// model that sends its tokens in one burst (a local model's, the
		// zero-delay simulator's) kept the edge waiting until the turn's
		// goroutine had read the whole reply and blocked: the first
		// token left with the last (BENCHMARKS.md, the floor, session 8).
		runtime.Gosched()
	}
	return true
}

// end queues the last event (never refused).
func (st *Stream) end(ev moltbot.Event) {
	st.mu.Lock()
	st.appendLocked(ev)
	st.ended = true
	st.mu.Unlock()
	st.more.Signal()
}

// appendLocked queues ev, moving the queue to a spare one when the inline
// array is full; st.mu held.
func (st *Stream) appendLocked(ev moltbot.Event) {
	if len(st.q) == cap(st.q) && st.spare == nil {
		st.spare = spareQueues.Get().(*[]moltbot.Event)
		q := append((*st.spare)[:0], st.q[st.head:]...)
		clear(st.inline[:])
		st.q, st.head = q, 0
	}
	st.q = append(st.q, ev)
}

// releaseLocked gives a spare queue back once the last event was taken
// (an edge stops reading at EventDone); st.mu held. Every slot a reader took was zeroed by Next.
func (st *Stream) releaseLocked() {
	if st.spare == nil {
		return
	}
	if q := st.q[:0]; cap(q) <= maxSpare {
		*st.spare = q
		spareQueues.Put(st.spare)
	}
	st.spare = nil
	st.q, st.head = st.inline[:0], 0
}

// Pending is how many events wait now: an edge that writes to a network
// flushes when none do, so a burst of tokens leaves in one write.
func (st *Stream) Pending() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.q) - st.head
}

// Next returns the next event, waiting for it; false after the last.
func (st *Stream) Next() (moltbot.Event, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for {
		if st.head < len(st.q) {
			ev := st.q[st.head]
			st.q[st.head] = moltbot.Event{}
			st.head++
			if st.head == len(st.q) {
				if st.ended { // that was the last event
					st.releaseLocked()
				} else {
					st.q, st.head = st.q[:0], 0
				}
			}
			return ev, true
		}
		if st.ended {
			st.releaseLocked()
			return moltbot.Event{}, false
		}
		st.more.Wait() // one reader: a push signals it; nothing is missed, the queue is looked at under mu
	}
}

// Events ranges over the events to the last (for ev := range st.Events()).
func (st *Stream) Events() iter.Seq[moltbot.Event] {
	return func(yield func(moltbot.Event) bool) {
		for {
			ev, ok := st.Next()
			if !ok || !yield(ev) {
				return
			}
		}
	}
}

// Close cancels the turn if it still runs and waits for it to end. Safe to
// call more than once and after the last event.
func (st *Stream) Close() {
	st.once.Do(func() {
		if st.cancel != nil {
			st.cancel()
		}
	})
	st.running.Wait()
}

// Wait reads the stream to its end and returns the finished turn: for an
// edge that wants no tokens.
func (st *Stream) Wait() (*moltbot.TurnResult, error) {
	defer st.Close()
	for {
		ev, ok := st.Next()
		if !ok {
			return nil, moltbot.Errorf(moltbot.EInternal, "the turn ended without a result")
		}
		switch ev.Kind {
		case moltbot.EventDone:
			return ev.Result, nil
		case moltbot.EventError:
			return nil, ev.Err
		}
	}
}

// finished returns a stream that holds only the final event of a turn
// already run.
func finished(res *moltbot.TurnResult) *Stream {
	st := &Stream{ended: true} // no turn runs: Close does not wait
	st.more.L = &st.mu
	st.q = st.inline[:0] // one allocation: the stream holds its events
	if ev, ok := handoffEvent(res); ok {
		st.q = append(st.q, ev)
	}
	st.q = append(st.q, moltbot.Event{Kind: moltbot.EventDone, Result: res})
	return st
}

type turnFunc func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.TurnResult, error)

// run runs a turn for p: on the caller's goroutine when it does not
// stream (the stream then holds only the result), else on its own, with
// tokens through the bounded queue.
func (s *Service) run(ctx context.Context, p *moltbot.Principal, stream bool, turn turnFunc) (*Stream, error) {
	if !stream {
		res, err := turn(ctx, nil)
		if err != nil {
			return nil, err
		}
		s.charge(p, res)
		return finished(res), nil
	}
	ctx, cancel := context.WithCancel(ctx)
	st := newStream(s.cfg.EventBuffer, cancel)
	slow := false
	fn := func(c moltbot.Chunk) error {
		ev := moltbot.Event{Kind: moltbot.EventToken, Text: c.Content, Served: c.Served, Failovers: c.Failovers}
		if c.ToolCall != nil {
			ev.Kind, ev.ToolCall = moltbot.EventToolCall, c.ToolCall
		}
		if st.push(ev) {
			return nil
		}
		slow = true // read by the goroutine that calls fn, after the turn returns
		return &moltbot.Error{Code: moltbot.ESlowClient, Message: fmt.Sprintf(
			"the client did not read the reply as fast as it came (%d events waited); the turn was canceled", s.cfg.EventBuffer)}
	}
	go func() {
		defer st.running.Done()
		defer cancel()
		res, err := turn(ctx, fn)
		if slow {
			s.cfg.Metrics.Inc(metrics.ChatSlowClients)
			s.cfg.Logger.WarnContext(ctx, "turn canceled: the client reads too slowly", "tenant", p.Tenant, "buffer", s.cfg.EventBuffer)
			if err == nil || moltbot.ErrorCode(err) != moltbot.ESlowClient {
				err = &moltbot.Error{Code: moltbot.ESlowClient, Message: "the client did not read the reply as fast as it came; the turn was canceled", Err: err}
			}
		}
		if err != nil {
			st.end(moltbot.Event{Kind: moltbot.EventError, Err: err})
			return
		}
		s.charge(p, res)
		if res != nil && res.Completion != nil && len(res.Completion.Citations) > 0 {
			// The reply's sources, before the end (never refused: one event).
			st.mu.Lock()
			st.q = append(st.q, moltbot.Event{Kind: moltbot.EventCitation, Citations: res.Completion.Citations})
			st.mu.Unlock()
		}
		if ev, ok := handoffEvent(res); ok {
			st.push(ev)
		}
		st.end(moltbot.Event{Kind: moltbot.EventDone, Result: res})
	}()
	return st, nil
}

// handoffEvent is the EventHandoff a turn the hand-off answered puts
// before its EventDone (moltbot.FinishHandoff): Text is who owns the
// conversation now (queue, agent) and the reply, when there is one, is
// the notice already streamed as tokens.
func handoffEvent(res *moltbot.TurnResult) (moltbot.Event, bool) {
	if res == nil || res.Completion == nil || res.Completion.FinishReason != moltbot.FinishHandoff {
		return moltbot.Event{}, false
	}
	owner := res.Completion.Served.Model
	if owner == "" {
		owner = "queue"
	}
	return moltbot.Event{Kind: moltbot.EventHandoff, Text: owner, Result: res}, true
}
