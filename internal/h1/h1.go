// Package h1 is an HTTP/1.1 client transport for model servers reached
// over plain http:// (a local Ollama, a vLLM or llama.cpp server on the
// LAN): the request is written and the response read on the caller's
// goroutine, over pooled keep-alive connections. net/http's Transport
// hands every request to its connection's write goroutine and the
// response back from its read goroutine, and parks the caller in between;
// on the floor's streamed chat call (18 SSE events) that was half of the
// client's CPU: 43-52 us a call where this transport takes 22-25 (BENCHMARKS.md,
// "The floor, session 8"). Anything it does not do the simple way (https,
// a proxy, a body of unknown length, Expect, Connection or Upgrade
// headers, trailers, an invalid header) goes to the fallback transport
// untouched, so behaviour there is net/http's.
//
// What it does: one request at a time per connection (no pipelining), the
// response's framing by RFC 9112 section 6 (chunked, Content-Length, or to
// the end of the connection, which is then not reused), 1xx responses
// skipped, response headers bounded (MaxHeaderBytes), a connection reused
// only after its body was read to the end, and only when nothing came on
// it while it idled (a probe at every reuse). A reused connection that
// fails before the first byte of its response (the server had closed it
// while it idled) is retried once on a new one when the server cannot have
// acted on the request (it was not written whole) or the request may be
// sent twice (an idempotent method or an idempotency key, net/http's rule).
// Cancelling the request's context ends a blocked write or read at once
// and closes the connection.
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
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Transport is an http.RoundTripper. Set its fields before first use.
type Transport struct {
	// Fallback serves every request this transport does not (required).
	Fallback http.RoundTripper
	// Dial opens a connection (nil: a net.Dialer with a 5 s timeout).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Proxy, when set, is asked as net/http's is: a request it gives a
	// proxy for goes to Fallback.
	Proxy func(*http.Request) (*url.URL, error)
	// MaxIdlePerHost bounds the idle connections kept per address
	// (0: 16); IdleTimeout closes one idle longer (0: 90 s).
	MaxIdlePerHost int
	IdleTimeout    time.Duration
	// MaxHeaderBytes bounds a response's status line and headers together
	// (0: 1 MiB, net/http's default for a server's request).
	MaxHeaderBytes int

	mu    sync.Mutex
	idle  map[string][]*conn
	sweep *time.Timer
}

// DefaultUserAgent is sent when a request sets none, as net/http does.
const DefaultUserAgent = "Go-http-client/1.1"

type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	wb     []byte
	addr   string
	idleAt time.Time
	reused bool
	probe  *prober // made at the first reuse
}

var errClosedBody = errors.New("http: read on closed response body")

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	addr, ok := t.lean(req)
	if !ok {
		return t.Fallback.RoundTrip(req)
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		// Ended before it began: a pooled connection taken now would be
		// closed by the cancel's deadline (net/http checks first too).
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		c, err := t.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, fate, err := t.exchange(ctx, c, req, body)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A reused connection that failed before any byte of its
		// response came: the server closed it while it idled. Once more
		// on a new one, when the server cannot have acted on the request:
		// it was not written whole, or it may be sent twice (net/http's
		// rule: a non-idempotent request it wrote is never sent again).
		retry := fate == unwritten || fate == unanswered && replayable(req)
		if !retry || !c.reused || attempt > 0 {
			return nil, err
		}
	}
}

// How far an exchange went before it failed.
const (
	unwritten  = iota // the request was not written whole
	unanswered        // written, and no byte of a response came
	answered          // the response had begun
)

// replayable reports whether req may be sent again after it was written,
// as net/http decides it: an idempotent method, or an idempotency key.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k := req.Header["Idempotency-Key"]
	_, xk := req.Header["X-Idempotency-Key"]
	return k || xk
}

// readBody reads the request's body (its length is known: lean) and
// closes it, as a RoundTripper must.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	b := make([]byte, req.ContentLength, req.ContentLength+1) // +1: room to look for a byte too many
	if _, err := io.ReadFull(req.Body, b); err != nil {
		return nil, fmt.Errorf("http: ContentLength=%d with a shorter Body: %w", req.ContentLength, err)
	}
	// More than the length: refused, as net/http does (cut to the length,
	// the server would get a truncated body).
	if n, _ := io.ReadFull(req.Body, b[len(b):cap(b)]); n > 0 {
		return nil, fmt.Errorf("http: ContentLength=%d with a longer Body", req.ContentLength)
	}
	return b, nil
}

// lean reports whether t serves req itself, and the address it dials.
func (t *Transport) lean(req *http.Request) (string, bool) {
	u := req.URL
	if u == nil || u.Scheme != "http" || u.Host == "" || req.Close || len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 {
		return "", false
	}
	if req.ContentLength < 0 || req.ContentLength == 0 && req.Body != nil && req.Body != http.NoBody {
		return "", false // a length only the body knows
	}
	if !validToken(req.Method) || !validHost(req.Host) || !validHost(u.Host) || !validValue(u.RawQuery) || !validValue(u.Opaque) {
		// (A control byte in the request line: net/http refuses it. The
		// path is escaped by RequestURI.)
		return "", false
	}
	for k, vs := range req.Header {
		switch k {
		case "Expect", "Connection", "Upgrade", "Te", "Trailer", "Transfer-Encoding", "Proxy-Connection", "Keep-Alive":
			return "", false
		}
		if !validToken(k) {
			return "", false
		}
		for _, v := range vs {
			if !validValue(v) {
				return "", false
			}
		}
	}
	if t.Proxy != nil {
		if p, err := t.Proxy(req); err != nil || p != nil {
			return "", false
		}
	}
	addr := u.Host
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		if u.Port() != "" || len(u.Hostname()) == 0 {
			return "", false
		}
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return addr, true
}

// get takes an idle connection to addr, or dials one.
func (t *Transport) get(ctx context.Context, addr string) (*conn, error) {
	now := time.Now()
	timeout := t.IdleTimeout
	if timeout <= 0 {
		timeout = 90 * time.Second
	}
	for {
		t.mu.Lock()
		l := t.idle[addr]
		var c *conn
		if n := len(l); n > 0 {
			c = l[n-1]
			l[n-1] = nil
			t.idle[addr] = l[:n-1]
		}
		t.mu.Unlock()
		if c == nil {
			break
		}
		// Probed at every reuse, however short the idle: bytes that came
		// while it idled are a response nobody asked for (a broken or
		// hostile server), which the next request would take for its own
		// and every later one would be a response behind (net/http's read
		// loop closes such a connection too).
		if c.probe == nil {
			c.probe = newProber(c.nc)
		}
		if now.Sub(c.idleAt) >= timeout || !c.probe.alive() {
			c.nc.Close()
			continue
		}
		c.reused = true
		return c, nil
	}
	dial := t.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10), addr: addr}, nil
}

// put keeps c for the next request to its address, or closes it.
func (t *Transport) put(c *conn) {
	max := t.MaxIdlePerHost
	if max <= 0 {
		max = 16
	}
	c.idleAt = time.Now()
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	if len(t.idle[c.addr]) >= max {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	t.idle[c.addr] = append(t.idle[c.addr], c)
	if t.sweep == nil {
		t.sweep = time.AfterFunc(t.idleTimeout(), t.sweepIdle)
	}
	t.mu.Unlock()
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return 90 * time.Second
}

// sweepIdle closes the connections idle longer than IdleTimeout, and runs
// again while any stay.
func (t *Transport) sweepIdle() {
	cut := time.Now().Add(-t.idleTimeout())
	var old []*conn
	t.mu.Lock()
	left := 0
	for addr, l := range t.idle {
		keep := l[:0]
		for _, c := range l {
			if c.idleAt.Before(cut) {
				old = append(old, c)
			} else {
				keep = append(keep, c)
			}
		}
		clear(l[len(keep):])
		if len(keep) == 0 {
			delete(t.idle, addr)
		} else {
			t.idle[addr] = keep
		}
		left += len(keep)
	}
	if left > 0 {
		t.sweep.Reset(t.idleTimeout())
	} else {
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, c := range old {
		c.nc.Close()
	}
}

// CloseIdleConnections closes the idle connections, this transport's and
// the fallback's.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.nc.Close()
		}
	}
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// aLongTimeAgo is a deadline that has passed: it ends a blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes req on c and reads the response's head. fate reports
// how far it went when it failed.
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request, body []byte) (resp *http.Response, fate int, err error) {
	var stop func() bool
	if ctx.Done() != nil {
		nc := c.nc
		stop = context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	}
	fate = answered
	fail := func(e error) (*http.Response, int, error) {
		if stop != nil {
			stop()
		}
		c.nc.Close()
		if ctx.Err() != nil {
			e = ctx.Err()
		}
		return nil, fate, e
	}
	c.wb = appendRequest(c.wb[:0], req, len(body))
	if len(body) <= 64<<10 {
		c.wb = append(c.wb, body...)
		_, err = c.nc.Write(c.wb)
	} else if _, err = c.nc.Write(c.wb); err == nil {
		_, err = c.nc.Write(body)
	}
	if cap(c.wb) > 64<<10 {
		c.wb = nil
	}
	if err != nil {
		fate = unwritten
		return fail(err)
	}
	if _, err := c.br.Peek(1); err != nil {
		fate = unanswered
		return fail(err)
	}
	max := t.MaxHeaderBytes
	if max <= 0 {
		max = 1 << 20
	}
	resp, b, err := readResponse(c.br, req, max)
	if err != nil {
		return fail(err)
	}
	b.t, b.c, b.stop, b.ctx = t, c, stop, ctx
	if b.mode == noBody {
		b.finish()
	}
	return resp, answered, nil
}

// appendRequest appends req's request line and headers for a body of n
// bytes.
func appendRequest(b []byte, req *http.Request, n int) []byte {
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	b = append(b, host...)
	b = append(b, "\r\n"...)
	if _, ok := req.Header["User-Agent"]; !ok {
		b = append(b, "User-Agent: "+DefaultUserAgent+"\r\n"...)
	}
	if n > 0 || req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, "\r\n"...)
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length":
			continue
		}
		for _, v := range vs {
			if k == "User-Agent" && v == "" {
				continue // an empty User-Agent: none, as net/http sends it
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

// The ways a response's body ends.
const (
	noBody  = iota // HEAD, 1xx, 204, 304
	length         // Content-Length
	chunked        // Transfer-Encoding: chunked
	toEOF          // the connection's end
)

// readResponse reads a response's head from br (skipping 1xx ones), at
// most max bytes of status lines and headers, and returns it with its
// body (whose connection the caller sets).
func readResponse(br *bufio.Reader, req *http.Request, max int) (*http.Response, *body, error) {
	for n1xx := 0; ; n1xx++ {
		if n1xx > max1xx {
			return nil, nil, errors.New("h1: too many 1xx informational responses")
		}
		line, err := readLine(br, &max)
		if err != nil {
			return nil, nil, err
		}
		resp := &http.Response{Request: req}
		if err := parseStatus(line, resp); err != nil {
			return nil, nil, err
		}
		var recArr [16]headerRec
		var valArr [256]byte
		recs, vals := recArr[:0], valArr[:0]
		for {
			line, err := readLine(br, &max)
			if err != nil {
				return nil, nil, err
			}
			if len(line) == 0 {
				break
			}
			if recs, vals, err = addHeader(recs, vals, line); err != nil {
				return nil, nil, err
			}
		}
		resp.Header = makeHeader(recs, vals)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, nil, errors.New("h1: 101 Switching Protocols to a request that asked for no upgrade")
		}
		if resp.StatusCode < 200 {
			continue // 100 Continue, 103 Early Hints: the response follows
		}
		b, err := framing(resp, req)
		if err != nil {
			return nil, nil, err
		}
		b.br = br
		resp.Body = b
		return resp, b, nil
	}
}

// max1xx bounds the 1xx responses before the final one (net/http's
// bound): each costs a Response and a header map.
const max1xx = 5

// readLine reads a line without its CRLF (or LF), counting it against
// *max.
func readLine(br *bufio.Reader, max *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		long := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull && len(long) <= *max {
			line, err = br.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if *max -= len(line); *max < 0 {
		return nil, errors.New("h1: the response's headers are too large")
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseStatus parses "HTTP/1.1 200 OK".
func parseStatus(line []byte, resp *http.Response) error {
	proto, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(rest) < 3 || len(rest) > 3 && rest[3] != ' ' {
		return fmt.Errorf("h1: malformed status line %q", trim(line))
	}
	switch string(proto) {
	case "HTTP/1.1":
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	case "HTTP/1.0":
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.0", 1, 0
	default:
		return fmt.Errorf("h1: malformed status line %q", trim(line))
	}
	code := 0
	for _, c := range rest[:3] {
		if c < '0' || c > '9' {
			return fmt.Errorf("h1: malformed status code in %q", trim(line))
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return fmt.Errorf("h1: malformed status code in %q", trim(line))
	}
	resp.StatusCode = code
	resp.Status = statusText(code, rest)
	return nil
}

// statusText is Response.Status ("200 OK"), without an allocation for the
// usual reason phrases.
func statusText(code int, rest []byte) string {
	switch string(rest) {
	case "200 OK":
		return "200 OK"
	case "200":
		return "200"
	}
	return string(rest)
}

// addHeader adds the line "Key: value" to the headers gathered in recs
// and vals; makeHeader then makes the http.Header with few allocations: a
// known key is a constant, every value is a slice of one string, every
// header's []string a slice of one array (the map, the string and the
// array: three, where a string and a slice per header were 13 on a model
// server's usual response).
func addHeader(recs []headerRec, vals []byte, line []byte) ([]headerRec, []byte, error) {
	k, v, ok := bytes.Cut(line, []byte{':'})
	if !ok || !validToken(k) {
		// Also a line folded onto the one before (obs-fold), which
		// begins with a space: refused, as RFC 9112 5.2 lets a client.
		return recs, vals, fmt.Errorf("h1: malformed header line %q", trim(line))
	}
	v = bytes.Trim(v, " \t")
	if !validValue(v) {
		return recs, vals, fmt.Errorf("h1: malformed header value in %q", trim(line))
	}
	key := knownKey(k)
	if key == "" {
		key = http.CanonicalHeaderKey(string(k))
	}
	recs = append(recs, headerRec{key: key, start: len(vals), end: len(vals) + len(v)})
	return recs, append(vals, v...), nil
}

type headerRec struct {
	key        string
	start, end int
}

// makeHeader is the headers addHeader gathered, as an http.Header.
func makeHeader(recs []headerRec, vals []byte) http.Header {
	h := make(http.Header, len(recs))
	if len(recs) == 0 {
		return h
	}
	all := string(vals)
	strs := make([]string, len(recs))
	for i, r := range recs {
		strs[i] = all[r.start:r.end]
		if prev, ok := h[r.key]; ok {
			h[r.key] = append(prev, strs[i]) // cap 1: a copy, strs untouched
		} else {
			h[r.key] = strs[i : i+1 : i+1]
		}
	}
	return h
}

// knownKeys are the header keys model servers send most, canonical.
var knownKeys = [...]string{"Content-Type", "Content-Length", "Transfer-Encoding", "Date", "Connection",
	"Cache-Control", "Server", "Vary", "X-Request-Id", "Keep-Alive", "Retry-After", "Content-Encoding",
	"X-Accel-Buffering", "Access-Control-Allow-Origin"}

// knownKey is k's canonical form when it is one of knownKeys, else "".
func knownKey(k []byte) string {
	for _, kk := range knownKeys {
		if len(kk) == len(k) && asciiEqualFold(k, kk) {
			return kk
		}
	}
	return ""
}

func asciiEqualFold(b []byte, s string) bool {
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// framing decides how resp's body ends (RFC 9112 6.3).
func framing(resp *http.Response, req *http.Request) (*body, error) {
	b := &body{mode: toEOF, keep: resp.ProtoMinor == 1}
	for _, v := range resp.Header["Connection"] {
		for _, tok := range bytes.Split([]byte(v), []byte{','}) {
			if bytes.EqualFold(bytes.TrimSpace(tok), []byte("close")) {
				b.keep = false
			}
		}
	}
	resp.ContentLength = -1
	if req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		b.mode = noBody
		if cl, ok := resp.Header["Content-Length"]; ok && req.Method == http.MethodHead {
			if n, err := contentLength(cl); err == nil {
				resp.ContentLength = n
			}
		} else if !ok {
			resp.ContentLength = 0
		}
		resp.Close = !b.keep
		return b, nil
	}
	if te, ok := resp.Header["Transfer-Encoding"]; ok {
		if resp.ProtoMinor == 0 {
			// HTTP/1.0 has no Transfer-Encoding (net/http reads such a
			// body to the end, unchunked): refused as ambiguous.
			return nil, fmt.Errorf("h1: Transfer-Encoding %q in an HTTP/1.0 response", te)
		}
		if len(te) != 1 || !bytes.EqualFold([]byte(te[0]), []byte("chunked")) {
			return nil, fmt.Errorf("h1: unsupported Transfer-Encoding %q", te)
		}
		b.mode = chunked
		resp.TransferEncoding = []string{"chunked"}
		delete(resp.Header, "Transfer-Encoding")
		delete(resp.Header, "Content-Length") // chunked wins (RFC 9112 6.3)
	} else if cl, ok := resp.Header["Content-Length"]; ok {
		n, err := contentLength(cl)
		if err != nil {
			return nil, err
		}
		b.mode, b.n, resp.ContentLength = length, n, n
		if n == 0 {
			b.mode = noBody
		}
	} else {
		b.keep = false // to the connection's end
	}
	resp.Close = !b.keep
	return b, nil
}

// contentLength parses Content-Length values, which must agree.
func contentLength(vs []string) (int64, error) {
	var n int64 = -1
	for _, v := range vs {
		if v == "" || len(v) > 18 {
			return 0, fmt.Errorf("h1: bad Content-Length %q", v)
		}
		var m int64
		for i := 0; i < len(v); i++ {
			if v[i] < '0' || v[i] > '9' {
				return 0, fmt.Errorf("h1: bad Content-Length %q", v)
			}
			m = m*10 + int64(v[i]-'0')
		}
		if n >= 0 && m != n {
			return 0, fmt.Errorf("h1: Content-Length values disagree: %q", vs)
		}
		n = m
	}
	return n, nil
}

func trim(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// body is a response's body. Read to its end, it gives its connection
// back to the pool (when the response let it be reused); closed before
// that, the connection is closed.
type body struct {
	br   *bufio.Reader
	ctx  context.Context // the request's: a read it ended returns its error
	t    *Transport
	c    *conn
	stop func() bool // the context's AfterFunc
	mode int
	n    int64 // left of the body (length) or of the chunk (chunked)
	keep bool
	err  error // sticky: io.EOF once read to the end
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var err error
	switch b.mode {
	case noBody:
		b.finish()
		return 0, io.EOF
	case length:
		if int64(len(p)) > b.n {
			p = p[:b.n]
		}
		n, err = b.br.Read(p)
		b.n -= int64(n)
		if b.n == 0 {
			b.finish()
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	case chunked:
		if b.n == 0 {
			if err = b.nextChunk(); err != nil || b.err != nil {
				break
			}
		}
		if int64(len(p)) > b.n {
			p = p[:b.n]
		}
		n, err = b.br.Read(p)
		b.n -= int64(n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == nil && b.n == 0 {
			if err = b.chunkEnd(); err == nil {
				b.eagerEnd()
			}
		}
	default: // toEOF
		n, err = b.br.Read(p)
		if err == io.EOF {
			b.finish()
			return n, io.EOF
		}
	}
	if err != nil {
		b.fail(err)
		return n, b.err
	}
	if b.err == io.EOF {
		return n, io.EOF
	}
	return n, nil
}

// maxChunkLine bounds a chunk's size line (its extensions included) and
// each trailer line.
const maxChunkLine = 4 << 10

// nextChunk reads a chunk's size line; the last chunk (0) ends the body
// after its trailers.
func (b *body) nextChunk() error {
	max := maxChunkLine
	line, err := readLine(b.br, &max)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i] // a chunk extension: ignored
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return fmt.Errorf("h1: bad chunk size %q", trim(line))
	}
	var n int64
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return fmt.Errorf("h1: bad chunk size %q", trim(line))
		}
		n = n<<4 | int64(d)
	}
	if n > 0 {
		b.n = n
		return nil
	}
	for { // trailers, up to the empty line: read and dropped
		max := maxChunkLine
		line, err := readLine(b.br, &max)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if len(line) == 0 {
			b.finish()
			return nil
		}
	}
}

// chunkEnd reads the CRLF after a chunk's data.
func (b *body) chunkEnd() error {
	c, err := b.br.ReadByte()
	if err == nil && c == '\r' {
		c, err = b.br.ReadByte()
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	if err == nil && c != '\n' {
		err = errors.New("h1: malformed chunked encoding")
	}
	return err
}

// eagerEnd ends the body when the last chunk is already buffered after a
// chunk's data: a reader that stops at its own end mark ([DONE]) and
// closes the body then leaves the connection reusable (net/http's
// chunked reader looks ahead the same way).
func (b *body) eagerEnd() {
	if b.br.Buffered() < 5 {
		return
	}
	if p, _ := b.br.Peek(5); string(p) == "0\r\n\r\n" {
		b.br.Discard(5)
		b.finish()
	}
}

// finish ends the body at its end: its connection goes back to the pool
// when it may.
func (b *body) finish() {
	if b.err != nil {
		return
	}
	b.err = io.EOF
	if b.c == nil {
		return // parsed without a connection (tests)
	}
	c := b.c
	b.c = nil
	if b.stop != nil && !b.stop() {
		c.nc.Close() // the context was canceled: its deadline is set
		return
	}
	if !b.keep || c.br.Buffered() > 0 {
		c.nc.Close() // bytes after the response: never reused
		return
	}
	b.t.put(c)
}

// fail ends the body on an error, closing its connection.
func (b *body) fail(err error) {
	if b.ctx != nil && b.ctx.Err() != nil && err != errClosedBody {
		err = b.ctx.Err() // the deadline set on cancel, seen as the cancel
	}
	if b.c != nil {
		ctx := b.c
		b.c = nil
		if b.stop != nil {
			b.stop()
		}
		ctx.nc.Close()
	}
	if b.err == nil || b.err == io.EOF && err == errClosedBody {
		b.err = err
	}
}

// Close implements io.Closer: before the body's end it closes the
// connection (what is left unread may be long: a stream).
func (b *body) Close() error {
	if b.err == nil && b.mode == chunked && b.n == 0 {
		b.eagerEnd()
	}
	if b.err == io.EOF && b.c == nil {
		b.err = errClosedBody
		return nil
	}
	b.fail(errClosedBody)
	return nil
}

// validToken reports whether s is a token (RFC 9110 5.6.2), as a method
// and a header's name must be.
func validToken[S ~string | ~[]byte](s S) bool {
	for i := 0; i < len(s); i++ {
		if !isToken(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

// validValue reports whether s holds no control byte but tab: nothing
// that could end a line or hide in one (a header's value, a request
// line's query).
func validValue[S ~string | ~[]byte](s S) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost: no byte that could end the header or split the line, and
// none that net/http rewrites in the Host header (an IPv6 zone's '%' it
// removes, a non-ASCII name it turns to punycode): such a host is left to
// it.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if c := h[i]; c <= ' ' || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@' || c == '%' {
			return false
		}
	}
	return true
}

// isToken reports whether c may appear in a token (RFC 9110 5.6.2).
func isToken(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
