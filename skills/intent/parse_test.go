package intent

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

const small = `settings:
  threshold: 0.2
  margin: 0.05
  fallback: other
  model: sim/tiny
intents:
  - name: refund
    description: money back
    rules: ['退款', '(?i)\brefund\b']
    examples: [我要退货, I want my money back, return this item, 东西不想要了能退吗]
  - name: order_status
    description: where an order is
    examples: [我的订单到哪了, where is my order, track my package, 包裹什么时候到]
`

func TestParseSmall(t *testing.T) {
	s, err := Parse("skills/intents.yaml", []byte(small))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Names(); strings.Join(got, ",") != "refund,order_status" {
		t.Fatalf("names %v", got)
	}
	st := s.Settings
	if st.Threshold != 0.2 || st.Margin != 0.05 || st.Fallback != "other" || st.Model != "sim/tiny" || st.ModelTop != DefaultModelTop {
		t.Fatalf("settings %+v", st)
	}
	if !s.Has("refund") || !s.Has("other") || s.Has("nope") {
		t.Fatal("Has")
	}
	if s.Intents[1].Line != 11 {
		t.Fatalf("line %d", s.Intents[1].Line)
	}
	// 4 examples each, under min_examples' default (5): noted, not refused.
	if len(s.Notes) != 2 || !strings.Contains(s.Notes[0], `skills/intents.yaml:7: intent "refund" has 4 example(s)`) {
		t.Fatalf("notes %q", s.Notes)
	}
}

func TestParseErrors(t *testing.T) {
	intent := func(body string) string { return "intents:\n  - name: a\n" + body }
	for _, c := range []struct{ name, src, want string }{
		{"not a mapping", "- a", "f.yaml:1: an intents file is a mapping"},
		{"unknown top key", "intent: []", "f.yaml:1: intent: unknown key (settings, intents)"},
		{"no intents", "settings: {threshold: 0.2}", "f.yaml:1: intents: missing"},
		{"empty intents", "intents: []", "f.yaml:1: intents: empty"},
		{"bad threshold", "settings: {threshold: 2}\nintents: []", `f.yaml:1: settings.threshold: "2": want a number from 0 to 1`},
		{"NaN threshold", "settings: {threshold: .nan}\nintents: []", `settings.threshold: ".nan"`},
		{"unknown setting", "settings:\n  treshold: 0.2\nintents: []", "f.yaml:2: settings.treshold: unknown key"},
		{"model_top", "settings: {model_top: 1.5}\nintents: []", "settings.model_top"},
		{"model_timeout", "settings: {model_timeout: forever}\nintents: []", `settings.model_timeout: "forever": want a duration`},
		{"bad name", "intents:\n  - name: Refund\n    examples: [x]", `f.yaml:2: intents[0].name: "Refund": an intent's name is`},
		{"no name", "intents:\n  - examples: [x]", "f.yaml:2: intents[0].name: missing"},
		{"twice", "intents:\n  - {name: a, examples: [x]}\n  - {name: a, examples: [y]}", `f.yaml:3: intents[1].name: intent "a" is defined twice (first at line 2)`},
		{"nothing", "intents:\n  - name: a\n    description: d", `f.yaml:2: intents[0]: intent "a" has neither examples nor rules`},
		{"backtracking rule", intent("    rules: ['ok', '(?<=a)b']"), `f.yaml:3: intents[0].rules[1]: pattern "(?<=a)b": error parsing regexp: `},
		{"backreference", intent("    rules:\n      - '(a)\\1'"), `f.yaml:4: intents[0].rules[0]: pattern "(a)\\1"`},
		{"empty rule", intent("    rules: ['']"), "intents[0].rules[0]: an empty pattern"},
		{"rule matching all", intent("    rules: ['x*']"), `pattern "x*" matches the empty message`},
		{"dup example", intent("    examples: [hi, hi]"), `f.yaml:3: intents[0].examples[1]: "hi" is listed twice`},
		{"empty example", intent("    examples: ['  ']"), "intents[0].examples[0]: an example is 1 to"},
		{"example a map", intent("    examples: [{a: b}]"), "intents[0].examples[0]: want a text, not a mapping"},
		{"unknown intent key", intent("    example: [x]"), "f.yaml:3: intents[0].example: unknown key (name, description, rules, examples)"},
		{"key twice", "intents: []\nintents: []", "f.yaml:2: intents: given twice"},
		{"alias", "x: &a [hi]\nintents:\n  - name: a\n    examples: *a", "unknown key"},
		{"alias value", "intents:\n  - name: a\n    examples: [&x hi, *x]", "want a text, not an alias"},
		{"not utf-8", "intents: [\xff]", "f.yaml:1: not UTF-8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(c.src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := Parse("f.yaml", make([]byte, MaxFile+1))
	var e *Error
	if !errors.As(err, &e) || e.Line != 1 || !strings.Contains(e.Msg, "at most") {
		t.Fatalf("got %v", err)
	}
}

func TestLintDuplicateAcrossIntents(t *testing.T) {
	s, err := Parse("f.yaml", []byte("settings: {min_examples: 1}\nintents:\n  - {name: a, examples: [Where is it]}\n  - {name: b, examples: [where is it]}"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Notes) != 1 || !strings.Contains(s.Notes[0], `f.yaml:4: intent "b": example "where is it" is also an example of intent "a"`) {
		t.Fatalf("notes %q", s.Notes)
	}
}

func TestDefaultParses(t *testing.T) {
	s, err := Parse(File, DefaultYAML)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Notes) != 0 {
		t.Fatalf("the shipped intents have lint notes: %q", s.Notes)
	}
	for _, n := range []string{"refund", "order_status", "shipping", "cancel_order", "change_address", "invoice", "account", "payment", "human", "greeting", "thanks", "complaint"} {
		if !s.Has(n) {
			t.Errorf("no intent %s", n)
		}
	}
}

// FuzzParse feeds the parser, then classifies with whatever parses: no
// panic, scores within [0, 1], a result naming a known intent or the
// fallback.
func FuzzParse(f *testing.F) {
	f.Add([]byte(small), "我要退款")
	f.Add(DefaultYAML, "where is my order 12345")
	f.Add([]byte("intents:\n  - {name: a, rules: ['(?i)x+'], examples: ['']}"), "xx")
	f.Add([]byte("settings: {threshold: 1, margin: 1}\nintents:\n  - {name: a, examples: [ａｂｃ]}"), "ABC")
	f.Fuzz(func(t *testing.T, src []byte, text string) {
		s, err := Parse("f.yaml", src)
		if err != nil {
			if s != nil {
				t.Fatal("a set with an error")
			}
			return
		}
		checkClassify(t, s, text)
	})
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if s, err := Load(dir+"/none.yaml", "skills/intents.yaml"); s != nil || err != nil {
		t.Fatalf("no file: %v %v", s, err)
	}
	if err := os.WriteFile(dir+"/a.yaml", []byte(small), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Load(dir+"/a.yaml", "skills/intents.yaml"); err != nil || len(s.Intents) != 2 {
		t.Fatalf("a file: %v", err)
	}
	os.Symlink(dir+"/a.yaml", dir+"/link.yaml")
	if _, err := Load(dir+"/link.yaml", "skills/intents.yaml"); err == nil || !strings.Contains(err.Error(), "skills/intents.yaml:1: not a regular file") {
		t.Fatalf("a link: %v", err)
	}
	os.WriteFile(dir+"/big.yaml", make([]byte, MaxFile+1), 0o600)
	if _, err := Load(dir+"/big.yaml", "skills/intents.yaml"); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("too big: %v", err)
	}
}

// README's intents example, as written, loads and recognizes.
func TestReadmeExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Recognize intents\n")
	if i < 0 {
		t.Fatal("README has no Recognize intents")
	}
	s = s[i:]
	start := strings.Index(s, "```yaml\n") + len("```yaml\n")
	end := strings.Index(s[start:], "```")
	set, err := Parse("README.md", []byte(s[start:start+end]))
	if err != nil {
		t.Fatal(err)
	}
	if r := set.Classify(context.Background(), "我要退款", Options{}); r.Intent != "refund" || r.Stage != StageRules {
		t.Fatalf("%+v", r)
	}
}
