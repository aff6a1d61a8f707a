package conv

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
)

// Guard lets a caller abandon a stream callback safely: after Close, the
// turn's goroutine can no longer reach the caller's writer. Close waits
// for a write in progress. A local turn writes through one, and so does a
// turn forwarded to another node (its sink, in the cluster link).
type Guard struct {
	mu     sync.Mutex
	fn     moltbot.StreamFunc
	closed bool
}

// NewGuard guards fn.
func NewGuard(fn moltbot.StreamFunc) *Guard { return &Guard{fn: fn} }

var errAbandoned = errors.New("actors: the caller stopped listening")

// Call passes c to the caller's callback, unless the guard is closed.
func (g *Guard) Call(c moltbot.Chunk) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errAbandoned
	}
	return g.fn(c)
}

// Close cuts the callback off, once a call in progress has returned.
func (g *Guard) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// AbandonGrace is how long a caller whose context ended still waits for its
// turn's reply (the model call is canceled and ends quickly) before giving up.
const AbandonGrace = 5 * time.Second

// CtxError is the error for a caller whose context ended: a timeout, or a
// cancellation.
func CtxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &moltbot.Error{Code: moltbot.ETimeout, Message: "timed out", Err: ctx.Err()}
	}
	return &moltbot.Error{Code: moltbot.EInvalid, Message: "request canceled", Err: ctx.Err()}
}
