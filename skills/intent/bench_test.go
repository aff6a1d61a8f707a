package intent

import (
	"context"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
)

// The cascade's cost per turn (BENCHMARKS.md, "Intent recognition"):
// a message a rule takes, one the classifier takes, one that falls back
// (both stages run), in zh and en; beside them two baselines: a plain
// scan of every rule of the file as one alternation (what a keyword router
// does), and the model stage alone through the in-process simulator with
// no delay (the floor of asking any model).
func BenchmarkCascade(b *testing.B) {
	set, err := Parse(File, DefaultYAML)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct{ name, text string }{
		{"rules/zh", "我要退款，订单号123456"},
		{"rules/en", "I want a refund for order 123456"},
		{"ngram/zh", "我的包裹到哪儿了，三天了还没到"},
		{"ngram/en", "where is my parcel, it has been three days"},
		{"fallback/zh", "今天天气怎么样"},
		{"fallback/en", "tell me a joke about penguins"},
		// moltbot bench's prompt (64 words): every rule's pattern over a paragraph.
		{"paragraph/en", strings.TrimSpace(strings.Repeat("please summarize the following notes about edge devices and their memory ", 6))},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				set.Classify(ctx, c.text, Options{Stages: UseRules | UseNgram})
			}
		})
	}
	b.Run("baseline/regexp-scan", func(b *testing.B) {
		var alts []string
		for _, in := range set.Intents {
			alts = append(alts, in.Rules...)
		}
		re := regexp.MustCompile("(?:" + strings.Join(alts, ")|(?:") + ")")
		b.ReportAllocs()
		for b.Loop() {
			re.MatchString("where is my parcel, it has been three days")
		}
	})
	b.Run("baseline/model-sim", func(b *testing.B) {
		s, _ := Parse(File, DefaultYAML)
		s.Settings.Model, s.Settings.Threshold = "tiny", 1.01 // never confident: the model decides
		p := sim.NewProvider("sim", sim.Options{Tokens: 16, Seed: 1})
		ask := func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions) (string, error) {
			var sb strings.Builder
			_, err := p.Chat(ctx, &inference.Request{Model: opts.Model, Messages: msgs, ChatOptions: opts}, func(d inference.Delta) error {
				sb.WriteString(d.Text)
				return nil
			})
			return sb.String(), err
		}
		b.ReportAllocs()
		for b.Loop() {
			s.Classify(ctx, "where is my order status", Options{Stages: UseModel, Model: ask})
		}
	})
}

// BenchmarkTrain is the cost of loading the shipped intents (parse and
// train: what a start and a reload pay) and the heap the trained set
// keeps (reported as kept-bytes).
func BenchmarkTrain(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(File, DefaultYAML); err != nil {
			b.Fatal(err)
		}
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	set, _ := Parse(File, DefaultYAML)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc), "kept-bytes")
	b.ReportMetric(float64(set.clf.Bytes()), "index-bytes")
	runtime.KeepAlive(set)
}

// TestClassifyAllocs: the model-free stages allocate only the result's
// candidates.
func TestClassifyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops sync.Pool's items: allocations are counted without it")
	}
	set, _ := Parse(File, DefaultYAML)
	ctx := context.Background()
	set.Classify(ctx, "where is my parcel", Options{})
	if n := testing.AllocsPerRun(100, func() { set.Classify(ctx, "where is my parcel", Options{}) }); n > 1 {
		t.Fatalf("%v allocations a classification", n)
	}
	if n := testing.AllocsPerRun(100, func() { set.Classify(ctx, "我要退款", Options{}) }); n != 0 {
		t.Fatalf("%v allocations a rule's classification", n)
	}
}
