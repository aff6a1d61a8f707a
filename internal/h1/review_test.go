package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// A server that sends a second, unasked response after the first one's
// end (a broken server; bytes that arrive while the connection idles):
// the next request must not take it for its own (net/http's read loop
// closes such a connection). Reused at once, as a busy node does.
func TestStrayResponseOnIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stray := make(chan struct{})
	go func() {
		first := true
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			isFirst := first
			first = false
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if isFirst && i == 0 {
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
						<-stray
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"))
						continue
					}
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine"))
				}
			}()
		}
	}()
	u := "http://" + ln.Addr().String()
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	if _, body := get(t, c, "POST", u, "{}"); body != "ok" {
		t.Fatalf("first: %q", body)
	}
	close(stray)
	// Until the stray bytes are in the idle connection's receive buffer.
	waitFor(t, func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, l := range tr.idle {
			for _, c := range l {
				if alive(c.nc) {
					return false
				}
			}
		}
		return true
	}, "the idle connection with a stray response")
	if _, body := get(t, c, "POST", u, "{}"); body != "mine" {
		t.Fatalf("second request read %q, another request's response (want \"mine\")", body)
	}
}

// A POST written whole on a reused connection that then ends without a
// response may have been acted on (a generation started, paid for): it is
// not sent again, as net/http does not send a non-idempotent request
// again. A GET is retried once (TestRetryOnce).
func TestPostNotRetriedAfterWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var posts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if req.URL.Path == "/gen" {
						posts.Add(1)
						return // acted on, then the connection dropped
					}
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
				}
			}()
		}
	}()
	u := "http://" + ln.Addr().String()
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	get(t, c, "GET", u+"/models", "")
	req, _ := http.NewRequest("POST", u+"/gen", strings.NewReader("{}"))
	if _, err := c.Do(req); err == nil {
		t.Fatal("no error from a server that never answers")
	}
	if n := posts.Load(); n != 1 {
		t.Fatalf("the POST reached the server %d times (want 1)", n)
	}
}

// A request URI with a control byte (a RawQuery or Opaque set by hand) is
// never written by this transport: net/http refuses it.
func TestRequestURIControlBytes(t *testing.T) {
	for _, set := range []func(*http.Request){
		func(r *http.Request) { r.URL.RawQuery = "a=1 HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /x" },
		func(r *http.Request) { r.URL.Opaque = "/a\nb" },
		func(r *http.Request) { r.URL.RawQuery = "a\x00b" },
	} {
		tr, fb := newTransport()
		req, _ := http.NewRequest("GET", "http://127.0.0.1:1/p", nil)
		set(req)
		tr.RoundTrip(req)
		if fb.n.Load() != 1 {
			t.Fatalf("%q written by h1 (want net/http, which refuses it)", req.URL.RequestURI())
		}
	}
}

// A request whose context ended before it began costs no pooled
// connection: it returns the context's error without taking one (the
// cancel would have set the connection's deadline and closed it).
func TestCanceledBeforeStart(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	get(t, c, "GET", s.URL, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL, strings.NewReader("{}"))
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("%v (want context.Canceled)", err)
	}
	get(t, c, "GET", s.URL, "")
	if n := s.news.Load(); n != 1 {
		t.Fatalf("%d connections (want 1: the canceled request took none)", n)
	}
}

// 1xx responses before the final one are bounded in number as net/http
// bounds them (5): a flood of them within the header bytes' bound costs a
// Response and a header map each (about 40,000 in 1 MiB).
func TestInformationalFlood(t *testing.T) {
	for _, tc := range []struct {
		n   int
		err bool
	}{{5, false}, {6, true}, {40000, true}} {
		reply := strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", tc.n) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		req, _ := http.NewRequest("GET", "http://h/", nil)
		resp, _, err := readResponse(bufio.NewReader(strings.NewReader(reply)), req, 4<<20)
		if tc.err != (err != nil) || err == nil && resp.StatusCode != 200 {
			t.Fatalf("%d 1xx responses: %v", tc.n, err)
		}
		if err != nil && !strings.Contains(err.Error(), "1xx") {
			t.Fatalf("%d 1xx responses: %v", tc.n, err)
		}
	}
}

// The probe at every reuse allocates nothing once its connection's
// prober is made.
func TestProbeAllocs(t *testing.T) {
	c, _, _ := loopbackPair(t)
	p := newProber(c)
	if n := testing.AllocsPerRun(100, func() {
		if !p.alive() {
			t.Fatal("an open idle connection is not alive")
		}
	}); n != 0 {
		t.Fatalf("%v allocations a probe (want 0)", n)
	}
}

// BenchmarkProbe: what the probe at every reuse costs a call.
func BenchmarkProbe(b *testing.B) {
	c, _, _ := loopbackPair(b)
	p := newProber(c)
	b.ReportAllocs()
	for b.Loop() {
		if !p.alive() {
			b.Fatal("not alive")
		}
	}
}

// A body longer than the request's ContentLength is refused, as net/http
// refuses it, not cut to the length and sent (a truncated JSON body).
func TestBodyLongerThanLength(t *testing.T) {
	tr, _ := newTransport()
	tr.Dial = func(context.Context, string, string) (net.Conn, error) {
		t.Fatal("dialed for a request it must refuse")
		return nil, nil
	}
	req, _ := http.NewRequest("POST", "http://h:1/", strings.NewReader(`{"a":1}`))
	req.ContentLength = 3
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "ContentLength=3") {
		t.Fatalf("%v (want an error naming the length)", err)
	}
}

// A host net/http rewrites for the Host header (an IPv6 zone it removes,
// a non-ASCII name it turns to punycode) goes to net/http: written as it
// is, the Host header is not a valid one (RFC 9110, RFC 6874), and a
// server that checks Host strictly may refuse it.
func TestHostNetHTTPRewrites(t *testing.T) {
	for _, u := range []string{"http://[fe80::1%25eth0]:11434/api/tags", "http://bücher.example/api/tags"} {
		tr, fb := newTransport()
		req, err := http.NewRequest("GET", u, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr.RoundTrip(req)
		if fb.n.Load() != 1 {
			t.Fatalf("%s: written by h1 with Host %q (want net/http's)", u, req.URL.Host)
		}
	}
}
