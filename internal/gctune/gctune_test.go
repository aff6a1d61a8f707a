package gctune

import (
	"runtime"
	"runtime/metrics"
	"testing"
)

func TestPercent(t *testing.T) {
	p := DefaultPolicy()
	for _, c := range []struct {
		live int64
		want int
	}{
		{0, 100},
		{2 << 20, 100}, // a node serving stateless requests
		{8 << 20, 100}, // the headroom is the live heap itself up to here
		{10 << 20, 80}, // then 8 MiB over the live heap
		{14 << 20, 57}, // 10,000 active conversations
		{16 << 20, 50}, // half
		{64 << 20, 50}, // never under MinPercent
		{1 << 40, 50},  // nor for a huge heap
		{-1, 100},      // nonsense in, the runtime's default out
	} {
		if got := p.Percent(c.live); got != c.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
	if got := (Policy{Headroom: 8 << 20, MinPercent: 200}).Percent(4 << 20); got != 100 {
		t.Errorf("a MinPercent over 100 gave %d for a small heap, want 100", got)
	}
	if got := (Policy{}).Percent(64 << 20); got != 100 {
		t.Errorf("the zero Policy gave %d, want 100", got)
	}
	if got := (Policy{Headroom: 1 << 20}).Percent(1 << 40); got != floorPercent {
		t.Errorf("no MinPercent gave %d for a huge heap, want the floor %d", got, floorPercent)
	}
}

func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// waitPercent collects until the finalizer has set GOGC to want: the
// finalizer runs on the runtime's goroutine some time after a collection,
// so each round collects again and yields; bounded by rounds, not time.
func waitPercent(t *testing.T, want int64) {
	t.Helper()
	for range 1000 {
		runtime.GC()
		runtime.Gosched()
		if gogc() == want {
			return
		}
	}
	t.Fatalf("GOGC is %d after 1000 collections, want %d", gogc(), want)
}

var keep [][]byte

// TestStartFollowsTheLiveHeap holds a live heap past the headroom and sees
// GOGC lowered, then lets it go and sees GOGC back at 100; Stop restores
// 100 and disarms.
func TestStartFollowsTheLiveHeap(t *testing.T) {
	Start(Policy{Headroom: 4 << 20, MinPercent: 50})
	defer Stop()
	waitPercent(t, 100) // the test binary's heap is small
	for range 16 {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	waitPercent(t, 50) // 16 MiB live, 4 MiB of headroom: 25, held at 50
	keep = nil
	waitPercent(t, 100)
	Stop()
	if got := gogc(); got != 100 {
		t.Fatalf("GOGC after Stop = %d, want 100", got)
	}
	if armed.Load() != nil {
		t.Fatal("still armed after Stop")
	}
}
