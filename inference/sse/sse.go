// Package sse reads Server-Sent Events as the WHATWG spec defines them, with
// the tolerance real model servers need: comment lines (": keep-alive"),
// CRLF/CR/LF line ends, lines split across reads, multi-line data, a missing
// space after the colon, and a last event without its blank line.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// ErrTooLong is returned when one event's data exceeds the reader's limit.
var ErrTooLong = errors.New("sse: event larger than the limit")

// Event is one dispatched event. Data is valid until the next call to Next.
type Event struct {
	Type string // "" when the stream gave no event: field
	Data []byte
	ID   string
}

// Reader reads events from a stream.
type Reader struct {
	br      *bufio.Reader
	max     int
	data    []byte
	typ     string
	id      string
	pending []byte   // the current line, when it spans reads
	queue   [][]byte // lines split at lone \r, still to hand out
	qbuf    []byte
	lastCR  bool // the previous line ended with \r: skip a leading \n
}

// NewReader reads events from r; max bounds one event's data (0: 1 MiB).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = 1 << 20
	}
	return &Reader{br: bufio.NewReaderSize(r, 4096), max: max}
}

// Reset makes r read a new stream from src, keeping its buffers (readers
// may be pooled). The last event id starts again empty.
func (r *Reader) Reset(src io.Reader) {
	r.br.Reset(src)
	r.data, r.pending, r.qbuf = r.data[:0], r.pending[:0], r.qbuf[:0]
	r.queue, r.typ, r.id, r.lastCR = nil, "", "", false
}

// Retained is how many bytes r's buffers hold beyond its read buffer (a
// pool may drop a reader that grew them for a large event).
func (r *Reader) Retained() int { return cap(r.data) + cap(r.pending) + cap(r.qbuf) }

// readLine returns the next line without its terminator (\n, \r\n or \r).
// The slice is valid until the next call.
func (r *Reader) readLine() ([]byte, error) {
	for {
		if len(r.queue) > 0 {
			l := r.queue[0]
			r.queue = r.queue[1:]
			return l, nil
		}
		raw, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(r.pending)+len(raw) > r.max+64 {
				return nil, ErrTooLong
			}
			r.pending = append(r.pending, raw...)
			continue
		}
		if len(r.pending) > 0 {
			r.pending = append(r.pending, raw...)
			raw = r.pending
			r.pending = r.pending[:0]
		}
		if r.lastCR && len(raw) > 0 && raw[0] == '\n' {
			raw = raw[1:] // the \n of a \r\n split across reads
		}
		r.lastCR = false
		if err != nil && len(raw) == 0 {
			return nil, err
		}
		complete := err == nil
		if complete {
			raw = raw[:len(raw)-1] // the \n
			if n := len(raw); n > 0 && raw[n-1] == '\r' {
				raw = raw[:n-1]
			}
		}
		if bytes.IndexByte(raw, '\r') < 0 {
			return raw, nil
		}
		// Lone \r terminators inside: every piece is a line, but for an
		// empty last piece of input that ended without a terminator.
		r.qbuf = append(r.qbuf[:0], raw...)
		r.queue = bytes.Split(r.qbuf, []byte{'\r'})
		if !complete {
			if last := r.queue[len(r.queue)-1]; len(last) == 0 {
				r.queue = r.queue[:len(r.queue)-1]
				r.lastCR = true
			}
		}
		l := r.queue[0]
		r.queue = r.queue[1:]
		return l, nil
	}
}

// Next returns the next event, or io.EOF when the stream ends cleanly.
func (r *Reader) Next() (Event, error) {
	r.data = r.data[:0]
	r.typ = ""
	hasData := false
	for {
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF && hasData {
				return r.dispatch(), nil
			}
			return Event{}, err
		}
		if len(line) == 0 {
			if hasData {
				return r.dispatch(), nil
			}
			r.typ = ""
			continue
		}
		if line[0] == ':' {
			continue // comment, e.g. keep-alive
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if len(r.data)+len(value)+1 > r.max {
				return Event{}, ErrTooLong
			}
			if hasData {
				r.data = append(r.data, '\n')
			}
			r.data = append(r.data, value...)
			hasData = true
		case "event":
			r.typ = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.id = string(value)
			}
		}
	}
}

func (r *Reader) dispatch() Event {
	return Event{Type: r.typ, Data: r.data, ID: r.id}
}
