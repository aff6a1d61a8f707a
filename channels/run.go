package channels

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Placement of the adapters' Run: each channel's Run goes on the ring's
// owner of "channel:NAME" (every channel's on a node alone), restarted
// with Backoff when it fails, stopped for good on a Fatal error, and
// moved when the ring changes: the node that no longer owns it cancels
// it, the new owner starts it. For the moment between the two (gossip
// takes a round or two) both may run it; an adapter whose platform allows
// one connection only (Telegram's getUpdates answers 409) backs off and
// tries again.

// RunKey is the ring's key of channel name's Run.
func RunKey(name string) string { return "channel:" + name }

// runner is a channel's Run on this node.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// place starts the Run of every channel this node owns and stops the
// others'.
func (c *Core) place() {
	c.mu.RLock()
	base := c.base
	chans := slices.Collect(maps.Values(c.chans))
	c.mu.RUnlock()
	if base == nil || base.Err() != nil {
		return
	}
	for _, ch := range chans {
		node, self := c.cfg.Self, true
		if p := c.cfg.Placement; p != nil {
			node, self = p.Owner(RunKey(ch.spec.Config.Name))
		}
		if self {
			ch.startRun(base, node)
			continue
		}
		ch.stopRun()
		ch.mu.Lock()
		ch.status.State, ch.status.Node = StateElsewhere, node
		if node == "" {
			ch.status.State = StateStopped // nobody yet: the node has not joined
		}
		ch.mu.Unlock()
	}
}

// startRun starts the channel's Run unless it runs (or ended) here.
func (ch *channel) startRun(base context.Context, node string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.status.Node = node
	if ch.run != nil || base.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(base)
	r := &runner{cancel: cancel, done: make(chan struct{})}
	ch.run = r
	ch.status.State = StateConnecting
	go ch.loop(ctx, r)
}

// stopRun cancels the channel's Run here and waits for it to return.
func (ch *channel) stopRun() {
	ch.mu.Lock()
	r := ch.run
	ch.run = nil
	ch.mu.Unlock()
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
	ch.mu.Lock()
	if ch.run == nil && ch.status.State != StateFatal {
		ch.status.State = StateStopped
	}
	ch.mu.Unlock()
}

// loop runs Run until ctx ends, it returns nil (nothing to keep) or a
// Fatal error.
func (ch *channel) loop(ctx context.Context, r *runner) {
	defer close(r.done)
	attempt := 0
	for {
		start := time.Now()
		err := ch.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			return // nothing to keep (an inbound-only adapter)
		}
		if IsFatal(err) {
			ch.Report(StateFatal, err)
			return
		}
		if time.Since(start) > time.Minute {
			attempt = 0 // it ran a while: a new failure starts over
		}
		d := Backoff(attempt, time.Second, 5*time.Minute)
		attempt++
		ch.Report(StateBackoff, err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// runOnce is Run, a panic made an error.
func (ch *channel) runOnce(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("channels: the adapter panicked: %v", p)
		}
	}()
	return ch.ad.Run(ctx)
}
