package kb

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// exampleDocs reads the shipped document set (examples/kb/lumen).
func exampleDocs(t testing.TB) []Doc {
	t.Helper()
	dir := filepath.Join("..", "..", "examples", "kb", "lumen")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var docs []Doc
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, Doc{Name: e.Name(), Text: string(b)})
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].Name < docs[j].Name })
	return docs
}

type goldenQ struct {
	Q       string `json:"q"`
	Doc     string `json:"doc"`
	Heading string `json:"heading"`
}

func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	return out
}

// TestGoldenRecall is the gate of `make test`: over the shipped document
// set, BM25 alone must put a chunk of the right section among the first
// 4 for at least 80% of the golden questions (Chinese and English).
func TestGoldenRecall(t *testing.T) {
	base := NewBase(exampleDocs(t), 0)
	qs := readJSONL[goldenQ](t, filepath.Join("testdata", "golden.jsonl"))
	if len(qs) < 100 {
		t.Fatalf("the golden set has %d questions, want at least 100", len(qs))
	}
	found, zh, zhFound := 0, 0, 0
	for _, q := range qs {
		a := base.Search(Query{Text: q.Q, K: 4})
		ok := false
		for _, r := range a.Results {
			if r.Doc == q.Doc && len(r.Heading) > 0 && r.Heading[len(r.Heading)-1] == q.Heading {
				ok = true
				break
			}
		}
		cjk := strings.ContainsFunc(q.Q, isCJK)
		if cjk {
			zh++
		}
		if ok {
			found++
			if cjk {
				zhFound++
			}
		} else {
			var got []string
			for _, r := range a.Results {
				got = append(got, r.Doc+":"+r.HeadingPath())
			}
			t.Logf("miss: %q want %s:%s, got %q", q.Q, q.Doc, q.Heading, got)
		}
	}
	recall := float64(found) / float64(len(qs))
	t.Logf("recall@4 (BM25 alone) = %.3f (%d of %d questions; Chinese %d of %d, English %d of %d)",
		recall, found, len(qs), zhFound, zh, found-zhFound, len(qs)-zh)
	if recall < 0.8 {
		t.Fatalf("recall@4 = %.3f, below the 0.8 gate", recall)
	}
}

// TestGoldenNoAnswer: the default threshold says "no answer" to every
// out-of-scope question of testdata/none.jsonl and lets at least 95% of
// the golden questions through.
func TestGoldenNoAnswer(t *testing.T) {
	base := NewBase(exampleDocs(t), 0)
	for _, q := range readJSONL[goldenQ](t, filepath.Join("testdata", "none.jsonl")) {
		if c := base.Search(Query{Text: q.Q}).Coverage; c >= DefaultThreshold {
			t.Errorf("%q: coverage %.3f, at or over the threshold %.2f: it would be answered from the documents", q.Q, c, DefaultThreshold)
		}
	}
	qs := readJSONL[goldenQ](t, filepath.Join("testdata", "golden.jsonl"))
	below := 0
	for _, q := range qs {
		if base.Search(Query{Text: q.Q}).Coverage < DefaultThreshold {
			below++
		}
	}
	t.Logf("%d of %d golden questions fall below the threshold %.2f", below, len(qs), DefaultThreshold)
	if below*20 > len(qs) {
		t.Fatalf("%d of %d golden questions fall below the threshold (more than 5%%)", below, len(qs))
	}
}
