package cluster

import (
	"context"
	"errors"
	"time"
)

// ErrIdentity marks a proof that failed for certain: the member's
// certificate is not the cluster CA's, names another node, or its agent
// says it is another node.
var ErrIdentity = errors.New("cluster: identity refuted")

// leftGrace is how long a member that left gracefully is still heard: it
// answers the last requests for the conversations it hands over.
const leftGrace = 30 * time.Second

// directory is an immutable index of the members, rebuilt on every change,
// for lookups on the RPC path (every message from another node).
type directory struct {
	byID  map[string]Node
	byRPC map[string]Node
	names map[string]int
}

func newDirectory(members map[string]*Node) *directory {
	d := &directory{byID: make(map[string]Node, len(members)), byRPC: make(map[string]Node, len(members)), names: map[string]int{}}
	for _, n := range members {
		d.byID[n.ID] = *n
		if n.RPC != "" {
			d.byRPC[n.RPC] = *n
		}
		if n.Name != "" {
			d.names[n.Name]++
		}
	}
	return d
}

// current: a member whose messages are heard. Alive or leaving, or left
// within leftGrace; never dead.
func current(n Node, now time.Time) bool {
	switch n.State {
	case "alive", "leaving":
		return true
	case "left":
		return now.Sub(n.since) < leftGrace
	}
	return false
}

// Member returns the current member id (alive, leaving, or just left).
func (c *Cluster) Member(id string) (Node, bool) {
	d := c.dir.Load()
	if d == nil {
		return Node{}, false
	}
	n, ok := d.byID[id]
	if !ok || !current(n, time.Now()) {
		return Node{}, false
	}
	return n, true
}

// NameAt is the certificate name of the current member whose RPC address is
// rpc (Peers).
func (c *Cluster) NameAt(rpc string) (string, bool) {
	d := c.dir.Load()
	if d == nil {
		return "", false
	}
	n, ok := d.byRPC[rpc]
	if !ok || !current(n, time.Now()) {
		return "", false
	}
	return n.Name, true
}

// HasName reports whether a current member carries the certificate name
// (Peers).
func (c *Cluster) HasName(name string) bool {
	d := c.dir.Load()
	if d == nil || d.names[name] == 0 {
		return false
	}
	now := time.Now()
	for _, n := range d.byID {
		if n.Name == name && current(n, now) {
			return true
		}
	}
	return false
}

// Name is this node's certificate name ("" without TLS).
func (c *Cluster) Name() string { return c.cfg.Name }

// Proved records that member id proved its identity by calling us: its
// Hello came over a connection whose certificate names it (checked by the
// RPC guard against this membership). Each side of a new pair of members
// thus puts the other on its ring after one exchange, whichever side asked:
// rings agree sooner than with two independent proofs.
func (c *Cluster) Proved(id string) {
	if c.cfg.Verify == nil {
		return
	}
	c.mu.Lock()
	n := c.members[id]
	if n == nil || n.Local || n.Verified || n.State != "alive" || n.Proto != c.protocol() {
		c.mu.Unlock()
		return
	}
	wasOff := n.Refuted
	refuted := n.Refuted
	n.Verified, n.Refuted, n.backoff, n.failures = true, false, 0, 0
	target := *n
	c.log.Info("member verified", "node", n.ID, "name", n.Name, "by", "its hello", "was_refuted", refuted)
	if wasOff {
		c.rebuildLocked()
	}
	c.mu.Unlock()
	if c.cfg.OnVerify != nil {
		c.cfg.OnVerify(target, nil)
	}
}

// verifyLoop proves the RPC identity of alive members that are not yet on
// the ring (Config.Verify), one attempt per member at a time, retrying with
// backoff while the member stays alive with the same identity.
func (c *Cluster) verifyLoop() {
	defer c.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.verifyKick:
		case <-t.C:
		}
		now := time.Now()
		c.mu.Lock()
		for _, n := range c.members {
			if n.Local || n.Verified || n.verifying || n.State != "alive" || n.Proto != c.protocol() || now.Before(n.nextTry) {
				continue
			}
			n.verifying = true
			target := *n
			c.wg.Add(1)
			go c.verify(target)
		}
		c.mu.Unlock()
	}
}

func (c *Cluster) verify(target Node) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := c.cfg.Verify(ctx, target)
	cancel()
	if report := c.verified(target, err); report && c.cfg.OnVerify != nil {
		c.cfg.OnVerify(target, err)
	}
}

// verified records the outcome of a proof; it reports whether to tell
// OnVerify (a member proved, or refuted for the first time).
func (c *Cluster) verified(target Node, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.members[target.ID]
	if n == nil {
		return false
	}
	n.verifying = false
	if n.RPC != target.RPC || n.Name != target.Name || n.State != "alive" {
		return false // changed meanwhile: the loop tries the new identity
	}
	if err != nil {
		n.failures++
		n.backoff = min(max(2*n.backoff, 200*time.Millisecond), 30*time.Second)
		n.nextTry = time.Now().Add(n.backoff)
		if errors.Is(err, ErrIdentity) {
			first := !n.Refuted
			n.Refuted = true
			if first {
				c.log.Warn("a member's identity is refuted: it stays off the ring", "node", n.ID, "name", n.Name, "rpc", n.RPC, "err", err)
				c.rebuildLocked()
			}
			return first
		}
		level := c.log.Debug
		if n.failures >= 5 {
			level = c.log.Warn
		}
		level("a member's identity is not proved yet (it stays on the ring; retrying)", "node", n.ID, "name", n.Name, "rpc", n.RPC, "err", err, "retry_in", n.backoff)
		return false
	}
	refuted := n.Refuted
	n.Verified, n.Refuted, n.backoff, n.failures = true, false, 0, 0
	c.log.Info("member verified", "node", n.ID, "name", n.Name)
	if refuted {
		c.rebuildLocked()
	}
	return true
}
