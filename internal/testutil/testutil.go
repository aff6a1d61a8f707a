// Package testutil holds helpers shared by tests: waiting for a condition
// without bare sleeps, and free loopback ports.
package testutil

import (
	"bytes"
	"io"
	"net"
	"net/http"
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

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

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
