package bench

import (
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

func TestPercentileKnown(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{0: 1, 50: 5.5, 90: 9.1, 100: 10, 25: 3.25} {
		if got := Percentile(v, p); math.Abs(got-want) > 1e-9 {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) || Percentile([]float64{7}, 99) != 7 {
		t.Error("edge cases")
	}
}

// Against distributions with known quantiles: uniform and exponential.
func TestPercentileDistributions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 200000
	uni := make([]float64, n)
	exp := make([]float64, n)
	for i := range uni {
		uni[i] = r.Float64() * 100
		exp[i] = r.ExpFloat64() // rate 1: quantile q is -ln(1-q)
	}
	su, se := Summarize(uni), Summarize(exp)
	check := func(name string, got, want, tol float64) {
		if math.Abs(got-want) > tol {
			t.Errorf("%s = %.4f, want %.4f ± %g", name, got, want, tol)
		}
	}
	check("uniform p50", su.P50, 50, 0.5)
	check("uniform p99", su.P99, 99, 0.2)
	check("uniform mean", su.Mean, 50, 0.5)
	check("exp p50", se.P50, math.Ln2, 0.01)
	check("exp p99", se.P99, -math.Log(0.01), 0.05)
	check("exp p99.9", se.P999, -math.Log(0.001), 0.2)
	check("exp mean", se.Mean, 1, 0.01)
}

// Overhead measures the latency Via adds over Direct: 2 ms here, exactly,
// on synctest's fake clock over an in-memory network (before: a real
// server and a loose 1.9..50 ms bound).
func TestOverheadMeasuresAddedDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, url := pipeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/via" {
				time.Sleep(2 * time.Millisecond)
			}
			w.Write([]byte("ok"))
		}))
		res, err := Overhead(t.Context(), OverheadConfig{Direct: Target{URL: url + "/direct"}, Via: Target{URL: url + "/via"}, Client: client,
			Rounds: 3, PerRound: 20, Warmup: 2})
		if err != nil {
			t.Fatal(err)
		}
		if res.AddedP50 != 2 || res.AddedP50Min != 2 || res.AddedP50Max != 2 || res.AddedP99 != 2 || res.DirectP50 != 0 || len(res.Rounds) != 3 {
			t.Errorf("%+v", res)
		}
	})
}
