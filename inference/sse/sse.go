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
	pending []byte // a partial line carried across reads
	lastCR  bool   // the previous line ended with a lone \r
}

// NewReader reads events from r; max bounds one event's data (0: 1 MiB).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = 1 << 20
	}
	return &Reader{br: bufio.NewReaderSize(r, 4096), max: max}
}

// readLine returns the next line without its terminator.
func (r *Reader) readLine() ([]byte, error) {
	r.pending = r.pending[:0]
	for {
		b, err := r.br.ReadByte()
		if err != nil {
			if len(r.pending) > 0 && err == io.EOF {
				return r.pending, nil
			}
			return nil, err
		}
		if r.lastCR {
			r.lastCR = false
			if b == '\n' {
				continue // the \n of a \r\n
			}
		}
		switch b {
		case '\n':
			return r.pending, nil
		case '\r':
			r.lastCR = true
			return r.pending, nil
		}
		// Fast path: copy the rest of the buffered line at once.
		r.pending = append(r.pending, b)
		if len(r.pending) > r.max+64 {
			return nil, ErrTooLong
		}
		if n := r.br.Buffered(); n > 0 {
			peek, _ := r.br.Peek(n)
			i := bytes.IndexAny(peek, "\r\n")
			if i < 0 {
				i = n
			}
			r.pending = append(r.pending, peek[:i]...)
			_, _ = r.br.Discard(i)
		}
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
