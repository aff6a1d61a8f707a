// Package testutil holds helpers shared by tests: waiting for a condition
// without bare sleeps, and free loopback ports.
package testutil

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// Eventually polls cond every 10 ms until it is true, failing t after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreePort returns a loopback port that is free for TCP and UDP (a
// gossip port takes both) a moment ago, for a process the test starts to
// bind. It is taken below the kernel's ephemeral range (32768-60999 by
// default): a port from listen(":0") is one the kernel hands out again to
// the next listen(":0") or outgoing connection of any process, which took
// a test node's port between FreePort and its bind now and then. Ports
// come from a sequence that starts at a random point in each process and
// never repeats in it, so tests of one package never share a port and
// parallel packages rarely try the same one (then the bind check moves
// on).
func FreePort(t testing.TB) int {
	t.Helper()
	for range portSpan {
		p := portLow + int(nextPort.Add(portStride)%portSpan)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return p
	}
	t.Fatal("no free loopback port in 20000-32767")
	return 0
}

// The ports FreePort hands out: 20000 to 32767, stepping by a stride
// prime to the span, from a random start.
const (
	portLow    = 20000
	portSpan   = 12768
	portStride = 7919
)

var nextPort = func() *atomic.Uint64 {
	var n atomic.Uint64
	n.Store(rand.Uint64N(portSpan))
	return &n
}()

// BodyTransport answers every request with status, content type and body:
// fuzz tests feed arbitrary bytes to a client's stream decoder through it.
type BodyTransport struct {
	Status      int
	ContentType string
	Body        []byte
}

// RoundTrip implements http.RoundTripper.
func (b BodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	h := http.Header{}
	h.Set("Content-Type", b.ContentType)
	return &http.Response{StatusCode: b.Status, Status: http.StatusText(b.Status), Header: h,
		Body: io.NopCloser(bytes.NewReader(b.Body)), Request: r, ContentLength: int64(len(b.Body))}, nil
}
