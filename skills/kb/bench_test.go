package kb

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchCorpus is n synthetic chunks of about 80 words each, drawn with a
// Zipf law from the words and Chinese characters of the shipped documents
// (so that term frequencies look like a real support corpus, in both
// languages), each with a heading and a product code of its own; and
// the golden questions as queries. Deterministic.
func benchCorpus(tb testing.TB, n int) ([]Doc, []string) {
	var vocab []string
	seen := map[string]bool{}
	for _, d := range exampleDocs(tb) {
		for _, f := range strings.FieldsFunc(d.Text, func(r rune) bool {
			return !isCJK(r) && !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
		}) {
			var words []string
			if strings.ContainsFunc(f, isCJK) {
				for _, r := range f {
					words = append(words, string(r))
				}
			} else {
				words = []string{strings.ToLower(f)}
			}
			for _, w := range words {
				if !seen[w] {
					seen[w] = true
					vocab = append(vocab, w)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.1, 2, uint64(len(vocab)-1))
	docs := make([]Doc, 0, n/8)
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i%8 == 0 {
			if b.Len() > 0 {
				docs = append(docs, Doc{Name: "doc" + itoa(len(docs)) + ".md", Text: b.String()})
			}
			b.Reset()
			b.WriteString("# Product line " + itoa(i/8) + "\n\n")
		}
		b.WriteString("## Section " + vocab[zipf.Uint64()] + " " + itoa(i) + "\n\n")
		b.WriteString("Model LX-" + itoa(i*7919%100000) + ". ")
		for j := 0; j < 80; j++ {
			w := vocab[zipf.Uint64()]
			b.WriteString(w)
			if !strings.ContainsFunc(w, isCJK) || rng.IntN(3) == 0 {
				b.WriteByte(' ')
			}
		}
		b.WriteString("\n\n")
	}
	docs = append(docs, Doc{Name: "doc" + itoa(len(docs)) + ".md", Text: b.String()})
	var qs []string
	for _, q := range readJSONL[goldenQ](tb, filepath.Join("testdata", "golden.jsonl")) {
		qs = append(qs, q.Q)
	}
	return docs, qs
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkKBIndex10k: chunking and BM25 indexing of 10,000 chunks, and
// the heap the index holds (its chunks' text included) once built.
func BenchmarkKBIndex10k(b *testing.B) {
	docs, _ := benchCorpus(b, 10000)
	var base *Base
	var heap uint64
	for b.Loop() {
		before := heapInUse()
		base = NewBase(docs, 0)
		heap = heapInUse() - before
	}
	if n := len(base.Parts); n < 10000 {
		b.Fatalf("%d chunks", n)
	}
	b.ReportMetric(float64(len(base.Parts)), "chunks")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
	b.ReportMetric(float64(base.bm25.Bytes())/(1<<20), "index-MB")
	runtime.KeepAlive(base)
}

// BenchmarkKBQuery10k: one BM25 search of 10,000 chunks (k 4), cycling
// through the golden questions; p50 and p99 of the searches' times.
func BenchmarkKBQuery10k(b *testing.B) {
	docs, qs := benchCorpus(b, 10000)
	base := NewBase(docs, 0)
	var lat []time.Duration
	i := 0
	for b.Loop() {
		t0 := time.Now()
		base.Search(Query{Text: qs[i%len(qs)], K: 4})
		lat = append(lat, time.Since(t0))
		i++
	}
	reportPercentiles(b, lat)
}

// BenchmarkKBNaiveScan10k is the baseline: every chunk's text searched
// for every query term (strings.Count), no index.
func BenchmarkKBNaiveScan10k(b *testing.B) {
	docs, qs := benchCorpus(b, 10000)
	base := NewBase(docs, 0)
	texts := base.texts()
	for i := range texts {
		texts[i] = strings.ToLower(texts[i])
	}
	var lat []time.Duration
	i := 0
	for b.Loop() {
		t0 := time.Now()
		terms := Terms(qs[i%len(qs)])
		var top []Hit
		for c, t := range texts {
			s := 0
			for _, term := range terms {
				s += strings.Count(t, term)
			}
			if s > 0 {
				top = pushTop(top, Hit{Chunk: c, Score: float64(s)}, 4)
			}
		}
		lat = append(lat, time.Since(t0))
		i++
	}
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// TestWriteBenchCorpus writes the benchmark's corpus (chunks as indexed,
// and the queries) as JSON lines to $KB_BENCH_CORPUS, for the SQLite FTS5
// baseline (scripts/kb_fts5_baseline.py). Skipped without it.
func TestWriteBenchCorpus(t *testing.T) {
	path := os.Getenv("KB_BENCH_CORPUS")
	if path == "" {
		t.Skip("KB_BENCH_CORPUS not set")
	}
	docs, qs := benchCorpus(t, 10000)
	base := NewBase(docs, 0)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for _, s := range base.texts() {
		enc.Encode(map[string]string{"chunk": s})
	}
	for _, q := range qs {
		enc.Encode(map[string]string{"query": q})
	}
}

// BenchmarkKBQueryFused10k: BM25 and a flat scan of 10,000 int8 vectors
// of 384 dimensions (random, as all-minilm's size), fused by reciprocal
// rank; the query's vector given (its embedding is the model's time).
func BenchmarkKBQueryFused10k(b *testing.B) {
	docs, qs := benchCorpus(b, 10000)
	base := NewBase(docs, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	vec := func() []float32 {
		v := make([]float32, 384)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	vecs := make([][]float32, len(base.Parts))
	for i := range vecs {
		vecs[i] = vec()
	}
	base = base.WithVectors("m", 384, vecs)
	qv := make([][]float32, 64)
	for i := range qv {
		qv[i] = vec()
	}
	b.ReportMetric(float64(len(base.vec.q))/(1<<20), "vectors-MB")
	var lat []time.Duration
	i := 0
	for b.Loop() {
		t0 := time.Now()
		base.Search(Query{Text: qs[i%len(qs)], K: 4, Vector: qv[i%len(qv)], VectorModel: "m"})
		lat = append(lat, time.Since(t0))
		i++
	}
	reportPercentiles(b, lat)
}
