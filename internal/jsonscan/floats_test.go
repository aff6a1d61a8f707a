package jsonscan

import (
	"encoding/json"
	"math"
	"testing"
)

func TestFloat32s(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []float32
		ok   bool
	}{
		{`[]`, nil, true},
		{`[ 0.25 , -1e-3,3 ]`, []float32{0.25, -0.001, 3}, true},
		{`[-0,1e-50,3.4028235e38]`, []float32{float32(math.Copysign(0, -1)), 0, math.MaxFloat32}, true},
		{`[1e39]`, nil, false},    // out of float32's range, as encoding/json says
		{`[01]`, nil, false},      // not JSON
		{`[1,]`, nil, false},      // not JSON
		{`[1 2]`, nil, false},     // not JSON
		{`[null]`, nil, false},    // encoding/json's business
		{`["1"]`, nil, false},     // not a number
		{`[.5]`, nil, false},      // not JSON, though ParseFloat takes it
		{`[1`, nil, false},        // cut short
		{`{"a":1}`, nil, false},   // not an array
		{`[NaN,Inf]`, nil, false}, // not JSON
	} {
		got, next, ok := Float32s([]byte(tc.in), 0, nil)
		if ok != tc.ok {
			t.Errorf("%s: ok = %v", tc.in, ok)
			continue
		}
		if !ok {
			continue
		}
		if next != len(tc.in) {
			t.Errorf("%s: next = %d", tc.in, next)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v", tc.in, got)
			continue
		}
		for k := range got {
			if math.Float32bits(got[k]) != math.Float32bits(tc.want[k]) {
				t.Errorf("%s: [%d] = %v, want %v", tc.in, k, got[k], tc.want[k])
			}
		}
	}
}

// FuzzFloat32sMatchesEncodingJSON: whatever array Float32s takes,
// encoding/json decodes into the same []float32.
func FuzzFloat32sMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`[0.010071029,-0.0017594862,0.05007221]`, `[]`, `[1e39]`, `[ -0 , 1E+2 ]`, `[1.401298464324817e-45]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, next, ok := Float32s(b, 0, nil)
		if !ok || WS(b, next) != len(b) {
			return
		}
		var slow []float32
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("%q: fast path took it, encoding/json: %v", b, err)
		}
		if len(fast) != len(slow) {
			t.Fatalf("%q: %v != %v", b, fast, slow)
		}
		for k := range fast {
			if math.Float32bits(fast[k]) != math.Float32bits(slow[k]) {
				t.Fatalf("%q: [%d] %v != %v", b, k, fast[k], slow[k])
			}
		}
	})
}

func BenchmarkFloat32s(b *testing.B) {
	vec := make([]float32, 768)
	for k := range vec {
		vec[k] = float32(math.Sin(float64(k))) / 7
	}
	body, _ := json.Marshal(vec)
	b.Run("jsonscan", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var dst []float32
		for b.Loop() {
			dst, _, _ = Float32s(body, 0, dst[:0])
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var dst []float32
		for b.Loop() {
			dst = dst[:0]
			_ = json.Unmarshal(body, &dst)
		}
	})
}
