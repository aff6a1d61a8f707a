package cluster

import (
	"net"
	"sync"

	"github.com/hashicorp/memberlist"
)

// Gossip TCP streams arrive before anyone is authenticated (the gossip key
// is checked on what they carry). memberlist bounds each stream in time
// (TCPTimeout) but not in number: limitedTransport bounds how many an
// address, and everyone together, hold at once; past that, a new stream is
// closed at once.
const (
	maxStreamsPerAddr = 16
	maxStreams        = 256
)

type limitedTransport struct {
	*memberlist.NetTransport
	out     chan net.Conn
	stop    chan struct{}
	wg      sync.WaitGroup
	refused func()

	mu     sync.Mutex
	byAddr map[string]int
	total  int
}

func newLimitedTransport(nt *memberlist.NetTransport, refused func()) *limitedTransport {
	t := &limitedTransport{NetTransport: nt, out: make(chan net.Conn), stop: make(chan struct{}), refused: refused, byAddr: map[string]int{}}
	t.wg.Add(1)
	go t.loop()
	return t
}

func (t *limitedTransport) loop() {
	defer t.wg.Done()
	in := t.NetTransport.StreamCh()
	for {
		select {
		case <-t.stop:
			return
		case c := <-in:
			lc, ok := t.admit(c)
			if !ok {
				c.Close()
				if t.refused != nil {
					t.refused()
				}
				continue
			}
			select {
			case t.out <- lc:
			case <-t.stop:
				lc.Close()
				return
			}
		}
	}
}

func (t *limitedTransport) admit(c net.Conn) (net.Conn, bool) {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		host = c.RemoteAddr().String()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.total >= maxStreams || t.byAddr[host] >= maxStreamsPerAddr {
		return nil, false
	}
	t.total++
	t.byAddr[host]++
	return &countedConn{Conn: c, release: func() {
		t.mu.Lock()
		t.total--
		if t.byAddr[host]--; t.byAddr[host] <= 0 {
			delete(t.byAddr, host)
		}
		t.mu.Unlock()
	}}, true
}

// StreamCh yields the admitted streams.
func (t *limitedTransport) StreamCh() <-chan net.Conn { return t.out }

// Shutdown stops the transport (its listener may be handing over a stream:
// keep admitting until it is done), then the admission loop.
func (t *limitedTransport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	t.wg.Wait()
	return err
}

// held reports the streams held now (tests).
func (t *limitedTransport) held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
