package intent

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"
)

func checkClassify(t *testing.T, s *Set, text string) {
	t.Helper()
	var buf [MaxIntents]float32
	for _, m := range []Mode{Mixed, Nearest, Centroid} {
		s.clf.Mode = m
		for i, sc := range s.clf.Scores(text, buf[:]) {
			if sc < 0 || sc > 1 || sc != sc {
				t.Fatalf("%s: intent %d scores %v for %q", m, i, sc, text)
			}
		}
	}
	s.clf.Mode = Mixed
	r := s.Classify(context.Background(), text, Options{})
	if !s.Has(r.Intent) || r.Confidence < 0 || r.Confidence > 1 {
		t.Fatalf("result %+v", r)
	}
	if (r.Stage == StageFallback) != r.Low || (r.Stage == StageFallback) != (r.Intent == s.Settings.Fallback) {
		t.Fatalf("result %+v", r)
	}
}

func TestNormalizeAndFeatures(t *testing.T) {
	// Full width, case and punctuation fold to the same features.
	sc := getScratch()
	a := append([]feat(nil), sc.features("ＲＥＦＵＮＤ，我要退款！")...)
	b := append([]feat(nil), sc.features("refund 我要退款")...)
	putScratch(sc)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d and %d features", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("feature %d: %v != %v", i, a[i], b[i])
		}
	}
	// An order number is one feature whatever its digits.
	sc = getScratch()
	x := len(sc.features("order 12345"))
	y := len(sc.features("order 99"))
	putScratch(sc)
	if x != y {
		t.Fatalf("%d and %d features", x, y)
	}
}

func TestClassifierZhEn(t *testing.T) {
	s, err := Parse(File, DefaultYAML)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ text, want, stage string }{
		{"我想退款", "refund", StageRules},
		{"转人工", "human", StageRules},
		{"I want a REFUND now", "refund", StageRules},
		{"我的包裹在哪里", "order_status", StageNgram},
		{"where is my parcel", "order_status", StageNgram},
		{"能开增值税发票吗", "invoice", StageRules},
		{"how much does delivery cost to Germany", "shipping", StageNgram},
		{"今天天气怎么样", "fallback", StageFallback},
		{"explain quantum physics", "fallback", StageFallback},
	} {
		r := s.Classify(context.Background(), c.text, Options{})
		if r.Intent != c.want || r.Stage != c.stage {
			t.Errorf("%q: got %s by %s (%.2f, top %v), want %s by %s", c.text, r.Intent, r.Stage, r.Confidence, r.Top, c.want, c.stage)
		}
	}
}

func TestRulesConflictGoesOn(t *testing.T) {
	s, err := Parse("f.yaml", []byte("intents:\n  - {name: a, rules: [foo], examples: [foo bar baz]}\n  - {name: b, rules: [bar], examples: [qux quux]}"))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Classify(context.Background(), "foo bar", Options{})
	if r.Stage == StageRules {
		t.Fatalf("two intents' rules matched and the rules stage decided: %+v", r)
	}
	if r := s.Classify(context.Background(), "foo bar", Options{Allowed: Allowed{"b"}}); r.Intent != "b" || r.Stage != StageRules {
		t.Fatalf("a bot of intent b only: %+v", r)
	}
}

func TestAllowedNarrows(t *testing.T) {
	s, _ := Parse(File, DefaultYAML)
	r := s.Classify(context.Background(), "我想退款", Options{Allowed: Allowed{"order_status"}})
	if r.Intent == "refund" {
		t.Fatalf("a bot without refund got refund: %+v", r)
	}
	for _, c := range r.Top {
		if c.Intent != "order_status" && c.Intent != "fallback" {
			t.Fatalf("candidate %s outside the bot's intents (and the out-of-scope examples)", c.Intent)
		}
	}
}

func TestLongInputIsCut(t *testing.T) {
	s, _ := Parse(File, DefaultYAML)
	long := strings.Repeat("退", MaxText) // 3 bytes a rune: cut at a rune
	if got := Truncate(long, MaxText); len(got) > MaxText || !utf8.ValidString(got) {
		t.Fatalf("cut to %d bytes", len(got))
	}
	checkClassify(t, s, long)
}

// FuzzClassify is the classifier's input path: any text, no panic,
// scores in [0, 1].
func FuzzClassify(f *testing.F) {
	s, err := Parse(File, DefaultYAML)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{"", "我要退款", "ＲＥＦＵＮＤ", "\xff\xfe", "order 123456789", strings.Repeat("a", 5000), "\u3000\u0301é", "ﾊﾝｶｸ", "한국어 주문"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) { checkClassify(t, s, text) })
}
