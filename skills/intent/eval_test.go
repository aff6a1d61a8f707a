package intent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The bar make test holds the model-free stages (rules and ngram) to on
// testdata/intents (docs/DESIGN.md and README.md state it too).
const macroF1Bar = 0.80

func loadEval(t testing.TB) (*Set, []Sample) {
	t.Helper()
	set, err := Parse("default.yaml", DefaultYAML)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("testdata/intents/*.jsonl")
	if len(files) == 0 {
		t.Fatal("no testdata/intents/*.jsonl")
	}
	var all []Sample
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ReadSamples(fh, f)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, s...)
	}
	return set, all
}

// TestEvalSetShape: at least 20 utterances per intent and out of scope, in
// zh and en, none of them a training example.
func TestEvalSetShape(t *testing.T) {
	set, samples := loadEval(t)
	train := map[string]bool{}
	for _, in := range set.Intents {
		for _, ex := range in.Examples {
			train[strings.ToLower(ex)] = true
		}
	}
	count := map[string]map[string]int{}
	for _, s := range samples {
		if train[strings.ToLower(s.Text)] {
			t.Errorf("%s:%d: %q is a training example", s.File, s.Line, s.Text)
		}
		if count[s.Intent] == nil {
			count[s.Intent] = map[string]int{}
		}
		count[s.Intent][s.Lang]++
	}
	for _, name := range append(set.Names(), OutOfScope) {
		if name == set.Settings.Fallback {
			continue // its examples are out of scope: counted as out_of_scope
		}
		c := count[name]
		if c["zh"]+c["en"] < 20 || c["zh"] == 0 || c["en"] == 0 {
			t.Errorf("intent %s: %d zh and %d en samples; want at least 20, in both", name, c["zh"], c["en"])
		}
	}
}

// TestEvalGate is make test's gate: the model-free stages reach the
// macro-F1 bar on the shipped intents and testdata/intents.
func TestEvalGate(t *testing.T) {
	set, samples := loadEval(t)
	rep, err := set.Evaluate(context.Background(), samples, Options{Stages: UseRules | UseNgram})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Print(&b, 20)
	t.Logf("\n%s", b.String())
	if rep.MacroF1 < macroF1Bar {
		t.Fatalf("macro-F1 %.3f is below the bar %.2f", rep.MacroF1, macroF1Bar)
	}
}

// FuzzReadSamples: any JSONL reads or fails naming its line, never panics;
// what reads has text and intent.
func FuzzReadSamples(f *testing.F) {
	f.Add("{\"text\":\"我要退货\",\"intent\":\"refund\",\"lang\":\"zh\"}\n\n{\"text\":\"hi\",\"intent\":\"greeting\"}\n")
	f.Add("{\"text\":\"\",\"intent\":\"x\"}")
	f.Add("{\"text\":\"a\",\"intent\":\"b\"} {}")
	f.Add("[1,2]\n")
	f.Fuzz(func(t *testing.T, src string) {
		got, err := ReadSamples(strings.NewReader(src), "f.jsonl")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.jsonl") {
				t.Fatalf("an error not naming the file: %v", err)
			}
			return
		}
		for _, s := range got {
			if strings.TrimSpace(s.Text) == "" || s.Intent == "" || s.Line < 1 {
				t.Fatalf("sample %+v", s)
			}
		}
	})
}

func TestReadSamplesErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"{\"text\":\"a\",\"intent\":\"b\"}\n{\"text\":\"a\"}\n", "f.jsonl:2: intent: missing"},
		{"\n{\"intent\":\"b\"}\n", "f.jsonl:2: text: missing"},
		{"{\"text\":\"a\",\"intent\":\"b\",\"x\":1}", `f.jsonl:1: json: unknown field "x"`},
		{"{\"text\":\"a\",\"intent\":\"b\"} {\"text\":\"c\"}", "f.jsonl:1: one JSON object a line"},
		{strings.Repeat("a", maxSampleLine+1), "a line is at most"},
	} {
		if _, err := ReadSamples(strings.NewReader(c.src), "f.jsonl"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.40q: got %v, want %q", c.src, err, c.want)
		}
	}
}
