package kb

import (
	"slices"
	"testing"
	"unicode/utf8"
)

func TestTokenize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"申请退款", []string{"申请", "请退", "退款"}},
		{"How do I return an item?", []string{"return", "item"}},
		{"退货 policy：30天内", []string{"退货", "policy", "30", "天内"}},
		{"你", []string{"你"}},
		{"Größe ÜBER", []string{"größe", "über"}},
		{"カタカナ", []string{"カタ", "タカ", "カナ"}},
		{"x-100_v2", []string{"x", "100", "v2"}},
		{"", nil},
		{"a the of", nil},
	} {
		if got := Terms(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Terms(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := make([]byte, MaxTermBytes+1)
	for i := range long {
		long[i] = 'z'
	}
	if got := Terms(string(long) + " ok"); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("a word over MaxTermBytes: %q", got)
	}
}

func TestTokenizeAllocs(t *testing.T) {
	// A constant few (the buffers the closures share), not one per term.
	s := "How long does a refund take after the warehouse receives my return? 退款需要多久"
	short := testing.AllocsPerRun(100, func() { Tokenize(s, func([]byte) {}) })
	long := s
	for range 6 {
		long += long
	}
	n := testing.AllocsPerRun(20, func() { Tokenize(long, func([]byte) {}) })
	if n > short || n > 4 {
		t.Fatalf("Tokenize allocates %v times for %d bytes (%v for %d): want a constant few", n, len(long), short, len(s))
	}
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"申请退款 refund", "Größe", "\xff\xfe", "a b c", "ｶﾀｶﾅ 한국어"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		Tokenize(s, func(term []byte) {
			if len(term) == 0 || len(term) > MaxTermBytes {
				t.Fatalf("term %q of %d bytes", term, len(term))
			}
			if !utf8.Valid(term) {
				t.Fatalf("term %q is not UTF-8", term)
			}
		})
	})
}
