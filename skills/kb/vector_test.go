package kb

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The flat index's top k is the brute force's: every cosine computed,
// sorted (best first, equal scores by chunk), quantization within 2%.
func TestVectorsSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n, dims = 500, 32
	vecs := make([][]float32, n)
	for i := range vecs {
		vecs[i] = make([]float32, dims)
		for j := range vecs[i] {
			vecs[i][j] = float32(rng.NormFloat64())
		}
		if i%7 == 0 {
			vecs[i] = vecs[i-i%14] // duplicates: equal scores
		}
	}
	vecs[3] = nil // a chunk without a vector
	v := NewVectors(dims, vecs)
	for range 20 {
		q := make([]float32, dims)
		for j := range q {
			q[j] = float32(rng.NormFloat64())
		}
		got := v.Search(q, 10)
		all := make([]Hit, 0, n)
		qq := make([]int8, dims)
		quantize(qq, q)
		for i := range vecs {
			if !v.has[i] {
				continue
			}
			var dot int32
			for j := range dims {
				dot += int32(v.q[i*dims+j]) * int32(qq[j])
			}
			all = append(all, Hit{Chunk: i, Score: float64(dot) / (127 * 127)})
		}
		sortHits(all)
		if !slices.Equal(got, all[:10]) {
			t.Fatalf("top 10 %v, brute force %v", got, all[:10])
		}
		for _, h := range got {
			if h.Chunk == 3 {
				t.Fatal("a chunk without a vector was found")
			}
			var exact, nq, nv float64
			for j := range dims {
				exact += float64(q[j]) * float64(vecs[h.Chunk][j])
				nq += float64(q[j]) * float64(q[j])
				nv += float64(vecs[h.Chunk][j]) * float64(vecs[h.Chunk][j])
			}
			if c := exact / (math.Sqrt(nq) * math.Sqrt(nv)); c-h.Score > 0.02 || h.Score-c > 0.02 {
				t.Fatalf("cosine %.4f, quantized %.4f", c, h.Score)
			}
		}
	}
	if v.Search(make([]float32, dims), 4) != nil || v.Search(make([]float32, dims+1), 4) != nil {
		t.Fatal("a zero or wrongly sized query found something")
	}
}
