//go:build !linux

package main

import "os/exec"

// dieWithWorker: elsewhere a stdio MCP server sees its stdin close when
// the worker dies, and is expected to exit.
func dieWithWorker(*exec.Cmd) {}
