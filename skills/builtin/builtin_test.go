package builtin

import (
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

func TestCalc(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  error
	}{
		{"1+2*3", 7, nil},
		{"(1+2)*3", 9, nil},
		{"2^3^2", 512, nil}, // right-associative
		{"-2^2", -4, nil},
		{"2**-1", 0.5, nil},
		{"7 % 3", 1, nil},
		{"１０÷４", 2.5, nil},
		{"3×(2−5)", -9, nil},
		{"1/0", 0, ErrDivByZero},
		{"5 % 0", 0, ErrDivByZero},
		{"0^-1", 0, ErrDivByZero},
		{"10^400", 0, ErrTooLarge},
		{"(-8)^(1/3)", 0, ErrNotReal},
		{"1+", 0, ErrSyntax},
		{"(1+2", 0, ErrSyntax},
		{"1..2", 0, ErrSyntax},
		{"abc", 0, ErrSyntax},
		{strings.Repeat("(", 40) + "1" + strings.Repeat(")", 40), 0, ErrTooDeep},
		{strings.Repeat("1+", 200) + "1", 0, ErrTooLong},
	} {
		got, err := Calc(tc.in)
		if !errors.Is(err, tc.err) || err == nil && math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("Calc(%q) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// FuzzCalc: any input gives a finite number or an error, never a panic,
// and no more work than its bound.
func FuzzCalc(f *testing.F) {
	for _, s := range []string{"1+2*3", "(1+2)^10", "-2^2", "1/0", "2**-1", "((((1))))", "3×(2−5)", "1e5", "--1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Calc(s)
		if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("Calc(%q) = %v", s, v)
		}
		if err == nil && len(s) > maxExpr {
			t.Fatalf("Calc took %d bytes", len(s))
		}
		calculate(s) // the preset's reading of a message: no panic
	})
}

// FuzzFAQ: an FAQ file parses or fails with an error naming the file;
// every parsed entry has a question and an answer.
func FuzzFAQ(f *testing.F) {
	f.Add([]byte("- q: [a, b]\n  a: c\n"))
	f.Add([]byte("- q: 营业时间\n  a: 9-18\n- q: x\n  a: y\n"))
	f.Add([]byte("- {q: [], a: x}\n"))
	f.Add([]byte("q: a\n"))
	f.Add([]byte("- q: &x a\n  a: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseFAQ("skills/faq.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "skills/faq.yaml") {
				t.Fatalf("an error that does not name the file: %v", err)
			}
			return
		}
		for _, e := range entries {
			if e.check() != nil {
				t.Fatalf("a bad entry parsed: %+v", e)
			}
		}
	})
}

func TestParseFAQErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "f.yaml: the FAQ is empty"},
		{"q: a\n", "f.yaml:1: want a list of entries"},
		{"- q: a\n", "f.yaml:1: [0]: a: no answer"},
		{"- a: b\n", "f.yaml:1: [0]: q: no question"},
		{"- q: a\n  a: b\n- q: [x, {y: 1}]\n  a: c\n", "f.yaml:3: [1]: q: want a question, got a mapping"},
		{"- q: a\n  a: b\n  a: c\n", "f.yaml:3: [0]: a: given twice"},
		{"- q: '？！'\n  a: b\n", `q: "？！" has nothing to match`},
		{"- q: a\n  a: [b]\n", "f.yaml:2: [0]: a: want the answer's text, got a list"},
		{"- q: [a\n", "f.yaml: "},
	} {
		_, err := ParseFAQ("f.yaml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	for a, b := range map[string]string{
		"What's the return policy?": "whats the return policy",
		"退货政策？":                     "退货 政策",
		"ＡＢＣ　１２３！":                  "abc123",
	} {
		if normalize(a) != normalize(b) {
			t.Errorf("normalize(%q) = %q, normalize(%q) = %q", a, normalize(a), b, normalize(b))
		}
	}
}

func TestTrigger(t *testing.T) {
	tr, err := compileTrigger([]string{"/sum", "总结"}, []string{`生成(.*)代码`, `(?i)^tr (?P<to>\w+): (?P<input>.+)$`})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/sum hello", "hello", true},
		{"/sum: hello", "hello", true},
		{"/summary hello", "", false}, // another command
		{"总结：一段话", "一段话", true},
		{"请生成Go代码", "Go", true},
		{"TR fr: bonjour", "bonjour", true},
		{"hello", "", false},
	} {
		got, ok := tr.match(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("match(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if _, err := compileTrigger(nil, []string{`(a)\1`}); err == nil || !strings.Contains(err.Error(), "patterns[0]: not an RE2 pattern") {
		t.Errorf("a backreference: %v", err)
	}
	if _, err := compileTrigger(nil, nil); err == nil {
		t.Error("no trigger at all was taken")
	}
}

func TestFencedCode(t *testing.T) {
	got := FencedCode("text\n```go\nfunc a() {}\n```\nmore\n~~~~\nplain\n~~~~\n```js\nopen")
	want := []Block{{"go", "func a() {}"}, {"", "plain"}, {"js", "open"}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("block %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if FencedCode("no code") != nil {
		t.Error("a block in plain text")
	}
}

// Chunks: every chunk within the size, nothing lost but the spaces at
// the cuts, cuts at a sentence end when there is one.
func TestChunks(t *testing.T) {
	text := strings.Repeat("这是一个句子。", 100) + strings.Repeat("This is a sentence. ", 50)
	cs := Chunks(text, 200)
	if len(cs) < 5 {
		t.Fatalf("%d chunks", len(cs))
	}
	var joined strings.Builder
	for i, c := range cs {
		if n := utf8.RuneCountInString(c); n > 200 || n == 0 {
			t.Errorf("chunk %d: %d runes", i, n)
		}
		if i < len(cs)-1 && !strings.HasSuffix(c, "。") && !strings.HasSuffix(c, ".") {
			t.Errorf("chunk %d not cut at a sentence end: …%q", i, c[len(c)-10:])
		}
		joined.WriteString(c)
	}
	if strip := func(s string) string { return strings.ReplaceAll(s, " ", "") }; strip(joined.String()) != strip(text) {
		t.Error("the chunks do not add up to the text")
	}
	if cs := Chunks(strings.Repeat("x", 450), 200); len(cs) != 3 || len(cs[0]) != 200 {
		t.Errorf("no separator: %d chunks", len(cs))
	}
}

// Placeholders round-trip: what Protect takes out, Restore puts back
// (as the glossary says); a lost, doubled or made-up one is an error.
func TestTranslatePlaceholders(t *testing.T) {
	p, err := New(Spec{Name: "tr", Use: "translate", With: &TranslateOptions{Commands: []string{"/tr"}, To: "auto",
		Glossary: map[string]string{"moltbot": "", "工单": "ticket", "Pebble": "Pebble DB"}}}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	tr := p.(*Translate)
	text := "moltbot 用 pebble 存储；Moltbot 的工单。moltbotx 不算。"
	prot, found := tr.Protect(text)
	if prot != "[[T1]] 用 [[T2]] 存储；[[T3]] 的[[T4]]。moltbotx 不算。" || len(found) != 4 {
		t.Fatalf("%q %v", prot, found)
	}
	if back, err := tr.Restore(prot, found); err != nil || back != "moltbot 用 Pebble DB 存储；Moltbot 的ticket。moltbotx 不算。" {
		t.Errorf("round trip: %q %v", back, err)
	}
	for _, bad := range []string{"[[T1]] [[T2]] [[T3]]", "[[T1]] [[T1]] [[T2]] [[T3]] [[T4]]", "[[T1]] [[T2]] [[T3]] [[T4]] [[T9]]"} {
		if _, err := tr.Restore(bad, found); err == nil {
			t.Errorf("Restore(%q) took it", bad)
		}
	}
	if back, err := tr.Restore("[[ T2 ]] [[T1]] [[T4]] [[T3]]", found); err != nil || back != "Pebble DB moltbot ticket Moltbot" {
		t.Errorf("reordered, spaced: %q %v", back, err)
	}
}

func TestParseReview(t *testing.T) {
	if r, err := ParseReview("```json\n{\"summary\":\"s\",\"findings\":[{\"line\":1,\"severity\":\"info\",\"message\":\"m\"}]}\n```", 3); err != nil || len(r.Findings) != 1 {
		t.Errorf("fenced JSON: %+v %v", r, err)
	}
	for _, bad := range []string{
		`{"summary":"s"}`,
		`{"findings":[]}`,
		`{"summary":"s","findings":[{"line":4,"severity":"info","message":"m"}]}`,
		`{"summary":"s","findings":[{"line":1,"severity":"meh","message":"m"}]}`,
		`{"summary":"s","findings":[{"line":1,"severity":"info"}]}`,
		`{"summary":"s","findings":[],"extra":1}`,
		`{"summary":"s","findings":[]} {}`,
	} {
		if _, err := ParseReview(bad, 3); err == nil {
			t.Errorf("ParseReview(%s) took it", bad)
		}
	}
}

func TestOptionChecks(t *testing.T) {
	for use, opts := range map[string]any{
		"guard":     &GuardOptions{Mask: []string{"ssn"}, Action: "block"},
		"tools":     &ToolsOptions{},
		"sentiment": &SentimentOptions{Threshold: 2},
		"summarize": &SummarizeOptions{Commands: []string{"/s"}, Chunk: 10, MaxCalls: 0, Words: 1},
		"faq":       &FAQOptions{File: "/etc/passwd"},
		"collect":   &CollectOptions{Commands: []string{"/r"}, Slots: []SlotOptions{{Name: "a b", Pattern: "(", Ask: ""}}, Done: "{x}", MaxAsks: 0},
	} {
		err := Check(use, opts)
		var oe *OptionError
		if err == nil || !errors.As(err, &oe) {
			t.Errorf("%s: %v", use, err)
		}
		if _, err := New(Spec{Name: "x", Use: use, With: opts}, Env{}); err == nil {
			t.Errorf("%s: New took bad options", use)
		}
	}
	if _, err := New(Spec{Name: "f", Use: "faq", With: &FAQOptions{File: "nope.yaml"}}, Env{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "skills/nope.yaml does not exist") {
		t.Errorf("a missing FAQ: %v", err)
	}
}

func TestCollectChecks(t *testing.T) {
	err := Check("collect", &CollectOptions{Patterns: []string{"x"}, MaxAsks: 3, Done: "{order} {nope}",
		Slots: []SlotOptions{{Name: "order", Pattern: `\d+`, Ask: "which?"}, {Name: "order", Pattern: `(a)\1`, Ask: "which?"}}})
	for _, want := range []string{"slots[1].name: \"order\" is another slot's name too", "slots[1].pattern: want an RE2 pattern",
		"slots[1].ask: \"which?\" is asked for another slot too", "done: {nope} is no slot"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

// A bot's turn runs only the presets its skills name, and is watched only
// by the guards it names; a turn of no bot runs them all.
func TestBotPresets(t *testing.T) {
	calc, err := New(Spec{Name: "calc", Use: "tools"}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	pii, err := New(Spec{Name: "pii", Use: "guard"}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	turn := func(bot *moltbot.Bot) *moltbot.Turn {
		return &moltbot.Turn{Bot: bot, Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "1+1 a@b.cn"}}}
	}
	for _, tc := range []struct {
		bot          *moltbot.Bot
		calc, masked bool
	}{
		{nil, true, true},
		{&moltbot.Bot{Name: "b"}, false, true}, // no guards: list, every guard
		{&moltbot.Bot{Name: "b", Guards: []string{"other"}}, false, false},
		{&moltbot.Bot{Name: "b", Skills: []string{"calc"}}, true, true},
		{&moltbot.Bot{Name: "b", Skills: []string{"calc"}, Guards: []string{"other"}}, true, false},
		{&moltbot.Bot{Name: "b", Guards: []string{"pii"}}, false, true},
	} {
		tr := turn(tc.bot)
		tr.Messages[0].Content = "1+1"
		c, _ := calc.(*Tools).BeforeModel(ctx, tr, nil)
		if (c != nil) != tc.calc {
			t.Errorf("bot %+v: calc answered %v", tc.bot, c != nil)
		}
		tr = turn(tc.bot)
		pii.(*Guard).BeforeModel(ctx, tr, nil)
		if masked := tr.Messages[0].Content != "1+1 a@b.cn"; masked != tc.masked {
			t.Errorf("bot %+v: masked %v", tc.bot, masked)
		}
	}
}

// FuzzMessage: the no-model presets read any user message without a
// panic: tools' questions (dates, units, arithmetic), sentiment's score
// (within -1..1), the FAQ's normalization.
func FuzzMessage(f *testing.F) {
	for _, s := range []string{"2026-12-25是星期几", "10 km to miles", "2026-02-30 plus 99999 days", "9999-12-31加999999天",
		"how many days between 0001-01-01 and 9999-12-31", "100华氏度是多少摄氏度", "不是很好，但是还不错", "1e308 km to mm", "(((1)))"} {
		f.Add(s)
	}
	tl, err := New(Spec{Name: "t", Use: "tools"}, Env{})
	if err != nil {
		f.Fatal(err)
	}
	se, err := New(Spec{Name: "s", Use: "sentiment"}, Env{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, ok := tl.(*Tools).Answer(s); ok && a == "" {
			t.Fatalf("tools answered %q with nothing", s)
		}
		if score, label := se.(*Sentiment).Score(s); score < -1 || score > 1 || label == "" {
			t.Fatalf("Score(%q) = %v %q", s, score, label)
		}
		normalize(s)
	})
}
