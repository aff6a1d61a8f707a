package jsonw

import (
	"encoding/json"
	"testing"
)

func TestStringMatchesEncodingJSON(t *testing.T) {
	cases := []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f", "nl\n\r\t", "bs\b ff\f", "<tag>&amp;",
		"héllo wörld ✓", "bad\xffutf8", "sep\u2028\u2029", "emoji 🤖"}
	for _, s := range cases {
		want, _ := json.Marshal(s)
		if got := String(nil, s); string(got) != string(want) {
			t.Errorf("String(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzString(f *testing.F) {
	f.Add("hello")
	f.Add("a\"b\\c\x00\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		got := String(nil, s)
		want, _ := json.Marshal(s)
		if string(got) != string(want) {
			t.Fatalf("String(%q) = %s, want %s", s, got, want)
		}
	})
}

func BenchmarkString(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = String(buf[:0], "The quick brown fox jumps over the lazy dog, \"quoted\".")
	}
}
