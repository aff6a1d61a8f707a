package chat

import (
	"context"
	"fmt"
	"sync"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Stream is a turn's events, for the edge to read on its own goroutine
// (an HTTP handler writes only there, never on a provider's). Token events
// wait in a bounded buffer; an edge that falls EventBuffer events behind
// has its turn canceled with ESlowClient, counted in
// moltbot_chat_slow_clients_total. The last event is EventDone or
// EventError, then the channel closes.
//
// An edge that stops reading early (its client left) calls Close, which
// cancels the turn and waits for it to end.
type Stream struct {
	events chan moltbot.Event
	cancel context.CancelFunc
	quit   chan struct{} // closed by Close: nobody reads any more
	done   chan struct{} // closed when the turn has ended
	once   sync.Once
}

// Events is the turn's events; it closes after the last.
func (st *Stream) Events() <-chan moltbot.Event { return st.events }

// Close cancels the turn if it still runs and waits for it to end. Safe to
// call more than once and after the last event.
func (st *Stream) Close() {
	st.once.Do(func() {
		close(st.quit)
		if st.cancel != nil {
			st.cancel()
		}
	})
	<-st.done
}

// Wait reads the stream to its end and returns the finished turn: for an
// edge that wants no tokens.
func (st *Stream) Wait() (*moltbot.TurnResult, error) {
	defer st.Close()
	for ev := range st.events {
		switch ev.Kind {
		case moltbot.EventDone:
			return ev.Result, nil
		case moltbot.EventError:
			return nil, ev.Err
		}
	}
	return nil, moltbot.Errorf(moltbot.EInternal, "the turn ended without a result")
}

// finished returns a stream that holds only the final event of a turn
// already run.
func finished(res *moltbot.TurnResult, err error) *Stream {
	st := &Stream{events: make(chan moltbot.Event, 1), quit: make(chan struct{}), done: make(chan struct{})}
	close(st.done)
	if err != nil {
		st.events <- moltbot.Event{Kind: moltbot.EventError, Err: err}
	} else {
		st.events <- moltbot.Event{Kind: moltbot.EventDone, Result: res}
	}
	close(st.events)
	return st
}

type turnFunc func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.TurnResult, error)

// run runs a turn for p: on the caller's goroutine when it does not
// stream (the stream then holds only the result), else on its own, with
// tokens through the bounded buffer.
func (s *Service) run(ctx context.Context, p *moltbot.Principal, stream bool, turn turnFunc) (*Stream, error) {
	if !stream {
		res, err := turn(ctx, nil)
		if err != nil {
			return nil, err
		}
		s.charge(p, res)
		return finished(res, nil), nil
	}
	ctx, cancel := context.WithCancel(ctx)
	st := &Stream{events: make(chan moltbot.Event, s.cfg.EventBuffer), cancel: cancel,
		quit: make(chan struct{}), done: make(chan struct{})}
	slow := false
	fn := func(c moltbot.Chunk) error {
		select {
		case st.events <- moltbot.Event{Kind: moltbot.EventToken, Text: c.Content, Served: c.Served, Failovers: c.Failovers}:
			return nil
		default:
		}
		slow = true // read by the goroutine that calls fn, after the turn returns
		return &moltbot.Error{Code: moltbot.ESlowClient, Message: fmt.Sprintf(
			"the client did not read the reply as fast as it came (%d events waited); the turn was canceled", s.cfg.EventBuffer)}
	}
	go func() {
		defer close(st.done)
		defer cancel()
		defer close(st.events)
		res, err := turn(ctx, fn)
		last := moltbot.Event{Kind: moltbot.EventDone, Result: res}
		if slow {
			s.cfg.Metrics.Inc(metrics.ChatSlowClients)
			s.cfg.Logger.WarnContext(ctx, "turn canceled: the client reads too slowly", "tenant", p.Tenant, "buffer", s.cfg.EventBuffer)
			if err == nil || moltbot.ErrorCode(err) != moltbot.ESlowClient {
				err = &moltbot.Error{Code: moltbot.ESlowClient, Message: "the client did not read the reply as fast as it came; the turn was canceled", Err: err}
			}
		}
		if err != nil {
			last = moltbot.Event{Kind: moltbot.EventError, Err: err}
		} else {
			s.charge(p, res)
		}
		select {
		case st.events <- last:
		case <-st.quit:
		}
	}()
	return st, nil
}
