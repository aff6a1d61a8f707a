package kb

import (
	"context"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
)

// fakeEmbedder embeds a text as its bag of terms, a word's synonyms
// folded into one dimension: "reimbursed" lands where "refund" does,
// which BM25 cannot see. Model names the model that answers; calls
// counts the texts embedded.
type fakeEmbedder struct {
	mu    sync.Mutex
	model string
	calls atomic.Int64
}

func (f *fakeEmbedder) embed(_ context.Context, req *moltbot.EmbedRequest) (*moltbot.Embeddings, error) {
	f.mu.Lock()
	model := f.model
	f.mu.Unlock()
	out := &moltbot.Embeddings{Served: moltbot.ModelRef{Provider: "fake", Model: model}}
	for _, text := range req.Input {
		f.calls.Add(1)
		v := make([]float32, 64)
		Tokenize(text, func(term []byte) {
			w := string(term)
			switch w {
			case "reimbursed", "reimbursement", "refunds", "refunded":
				w = "refund"
			}
			h := fnv.New32a()
			h.Write([]byte(w))
			v[h.Sum32()%64]++
		})
		out.Vectors = append(out.Vectors, v)
	}
	return out, nil
}

func (f *fakeEmbedder) setModel(m string) {
	f.mu.Lock()
	f.model = m
	f.mu.Unlock()
}

// waitFor retries cond until it holds, for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasVectors(s *Store, space, kb, model string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bases[space+"/"+kb]
	return b != nil && b.built != nil && b.built.vec != nil && b.built.Model == model
}

func TestEmbeddings(t *testing.T) {
	kv := newMemKV()
	fe := &fakeEmbedder{model: "m1"}
	s, err := Open(Config{KV: kv, Embed: fe.embed})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Close()
	docs := []Doc{
		{Name: "refunds.md", Text: "# Refund timing\n\nA refund reaches your card in 5 to 10 business days."},
		{Name: "shipping.md", Text: "# Express\n\nExpress delivery costs $12.99 and takes 1 to 2 days."},
	}
	if err := s.Put("acme", "help", docs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "vectors of m1", func() bool { return hasVectors(s, "acme", "help", "fake/m1") })
	if s.VectorModel() != "fake/m1" {
		t.Fatalf("vector model %q", s.VectorModel())
	}
	// BM25 alone finds nothing for a question in other words; the vectors do.
	q := "when am I reimbursed"
	if f, a, _ := s.Search("acme", []string{"help"}, Query{Text: q}); len(f) != 0 || a.Coverage != 0 {
		t.Fatalf("BM25 found %d for a question without a shared word", len(f))
	}
	st := NewStage(s, StageConfig{MinCosine: 0.3})
	tr := turnOf("acme", &moltbot.Bot{Name: "b", KnowledgeBases: []string{"help"}}, q)
	tr.Embed = fe.embed
	if c, err := st.BeforeModel(context.Background(), tr, nil); c != nil || err != nil || tr.Notes[NoteHit] != "true" ||
		len(tr.Citations) == 0 || tr.Citations[0].Document != "refunds.md" {
		t.Fatalf("a question in other words: %v %v %v %+v", c, err, tr.Notes, tr.Citations)
	}
	// A query vector of another model is not compared with these.
	tr = turnOf("acme", &moltbot.Bot{Name: "b", KnowledgeBases: []string{"help"}}, q)
	other := &fakeEmbedder{model: "m9"}
	tr.Embed = other.embed
	if c, _ := st.BeforeModel(context.Background(), tr, nil); c == nil || tr.Notes[NoteHit] != "false" {
		t.Fatalf("a query vector of another model was used: %v", tr.Notes)
	}

	// A restart embeds nothing again: the vectors are kept.
	s.Close()
	before := fe.calls.Load()
	s2, _ := Open(Config{KV: kv, Embed: fe.embed})
	s2.Start()
	defer s2.Close()
	waitFor(t, "vectors after a restart", func() bool { return hasVectors(s2, "acme", "help", "fake/m1") })
	if n := fe.calls.Load() - before; n != 0 {
		t.Fatalf("a restart embedded %d chunks again", n)
	}
	// Another model answers now: every chunk is embedded again with it.
	fe.setModel("m2")
	if err := s2.Put("acme", "help", []Doc{{Name: "new.md", Text: "# New\n\nnew text"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "vectors of m2", func() bool { return hasVectors(s2, "acme", "help", "fake/m2") })
	if s2.VectorModel() != "fake/m2" {
		t.Fatalf("vector model %q after the change", s2.VectorModel())
	}
}

func FuzzDecodeVec(f *testing.F) {
	f.Add(encodeVec([]int8{1, -2, 127}))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if q, ok := decodeVec(b); ok {
			if got := encodeVec(q); string(got) != string(b) && len(q) > 0 {
				// a non-minimal uvarint decodes too: re-encoding it must decode the same
				if q2, ok := decodeVec(got); !ok || len(q2) != len(q) {
					t.Fatalf("round trip of %x", b)
				}
			}
		}
	})
}
