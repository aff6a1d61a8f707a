package h1

import (
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open: nothing to
// read and no end (a server that closed it while it idled sent its FIN).
// One non-blocking peek.
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		// Data (n > 0) is a response nobody asked for, and n == 0 the
		// end: either way the connection is not reused. Only "nothing
		// yet" (EAGAIN) is alive.
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && ok
}
