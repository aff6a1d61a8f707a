//go:build !edge

package cluster

import (
	"bufio"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/moltbot/moltbot/internal/slots"
)

// Gossip TCP streams arrive before anyone is authenticated (the gossip key
// is checked on what they carry). memberlist bounds each stream in time
// (TCPTimeout) but not in number: limitedTransport bounds how many one
// address (an IPv6 /64) and everyone together hold at once, keeps part of
// the total for the members' own addresses, and closes a stream that sends
// nothing within firstByteTimeout. Past a bound a new stream is closed at
// once.
const (
	maxStreamsPerAddr = 8
	maxStreams        = 256
	memberReserve     = 64
	firstByteTimeout  = time.Second
)

type limitedTransport struct {
	*memberlist.NetTransport
	out      chan net.Conn
	stop     chan struct{}
	wg       sync.WaitGroup
	refused  func()
	isMember func(host string) bool
	slots    slots.Counter
}

func newLimitedTransport(nt *memberlist.NetTransport, refused func(), isMember func(string) bool) *limitedTransport {
	t := &limitedTransport{NetTransport: nt, out: make(chan net.Conn), stop: make(chan struct{}), refused: refused, isMember: isMember}
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
			t.wg.Add(1)
			go t.handOver(lc)
		}
	}
}

// handOver gives memberlist a stream once its first byte has arrived.
func (t *limitedTransport) handOver(c *countedConn) {
	defer t.wg.Done()
	_ = c.Conn.SetReadDeadline(time.Now().Add(firstByteTimeout))
	br := bufio.NewReaderSize(c.Conn, 512)
	if _, err := br.Peek(1); err != nil {
		c.Close()
		if t.refused != nil {
			t.refused()
		}
		return
	}
	_ = c.Conn.SetReadDeadline(time.Time{})
	c.r = br
	select {
	case t.out <- c:
	case <-t.stop:
		c.Close()
	}
}

func (t *limitedTransport) admit(c net.Conn) (*countedConn, bool) {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		host = c.RemoteAddr().String()
	}
	total := maxStreams - memberReserve
	if t.isMember != nil && t.isMember(host) {
		total = maxStreams
	}
	release, ok := t.slots.Take(slots.KeyOf(c.RemoteAddr()), maxStreamsPerAddr, total)
	if !ok {
		return nil, false
	}
	return &countedConn{Conn: c, release: release}, true
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
func (t *limitedTransport) held() int { return t.slots.Held() }

// countedConn gives its slot back when closed; it reads through the buffer
// that held its first bytes.
type countedConn struct {
	net.Conn
	r       *bufio.Reader
	once    sync.Once
	release func()
}

func (c *countedConn) Read(b []byte) (int, error) {
	if c.r != nil {
		return c.r.Read(b)
	}
	return c.Conn.Read(b)
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
