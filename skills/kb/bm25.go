package kb

import (
	"math"
	"slices"
	"sync"
)

// BM25's parameters (Robertson and Zaragoza; Lucene's defaults).
const (
	bm25K1 = 1.2
	bm25B  = 0.75
)

// Index is a BM25 index over the chunks of one knowledge base, in memory:
// a term's postings (chunk, frequency) and each chunk's length. Built once
// (NewIndex), then read by any number of goroutines.
type Index struct {
	terms map[string]int32 // term -> id
	post  [][]posting      // by term id
	dl    []uint32         // terms per chunk
	avgdl float64
	pool  sync.Pool // *scratch
}

type posting struct {
	chunk, tf uint32
}

// scratch is a query's accumulators, reused.
type scratch struct {
	acc     []float32
	touched []uint32
}

// NewIndex indexes texts: texts[i] is chunk i's text (its heading path
// and body).
func NewIndex(texts []string) *Index {
	x := &Index{terms: make(map[string]int32), dl: make([]uint32, len(texts))}
	tf := map[int32]uint32{}
	total := 0
	for i, s := range texts {
		clear(tf)
		n := uint32(0)
		Tokenize(s, func(term []byte) {
			id, ok := x.terms[string(term)]
			if !ok {
				id = int32(len(x.post))
				x.terms[string(term)] = id
				x.post = append(x.post, nil)
			}
			tf[id]++
			n++
		})
		x.dl[i] = n
		total += int(n)
		for id, f := range tf {
			x.post[id] = append(x.post[id], posting{chunk: uint32(i), tf: f})
		}
	}
	for i, p := range x.post {
		x.post[i] = slices.Clip(p)
	}
	if len(texts) > 0 {
		x.avgdl = float64(total) / float64(len(texts))
	}
	if x.avgdl == 0 {
		x.avgdl = 1
	}
	return x
}

// Len is the chunks indexed.
func (x *Index) Len() int { return len(x.dl) }

// Hit is a chunk a search found and its score.
type Hit struct {
	Chunk int
	Score float64
}

// idf is BM25's inverse document frequency of a term in df of n chunks
// (the "+1" form, never negative).
func idf(df, n int) float64 {
	return math.Log(1 + (float64(n)-float64(df)+0.5)/(float64(df)+0.5))
}

// Search returns the k best chunks for query, best first (equal scores:
// the earlier chunk first), and the query's coverage: the best chunk's
// score over the score a chunk holding every term of the query once per
// average length would get, in [0, 1] (terms the index lacks count as
// missed, at the idf of a term no chunk holds). Coverage is what a
// "no answer" threshold compares: raw BM25 scores do not compare across
// queries.
func (x *Index) Search(query string, k int) ([]Hit, float64) {
	if k <= 0 || len(x.dl) == 0 {
		return nil, 0
	}
	n := len(x.dl)
	var ids []int32
	maxScore := 0.0
	seen := map[string]bool{}
	Tokenize(query, func(term []byte) {
		if seen[string(term)] {
			return
		}
		seen[string(term)] = true
		id, ok := x.terms[string(term)]
		df := 0
		if ok {
			df = len(x.post[id])
			ids = append(ids, id)
		}
		maxScore += idf(df, n) // a term once, in a chunk of average length: idf * (k1+1)/(1+k1)
	})
	if len(ids) == 0 {
		return nil, 0
	}
	s, _ := x.pool.Get().(*scratch)
	if s == nil || len(s.acc) != n {
		s = &scratch{acc: make([]float32, n)}
	}
	for _, id := range ids {
		p := x.post[id]
		w := idf(len(p), n)
		for _, e := range p {
			tf := float64(e.tf)
			norm := bm25K1 * (1 - bm25B + bm25B*float64(x.dl[e.chunk])/x.avgdl)
			if s.acc[e.chunk] == 0 {
				s.touched = append(s.touched, e.chunk)
			}
			s.acc[e.chunk] += float32(w * tf * (bm25K1 + 1) / (tf + norm))
		}
	}
	hits := make([]Hit, 0, min(k, len(s.touched)))
	for _, c := range s.touched {
		hits = pushTop(hits, Hit{Chunk: int(c), Score: float64(s.acc[c])}, k)
		s.acc[c] = 0
	}
	s.touched = s.touched[:0]
	x.pool.Put(s)
	sortHits(hits)
	cov := 0.0
	if maxScore > 0 {
		cov = min(1, hits[0].Score/maxScore)
	}
	return hits, cov
}

// better orders hits: higher score, then lower chunk.
func better(a, b Hit) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	return a.Chunk < b.Chunk
}

// pushTop keeps the k best hits in top (unordered but for the worst,
// found by a scan: k is small).
func pushTop(top []Hit, h Hit, k int) []Hit {
	if len(top) < k {
		return append(top, h)
	}
	worst := 0
	for i := 1; i < len(top); i++ {
		if better(top[worst], top[i]) {
			worst = i
		}
	}
	if better(h, top[worst]) {
		top[worst] = h
	}
	return top
}

func sortHits(h []Hit) {
	slices.SortFunc(h, func(a, b Hit) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
}

// Bytes estimates the index's memory: postings, lengths, the term table.
func (x *Index) Bytes() int {
	b := len(x.dl) * 4
	for t := range x.terms {
		b += len(t) + 16 + 4 + 24 // the key, its string header, the id, the postings slice header
	}
	for _, p := range x.post {
		b += cap(p) * 8
	}
	return b
}

// DefaultThreshold is the coverage (Index.Search) below which a search is
// "no answer": measured on the shipped documents, every out-of-scope
// question of testdata/none.jsonl falls below it and 97% of the golden
// questions above it.
const DefaultThreshold = 0.15
