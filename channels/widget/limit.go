package widget

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// buckets is a token bucket per key (a visitor, a client address): N
// calls in a burst, refilled at N per Per. Memory is bounded: past max
// keys, the keys whose bucket is full again are forgotten (a full bucket
// is the same as none); when none is, a new key is refused, so a flood of
// keys cannot grow the table or reset anyone's budget. One node's view: a
// cluster of n nodes behind a balancer allows up to n times the rate.
type buckets struct {
	spec rateSpec
	max  int
	now  func() time.Time

	mu    sync.Mutex
	m     map[string]bucket
	swept time.Time // the last sweep of a full table
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newBuckets(spec rateSpec, max int) *buckets {
	return &buckets{spec: spec, max: max, now: time.Now}
}

// take spends one call of key's budget; when none is left it says how
// long until one is.
func (b *buckets) take(key string) (time.Duration, bool) {
	perToken := b.spec.Per / time.Duration(b.spec.N)
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.m == nil {
		b.m = map[string]bucket{}
	}
	k, ok := b.m[key]
	if !ok {
		if len(b.m) >= b.max && !b.sweep(now) {
			return perToken, false
		}
		k = bucket{tokens: float64(b.spec.N), at: now}
	} else {
		k.tokens = b.refill(k, now)
		k.at = now
	}
	if k.tokens < 1 {
		b.m[key] = k
		return time.Duration((1 - k.tokens) * float64(perToken)), false
	}
	k.tokens--
	b.m[key] = k
	return 0, true
}

func (b *buckets) refill(k bucket, now time.Time) float64 {
	el := now.Sub(k.at)
	if el <= 0 {
		return k.tokens
	}
	t := k.tokens + float64(el)/float64(b.spec.Per)*float64(b.spec.N)
	return min(t, float64(b.spec.N))
}

// sweep forgets the keys whose bucket is full again; false when the table
// is still full. A full table is swept at most once a second.
func (b *buckets) sweep(now time.Time) bool {
	if now.Sub(b.swept) < time.Second {
		return false
	}
	b.swept = now
	for key, k := range b.m {
		if b.refill(k, now) >= float64(b.spec.N) {
			delete(b.m, key)
		}
	}
	return len(b.m) < b.max
}

// streams counts the event streams each visitor holds open on this node.
type streams struct {
	mu sync.Mutex
	m  map[string]int
}

// hold takes one of visitor's max streams; false when all are taken.
func (s *streams) hold(visitor string, max int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]int{}
	}
	if s.m[visitor] >= max {
		return false
	}
	s.m[visitor]++
	return true
}

func (s *streams) leave(visitor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[visitor]--; s.m[visitor] <= 0 {
		delete(s.m, visitor)
	}
}

// clientAddr is the address a request came from: its peer's, or, when the
// peer is one of the trusted proxies, the last address of
// X-Forwarded-For that is not one.
func clientAddr(r *http.Request, proxies []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if !trusted(a, proxies) {
		return a.String()
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			h, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return a.String() // a hop we cannot read: the proxy's own
			}
			if h = h.Unmap(); !trusted(h, proxies) {
				return h.String()
			}
		}
	}
	return a.String()
}

func trusted(a netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
