package auth

import (
	"math"
	"sync"
	"time"
)

// bucket is a token bucket refilled continuously at rate per second up to cap.
type bucket struct {
	tokens float64
	last   time.Time
}

// limiter holds buckets by name. Buckets idle long enough to be full again
// are dropped, so a flood of names cannot grow it without bound.
type limiter struct {
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, buckets: map[string]*bucket{}}
}

// take removes cost from bucket name (capacity perMinute, refilled at
// perMinute/60 per second). When it would go below zero it removes nothing
// and returns how long until cost is available.
func (l *limiter) take(name string, perMinute int, cost float64) (time.Duration, bool) {
	if perMinute <= 0 {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweepLocked(now)
	capacity := float64(perMinute)
	rate := capacity / 60
	b := l.buckets[name]
	if b == nil {
		b = &bucket{tokens: capacity, last: now}
		l.buckets[name] = b
	}
	b.tokens = math.Min(capacity, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= cost {
		b.tokens -= cost
		return 0, true
	}
	wait := time.Duration((cost - b.tokens) / rate * float64(time.Second))
	return max(wait, time.Second), false
}

// peek reports whether cost is available in bucket name, without taking it.
func (l *limiter) peek(name string, perMinute int, cost float64) (time.Duration, bool) {
	if perMinute <= 0 {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[name]
	if b == nil {
		return 0, true
	}
	rate := float64(perMinute) / 60
	tokens := math.Min(float64(perMinute), b.tokens+l.now().Sub(b.last).Seconds()*rate)
	if tokens >= cost {
		return 0, true
	}
	return max(time.Duration((cost-tokens)/rate*float64(time.Second)), time.Second), false
}

// charge removes cost even if the bucket goes negative (tokens known only
// after the reply): the next requests wait for it to refill.
func (l *limiter) charge(name string, perMinute int, cost float64) {
	if perMinute <= 0 || cost <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	capacity := float64(perMinute)
	b := l.buckets[name]
	if b == nil {
		b = &bucket{tokens: capacity, last: now}
		l.buckets[name] = b
	}
	b.tokens = math.Min(capacity, b.tokens+now.Sub(b.last).Seconds()*capacity/60) - cost
	b.last = now
}

func (l *limiter) sweepLocked(now time.Time) {
	if now.Sub(l.sweep) < time.Minute || len(l.buckets) < 1024 {
		return
	}
	l.sweep = now
	for k, b := range l.buckets {
		if now.Sub(b.last) > 2*time.Minute {
			delete(l.buckets, k)
		}
	}
}

// Allow admits one request of p under its tenant's limits (per tenant, and
// per key for keys). It returns how long to wait when it refuses.
func (s *Service) Allow(p *Principal) (time.Duration, bool) {
	t := s.tenant(p.Tenant)
	if t == nil {
		return 0, true
	}
	l := t.Limits
	// Bucket names are built only for the limits that are set.
	tokens, requests := l.TokensPerMinute > 0, l.RequestsPerMinute > 0
	// Tokens: refuse while the tenant or key is in debt.
	if tokens {
		if w, ok := s.limits.take("tt/"+p.Tenant, l.TokensPerMinute, 0); !ok {
			return w, false
		}
	}
	if requests {
		if w, ok := s.limits.take("rt/"+p.Tenant, l.RequestsPerMinute, 1); !ok {
			return w, false
		}
	}
	if p.KeyID != "" {
		if tokens {
			if w, ok := s.limits.take("tk/"+p.KeyID, l.TokensPerMinute, 0); !ok {
				return w, false
			}
		}
		if requests {
			if w, ok := s.limits.take("rk/"+p.KeyID, l.RequestsPerMinute, 1); !ok {
				return w, false
			}
		}
	}
	return 0, true
}

// Charge counts the tokens a request used against p's tenant and key.
func (s *Service) Charge(p *Principal, tokens int) {
	t := s.tenant(p.Tenant)
	if t == nil || t.Limits.TokensPerMinute <= 0 {
		return
	}
	s.limits.charge("tt/"+p.Tenant, t.Limits.TokensPerMinute, float64(tokens))
	if p.KeyID != "" {
		s.limits.charge("tk/"+p.KeyID, t.Limits.TokensPerMinute, float64(tokens))
	}
}
