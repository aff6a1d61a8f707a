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
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

func (rt *Runtime) startRebalance(prev, ring *cluster.Ring) {
	rt.rebal.mu.Lock()
	defer rt.rebal.mu.Unlock()
	if rt.rebal.cancel != nil {
		rt.rebal.cancel()
	}
	ctx, cancel := context.WithCancel(rt.base)
	done := make(chan struct{})
	rt.rebal.cancel, rt.rebal.done = cancel, done
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		defer close(done)
		rt.rebalance(ctx, prev, ring)
	}()
}

// WaitRebalance waits for the rebalancing pass in progress, or ctx.
func (rt *Runtime) WaitRebalance(ctx context.Context) {
	rt.rebal.mu.Lock()
	done := rt.rebal.done
	rt.rebal.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// rebalance pushes each conversation this node held under prev to the nodes
// that hold it under ring but did not under prev. Receivers keep a copy only
// if it is newer than theirs.
func (rt *Runtime) rebalance(ctx context.Context, prev, ring *cluster.Ring) {
	if prev == nil {
		return
	}
	self := rt.place().ID()
	type job struct {
		c       *moltbot.Conversation
		targets []cluster.Node
	}
	var jobs []job
	err := rt.store.ForEach(func(c *moltbot.Conversation) bool {
		key := c.Key()
		old := prev.Ranked(key, rt.replicas)
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
		for _, n := range ring.Ranked(key, rt.replicas) {
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
		rt.log.Warn("rebalance: cannot read the store", "err", err)
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
			rt.replicate(j.c, j.targets, false)
		}()
	}
	wg.Wait()
	rt.log.Info("rebalanced conversations after a membership change", "copied", len(jobs), "took", time.Since(t0).Round(time.Millisecond))
}
