package actors

import (
	"context"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/cluster"
)

// rebalancer copies stored conversations to the nodes that became their
// holders when the ring changed (a join, a death, a leave). One pass runs at
// a time; a newer ring change cancels the pass in progress and starts over.
type rebalancer struct {
	l      *Link
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// start starts a pass for the ring change from prev to ring, canceling
// the pass in progress.
func (r *rebalancer) start(prev, ring *cluster.Ring) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
	}
	ctx, cancel := context.WithCancel(r.l.life.base)
	done := make(chan struct{})
	r.cancel, r.done = cancel, done
	r.l.life.wg.Add(1)
	go func() {
		defer r.l.life.wg.Done()
		defer close(done)
		r.run(ctx, prev, ring)
	}()
}

// wait waits for the rebalancing pass in progress, or ctx.
func (r *rebalancer) wait(ctx context.Context) {
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// run pushes each conversation this node held under prev to the nodes
// that hold it under ring but did not under prev. Receivers keep a copy only
// if it is newer than theirs.
func (r *rebalancer) run(ctx context.Context, prev, ring *cluster.Ring) {
	// Conversations now ours with deliveries waiting are started.
	defer wakeOutboxes(r.l, ring)
	if prev == nil {
		return
	}
	l := r.l
	self := l.place().ID()
	type job struct {
		c       *moltbot.Conversation
		targets []cluster.Node
	}
	var jobs []job
	err := l.store.ForEach(func(c *moltbot.Conversation) bool {
		key := c.Key()
		old := prev.Ranked(key, l.replicas)
		held := false
		had := map[string]bool{}
		for _, n := range old {
			had[n.ID] = true
			held = held || n.ID == self
		}
		if !held {
			return ctx.Err() == nil
		}
		var targets []cluster.Node
		for _, n := range ring.Ranked(key, l.replicas) {
			if !had[n.ID] && n.ID != self {
				targets = append(targets, n)
			}
		}
		if len(targets) > 0 {
			jobs = append(jobs, job{c, targets})
		}
		return ctx.Err() == nil
	})
	if err != nil {
		l.log.Warn("rebalance: cannot read the store", "err", err)
		return
	}
	if len(jobs) == 0 {
		return
	}
	t0 := time.Now()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			l.repl.Replicate(j.c, j.targets, false)
		}()
	}
	wg.Wait()
	l.log.Info("rebalanced conversations after a membership change", "copied", len(jobs), "took_ms", time.Since(t0).Milliseconds())
}
