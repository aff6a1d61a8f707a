package intent

import (
	"math"
	"slices"
	"sort"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The n-gram classifier: no model, trained at load from the intents'
// examples in a few milliseconds, so it works offline and on the smallest
// node, in Chinese and English alike.
//
// Features: the text is folded (full-width ASCII to ASCII, the
// ideographic space to a space, lower case) and cut into runs of Han,
// kana and Hangul, which give their character 1-, 2- and 3-grams (Chinese
// has no spaces: its words are one to three characters), and runs of
// other letters and digits (words), which give the word and its character
// trigrams with boundary marks (so "refunded" still shares most of
// "refund"); a word of digits alone is one feature, <num> (an order
// number says nothing of the intent). Features are 32-bit FNV-1a hashes,
// weighted TF-IDF ((1+ln tf)·idf, idf smoothed as scikit-learn does) and
// L2-normalized. A feature no example has still counts in the message's
// norm at the highest idf: a message mostly of unknown words scores low
// against every intent, which is what lets out-of-scope messages fall
// back.
//
// Scoring: the mean of the cosine of the message to the nearest example
// of each intent and the cosine to each intent's centroid (Mixed, the
// default); Nearest and Centroid alone scored lower on testdata/intents
// (docs/DESIGN.md gives the figures). Postings are kept by feature in sorted arrays (one binary search
// per feature of the message); scoring allocates nothing.

// Mode is how an intent's score is made from its examples.
type Mode int

const (
	// Mixed: the mean of Nearest and Centroid (the default: the best
	// macro-F1 of the three on testdata/intents).
	Mixed Mode = iota
	// Nearest: the cosine to the intent's nearest example.
	Nearest
	// Centroid: the cosine to the mean of the intent's example vectors.
	Centroid
)

func (m Mode) String() string {
	switch m {
	case Centroid:
		return "centroid"
	case Nearest:
		return "nearest"
	}
	return "mixed"
}

type posting struct {
	doc uint32 // an example (Nearest) or an intent (Centroid)
	w   float32
}

// index is postings by feature: keys sorted, key i's postings at
// post[off[i]:off[i+1]].
type index struct {
	keys []uint32
	idf  []float32
	off  []uint32
	post []posting
}

// Classifier scores a text against each intent. It is not changed after
// Train: safe for concurrent use.
type Classifier struct {
	// Mode is the scoring used by Scores (Mixed unless set before use).
	Mode      Mode
	n         int      // intents
	exIntent  []uint16 // example -> intent
	examples  index
	centroids index
	unseenIDF float32
}

// Intents is the number of intents the classifier scores.
func (c *Classifier) Intents() int { return c.n }

// Train builds a classifier from the intents' examples.
func Train(intents []Intent) *Classifier {
	c := &Classifier{n: len(intents)}
	type doc struct {
		intent int
		feats  []feat
	}
	var docs []doc
	sc := getScratch()
	defer putScratch(sc)
	df := map[uint32]int{}
	for i, in := range intents {
		for _, ex := range in.Examples {
			fs := slices.Clone(sc.features(ex))
			docs = append(docs, doc{i, fs})
			for _, f := range fs {
				df[f.h]++
			}
		}
	}
	N := float64(len(docs))
	idf := func(h uint32) float32 { return float32(math.Log((1+N)/(1+float64(df[h]))) + 1) }
	c.unseenIDF = float32(math.Log(1+N) + 1)
	// Example vectors, normalized.
	type entry struct {
		h   uint32
		doc uint32
		w   float32
	}
	var ex []entry
	cent := make([]map[uint32]float64, len(intents))
	for d, dc := range docs {
		var norm float64
		ws := make([]float64, len(dc.feats))
		for j, f := range dc.feats {
			ws[j] = (1 + math.Log(float64(f.tf))) * float64(idf(f.h))
			norm += ws[j] * ws[j]
		}
		norm = math.Sqrt(norm)
		if norm == 0 {
			continue
		}
		if cent[dc.intent] == nil {
			cent[dc.intent] = map[uint32]float64{}
		}
		for j, f := range dc.feats {
			w := ws[j] / norm
			ex = append(ex, entry{f.h, uint32(d), float32(w)})
			cent[dc.intent][f.h] += w
		}
	}
	// By example: one with no feature (a norm of 0) has no posting and
	// keeps its place.
	for _, dc := range docs {
		c.exIntent = append(c.exIntent, uint16(dc.intent))
	}
	var ce []entry
	for i, m := range cent {
		var norm float64
		for _, w := range m {
			norm += w * w
		}
		norm = math.Sqrt(norm)
		for h, w := range m {
			ce = append(ce, entry{h, uint32(i), float32(w / norm)})
		}
	}
	build := func(es []entry) index {
		sort.Slice(es, func(i, j int) bool {
			if es[i].h != es[j].h {
				return es[i].h < es[j].h
			}
			return es[i].doc < es[j].doc
		})
		var ix index
		ix.post = make([]posting, len(es))
		for i, e := range es {
			if i == 0 || es[i-1].h != e.h {
				ix.keys = append(ix.keys, e.h)
				ix.idf = append(ix.idf, idf(e.h))
				ix.off = append(ix.off, uint32(i))
			}
			ix.post[i] = posting{e.doc, e.w}
		}
		ix.off = append(ix.off, uint32(len(es)))
		return ix
	}
	c.examples = build(ex)
	c.centroids = build(ce)
	return c
}

func (ix *index) find(h uint32) int {
	i, ok := slices.BinarySearch(ix.keys, h)
	if !ok {
		return -1
	}
	return i
}

// Scores writes each intent's score for text (0 to 1) into dst, which
// must hold Intents() values, and returns it. Only the first MaxText
// bytes of text are read.
func (c *Classifier) Scores(text string, dst []float32) []float32 {
	dst = dst[:c.n]
	clear(dst)
	if c.n == 0 {
		return dst
	}
	sc := getScratch()
	defer putScratch(sc)
	fs := sc.features(text)
	var qnorm float64
	for _, f := range fs {
		i := c.examples.find(f.h)
		idf := c.unseenIDF
		if i >= 0 {
			idf = c.examples.idf[i]
		}
		w := (1 + float32(math.Log(float64(f.tf)))) * idf
		qnorm += float64(w) * float64(w)
		sc.qw = append(sc.qw, w)
	}
	if qnorm == 0 {
		return dst
	}
	inv := float32(1 / math.Sqrt(qnorm))
	scale := float32(1)
	if c.Mode == Mixed {
		scale = 0.5
	}
	if c.Mode == Centroid || c.Mode == Mixed {
		ix := &c.centroids
		for j, f := range fs {
			i := ix.find(f.h)
			if i < 0 {
				continue
			}
			for _, p := range ix.post[ix.off[i]:ix.off[i+1]] {
				dst[p.doc] += scale * sc.qw[j] * inv * p.w
			}
		}
	}
	if c.Mode == Nearest || c.Mode == Mixed {
		ix := &c.examples
		if cap(sc.acc) < len(c.exIntent) {
			sc.acc = make([]float32, len(c.exIntent))
		}
		acc := sc.acc[:len(c.exIntent)]
		clear(acc)
		for j, f := range fs {
			i := ix.find(f.h)
			if i < 0 {
				continue
			}
			for _, p := range ix.post[ix.off[i]:ix.off[i+1]] {
				acc[p.doc] += sc.qw[j] * inv * p.w
			}
		}
		if c.Mode == Nearest {
			for d, s := range acc {
				if in := c.exIntent[d]; s > dst[in] {
					dst[in] = s
				}
			}
		} else {
			best := sc.best(c.n)
			for d, s := range acc {
				if in := c.exIntent[d]; s > best[in] {
					best[in] = s
				}
			}
			for i := range dst {
				dst[i] += scale * best[i]
			}
		}
	}
	for i, s := range dst {
		dst[i] = min(max(s, 0), 1) // rounding
	}
	return dst
}

// Bytes is about what the classifier holds in memory.
func (c *Classifier) Bytes() int {
	sz := func(ix *index) int { return 4*len(ix.keys) + 4*len(ix.idf) + 4*len(ix.off) + 8*len(ix.post) }
	return sz(&c.examples) + sz(&c.centroids) + 2*len(c.exIntent)
}

// feat is a feature hash and its count in a text.
type feat struct {
	h  uint32
	tf uint32
}

// scratch is one scoring's buffers, pooled: Scores allocates nothing.
type scratch struct {
	runes []rune
	hs    []uint32
	fs    []feat
	qw    []float32
	acc   []float32
	bst   []float32
}

// best is a cleared buffer of n scores.
func (sc *scratch) best(n int) []float32 {
	if cap(sc.bst) < n {
		sc.bst = make([]float32, n)
	}
	b := sc.bst[:n]
	clear(b)
	return b
}

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(sc *scratch) {
	if cap(sc.acc) > 1<<16 || cap(sc.runes) > 2*MaxText {
		return // do not keep a huge one
	}
	scratchPool.Put(sc)
}

// Truncate cuts s to at most n bytes, at a rune's start.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Normalize folds a rune as the classifier reads it: full-width ASCII to
// ASCII, the ideographic space to a space, lower case.
func Normalize(r rune) rune {
	switch {
	case r >= 0xFF01 && r <= 0xFF5E:
		r -= 0xFEE0
	case r == 0x3000:
		r = ' '
	}
	if r < utf8.RuneSelf {
		if r >= 'A' && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r
	}
	return unicode.ToLower(r)
}

// Rune classes of the folded text.
const (
	sep = iota
	word
	cjk
)

func class(r rune) int {
	switch {
	case r < utf8.RuneSelf:
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return word
		}
		return sep
	case unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) || unicode.Is(unicode.Katakana, r) || unicode.Is(unicode.Hangul, r):
		return cjk
	case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
		return word
	}
	return sep
}

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func hashRunes(kind byte, rs []rune) uint32 {
	h := uint32(fnvOffset)
	h = (h ^ uint32(kind)) * fnvPrime
	for _, r := range rs {
		for r != 0 {
			h = (h ^ uint32(r&0xff)) * fnvPrime
			r >>= 8
		}
		h = (h ^ 0xff) * fnvPrime // rune boundary
	}
	return h
}

// features are text's features, counted, sorted by hash (the scratch's).
func (sc *scratch) features(text string) []feat {
	text = Truncate(text, MaxText)
	sc.runes, sc.hs, sc.fs, sc.qw = sc.runes[:0], sc.hs[:0], sc.fs[:0], sc.qw[:0]
	for _, r := range text {
		sc.runes = append(sc.runes, Normalize(r))
	}
	rs := sc.runes
	for i := 0; i < len(rs); {
		k := class(rs[i])
		j := i + 1
		for j < len(rs) && class(rs[j]) == k {
			j++
		}
		switch k {
		case cjk:
			seg := rs[i:j]
			for n := 1; n <= 3; n++ {
				for a := 0; a+n <= len(seg); a++ {
					sc.hs = append(sc.hs, hashRunes(byte('0'+n), seg[a:a+n]))
				}
			}
		case word:
			w := rs[i:j]
			if digits(w) {
				sc.hs = append(sc.hs, hashRunes('#', nil))
				break
			}
			sc.hs = append(sc.hs, hashRunes('w', w))
			// Character trigrams with boundary marks: ^ab, abc, ..., yz$.
			var tri [3]rune
			n := len(w) + 2
			at := func(p int) rune {
				switch p {
				case 0:
					return '^'
				case n - 1:
					return '$'
				}
				return w[p-1]
			}
			for a := 0; a+3 <= n; a++ {
				tri[0], tri[1], tri[2] = at(a), at(a+1), at(a+2)
				sc.hs = append(sc.hs, hashRunes('t', tri[:]))
			}
		}
		i = j
	}
	slices.Sort(sc.hs)
	for i, h := range sc.hs {
		if i > 0 && sc.hs[i-1] == h {
			sc.fs[len(sc.fs)-1].tf++
			continue
		}
		sc.fs = append(sc.fs, feat{h, 1})
	}
	return sc.fs
}

func digits(w []rune) bool {
	for _, r := range w {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
