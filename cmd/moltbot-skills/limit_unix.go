//go:build linux || darwin || freebsd

package main

import (
	"fmt"
	"runtime/debug"
	"syscall"
)

// limitSelf caps the worker's data segment at memory bytes (RLIMIT_DATA:
// the Go heap is mapped there, so an allocation past it fails and the
// runtime exits with "fatal error: runtime: out of memory"), sets the Go
// heap's soft limit at three quarters of it (the GC works harder before
// the cap is reached), and lowers the worker's CPU priority (nice 10) so
// that a skill that spins yields the CPU to the node's turns. RLIMIT_AS
// would count the address space the Go runtime reserves and never
// touches, and stop a worker that has hardly allocated.
func limitSelf(memory int64) error {
	if memory > 0 {
		lim := uint64(memory)
		if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: lim, Max: lim}); err != nil {
			return fmt.Errorf("set RLIMIT_DATA to %d bytes: %w", memory, err)
		}
		debug.SetMemoryLimit(memory / 4 * 3)
	}
	// Best effort: a worker that cannot lower its priority still runs.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, 10)
	return nil
}
