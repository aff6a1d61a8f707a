package failover

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func cfg() Config {
	return Config{Latency: 3 * time.Second, ErrorRate: 0.05, Window: 30 * time.Second, MinRequests: 20, Cooldown: 15 * time.Second, MaxCooldown: time.Minute}
}

// feed records n requests spread over the given span, failing every one for
// which fail(i) is true.
func feed(b *Breaker, start time.Time, span time.Duration, n int, ttft time.Duration, fail func(i int) bool) time.Time {
	now := start
	for i := 0; i < n; i++ {
		now = start.Add(span * time.Duration(i) / time.Duration(n))
		o := Success
		if fail(i) {
			o = Failure
		}
		b.Record(now, o, ttft, false, "boom")
	}
	return now
}

func TestErrorRateThreshold(t *testing.T) {
	cases := []struct {
		name     string
		n, fails int
		state    State
	}{
		{"no errors", 200, 0, Closed},
		{"just under 5%", 200, 10, Closed}, // 5.0% is not above 5%
		{"just over 5%", 200, 11, Open},
		{"all failing but too few samples", 19, 19, Closed},
		{"all failing, enough samples", 20, 20, Open},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBreaker(cfg())
			// Failures last, so the rate is judged on the whole sample.
			feed(b, t0, 20*time.Second, tc.n, 100*time.Millisecond, func(i int) bool { return i >= tc.n-tc.fails })
			if got := b.State(); got != tc.state {
				st := b.Stats(t0.Add(20 * time.Second))
				t.Errorf("state %v, want %v (rate %.3f over %d)", got, tc.state, st.ErrorRate, st.Requests)
			}
		})
	}
}

func TestLatencyThreshold(t *testing.T) {
	for _, tc := range []struct {
		ttft  time.Duration
		state State
	}{{2 * time.Second, Closed}, {3500 * time.Millisecond, Open}} {
		b := NewBreaker(cfg())
		feed(b, t0, 10*time.Second, 40, tc.ttft, func(int) bool { return false })
		if b.State() != tc.state {
			t.Errorf("p95 %v: state %v, want %v", tc.ttft, b.State(), tc.state)
		}
	}
	// Slow p95 with a fast median still opens: 10% of requests at 5 s.
	b := NewBreaker(cfg())
	for i := 0; i < 100; i++ {
		d := 200 * time.Millisecond
		if i%10 == 0 {
			d = 5 * time.Second
		}
		b.Record(t0.Add(time.Duration(i)*100*time.Millisecond), Success, d, false, "")
	}
	if b.State() != Open {
		t.Errorf("p95 above threshold did not open: %+v", b.Stats(t0.Add(10*time.Second)))
	}
}

func TestWindowSlides(t *testing.T) {
	b := NewBreaker(cfg())
	// 15 failures long ago, then 20 successes after the window moved on.
	feed(b, t0, time.Second, 15, 0, func(int) bool { return true })
	now := feed(b, t0.Add(40*time.Second), 5*time.Second, 20, 0, func(int) bool { return false })
	if b.State() != Closed {
		t.Fatal("expired failures opened the breaker")
	}
	if st := b.Stats(now); st.Requests != 20 || st.ErrorRate != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestHalfOpenProbe(t *testing.T) {
	b := NewBreaker(cfg())
	now := feed(b, t0, time.Second, 20, 0, func(int) bool { return true })
	if ok, _ := b.Allow(now.Add(14 * time.Second)); ok {
		t.Fatal("allowed during cooldown")
	}
	if st := b.Stats(now.Add(5 * time.Second)); st.CooldownLeft != 10*time.Second {
		t.Errorf("cooldown left %v", st.CooldownLeft)
	}
	// After the cooldown: exactly one probe.
	at := now.Add(15 * time.Second)
	ok, probe := b.Allow(at)
	if !ok || !probe {
		t.Fatalf("no probe after cooldown: %v %v", ok, probe)
	}
	if ok, _ := b.Allow(at); ok {
		t.Fatal("second request let through while probing")
	}
	// A neutral outcome (the client left) releases the probe.
	b.Record(at, Neutral, 0, true, "")
	if ok, probe := b.Allow(at); !ok || !probe {
		t.Fatal("probe not released by a neutral outcome")
	}
	// The probe fails: open again, cooldown doubled.
	b.Record(at, Failure, 0, true, "still down")
	if st := b.Stats(at); st.State != Open || st.CooldownLeft != 30*time.Second || st.LastError != "still down" {
		t.Fatalf("after failed probe: %+v", st)
	}
	// Fails again: 60 s, then capped at MaxCooldown (1 m).
	at = at.Add(30 * time.Second)
	b.Allow(at)
	b.Record(at, Failure, 0, true, "x")
	at = at.Add(60 * time.Second)
	b.Allow(at)
	b.Record(at, Failure, 0, true, "x")
	if st := b.Stats(at); st.CooldownLeft != time.Minute {
		t.Fatalf("cooldown not capped: %v", st.CooldownLeft)
	}
	// A slow success is a failed probe too.
	at = at.Add(time.Minute)
	b.Allow(at)
	b.Record(at, Success, 4*time.Second, true, "")
	if b.State() != Open {
		t.Fatal("a slow probe closed the breaker")
	}
	// Healed: the probe succeeds, traffic returns, the cooldown resets.
	at = at.Add(time.Minute)
	b.Allow(at)
	b.Record(at, Success, 100*time.Millisecond, true, "")
	if ok, probe := b.Allow(at); !ok || probe || b.State() != Closed {
		t.Fatal("not closed after a good probe")
	}
	// Old failures were forgotten: one failure does not reopen it.
	b.Record(at, Failure, 0, false, "x")
	if b.State() != Closed {
		t.Fatal("reopened by stale history")
	}
	if st := b.Stats(at); st.Cooldown != 15*time.Second || st.Opens != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestTripAndMissing(t *testing.T) {
	b := NewBreaker(cfg())
	b.Trip(t0, time.Second, true, "model not found")
	if ok, _ := b.Allow(t0.Add(10 * time.Second)); ok {
		t.Fatal("tripped breaker allowed within the cooldown")
	}
	if st := b.Stats(t0); !st.Missing || st.State != Open {
		t.Fatalf("%+v", st)
	}
	ok, probe := b.Allow(t0.Add(16 * time.Second))
	if !ok || !probe {
		t.Fatal("no probe after the trip's cooldown")
	}
	b.Record(t0.Add(16*time.Second), Success, time.Millisecond, true, "")
	if st := b.Stats(t0); st.Missing || st.State != Closed {
		t.Fatalf("%+v", st)
	}
	b.SetMissing(true)
	if ok, _ := b.Allow(t0); ok || b.Usable(t0) {
		t.Fatal("a missing model was allowed")
	}
}

func TestPolicyAdmit(t *testing.T) {
	var created []string
	p := NewPolicy(cfg(), func(k string, _ *Breaker) { created = append(created, k) })
	if ok, _, _ := p.Admit(t0, "local", "llama", true); !ok {
		t.Fatal("fresh model refused")
	}
	if ok, _, r := p.Admit(t0, "local", "llama", false); ok || r != ReasonDown {
		t.Fatalf("unreachable: %v %s", ok, r)
	}
	p.Hold(t0, "cloud", 5*time.Second)
	if ok, _, r := p.Admit(t0.Add(4*time.Second), "cloud", "gpt", true); ok || r != ReasonHeld {
		t.Fatalf("held: %v %s", ok, r)
	}
	if ok, _, _ := p.Admit(t0.Add(5*time.Second), "cloud", "gpt", true); !ok {
		t.Fatal("hold did not end")
	}
	b := p.Breaker("local", "llama")
	b.Trip(t0, 0, false, "x")
	if ok, _, r := p.Admit(t0, "local", "llama", true); ok || r != ReasonOpen {
		t.Fatalf("open: %v %s", ok, r)
	}
	b.Trip(t0, 0, true, "x")
	if ok, _, r := p.Admit(t0, "local", "llama", true); ok || r != ReasonMissing {
		t.Fatalf("missing: %v %s", ok, r)
	}
	snap := p.Snapshot(t0.Add(time.Second))
	if len(snap) != 2 || snap[0].Provider != "cloud" || snap[1].State != Open || len(created) != 2 {
		t.Fatalf("snapshot %+v created %v", snap, created)
	}
}

func TestQuantileBuckets(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, time.Millisecond, 3 * time.Second, time.Hour} {
		i := bucketOf(d)
		if i < 0 || i >= histBuckets || (d > bounds[0] && d > bounds[i] && i < histBuckets-1) {
			t.Errorf("bucketOf(%v) = %d (bound %v)", d, i, bounds[i])
		}
		if i > 0 && d <= bounds[i-1] {
			t.Errorf("bucketOf(%v) = %d, but fits bucket %d", d, i, i-1)
		}
	}
}

// A zero Config resolves to DefaultConfig.
func TestDefaultConfig(t *testing.T) {
	var c Config
	c.ensureDefaults()
	if c != DefaultConfig() {
		t.Errorf("zero resolves to %+v, DefaultConfig is %+v", c, DefaultConfig())
	}
}

// FuzzCountsMatchWindow: the slot Record counts in starts where
// now.Truncate says, and the counts Record decides on say what the
// window's histogram says: the same requests and failures, and the p95
// beyond the latency threshold (slowP95) exactly when quantile over the
// summed histogram is. Records come at arbitrary steps of the clock
// (backwards too) with arbitrary TTFTs, under an arbitrary threshold.
func FuzzCountsMatchWindow(f *testing.F) {
	f.Add(int64(3000), []byte{1, 10, 200, 3, 0, 255, 17, 40, 90, 250, 2, 7})
	f.Add(int64(1), []byte{0, 0, 0, 1, 1, 1})
	f.Add(int64(-5), []byte{9, 9, 9})
	f.Fuzz(func(t *testing.T, latencyMs int64, steps []byte) {
		c := cfg()
		c.Latency = time.Duration(latencyMs%100000) * time.Millisecond
		c.MinRequests = 1 << 30 // never open: every record keeps adding samples
		b := NewBreaker(c)
		now := t0
		for i := 0; i+1 < len(steps); i += 2 {
			// The clock moves by -2/3..+13/3 s (within a 1.5 s slot, across
			// slots, backwards); the TTFT is 0 (none) or grows
			// exponentially with the byte, across every bucket.
			now = now.Add(time.Duration(int(steps[i]%16)-2) * time.Second / 3)
			var ttft time.Duration
			if v := steps[i+1]; v > 0 {
				ttft = time.Duration(float64(time.Millisecond) * math.Pow(1.09, float64(v)))
			}
			o := Success
			if steps[i]&0x80 != 0 {
				o = Failure
			}
			b.Record(now, o, ttft, false, "x")
			b.mu.Lock()
			if want := now.Truncate(b.width()); !b.last.Equal(want) {
				t.Fatalf("step %d: slot start %v, want %v", i, b.last, want)
			}
			total, failures, hist := b.window(now)
			ct, cf, timed, fast := b.counts(now)
			b.mu.Unlock()
			if ct != total || cf != failures {
				t.Fatalf("step %d: counts %d/%d, window %d/%d", i, ct, cf, total, failures)
			}
			if want, got := quantile(&hist, 0.95) > b.cfg.Latency, slowP95(timed, fast, b.cfg.Latency); got != want {
				t.Fatalf("step %d: slowP95 %v, quantile %v (latency %v, timed %d, fast %d)", i, got, quantile(&hist, 0.95), b.cfg.Latency, timed, fast)
			}
		}
	})
}

// BenchmarkRecord is a healthy model's success on a breaker whose window
// is full (every slot holds samples): the router records one per call.
func BenchmarkRecord(b *testing.B) {
	br := NewBreaker(cfg())
	now := t0
	for i := 0; i < 20*64; i++ {
		now = now.Add(cfg().Window / (20 * 64))
		br.Record(now, Success, time.Duration(i%200)*time.Millisecond, false, "")
	}
	b.ReportAllocs()
	for b.Loop() {
		br.Record(now, Success, 120*time.Millisecond, false, "")
	}
}
