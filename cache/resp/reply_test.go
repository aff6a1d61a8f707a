package resp

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func read(s string) (Value, error) {
	return readReply(bufio.NewReaderSize(strings.NewReader(s), 4096), 1<<20)
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want func(v Value) bool
	}{
		{"+OK\r\n", func(v Value) bool { return v.Kind == Simple && string(v.Str) == "OK" }},
		{"-ERR no\r\n", func(v Value) bool { return v.Kind == Err && string(v.Str) == "ERR no" }},
		{":42\r\n", func(v Value) bool { return v.Kind == Integer && v.Int == 42 }},
		{"$3\r\na\r\n\r\n", func(v Value) bool { return v.Kind == Bulk && string(v.Str) == "a\r\n" }},
		{"$0\r\n\r\n", func(v Value) bool { return v.Kind == Bulk && !v.Null && len(v.Str) == 0 }},
		{"$-1\r\n", func(v Value) bool { return v.Kind == Bulk && v.Null }},
		{"*-1\r\n", func(v Value) bool { return v.Kind == Array && v.Null }},
		{"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n", func(v Value) bool {
			return len(v.Array) == 2 && string(v.Array[0].Str) == "0" && string(v.Array[1].Array[0].Str) == "k"
		}},
	} {
		v, err := read(tc.in)
		if err != nil || !tc.want(v) {
			t.Errorf("%q: %+v %v", tc.in, v, err)
		}
	}
	for _, bad := range []string{
		"", "\r\n", "?x\r\n", ":x\r\n", "$5\r\nab\r\n", "$2\r\nabcd", "$-2\r\n", "*1\r\n", "+OK\n",
		"$2000000\r\n", // beyond the bulk limit
		strings.Repeat("*1\r\n", 20) + ":1\r\n",
	} {
		if _, err := read(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := read("$2000000\r\n"); !errors.Is(err, ErrProtocol) {
		t.Errorf("an oversized bulk string: %v", err)
	}
}

func TestAppendCommand(t *testing.T) {
	b := appendArg(appendArg(appendHeader(nil, 2), "GET"), []byte("k\r\n"))
	if string(b) != "*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n" {
		t.Errorf("%q", b)
	}
}

// Whatever answers on the server's port, the reader neither panics nor
// allocates much beyond what it was sent (a length is not trusted for an
// allocation larger than the limits).
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$1\r\na\r\n", "$-1\r\n", "*2\r\n$1\r\n0\r\n*0\r\n", "*99999999\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := readReply(bufio.NewReaderSize(bytes.NewReader(in), 4096), 1<<16)
		if err != nil {
			return
		}
		// A reply read is one the encoder's grammar allows: its bulk
		// strings fit the limit.
		var walk func(v Value, depth int)
		walk = func(v Value, depth int) {
			if depth > maxDepth || len(v.Str) > 1<<16 && v.Kind == Bulk {
				t.Fatalf("reply beyond the limits: %+v", v)
			}
			for _, e := range v.Array {
				walk(e, depth+1)
			}
		}
		walk(v, 0)
	})
}
