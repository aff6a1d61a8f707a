package kb

import (
	"strings"
)

// Doc is a document of a knowledge base.
type Doc struct {
	Name string // its name within the knowledge base ("returns.md")
	Text string
}

// Part is a chunk of a knowledge base's index: which document, where in
// it.
type Part struct {
	Doc string
	// Seq numbers the chunk within its document (from 0).
	Seq int
	Chunk
}

// ID names the chunk: "doc#seq".
func (p *Part) ID() string { return p.Doc + "#" + itoa(p.Seq) }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// Base is one knowledge base's index, in memory: its chunks, their BM25
// index and, when the node embeds, their vectors. A Base is built whole
// (NewBase) and never changed: a changed document builds a new one, so
// searches read without a lock.
type Base struct {
	Parts []Part
	bm25  *Index
	vec   *Vectors
	// Model is the embedding model the vectors came from ("": none).
	Model string
}

// NewBase chunks docs (in the order given) and indexes them. A chunk is
// indexed with its heading path, so that "refund timing" finds the text
// under "Refunds > Refund timing".
func NewBase(docs []Doc, maxRunes int) *Base {
	b := &Base{}
	for _, d := range docs {
		for i, c := range ChunkMarkdown(d.Text, maxRunes) {
			b.Parts = append(b.Parts, Part{Doc: d.Name, Seq: i, Chunk: c})
		}
	}
	b.bm25 = NewIndex(b.texts())
	return b
}

// texts is what each chunk is indexed by, and embedded as: its document's
// title, heading path and text.
func (b *Base) texts() []string {
	texts := make([]string, len(b.Parts))
	for i := range b.Parts {
		texts[i] = b.Parts[i].IndexText()
	}
	return texts
}

// IndexText is what the chunk is indexed (and embedded) by: its heading
// path, then its text.
func (p *Part) IndexText() string {
	if len(p.Heading) == 0 {
		return p.Text
	}
	return strings.Join(p.Heading, " > ") + "\n" + p.Text
}

// WithVectors returns b with vecs (vecs[i] embeds b.Parts[i].IndexText(),
// nil for a chunk that has none) from model.
func (b *Base) WithVectors(model string, dims int, vecs [][]float32) *Base {
	c := *b
	c.vec, c.Model = NewVectors(dims, vecs), model
	return &c
}

// Result is a chunk a search found.
type Result struct {
	*Part
	// Score is the chunk's fused score (BM25's when there are no vectors).
	Score float64
	// Rank is its place in the answer, from 1.
	Rank int
}

// Query is what a search asks.
type Query struct {
	Text string
	// K is how many chunks to return (0: 4).
	K int
	// Vector is the query's embedding, nil for none; VectorModel the
	// model that made it: a base whose vectors another model made ignores
	// it.
	Vector      []float32
	VectorModel string
}

// Answer is a search's result: the chunks, best first, and how well the
// query matched (Coverage, BM25's, in [0, 1]; Cosine, the best vector's,
// when there are vectors).
type Answer struct {
	Results  []Result
	Coverage float64
	Cosine   float64
	// Bases counts the knowledge bases searched that hold documents
	// (Store.Search).
	Bases int
}

// candidates is how many chunks each ranking gives to the fusion.
const candidates = 50

// Search finds the chunks that answer q: BM25's ranking alone, or fused
// with the vectors' by reciprocal rank when b has vectors and q a vector.
func (b *Base) Search(q Query) Answer {
	k := q.K
	if k <= 0 {
		k = 4
	}
	if b == nil || len(b.Parts) == 0 {
		return Answer{}
	}
	var a Answer
	if b.vec == nil || len(q.Vector) == 0 || q.VectorModel != b.Model {
		hits, cov := b.bm25.Search(q.Text, k)
		a.Coverage = cov
		for i, h := range hits {
			a.Results = append(a.Results, Result{Part: &b.Parts[h.Chunk], Score: h.Score, Rank: i + 1})
		}
		return a
	}
	lex, cov := b.bm25.Search(q.Text, candidates)
	sem := b.vec.Search(q.Vector, candidates)
	a.Coverage = cov
	if len(sem) > 0 {
		a.Cosine = sem[0].Score
	}
	ranks := func(h []Hit) []int {
		out := make([]int, len(h))
		for i, x := range h {
			out[i] = x.Chunk
		}
		return out
	}
	for i, h := range Fuse(k, ranks(lex), ranks(sem)) {
		a.Results = append(a.Results, Result{Part: &b.Parts[h.Chunk], Score: h.Score, Rank: i + 1})
	}
	return a
}
