package resp

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
)

// Kind is the type of a reply.
type Kind byte

// The RESP2 reply types.
const (
	Simple  Kind = '+'
	Err     Kind = '-'
	Integer Kind = ':'
	Bulk    Kind = '$'
	Array   Kind = '*'
)

// Value is one reply. Null is set for a null bulk string or array (GET of
// a missing key).
type Value struct {
	Kind  Kind
	Null  bool
	Str   []byte // Simple, Err, Bulk
	Int   int64  // Integer
	Array []Value
}

// Error is an error reply of the server (WRONGPASS, NOAUTH, ...): the
// connection that carried it is still good.
type Error struct{ Msg string }

func (e *Error) Error() string { return "redis: " + e.Msg }

// ErrProtocol is a reply that is not RESP2, or beyond the reader's
// limits: the connection is dropped.
var ErrProtocol = errors.New("redis: protocol error")

// Limits of a reply: a server (or whatever answers on its port) cannot
// make the reader allocate more than it sends, nor recurse without end.
const (
	maxLine  = 64 << 10 // a simple string, an error, a length
	maxDepth = 8        // arrays within arrays (SCAN: 2)
	// maxPrealloc bounds what an array's announced length allocates before
	// its elements arrive.
	maxPrealloc = 1024
	// maxValues bounds the values of one reply, arrays' elements included
	// (a SCAN page is some hundreds): each is a Value of 64 bytes, whatever
	// few bytes it took on the wire.
	maxValues = 1 << 16
	// listBytes is what a reply's strings may hold beyond the bulk limit:
	// a SCAN page of keys (500 of some 150 bytes), whatever the limit.
	listBytes = 1 << 20
)

// readReply reads one reply from r. maxBulk bounds a bulk string, and
// (with listBytes) the bytes of all the strings of the reply together.
func readReply(r *bufio.Reader, maxBulk int) (Value, error) {
	b := budget{bytes: maxBulk + listBytes, values: maxValues}
	return readValue(r, maxBulk, 0, &b)
}

// budget is what is left of a reply's limits as it is read.
type budget struct{ bytes, values int }

// value takes one value.
func (b *budget) value() error {
	if b.values--; b.values < 0 {
		return fmt.Errorf("%w: a reply of more than %d values", ErrProtocol, maxValues)
	}
	return nil
}

// take takes n bytes of strings.
func (b *budget) take(n int) error {
	if b.bytes -= n; b.bytes < 0 {
		return fmt.Errorf("%w: a reply whose strings add up to more than the bulk limit and %d bytes", ErrProtocol, listBytes)
	}
	return nil
}

func readValue(r *bufio.Reader, maxBulk, depth int, b *budget) (Value, error) {
	line, err := readLine(r)
	if err != nil {
		return Value{}, err
	}
	if len(line) == 0 {
		return Value{}, fmt.Errorf("%w: empty line", ErrProtocol)
	}
	v := Value{Kind: Kind(line[0])}
	rest := line[1:]
	if err := b.value(); err != nil {
		return Value{}, err
	}
	switch v.Kind {
	case Simple, Err:
		if err := b.take(len(rest)); err != nil {
			return Value{}, err
		}
		v.Str = append([]byte(nil), rest...)
		return v, nil
	case Integer:
		n, err := strconv.ParseInt(string(rest), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: bad integer %q", ErrProtocol, rest)
		}
		v.Int = n
		return v, nil
	case Bulk:
		n, err := length(rest)
		if err != nil {
			return Value{}, err
		}
		if n < 0 {
			v.Null = true
			return v, nil
		}
		if n > maxBulk {
			return Value{}, fmt.Errorf("%w: a bulk string of %d bytes (at most %d)", ErrProtocol, n, maxBulk)
		}
		if err := b.take(n); err != nil {
			return Value{}, err
		}
		buf := make([]byte, n+2)
		if _, err := readFull(r, buf); err != nil {
			return Value{}, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return Value{}, fmt.Errorf("%w: a bulk string without its CRLF", ErrProtocol)
		}
		v.Str = buf[:n:n]
		return v, nil
	case Array:
		n, err := length(rest)
		if err != nil {
			return Value{}, err
		}
		if n < 0 {
			v.Null = true
			return v, nil
		}
		if depth >= maxDepth {
			return Value{}, fmt.Errorf("%w: arrays nested deeper than %d", ErrProtocol, maxDepth)
		}
		v.Array = make([]Value, 0, min(n, maxPrealloc))
		for i := 0; i < n; i++ {
			e, err := readValue(r, maxBulk, depth+1, b)
			if err != nil {
				return Value{}, err
			}
			v.Array = append(v.Array, e)
		}
		return v, nil
	}
	return Value{}, fmt.Errorf("%w: unknown reply type %q", ErrProtocol, line[0])
}

// length parses a bulk or array length: -1 (null) or more.
func length(b []byte) (int, error) {
	n, err := strconv.Atoi(string(b))
	if err != nil || n < -1 || int64(n) > 1<<31 {
		return 0, fmt.Errorf("%w: bad length %q", ErrProtocol, b)
	}
	return n, nil
}

// readLine reads up to CRLF (not included), at most maxLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: a line longer than %d bytes", ErrProtocol, r.Size())
	}
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: a line without CRLF", ErrProtocol)
	}
	if len(line) > maxLine {
		return nil, fmt.Errorf("%w: a line longer than %d bytes", ErrProtocol, maxLine)
	}
	return line[:len(line)-2], nil
}

func readFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// appendHeader appends the header of a command of n arguments.
func appendHeader(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

// appendArg appends one argument (a bulk string).
func appendArg[T string | []byte](b []byte, a T) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(a)), 10)
	b = append(b, '\r', '\n')
	b = append(b, a...)
	return append(b, '\r', '\n')
}
