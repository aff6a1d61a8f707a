package main

import (
	"os/exec"
	"syscall"
)

// dieWithWorker has the kernel kill an MCP server the worker started when
// the worker dies (killed by the node at a deadline): no server outlives it.
func dieWithWorker(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
