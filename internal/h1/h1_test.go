package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server is a net/http server that counts the connections it accepted
// and tells when one closed.
type server struct {
	*httptest.Server
	news   atomic.Int32
	closed chan struct{}
}

func newServer(t *testing.T, h http.Handler, opts ...func(*http.Server)) *server {
	s := &server{closed: make(chan struct{}, 64)}
	s.Server = httptest.NewUnstartedServer(h)
	for _, o := range opts {
		o(s.Config)
	}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.news.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed <- struct{}{}
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// fallback records that a request went to it.
type fallback struct{ n atomic.Int32 }

func (f *fallback) RoundTrip(*http.Request) (*http.Response, error) {
	f.n.Add(1)
	return nil, errors.New("fallback")
}

func newTransport() (*Transport, *fallback) {
	fb := &fallback{}
	return &Transport{Fallback: fb}, fb
}

func get(t *testing.T, c *http.Client, method, u string, body string) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, u, err)
	}
	return resp, string(b)
}

func sse(w http.ResponseWriter, n int) {
	w.Header().Set("Content-Type", "text/event-stream")
	for i := range n {
		fmt.Fprintf(w, "data: {\"i\":%d}\n\n", i)
		w.(http.Flusher).Flush()
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// Every framing net/http's server uses, over one kept-alive connection,
// and the request as the server read it.
func TestAgainstNetHTTP(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s host=%s ua=%q ct=%q len=%d body=%s", r.Method, r.URL.RequestURI(), r.Host, r.UserAgent(), r.Header.Get("Content-Type"), r.ContentLength, b))
		mu.Unlock()
		switch r.URL.Path {
		case "/sse":
			sse(w, 16)
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"ok":true}`))
		case "/none":
			w.WriteHeader(http.StatusNoContent)
		case "/big":
			w.Write(bytes.Repeat([]byte("x"), 100<<10)) // chunked: more than the server buffers
		case "/err":
			http.Error(w, `{"error":"no"}`, http.StatusTooManyRequests)
		}
	}))
	tr, fb := newTransport()
	c := &http.Client{Transport: tr}
	resp, body := get(t, c, "POST", s.URL+"/sse?x=1", `{"model":"m"}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || !strings.HasPrefix(body, "data: {\"i\":0}\n\n") || !strings.HasSuffix(body, "data: [DONE]\n\n") || resp.ContentLength != -1 {
		t.Fatalf("sse: %v %v %q", resp.Status, resp.Header, body)
	}
	if resp, body = get(t, c, "GET", s.URL+"/json", ""); resp.Status != "200 OK" || body != `{"ok":true}` || resp.ContentLength != 11 {
		t.Fatalf("json: %v %d %q", resp.Status, resp.ContentLength, body)
	}
	if resp, body = get(t, c, "POST", s.URL+"/none", ""); resp.StatusCode != 204 || body != "" {
		t.Fatalf("204: %v %q", resp.Status, body)
	}
	if resp, body = get(t, c, "HEAD", s.URL+"/json", ""); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %v %q", resp.Status, body)
	}
	if resp, body = get(t, c, "GET", s.URL+"/big", ""); len(body) != 100<<10 {
		t.Fatalf("big: %v %d bytes", resp.Status, len(body))
	}
	if resp, body = get(t, c, "POST", s.URL+"/err", "{}"); resp.StatusCode != 429 || resp.Status != "429 Too Many Requests" || body != "{\"error\":\"no\"}\n" {
		t.Fatalf("429: %v %q", resp.Status, body)
	}
	if n := s.news.Load(); n != 1 || fb.n.Load() != 0 {
		t.Fatalf("%d connections for 6 requests (want 1), %d to the fallback", n, fb.n.Load())
	}
	host := strings.TrimPrefix(s.URL, "http://")
	want := []string{
		`POST /sse?x=1 host=` + host + ` ua="Go-http-client/1.1" ct="" len=13 body={"model":"m"}`,
		`GET /json host=` + host + ` ua="Go-http-client/1.1" ct="" len=0 body=`,
		`POST /none host=` + host + ` ua="Go-http-client/1.1" ct="" len=0 body=`,
	}
	for i, w := range want {
		if seen[i] != w {
			t.Fatalf("request %d: the server saw\n%s\nwant\n%s", i, seen[i], w)
		}
	}
}

// A stream is read as it comes: the first event before the server wrote
// the second.
func TestStreams(t *testing.T) {
	next := make(chan struct{})
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		<-next
		fmt.Fprint(w, "data: 2\n\n")
	}))
	tr, _ := newTransport()
	resp, err := (&http.Client{Transport: tr}).Post(s.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if l, err := br.ReadString('\n'); l != "data: 1\n" || err != nil {
		t.Fatalf("%q %v", l, err)
	}
	close(next)
	rest, err := io.ReadAll(br)
	if string(rest) != "\ndata: 2\n\n" || err != nil {
		t.Fatalf("%q %v", rest, err)
	}
	resp.Body.Close()
}

// A reader that stops at its own end mark and closes the body leaves the
// connection reusable when the last chunk came with it; one that closes
// in the middle of a stream closes the connection.
func TestCloseEarly(t *testing.T) {
	hold := make(chan struct{})
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			fmt.Fprint(w, "data: 1\n\n")
			w.(http.Flusher).Flush()
			<-hold
			return
		}
		sse(w, 3)
	}))
	defer close(hold)
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	for range 3 {
		resp, err := c.Post(s.URL, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l == "data: [DONE]\n" {
				br.ReadString('\n')
				break
			}
		}
		resp.Body.Close()
	}
	if n := s.news.Load(); n != 1 {
		t.Fatalf("%d connections for 3 streams read to [DONE] (want 1)", n)
	}
	resp, err := c.Post(s.URL+"/hold", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 4))
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 4)); err == nil {
		t.Fatal("read after close")
	}
	get(t, c, "GET", s.URL, "")
	if n := s.news.Load(); n != 2 {
		t.Fatalf("%d connections (want 2: the closed stream's was not reused)", n)
	}
}

// A connection the server closed while it idled: the probe finds it (idle
// over a second), or the request is retried once on a new one.
func TestServerClosedIdle(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sse(w, 2) }),
		func(s *http.Server) { s.IdleTimeout = time.Millisecond })
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	for i := range 2 {
		get(t, c, "POST", s.URL, "{}")
		<-s.closed // the server closed the idle connection
		if i == 1 {
			// Idle "long": the probe sees the end before a request is sent.
			tr.mu.Lock()
			for _, l := range tr.idle {
				for _, c := range l {
					c.idleAt = c.idleAt.Add(-2 * time.Second)
				}
			}
			tr.mu.Unlock()
		}
	}
	if resp, body := get(t, c, "POST", s.URL, "{}"); resp.StatusCode != 200 || !strings.HasSuffix(body, "[DONE]\n\n") {
		t.Fatalf("%v %q", resp.Status, body)
	}
	if n := s.news.Load(); n != 3 {
		t.Fatalf("%d connections (want 3)", n)
	}
}

// loopbackPair is a connected TCP pair on loopback, closed when tb ends,
// and its listener, for more.
func loopbackPair(tb testing.TB) (c, peer net.Conn, ln net.Listener) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	if c, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	if peer, err = ln.Accept(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { peer.Close() })
	return c, peer, ln
}

func alive(nc net.Conn) bool { return newProber(nc).alive() }

func TestAlive(t *testing.T) {
	c, peer, ln := loopbackPair(t)
	if !alive(c) {
		t.Fatal("an open idle connection is not alive")
	}
	peer.Write([]byte("x"))
	waitFor(t, func() bool { return !alive(c) }, "a connection with unasked data")
	c2, _ := net.Dial("tcp", ln.Addr().String())
	defer c2.Close()
	peer2, _ := ln.Accept()
	peer2.Close()
	waitFor(t, func() bool { return !alive(c2) }, "a connection the peer closed")
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if ok() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s stays alive", what)
}

// Cancelling ends a request waiting for its head or reading its body, at
// once, with the context's error; the connection is not reused.
func TestCancel(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			fmt.Fprint(w, "data: 1\n\n")
			w.(http.Flusher).Flush()
		}
		<-hold
	}))
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/head", strings.NewReader("{}"))
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := c.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting for the head: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "POST", s.URL+"/body", strings.NewReader("{}"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64)
	if n, err := resp.Body.Read(b); string(b[:n]) != "data: 1\n\n" || err != nil {
		t.Fatalf("%q %v", b[:n], err)
	}
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := resp.Body.Read(b); !errors.Is(err, context.Canceled) {
		t.Fatalf("reading the body: %v", err)
	}
	resp.Body.Close()
	tr.mu.Lock()
	idle := len(tr.idle)
	tr.mu.Unlock()
	if idle != 0 {
		t.Fatalf("%d idle connections after two canceled requests", idle)
	}
}

// What this transport does not do the simple way goes to the fallback.
func TestFallback(t *testing.T) {
	proxy := func(r *http.Request) (*url.URL, error) {
		if r.URL.Hostname() == "proxied" {
			return url.Parse("http://proxy:3128")
		}
		return nil, nil
	}
	tr, fb := newTransport()
	tr.Proxy = proxy
	tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, errors.New("dialed " + addr)
	}
	unknown := func() *http.Request {
		r, _ := http.NewRequest("POST", "http://h:1/", io.MultiReader(strings.NewReader("x")))
		return r
	}
	withHeader := func(k, v string) *http.Request {
		r, _ := http.NewRequest("GET", "http://h:1/", nil)
		r.Header[k] = []string{v}
		return r
	}
	for name, req := range map[string]*http.Request{
		"https":        httptestReq("GET", "https://h/"),
		"proxied":      httptestReq("GET", "http://proxied/"),
		"unknown size": unknown(),
		"CRLF value":   withHeader("X-A", "a\r\nX-B: b"),
		"bad key":      withHeader("X A", "a"),
		"expect":       withHeader("Expect", "100-continue"),
		"upgrade":      withHeader("Upgrade", "websocket"),
	} {
		before := fb.n.Load()
		if _, err := tr.RoundTrip(req); err == nil || err.Error() != "fallback" || fb.n.Load() != before+1 {
			t.Fatalf("%s: %v (fallback %d)", name, err, fb.n.Load()-before)
		}
	}
	// http://h with no port dials port 80.
	if _, err := tr.RoundTrip(httptestReq("GET", "http://h/")); err == nil || err.Error() != "dialed h:80" {
		t.Fatalf("no port: %v", err)
	}
}

func httptestReq(method, u string) *http.Request {
	r, _ := http.NewRequest(method, u, nil)
	return r
}

// raw serves each connection's first request with reply, then closes it
// (or keeps it open when keep is set).
func raw(t *testing.T, reply string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				c.Write([]byte(reply))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// Responses a server must not send, and those it may: refused or read
// right, never a hang or a crash.
func TestResponses(t *testing.T) {
	for _, tc := range []struct{ name, reply, body, err string }{
		{"1xx first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", ""},
		{"to the end", "HTTP/1.1 200 OK\r\n\r\nall of it", "all of it", ""},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", ""},
		{"LF only", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "ok", ""},
		{"chunk ext and trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", "ok0123456789", ""},
		{"chunked wins over a length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "ok", ""},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "", "unexpected EOF"},
		{"cut chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "", "unexpected EOF"},
		{"no last chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", "", "unexpected EOF"},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", "", "bad chunk size"},
		{"huge chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nok\r\n0\r\n\r\n", "", "bad chunk size"},
		{"chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX0\r\n\r\n", "", "malformed chunked"},
		{"gzip encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "", "unsupported Transfer-Encoding"},
		{"lengths disagree", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "", "disagree"},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok", "", "bad Content-Length"},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", "", "malformed status code"},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", "", "malformed status line"},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", "", "malformed header line"},
		{"NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", "", "malformed header value"},
		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "", "101"},
		{"headers too large", "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("a", 2<<10) + "\r\n" + strings.Repeat("X-B: b\r\n", 200) + "\r\n", "", "too large"},
		{"nothing", "", "", "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, _ := newTransport()
			tr.MaxHeaderBytes = 3 << 10
			req, _ := http.NewRequest("POST", raw(t, tc.reply), strings.NewReader("{}"))
			resp, err := tr.RoundTrip(req)
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if tc.err == "" && (err != nil || string(body) != tc.body) {
				t.Fatalf("%q, %v; want %q", body, err, tc.body)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("%q, %v; want an error with %q", body, err, tc.err)
			}
		})
	}
}

// A connection that is never answered is retried once, not forever.
func TestRetryOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := accepted.Add(1)
			go func() {
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err == nil && n == 1 { // the first request is answered, then the connection closed
					io.Copy(io.Discard, req.Body)
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
					http.ReadRequest(br)
				}
				c.Close()
			}()
		}
	}()
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	get(t, c, "POST", "http://"+ln.Addr().String(), "{}")
	// A GET: a POST written whole is not sent again (TestPostNotRetriedAfterWrite).
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String(), nil)
	if _, err := c.Do(req); err == nil {
		t.Fatal("no error from a server that never answers")
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections (want 2: the reused one, one retry)", n)
	}
}

// The parser against net/http's: what this one reads, net/http reads the
// same way (status and body); neither may hang or crash.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x\r\nok\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nto the end",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		req, _ := http.NewRequest("GET", "http://h/", nil)
		resp, b, err := readResponse(bufio.NewReaderSize(bytes.NewReader(in), 16), req, 4<<10)
		if err != nil {
			return
		}
		ours, oerr := io.ReadAll(io.LimitReader(b, 1<<20))
		// net/http's, after the 1xx responses this one skipped.
		br := bufio.NewReader(bytes.NewReader(in))
		var std *http.Response
		for {
			std, err = http.ReadResponse(br, req)
			if err != nil {
				return // stricter there (it is the reference for what is valid, not for what is refused)
			}
			if std.StatusCode >= 200 {
				break
			}
		}
		theirs, serr := io.ReadAll(io.LimitReader(std.Body, 1<<20))
		if std.StatusCode != resp.StatusCode {
			t.Fatalf("status %d, net/http %d", resp.StatusCode, std.StatusCode)
		}
		if oerr == nil && serr == nil && !bytes.Equal(ours, theirs) {
			t.Fatalf("body %q, net/http %q", ours, theirs)
		}
	})
}

// BenchmarkStream: the floor's call shape (a POST, 18 SSE events, chunked)
// through this transport and through net/http's.
func BenchmarkStream(b *testing.B) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		sse(w, 17)
	}))
	defer s.Close()
	body := []byte(`{"model":"sim","stream":true,"messages":[{"role":"user","content":"hello"}]}`)
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"h1", &Transport{Fallback: http.DefaultTransport}},
		{"net-http", &http.Transport{MaxIdleConnsPerHost: 16}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := &http.Client{Transport: tc.rt}
			buf := make([]byte, 4<<10)
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("POST", s.URL, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				resp.Body.Close()
			}
		})
	}
}

// Headers as net/http reads them: keys canonical (known ones and others),
// a repeated key's values in order, values trimmed, none sharing storage
// that a caller's append could overwrite.
func TestHeaders(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-weird-KEY:  a \r\nVary: A\r\nvary: B\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n"
	req, _ := http.NewRequest("GET", "http://h/", nil)
	resp, _, err := readResponse(bufio.NewReader(strings.NewReader(in)), req, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	std, err := http.ReadResponse(bufio.NewReader(strings.NewReader(in)), req)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(resp.Header) != fmt.Sprint(std.Header) {
		t.Fatalf("headers\n%v\nnet/http's\n%v", resp.Header, std.Header)
	}
	ct := resp.Header["Content-Type"]
	resp.Header["Content-Type"] = append(ct, "x")
	if got := resp.Header["X-Weird-Key"]; len(got) != 1 || got[0] != "a" {
		t.Fatalf("an append to one header changed another: %q", got)
	}
}
