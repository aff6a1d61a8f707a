package gateway

import (
	"net/http"
	"strconv"
	"time"
)

// Response headers on the hot paths, set without allocating.
//
// A header's value is a []string in http.Header; Header.Set makes a new
// one-element slice for every call (an allocation per header per
// request). The values that never change are kept here and shared:
// net/http copies the handler's headers when the status is written
// (response.WriteHeader clones them) and never writes into a value's
// slice, and Header.Set and Add replace or reallocate (cap 1), so a
// shared value is never changed. Nothing may write into one by index.
var (
	hdrJSON        = []string{"application/json"}
	hdrEventStream = []string{"text/event-stream"}
	hdrNoCache     = []string{"no-cache"}
	hdrNo          = []string{"no"}
	hdrChunked     = []string{"chunked"}
	// hdrCounts are "0".."9", the failovers of nearly every reply.
	hdrCounts = func() (t [10][]string) {
		for i := range t {
			t[i] = []string{strconv.Itoa(i)}
		}
		return
	}()
)

// countValue is n as a header value; 0 to 9 allocate nothing.
func countValue(n int) []string {
	if n >= 0 && n < len(hdrCounts) {
		return hdrCounts[n]
	}
	return []string{strconv.Itoa(n)}
}

// setStreamHeaders sets a streamed reply's headers: its content type,
// no caching or buffering on the way, the model that serves it and the
// failovers before it. Transfer-Encoding: chunked says what net/http does
// anyway for a body of unknown length (it sends its own header and drops
// this one; HTTP/2 drops it too): set by the handler, it keeps a stream
// chunked when the whole stream is written only as the handler returns
// (writeLast), which would otherwise be sent with a Content-Length.
func setStreamHeaders(h http.Header, contentType []string, served string, failovers int) {
	h["Content-Type"] = contentType
	h["Cache-Control"] = hdrNoCache
	h["X-Accel-Buffering"] = hdrNo
	h["X-Moltbot-Provider"] = []string{served}
	h["X-Moltbot-Failovers"] = countValue(failovers)
	h["Transfer-Encoding"] = hdrChunked
}

// writeLast writes a stream's last bytes without flushing them: the
// handler returns next, and net/http then writes what it holds together
// with the chunked body's end in one write(2). A flush here cost a
// second write for the end (five bytes) on every streamed reply.
func writeLast(w http.ResponseWriter, rc *http.ResponseController, b []byte) error {
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := w.Write(b)
	return err
}
