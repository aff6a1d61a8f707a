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

// A reply is bounded as a whole, not only string by string: a server (or
// whatever answers on its port) that sends an array of a million tiny
// elements made the reader build a million 64-byte Values from 4 bytes
// each (16 times what it sent, without end within the command's
// deadline), and an array of bulk strings each within the limit added up
// to any size.
func TestReplyBoundedAsAWhole(t *testing.T) {
	const n = 1 << 20
	var b strings.Builder
	b.WriteString("*1048576\r\n")
	for range n {
		b.WriteString(":1\r\n")
	}
	if _, err := readReply(bufio.NewReaderSize(strings.NewReader(b.String()), 4096), 8<<20); !errors.Is(err, ErrProtocol) {
		t.Errorf("an array of %d integers: %v", n, err)
	}
	bulk := "$1000\r\n" + strings.Repeat("x", 1000) + "\r\n"
	in := "*2\r\n*0\r\n*2000\r\n" + strings.Repeat(bulk, 2000)
	if _, err := readReply(bufio.NewReaderSize(strings.NewReader(in), 4096), 50_000); !errors.Is(err, ErrProtocol) {
		t.Errorf("2000 bulk strings of 1000 bytes under a limit of 50000: %v", err)
	}
	// What the cache asks of Redis still reads: a SCAN page of keys (under
	// a small entry limit too), a value as large as the limit.
	keys := "*2\r\n$1\r\n0\r\n*1000\r\n" + strings.Repeat("$150\r\n"+strings.Repeat("k", 150)+"\r\n", 1000)
	if v, err := readReply(bufio.NewReaderSize(strings.NewReader(keys), 4096), 4096); err != nil || len(v.Array[1].Array) != 1000 {
		t.Errorf("a SCAN page: %v", err)
	}
	big := "$1048576\r\n" + strings.Repeat("v", 1<<20) + "\r\n"
	if v, err := readReply(bufio.NewReaderSize(strings.NewReader(big), 4096), 1<<20); err != nil || len(v.Str) != 1<<20 {
		t.Errorf("a value at the limit: %v", err)
	}
}
