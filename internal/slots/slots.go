// Package slots counts what clients hold at once (connections, handshakes,
// streams), per client and in all, for the listeners that must bound it
// before anyone is authenticated: the API port, the cluster's RPC
// handshakes and its gossip streams.
package slots

import (
	"net"
	"net/netip"
	"sync"
)

// Counter hands out slots. The zero value is ready; it is safe for
// concurrent use.
type Counter struct {
	mu    sync.Mutex
	byKey map[string]int
	total int
}

// Take takes a slot for key if key holds fewer than perKey (no bound when
// perKey <= 0) and everyone fewer than total. release gives it back; call
// it once.
func (c *Counter) Take(key string, perKey, total int) (release func(), ok bool) {
	if !c.Acquire(key, perKey, total) {
		return nil, false
	}
	return func() { c.Release(key) }, true
}

// Acquire is Take for callers that keep the key: a true must be paired
// with one Release(key).
func (c *Counter) Acquire(key string, perKey, total int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total >= total || perKey > 0 && c.byKey[key] >= perKey {
		return false
	}
	if c.byKey == nil {
		c.byKey = map[string]int{}
	}
	c.total++
	c.byKey[key]++
	return true
}

// Release gives back a slot of key.
func (c *Counter) Release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.byKey[key]--; c.byKey[key] <= 0 {
		delete(c.byKey, key)
	}
}

// HeldBy is the slots key holds now.
func (c *Counter) HeldBy(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[key]
}

// Held is the slots held now.
func (c *Counter) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Key is what per-client bounds count by: an IPv4 address (an IPv4-mapped
// IPv6 address counts as its IPv4 one), or an IPv6 address's /64 (one
// subscriber's network: a host may use any address in it).
func Key(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// KeyOf is Key of a connection's remote address; an address that is not
// IP:port is its own key.
func KeyOf(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return Key(ap.Addr())
}
