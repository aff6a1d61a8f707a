package cache

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A tier that fails is tried again after a wait that doubles to a bound;
// the log says it went, at most once a minute that it is still down, and
// that it came back.
func TestGuard(t *testing.T) {
	clk := newClock()
	var logs logBuffer
	g := &guard{tier: "redis", first: time.Second, max: 4 * time.Second, now: clk.now, log: slog.New(slog.NewTextHandler(&logs, nil))}
	boom := errors.New("connection refused")
	if ok, probe := g.allow(); !ok || probe {
		t.Fatal("a tier that is up")
	}
	g.done(false, boom)
	if ok, _ := g.allow(); ok || g.up() {
		t.Fatal("down, and asked again at once")
	}
	// A call that began before the tier went down and failed after says
	// nothing new.
	g.done(false, boom)
	for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		clk.add(wait - time.Millisecond)
		if ok, _ := g.allow(); ok {
			t.Fatalf("tried before its wait of %s", wait)
		}
		clk.add(time.Millisecond)
		ok, probe := g.allow()
		if !ok || !probe {
			t.Fatalf("not tried after %s", wait)
		}
		if ok, _ := g.allow(); ok {
			t.Fatal("two tries at once")
		}
		g.done(true, boom)
	}
	out := logs.String()
	if n := strings.Count(out, "failed"); n != 1 {
		t.Errorf("%d 'failed' lines:\n%s", n, out)
	}
	if strings.Contains(out, "still down") {
		t.Errorf("'still down' within a minute:\n%s", out)
	}
	clk.add(time.Minute)
	g.allow()
	g.done(true, boom)
	if n := strings.Count(logs.String(), "still down"); n != 1 {
		t.Errorf("%d 'still down' lines after a minute", n)
	}
	clk.add(time.Minute)
	if ok, probe := g.allow(); !ok || !probe {
		t.Fatal("no try")
	}
	g.done(true, nil)
	if !g.up() || !strings.Contains(logs.String(), "cache tier is back") {
		t.Errorf("not back:\n%s", logs.String())
	}
	if ok, probe := g.allow(); !ok || probe {
		t.Error("back, but not in use")
	}
}
