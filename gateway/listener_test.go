package gateway

import (
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot/internal/testutil"
)

// One client cannot hold every connection: past its bound (and past the
// total) a new connection is closed at once; closing one frees its slot; a
// trusted proxy is bound by the total only.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	ln := LimitListener(raw, ConnLimits{Total: 6, PerClient: 3, OnRefuse: func() { refused.Add(1) }}).(*limitListener)
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var clients []net.Conn
	for i := 0; i < 5; i++ {
		clients = append(clients, dial())
	}
	testutil.Eventually(t, 5*time.Second, "two refused", func() bool { return refused.Load() == 2 })
	if ln.held() != 3 {
		t.Fatalf("%d held from one client", ln.held())
	}
	// A refused connection is closed: its client reads EOF. A held one is
	// open: a byte its server side writes arrives (proved, rather than
	// inferred from a read that saw nothing for 200 ms).
	held := map[string]net.Conn{}
	for range 3 {
		c := <-accepted
		held[c.RemoteAddr().String()] = c
	}
	closed := 0
	for _, c := range clients {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if s := held[c.LocalAddr().String()]; s != nil {
			s.Write([]byte("x"))
			if n, err := c.Read(make([]byte, 1)); n != 1 {
				t.Fatalf("a held connection: %v", err)
			}
			continue
		}
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("a refused connection: %v, want EOF", err)
		}
		closed++
	}
	if closed != 2 {
		t.Fatalf("%d connections closed by the server, want 2", closed)
	}
	// Closing an accepted connection frees its slot.
	for _, c := range held {
		c.Close()
		break
	}
	testutil.Eventually(t, 5*time.Second, "slot freed", func() bool { return ln.held() == 2 })
	clients = append(clients, dial())
	testutil.Eventually(t, 5*time.Second, "a new one accepted", func() bool { return ln.held() == 3 })

	// Behind a trusted proxy (here: loopback) only the total applies.
	raw2, _ := net.Listen("tcp", "127.0.0.1:0")
	var refused2 atomic.Int64
	ln2 := LimitListener(raw2, ConnLimits{Total: 4, PerClient: 1, Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		OnRefuse: func() { refused2.Add(1) }}).(*limitListener)
	defer ln2.Close()
	go func() {
		for {
			if _, err := ln2.Accept(); err != nil {
				return
			}
		}
	}()
	for i := 0; i < 6; i++ {
		c, _ := net.Dial("tcp", raw2.Addr().String())
		defer c.Close()
	}
	testutil.Eventually(t, 5*time.Second, "total bound", func() bool { return ln2.held() == 4 && refused2.Load() == 2 })
	for _, c := range clients {
		c.Close()
	}
}
