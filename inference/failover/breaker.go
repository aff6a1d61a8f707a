// Package failover is moltbot's failover policy, kept pure: circuit breakers
// per provider/model over a sliding window, provider holds from 429
// Retry-After, and the order in which a chain is tried. It does no I/O and
// takes the time as an argument, so every rule is table-tested.
//
// A breaker is closed (traffic flows), open (skipped until its cooldown ends)
// or half-open (one probe request is let through: success closes it and
// traffic returns; failure reopens it with the cooldown doubled, up to
// MaxCooldown). It opens when, over Window and with at least MinRequests
// samples, the error rate exceeds ErrorRate or the p95 time to first token
// exceeds Latency.
package failover

import (
	"math"
	"sync"
	"time"
)

// Config is the policy's thresholds.
type Config struct {
	Latency     time.Duration // first-token deadline, and the p95 bound
	ErrorRate   float64       // 0..1
	Window      time.Duration // sliding window for rate and latency
	MinRequests int           // no decision on fewer samples
	Cooldown    time.Duration // open -> half-open
	MaxCooldown time.Duration
}

// DefaultConfig is the seed's thresholds with the documented defaults.
func DefaultConfig() Config {
	return Config{Latency: 3 * time.Second, ErrorRate: 0.05, Window: 30 * time.Second, MinRequests: 20,
		Cooldown: 15 * time.Second, MaxCooldown: 5 * time.Minute}
}

func (c *Config) ensureDefaults() {
	d := DefaultConfig()
	if c.Latency <= 0 {
		c.Latency = d.Latency
	}
	if c.ErrorRate <= 0 {
		c.ErrorRate = d.ErrorRate
	}
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.MinRequests <= 0 {
		c.MinRequests = d.MinRequests
	}
	if c.Cooldown <= 0 {
		c.Cooldown = d.Cooldown
	}
	if c.MaxCooldown < c.Cooldown {
		c.MaxCooldown = max(d.MaxCooldown, c.Cooldown)
	}
}

// State is a breaker's state; the numbers are those of moltbot_provider_state.
type State int

// Breaker states.
const (
	Closed   State = 0
	HalfOpen State = 1
	Open     State = 2
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	}
	return "open"
}

// Outcome is what one request to a model came to.
type Outcome int

// Outcomes. Only Success and Failure are samples; Neutral (the client left,
// the request was bad, the call lost a hedge race, local admission refused)
// says nothing about the model's health.
const (
	Success Outcome = iota
	Failure
	Neutral
)

const slots = 20

// latency histogram: bucket i holds TTFTs up to 1ms * growth^i.
const (
	histBuckets = 64
	growth      = 1.25
)

var bounds = func() (b [histBuckets]time.Duration) {
	v := float64(time.Millisecond)
	for i := range b {
		b[i] = time.Duration(v)
		v *= growth
	}
	return
}()

func bucketOf(d time.Duration) int {
	if d <= bounds[0] {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(bounds[0])) / math.Log(growth)))
	return min(max(i, 0), histBuckets-1)
}

type slot struct {
	start    time.Time
	total    int
	failures int
	// timed counts the samples in hist; fast those of them whose bucket's
	// bound is within cfg.Latency: Record decides on the p95 from these
	// two (slowP95) instead of summing every slot's histogram.
	timed, fast int
	hist        [histBuckets]uint32
}

// Breaker is the circuit breaker of one provider/model. Safe for concurrent use.
type Breaker struct {
	cfg Config

	mu       sync.Mutex
	ring     [slots]slot
	last     time.Time // the start of the slot cur last returned
	state    State
	until    time.Time // open until
	cooldown time.Duration
	probing  bool
	lastErr  string
	missing  bool
	opens    int
}

// NewBreaker returns a closed breaker.
func NewBreaker(cfg Config) *Breaker {
	cfg.ensureDefaults()
	return &Breaker{cfg: cfg, cooldown: cfg.Cooldown}
}

func (b *Breaker) width() time.Duration { return b.cfg.Window / slots }

// cur returns the slot for now, clearing it if it is stale.
func (b *Breaker) cur(now time.Time) *slot {
	w := b.width()
	// now.Truncate(w), whose division is slow for a width that does not
	// divide a second (the default 1.5 s): the last slot's start while now
	// is inside that slot (a multiple of w, with now in [start, start+w),
	// truncates to it).
	start := b.last
	if start.IsZero() || now.Before(start) || !now.Before(start.Add(w)) {
		start = now.Truncate(w)
		b.last = start
	}
	s := &b.ring[(start.UnixNano()/int64(w))%slots]
	if !s.start.Equal(start) {
		*s = slot{start: start}
	}
	return s
}

// window sums the slots inside the window ending now.
func (b *Breaker) window(now time.Time) (total, failures int, hist [histBuckets]uint32) {
	oldest := now.Add(-b.cfg.Window)
	for i := range b.ring {
		s := &b.ring[i]
		if s.start.IsZero() || !s.start.After(oldest) || s.start.After(now) {
			continue
		}
		total += s.total
		failures += s.failures
		for j, n := range s.hist {
			hist[j] += n
		}
	}
	return
}

// counts sums the slots inside the window ending now (window's slots):
// requests, failures, samples with a TTFT, and those within cfg.Latency.
func (b *Breaker) counts(now time.Time) (total, failures, timed, fast int) {
	oldest := now.Add(-b.cfg.Window)
	for i := range b.ring {
		s := &b.ring[i]
		if s.start.IsZero() || !s.start.After(oldest) || s.start.After(now) {
			continue
		}
		total += s.total
		failures += s.failures
		timed += s.timed
		fast += s.fast
	}
	return
}

// slowP95 is quantile(hist, 0.95) > latency for the window's histogram hist
// that holds timed samples, fast of them in buckets whose bound is within
// latency: quantile returns the bound of the first bucket where the
// running count reaches the rank, which is beyond latency exactly when the
// buckets within it (bounds grow) hold fewer than the rank.
func slowP95(timed, fast int, latency time.Duration) bool {
	if timed == 0 {
		return 0 > latency // quantile of nothing is 0
	}
	rank := uint64(math.Ceil(0.95 * float64(uint64(timed))))
	return uint64(fast) < rank
}

func quantile(hist *[histBuckets]uint32, q float64) time.Duration {
	var n uint64
	for _, c := range hist {
		n += uint64(c)
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range hist {
		seen += uint64(c)
		if seen >= rank {
			return bounds[i]
		}
	}
	return bounds[histBuckets-1]
}

// Allow says whether a request may go to this model now. probe is true when
// it is the half-open breaker's one probe: the caller must Record its outcome
// (Neutral releases the probe for someone else).
func (b *Breaker) Allow(now time.Time) (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		return !b.missing, false
	case Open:
		if now.Before(b.until) {
			return false, false
		}
		b.state = HalfOpen
		b.probing = false
		fallthrough
	default: // HalfOpen
		if b.probing {
			return false, false
		}
		b.probing = true
		return true, true
	}
}

// Record adds a request's outcome. ttft is its time to first token (0 when
// it produced none). probe must be what Allow returned.
func (b *Breaker) Record(now time.Time, o Outcome, ttft time.Duration, probe bool, errMsg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
		switch o {
		case Success:
			if ttft <= b.cfg.Latency {
				b.closeLocked()
			} else {
				b.openLocked(now, true)
			}
		case Failure:
			b.lastErr = errMsg
			b.openLocked(now, true)
		}
		return
	}
	if o == Neutral {
		return
	}
	s := b.cur(now)
	s.total++
	if o == Failure {
		s.failures++
		b.lastErr = errMsg
	} else {
		b.missing = false
	}
	if ttft > 0 {
		i := bucketOf(ttft)
		s.hist[i]++
		s.timed++
		if bounds[i] <= b.cfg.Latency {
			s.fast++
		}
	}
	if b.state != Closed {
		return // a straggler from before the breaker opened
	}
	total, failures, timed, fast := b.counts(now)
	if total < b.cfg.MinRequests {
		return
	}
	if float64(failures)/float64(total) > b.cfg.ErrorRate || slowP95(timed, fast, b.cfg.Latency) {
		b.openLocked(now, false)
	}
}

// Trip opens the breaker at once (a model missing on its provider), for at
// least d.
func (b *Breaker) Trip(now time.Time, d time.Duration, missing bool, errMsg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.missing = missing
	b.lastErr = errMsg
	b.probing = false
	b.state = Open
	b.until = now.Add(max(d, b.cooldown))
	b.opens++
}

// SetMissing marks whether the model is known to be absent from its provider
// (from the provider's model list); a missing model is skipped.
func (b *Breaker) SetMissing(missing bool) {
	b.mu.Lock()
	b.missing = missing
	b.mu.Unlock()
}

func (b *Breaker) openLocked(now time.Time, again bool) {
	if again {
		b.cooldown = min(b.cooldown*2, b.cfg.MaxCooldown)
	}
	b.state = Open
	b.until = now.Add(b.cooldown)
	b.opens++
}

func (b *Breaker) closeLocked() {
	b.state = Closed
	b.cooldown = b.cfg.Cooldown
	b.missing = false
	b.ring = [slots]slot{} // old failures must not reopen it at once
}

// Stats is a breaker's state for status pages.
type Stats struct {
	State        State
	Requests     int
	ErrorRate    float64
	P95          time.Duration
	CooldownLeft time.Duration
	Cooldown     time.Duration
	Opens        int
	Missing      bool
	LastError    string
}

// Stats reports the breaker over the window ending now.
func (b *Breaker) Stats(now time.Time) Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	total, failures, hist := b.window(now)
	st := Stats{State: b.state, Requests: total, P95: quantile(&hist, 0.95), Cooldown: b.cooldown, Opens: b.opens,
		Missing: b.missing, LastError: b.lastErr}
	if total > 0 {
		st.ErrorRate = float64(failures) / float64(total)
	}
	if b.state == Open && now.Before(b.until) {
		st.CooldownLeft = b.until.Sub(now)
	}
	return st
}

// State returns the current state (Open turns into HalfOpen only on Allow).
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Usable reports whether a request could be let through now.
func (b *Breaker) Usable(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.missing {
		return false
	}
	switch b.state {
	case Closed:
		return true
	case Open:
		return !now.Before(b.until)
	}
	return !b.probing
}
