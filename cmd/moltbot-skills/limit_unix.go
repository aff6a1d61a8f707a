//go:build linux || darwin || freebsd

package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
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
//
// The budget is what the worker may take beyond what it holds at start:
// the cap is the data segment's size then (Linux's VmData: the binary's
// bss, 32 MiB of it Go 1.26's crypto DRBG that is never touched, and the
// threads' stacks of a cgo build) plus memory, so that the budget means
// the same whatever the binary links.
func limitSelf(memory int64) error {
	if memory > 0 {
		lim := uint64(memory) + startData()
		if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: lim, Max: lim}); err != nil {
			return fmt.Errorf("set RLIMIT_DATA to %d bytes: %w", memory, err)
		}
		debug.SetMemoryLimit(memory / 4 * 3)
	}
	// Best effort: a worker that cannot lower its priority still runs.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, 10)
	return nil
}

// startData is the process's data segment now, in bytes (0 where
// /proc/self/status does not say: the cap is then memory alone).
func startData() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmData:")); ok {
			kb, err := strconv.ParseUint(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
