package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(t testing.TB, r io.Reader) []Event {
	t.Helper()
	rd := NewReader(r, 0)
	var out []Event
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		ev.Data = append([]byte(nil), ev.Data...)
		out = append(out, ev)
	}
}

func TestReader(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []Event
	}{
		{"basic", "data: a\n\ndata: b\n\n", []Event{{Data: []byte("a")}, {Data: []byte("b")}}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []Event{{Data: []byte("a")}, {Data: []byte("b")}}},
		{"cr only", "data: a\r\rdata: b\r\r", []Event{{Data: []byte("a")}, {Data: []byte("b")}}},
		{"comments and keep-alive", ": ping\n\n: keep-alive\ndata: x\n\n", []Event{{Data: []byte("x")}}},
		{"no space after colon", "data:x\n\n", []Event{{Data: []byte("x")}}},
		{"multi-line data", "data: a\ndata: b\n\n", []Event{{Data: []byte("a\nb")}}},
		{"event type", "event: message_start\ndata: {}\n\n", []Event{{Type: "message_start", Data: []byte("{}")}}},
		{"type resets", "event: x\ndata: 1\n\ndata: 2\n\n", []Event{{Type: "x", Data: []byte("1")}, {Data: []byte("2")}}},
		{"id", "id: 7\ndata: 1\n\n", []Event{{ID: "7", Data: []byte("1")}}},
		{"done", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []Event{{Data: []byte(`{"a":1}`)}, {Data: []byte("[DONE]")}}},
		{"last event without blank line", "data: a\n\ndata: [DONE]", []Event{{Data: []byte("a")}, {Data: []byte("[DONE]")}}},
		{"empty event ignored", "event: ping\n\n\n\ndata: a\n\n", []Event{{Data: []byte("a")}}},
		{"unknown field ignored", "retry: 10\nfoo: bar\ndata: a\n\n", []Event{{Data: []byte("a")}}},
		{"field without colon", "data\n\n", []Event{{Data: []byte("")}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []string{"whole", "one byte at a time"} {
				var r io.Reader = strings.NewReader(tc.in)
				if mode != "whole" {
					r = iotest.OneByteReader(r)
				}
				got := readAll(t, r)
				if len(got) != len(tc.want) {
					t.Fatalf("%s: got %d events %q, want %d", mode, len(got), got, len(tc.want))
				}
				for i := range got {
					if got[i].Type != tc.want[i].Type || !bytes.Equal(got[i].Data, tc.want[i].Data) || got[i].ID != tc.want[i].ID {
						t.Errorf("%s: event %d = %+v (%q), want %+v (%q)", mode, i, got[i], got[i].Data, tc.want[i], tc.want[i].Data)
					}
				}
			}
		})
	}
}

func TestReaderTooLong(t *testing.T) {
	in := "data: " + strings.Repeat("x", 2000) + "\n\n"
	_, err := NewReader(strings.NewReader(in), 1000).Next()
	if !errors.Is(err, ErrTooLong) {
		t.Fatalf("err = %v, want ErrTooLong", err)
	}
	in = strings.Repeat("data: xxxxxxxxxx\n", 200) + "\n"
	_, err = NewReader(strings.NewReader(in), 1000).Next()
	if !errors.Is(err, ErrTooLong) {
		t.Fatalf("multi-line: err = %v, want ErrTooLong", err)
	}
}

func TestReaderPassesErrors(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom))
	rd := NewReader(r, 0)
	if ev, err := rd.Next(); err != nil || string(ev.Data) != "a" {
		t.Fatalf("first = %q, %v", ev.Data, err)
	}
	if _, err := rd.Next(); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("data: a\n\n: c\r\nevent: e\rdata: [DONE]"))
	f.Add([]byte("data:\ndata\n\nid: 1\x00\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rd := NewReader(bytes.NewReader(in), 512)
		for i := 0; i < len(in)+2; i++ {
			ev, err := rd.Next()
			if err != nil {
				return
			}
			if len(ev.Data) > 512 {
				t.Fatalf("event of %d bytes passed a 512-byte limit", len(ev.Data))
			}
		}
		t.Fatalf("reader did not end")
	})
}

func BenchmarkReader(b *testing.B) {
	chunk := `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}` + "\n\n"
	in := []byte(strings.Repeat(chunk, 64))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		rd := NewReader(bytes.NewReader(in), 0)
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	}
}

// reference is a plain reading of the spec: split lines on \r\n, \r or \n,
// then build events. It is slow and obviously right; the fuzzer compares.
func reference(in []byte) []Event {
	var lines []string
	cur := []byte{}
	for i := 0; i < len(in); i++ {
		switch in[i] {
		case '\n':
			lines = append(lines, string(cur))
			cur = cur[:0]
		case '\r':
			lines = append(lines, string(cur))
			cur = cur[:0]
			if i+1 < len(in) && in[i+1] == '\n' {
				i++
			}
		default:
			cur = append(cur, in[i])
		}
	}
	if len(cur) > 0 {
		lines = append(lines, string(cur))
	}
	var out []Event
	var data []string
	typ, id := "", ""
	has := false
	flush := func() {
		if has {
			out = append(out, Event{Type: typ, Data: []byte(strings.Join(data, "\n")), ID: id})
		}
		data, typ, has = nil, "", false
	}
	for _, l := range lines {
		if l == "" {
			flush()
			continue
		}
		if l[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(l, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			data = append(data, value)
			has = true
		case "event":
			typ = value
		case "id":
			if !strings.Contains(value, "\x00") {
				id = value
			}
		}
	}
	flush()
	return out
}

func FuzzReaderMatchesReference(f *testing.F) {
	f.Add([]byte("data: a\r\n\r\ndata: b\r\rdata: c\n\nevent: x\ndata: y\ndata: z\n\n: c\nid: 1\ndata: d"))
	f.Add([]byte("data:\ndata\n\n\r\n\rdata: [DONE]"))
	f.Fuzz(func(t *testing.T, in []byte) {
		want := reference(in)
		for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in)), iotest.HalfReader(bytes.NewReader(in))} {
			rd := NewReader(r, 1<<20)
			var got []Event
			for {
				ev, err := rd.Next()
				if err != nil {
					break
				}
				ev.Data = append([]byte(nil), ev.Data...)
				got = append(got, ev)
			}
			if len(got) != len(want) {
				t.Fatalf("%q: %d events, reference %d: %q vs %q", in, len(got), len(want), got, want)
			}
			for i := range got {
				if got[i].Type != want[i].Type || !bytes.Equal(got[i].Data, want[i].Data) || got[i].ID != want[i].ID {
					t.Fatalf("%q: event %d = %+v, reference %+v", in, i, got[i], want[i])
				}
			}
		}
	})
}

// A reset reader reads the next stream as a new one would: nothing of the
// last (a half-read event, an id, a split \r\n) carries over.
func TestReset(t *testing.T) {
	r := NewReader(strings.NewReader("id: 7\ndata: a\n\ndata: half\r"), 0)
	if ev, err := r.Next(); err != nil || string(ev.Data) != "a" || ev.ID != "7" {
		t.Fatalf("first: %+v %v", ev, err)
	}
	r.Next() // "half", ended by a lone \r at the end of the input
	r.Reset(strings.NewReader("\ndata: b\n\n"))
	if ev, err := r.Next(); err != nil || string(ev.Data) != "b" || ev.ID != "" {
		t.Fatalf("after reset: %+v %v", ev, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}
