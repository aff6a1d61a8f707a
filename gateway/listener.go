package gateway

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/moltbot/moltbot/internal/slots"
)

// ConnLimits bound the connections an API listener holds.
type ConnLimits struct {
	// Total connections held at once; PerClient from one client address
	// (an IPv4 address or an IPv6 /64). Trusted proxies are bound by Total
	// only: every client behind them shares their address.
	Total, PerClient int
	Trusted          []netip.Prefix
	// OnRefuse counts connections closed at once.
	OnRefuse func()
}

// LimitListener wraps ln so that past a bound a new connection is closed
// as soon as it is accepted (before any byte is read or TLS is spoken):
// one client cannot hold every file descriptor of the node.
func LimitListener(ln net.Listener, l ConnLimits) net.Listener {
	return &limitListener{Listener: ln, l: l}
}

type limitListener struct {
	net.Listener
	l     ConnLimits
	slots slots.Counter
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return nil, err
		}
		if lc, ok := ll.admit(c); ok {
			return lc, nil
		}
		c.Close()
		if ll.l.OnRefuse != nil {
			ll.l.OnRefuse()
		}
	}
}

func (ll *limitListener) admit(c net.Conn) (net.Conn, bool) {
	perClient := ll.l.PerClient
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil && isTrusted(ap.Addr().Unmap(), ll.l.Trusted) {
		perClient = 0 // a proxy's clients share its address
	}
	release, ok := ll.slots.Take(slots.KeyOf(c.RemoteAddr()), perClient, ll.l.Total)
	if !ok {
		return nil, false
	}
	return &limitedConn{Conn: c, release: release}, true
}

// held is the connections held now (tests).
func (ll *limitListener) held() int { return ll.slots.Held() }

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
