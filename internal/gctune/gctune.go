// Package gctune keeps the Go collector's headroom bounded on a small
// device: the collector lets the heap grow to twice what is live before it
// collects (GOGC 100), which for a node holding thousands of active
// conversations is megabytes of resident memory that hold nothing. The
// policy keeps GOGC at 100 while the live heap is small (the headroom is
// then at most Headroom: a node serving stateless requests, whose live heap
// is a few MB, collects exactly as before), holds the headroom at Headroom
// while the live heap grows past it, and never goes under MinPercent (the
// collector's CPU grows as the headroom shrinks: at 50 it collects about
// twice as often as at 100 for the same live heap).
//
// How: after every collection the runtime runs a finalizer on a sentinel
// object that the previous one armed; it reads the live heap
// (runtime/metrics /gc/heap/live:bytes), sets GOGC (debug.SetGCPercent)
// and arms the next. No goroutine of its own: the runtime's finalizer
// goroutine runs it, and only when a collection happened, so an idle node
// does nothing. The setting is the process's: Start arms once per process
// (several nodes in one test process share it), Stop restores GOGC 100 and
// disarms.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Policy is how much headroom the collector gets.
type Policy struct {
	// Headroom is the headroom the collector keeps over the live heap once
	// the live heap is larger than it (GOGC 100 below: the headroom is then
	// the live heap itself, or the runtime's 4 MB minimum).
	Headroom int64
	// MinPercent is the lowest GOGC the policy sets.
	MinPercent int
}

// DefaultPolicy is a node's: 8 MiB of headroom, GOGC never under 50.
func DefaultPolicy() Policy { return Policy{Headroom: 8 << 20, MinPercent: 50} }

// floorPercent bounds a policy's MinPercent from below: GOGC 0 would
// collect without pause.
const floorPercent = 10

// Percent is the GOGC the policy sets for a live heap of live bytes; a
// zero Policy (no headroom) is the runtime's default, 100.
func (p Policy) Percent(live int64) int {
	if p.Headroom <= 0 || live <= p.Headroom {
		return 100
	}
	pct := int(p.Headroom * 100 / live)
	if pct < max(p.MinPercent, floorPercent) {
		pct = max(p.MinPercent, floorPercent)
	}
	if pct > 100 {
		pct = 100
	}
	return pct
}

var (
	mu      sync.Mutex
	armed   atomic.Pointer[Policy] // nil: stopped
	percent atomic.Int64           // what the policy last set (0: not yet)
	gen     uint64                 // under mu: a sentinel of an older Start is dropped
	sample  = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
)

// sentinel is what the finalizer hangs on. It holds a pointer so that it
// is not a tiny allocation (tiny objects share a block, and a finalizer on
// one may never run) and is not zero-sized (those share one address).
type sentinel struct {
	gen uint64
	_   *int
}

// Start applies p after every collection from now on, for the whole
// process; a second Start replaces the policy. Stop undoes it.
func Start(p Policy) {
	mu.Lock()
	defer mu.Unlock()
	if armed.Swap(&p) == nil {
		gen++
		arm()
	}
}

// Stop disarms the policy and sets GOGC back to 100.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if armed.Swap(nil) != nil {
		percent.Store(0)
		debug.SetGCPercent(100)
	}
}

// arm hangs the next call of collected on a new sentinel; mu held.
func arm() {
	runtime.SetFinalizer(&sentinel{gen: gen}, collected)
}

// collected runs on the runtime's finalizer goroutine after a collection.
func collected(s *sentinel) {
	mu.Lock() // against Start and Stop, and for the sample's buffer
	defer mu.Unlock()
	p := armed.Load()
	if p == nil || s.gen != gen {
		return
	}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		pct := int64(p.Percent(int64(sample[0].Value.Uint64())))
		if percent.Swap(pct) != pct {
			debug.SetGCPercent(int(pct))
		}
	}
	arm()
}
