package kb

import "math"

// Vectors is a flat index of chunk embeddings, quantized to int8 after
// normalization (a vector's cosine with the query is then a dot product
// of bytes, scaled): 384 dimensions take 384 bytes a chunk. A search
// scans every vector: past about 100k chunks a graph index (HNSW) would
// pay, below it a scan is faster and exact but for quantization.
type Vectors struct {
	dims int
	q    []int8 // len = dims * chunks
	has  []bool // has[i]: chunk i has a vector
}

// NewVectors holds vecs[i] for chunk i; a nil or wrongly sized vector
// (an embedding that failed) leaves its chunk out of vector searches.
func NewVectors(dims int, vecs [][]float32) *Vectors {
	v := &Vectors{dims: dims, q: make([]int8, dims*len(vecs)), has: make([]bool, len(vecs))}
	for i, e := range vecs {
		if len(e) != dims || dims == 0 {
			continue
		}
		v.has[i] = quantize(v.q[i*dims:(i+1)*dims], e)
	}
	return v
}

// quantize writes e, normalized, as int8s into dst; false for a zero vector.
func quantize(dst []int8, e []float32) bool {
	var n float64
	for _, f := range e {
		n += float64(f) * float64(f)
	}
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return false
	}
	n = math.Sqrt(n)
	for i, f := range e {
		dst[i] = int8(math.Round(float64(f) / n * 127))
	}
	return true
}

// Dims is the vectors' length.
func (v *Vectors) Dims() int { return v.dims }

// Search returns the k chunks nearest query by cosine, best first, with
// their cosine (about: int8 quantization is within ~1%).
func (v *Vectors) Search(query []float32, k int) []Hit {
	if len(query) != v.dims || v.dims == 0 || k <= 0 {
		return nil
	}
	q := make([]int8, v.dims)
	if !quantize(q, query) {
		return nil
	}
	top := make([]Hit, 0, k)
	floor := int32(math.MinInt32) // the worst score kept, once k are
	for i := range v.has {
		if !v.has[i] {
			continue
		}
		row := v.q[i*v.dims : (i+1)*v.dims]
		qq := q[:len(row)]
		var dot int32
		for j, x := range row {
			dot += int32(x) * int32(qq[j])
		}
		if len(top) == k && dot <= floor {
			continue // not better than the worst kept (an equal score: the earlier chunk stays)
		}
		top = pushTop(top, Hit{Chunk: i, Score: float64(dot)}, k)
		if len(top) == k {
			floor = int32(top[0].Score)
			for _, h := range top[1:] {
				floor = min(floor, int32(h.Score))
			}
		}
	}
	for i := range top {
		top[i].Score /= 127 * 127
	}
	sortHits(top)
	return top
}
