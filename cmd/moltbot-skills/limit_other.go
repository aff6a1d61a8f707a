//go:build !(linux || darwin || freebsd)

package main

import "runtime/debug"

// limitSelf sets the Go heap's soft limit at three quarters of memory
// (this system has no RLIMIT_DATA: the budget is not a hard cap here).
func limitSelf(memory int64) error {
	if memory > 0 {
		debug.SetMemoryLimit(memory / 4 * 3)
	}
	return nil
}
