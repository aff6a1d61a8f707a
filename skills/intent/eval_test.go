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
