package channels

import (
	"context"
	"math/rand/v2"
	"net/url"
	"regexp"
	"sync"
	"time"
)

// Limiter paces outbound calls per destination (a chat, a channel, a
// route): at most Rate calls a second after a burst of Burst, waiting in
// line when over; a 429's Retry-After holds a destination back (Hold).
// The zero destination "" can pace a whole bot (Telegram's 30/s). Memory
// is bounded: destinations idle for a minute are forgotten.
type Limiter struct {
	Rate  float64 // calls a second; <= 0: unlimited
	Burst int     // at least 1

	mu   sync.Mutex
	dest map[string]*bucket
	now  func() time.Time
}

type bucket struct {
	next time.Time // when the next call may go (tokens as a schedule)
	used time.Time // the last reservation, for forgetting
}

// Wait blocks until a call to dest may go, or ctx ends.
func (l *Limiter) Wait(ctx context.Context, dest string) error {
	d := l.reserve(dest)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Hold keeps dest's next call back for d (a 429's Retry-After).
func (l *Limiter) Hold(dest string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketOf(dest)
	if at := l.clock().Add(d); at.After(b.next) {
		b.next = at
	}
}

// reserve takes dest's next slot and says how long to wait for it.
func (l *Limiter) reserve(dest string) time.Duration {
	if l.Rate <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	b := l.bucketOf(dest)
	interval := time.Duration(float64(time.Second) / l.Rate)
	// A full burst is a schedule that may start Burst-1 intervals back.
	earliest := now.Add(-time.Duration(max(l.Burst, 1)-1) * interval)
	if b.next.Before(earliest) {
		b.next = earliest
	}
	at := b.next
	b.next = at.Add(interval)
	b.used = now
	return max(at.Sub(now), 0)
}

func (l *Limiter) bucketOf(dest string) *bucket {
	if l.dest == nil {
		l.dest = map[string]*bucket{}
	}
	b := l.dest[dest]
	if b == nil {
		if len(l.dest) >= 1024 {
			l.forget()
		}
		b = &bucket{}
		l.dest[dest] = b
	}
	return b
}

// forget drops the destinations idle for a minute with nothing scheduled.
func (l *Limiter) forget() {
	now := l.clock()
	for k, b := range l.dest {
		if now.Sub(b.used) > time.Minute && !b.next.After(now) {
			delete(l.dest, k)
		}
	}
}

func (l *Limiter) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// Backoff is how long to wait before reconnect attempt n (0, 1, ...): a
// doubling from base capped at max, with full jitter (a random duration
// between half and all of it), so that many clients do not come back
// together.
func Backoff(n int, base, maximum time.Duration) time.Duration {
	d := base
	for i := 0; i < n && d < maximum; i++ {
		d *= 2
	}
	d = min(d, maximum)
	return d/2 + rand.N(d/2+1)
}

var secretPath = sync.OnceValue(func() *regexp.Regexp {
	// A Telegram bot token in a path (/bot123:ABC/...), a webhook's token
	// (/webhooks/{id}/{token}), a token in a query.
	return regexp.MustCompile(`bot[0-9]+:[A-Za-z0-9_-]+|/webhooks/[0-9]+/[A-Za-z0-9_.-]+|(?i)(token|secret|key|signature)=[^&\s]+`)
})

// Redact returns s (a URL, an error carrying one) with the credentials a
// platform puts in URLs replaced by "REDACTED"; log it, never s itself.
func Redact(s string) string {
	return secretPath().ReplaceAllStringFunc(s, func(m string) string {
		switch {
		case len(m) > 3 && m[:3] == "bot":
			return "botREDACTED"
		case len(m) > 10 && m[:10] == "/webhooks/":
			return "/webhooks/REDACTED"
		}
		for i := range len(m) {
			if m[i] == '=' {
				return m[:i+1] + "REDACTED"
			}
		}
		return "REDACTED"
	})
}

// RedactError is Redact for an error (a *url.Error prints its URL).
func RedactError(err error) string {
	if err == nil {
		return ""
	}
	if ue, ok := err.(*url.Error); ok {
		return ue.Op + " " + Redact(ue.URL) + ": " + Redact(ue.Err.Error())
	}
	return Redact(err.Error())
}
