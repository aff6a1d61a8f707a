// Package channeltest is a channels.Host in memory, for an adapter's tests:
// what the adapter accepted, what it reported, its state.
package channeltest

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/moltbot/moltbot/channels"
)

// Host records what an adapter hands it. The zero Host is ready; Accepted
// receives each new message (make it buffered, or nil to only record).
type Host struct {
	Logger   *slog.Logger
	Accepted chan channels.Message
	// Refuse, when set, is what Accept answers for a new message.
	Refuse error

	mu     sync.Mutex
	seen   map[string]bool
	msgs   []channels.Message
	state  map[string][]byte
	States []string // every Report's state, in order
	Err    error    // the last Report's error
}

// Accept records m once per ID (ErrDuplicate after).
func (h *Host) Accept(ctx context.Context, m channels.Message) error {
	h.mu.Lock()
	if h.seen == nil {
		h.seen = map[string]bool{}
	}
	if h.seen[m.ID] {
		h.mu.Unlock()
		return channels.ErrDuplicate
	}
	if h.Refuse != nil {
		h.mu.Unlock()
		return h.Refuse
	}
	h.seen[m.ID] = true
	h.msgs = append(h.msgs, m)
	h.mu.Unlock()
	if h.Accepted != nil {
		select {
		case h.Accepted <- m:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Messages is what Accept took, in order.
func (h *Host) Messages() []channels.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]channels.Message(nil), h.msgs...)
}

// Get reads the state.
func (h *Host) Get(key string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.state[key]
	return append([]byte(nil), v...), ok
}

// Put writes the state (at most 4 KiB a value, as the real Host).
func (h *Host) Put(key string, value []byte) error {
	if len(value) > 4<<10 {
		return errors.New("channeltest: a state value is at most 4 KiB")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == nil {
		h.state = map[string][]byte{}
	}
	h.state[key] = append([]byte(nil), value...)
	return nil
}

// Log is Logger, or a logger that drops everything.
func (h *Host) Log() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Report records the state and error.
func (h *Host) Report(state string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.States = append(h.States, state)
	h.Err = err
}

// State is the last reported state ("" before any).
func (h *Host) State() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.States) == 0 {
		return ""
	}
	return h.States[len(h.States)-1]
}

var _ channels.Host = (*Host)(nil)
