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
