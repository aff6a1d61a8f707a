// Package bench measures moltbot over HTTP only: latency statistics and the
// interleaved "added latency" method. `moltbot bench` and `make bench` are
// thin wrappers over it (bench/measure drives whole processes).
package bench

import (
	"math"
	"sort"
	"time"
)

// Percentile returns the p-th percentile (0..100) of sorted values by linear
// interpolation between closest ranks (the method of numpy's default). It
// returns NaN for no values.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if p <= 0 {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	rank := p / 100 * float64(n-1)
	lo := int(math.Floor(rank))
	frac := rank - float64(lo)
	if lo+1 >= n {
		return sorted[n-1]
	}
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// Summary is a distribution's usual numbers.
type Summary struct {
	N                        int
	Mean, Min, Max           float64
	P50, P90, P95, P99, P999 float64
}

// Summarize sorts values in place and summarizes them.
func Summarize(values []float64) Summary {
	s := Summary{N: len(values)}
	if len(values) == 0 {
		return s
	}
	sort.Float64s(values)
	sum := 0.0
	for _, v := range values {
		sum += v
	}
	s.Mean = sum / float64(len(values))
	s.Min, s.Max = values[0], values[len(values)-1]
	s.P50 = Percentile(values, 50)
	s.P90 = Percentile(values, 90)
	s.P95 = Percentile(values, 95)
	s.P99 = Percentile(values, 99)
	s.P999 = Percentile(values, 99.9)
	return s
}

// Millis converts durations to float milliseconds.
func Millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// Median returns the median of values (not modified).
func Median(values []float64) float64 {
	c := append([]float64(nil), values...)
	sort.Float64s(c)
	return Percentile(c, 50)
}
