package h1

import (
	"net"
	"syscall"
)

// prober checks an idle connection without an allocation: its raw
// connection and the peek function are made once per connection.
type prober struct {
	rc   syscall.RawConn
	peek func(fd uintptr) bool
	ok   bool
	b    [1]byte
}

func newProber(nc net.Conn) *prober {
	p := &prober{}
	if sc, ok := nc.(syscall.Conn); ok {
		p.rc, _ = sc.SyscallConn()
	}
	p.peek = func(fd uintptr) bool {
		// Data (n > 0) is a response nobody asked for, and n == 0 the
		// end: either way the connection is not reused. Only "nothing
		// yet" (EAGAIN) is alive.
		_, _, err := syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		p.ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	}
	return p
}

// alive reports whether an idle connection is still open: nothing to
// read and no end (a server that closed it while it idled sent its FIN).
// One non-blocking peek.
func (p *prober) alive() bool {
	if p.rc == nil {
		return true // not a socket (a test's pipe): no cheap check
	}
	p.ok = false
	err := p.rc.Read(p.peek)
	return err == nil && p.ok
}
