package builtin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// SummarizeOptions are the summarize preset's (with: of use: summarize):
// map-reduce over chunks of a long text, within a budget of model calls.
type SummarizeOptions struct {
	Model    string   `yaml:"model"`
	Commands []string `yaml:"commands"`
	Patterns []string `yaml:"patterns"`
	// Chunk is a chunk's size in characters (runes; default 2000): a text
	// this long or shorter is summarized in one call.
	Chunk int `yaml:"chunk"`
	// MaxCalls bounds the model calls of one summary (default 8): a text
	// that needs more is refused, saying how long it may be.
	MaxCalls int `yaml:"max_calls"`
	// Words is the summary's length asked for (default 120; Chinese:
	// twice as many characters).
	Words int `yaml:"words"`
}

func (o *SummarizeOptions) check() error {
	_, err := compileTrigger(o.Commands, o.Patterns)
	if o.Chunk < 200 || o.Chunk > 100_000 {
		err = errors.Join(err, optErr("chunk", "want 200 to 100000 characters, got %d", o.Chunk))
	}
	if o.MaxCalls < 1 || o.MaxCalls > 100 {
		err = errors.Join(err, optErr("max_calls", "want 1 to 100, got %d", o.MaxCalls))
	}
	if o.Words < 10 || o.Words > 2000 {
		err = errors.Join(err, optErr("words", "want 10 to 2000, got %d", o.Words))
	}
	return err
}

func registerSummarize() {
	register("summarize", "summarizes a long text: map-reduce over chunks within a budget of model calls",
		func() any {
			return &SummarizeOptions{Commands: []string{"/summarize", "/summary"},
				Patterns: []string{"(?s)^(?:请)?(?:总结|概括|摘要)(?:一下)?(?:以下|下面的?)?(?:内容|文字|文章|文本)?[:：]\\s*(?P<input>.+)$",
					"(?is)^(?:please\\s+)?summari[sz]e(?:\\s+this|\\s+the following)?(?:\\s+text)?:\\s*(?P<input>.+)$"},
				Chunk: 2000, MaxCalls: 8, Words: 120}
		},
		func(name string, opts any, env Env) (Preset, error) {
			o := opts.(*SummarizeOptions)
			tr, err := compileTrigger(o.Commands, o.Patterns)
			if err != nil {
				return nil, err
			}
			return &Summarize{base: base{name, "summarize"}, o: *o, tr: tr}, nil
		})
}

// Summarize is the summarize preset.
type Summarize struct {
	base
	o  SummarizeOptions
	tr trigger
}

// Describe implements Preset.
func (s *Summarize) Describe() string {
	return fmt.Sprintf("on %s; chunks of %d characters, at most %d model calls%s", s.tr.describe(), s.o.Chunk, s.o.MaxCalls, modelNote(s.o.Model))
}

// Chunks splits text into pieces of at most size runes, at a paragraph,
// a line or a sentence end in the last third of a piece when there is one.
func Chunks(text string, size int) []string {
	var out []string
	rs := []rune(strings.TrimSpace(text))
	for len(rs) > size {
		cut := size
		for _, sep := range []string{"\n\n", "\n", "。", ". ", "！", "？", "! ", "? ", "；", "; ", "，", ", ", " "} {
			s := []rune(sep)
			found := -1
			for i := size - len(s); i >= size*2/3; i-- {
				if string(rs[i:i+len(s)]) == sep {
					found = i + len(s)
					break
				}
			}
			if found > 0 {
				cut = found
				break
			}
		}
		if piece := strings.TrimSpace(string(rs[:cut])); piece != "" {
			out = append(out, piece)
		}
		rs = []rune(strings.TrimSpace(string(rs[cut:])))
	}
	if len(rs) > 0 {
		out = append(out, string(rs))
	}
	return out
}

// BeforeModel summarizes the text of a message its trigger selects.
func (s *Summarize) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if !s.runs(t) {
		return nil, nil
	}
	msg, ok := userText(t)
	if !ok {
		return nil, nil
	}
	text, ok := s.tr.match(msg)
	if !ok {
		return nil, nil
	}
	zh := isCJK(msg)
	if strings.TrimSpace(text) == "" {
		if zh {
			return s.answer(t, fn, "请在命令后附上要总结的文字。", moltbot.Usage{})
		}
		return s.answer(t, fn, "Put the text to summarize after the command.", moltbot.Usage{})
	}
	var usage moltbot.Usage
	sum, err := s.Summarize(ctx, t, text, zh, &usage)
	var long *tooLong
	if errors.As(err, &long) {
		if zh {
			return s.answer(t, fn, fmt.Sprintf("文本太长：%d 个字符，最多可总结约 %d 个字符。", long.runes, long.max), usage)
		}
		return s.answer(t, fn, fmt.Sprintf("The text is too long to summarize: %d characters, at most about %d.", long.runes, long.max), usage)
	}
	if err != nil {
		return nil, err
	}
	return s.answer(t, fn, sum, usage)
}

type tooLong struct{ runes, max int }

func (e *tooLong) Error() string {
	return fmt.Sprintf("summarize: the text is too long (%d characters, at most %d)", e.runes, e.max)
}

// Summarize summarizes text in at most MaxCalls model calls: each chunk
// (map), then the chunks' summaries together, in groups that fit a chunk,
// until one is left (reduce). A text that cannot be is a *tooLong before
// any call.
func (s *Summarize) Summarize(ctx context.Context, t *moltbot.Turn, text string, zh bool, usage *moltbot.Usage) (string, error) {
	chunks := Chunks(text, s.o.Chunk)
	n := utf8.RuneCountInString(text)
	// Each chunk's summary is ~Words words (~Words*2 runes in Chinese,
	// ~Words*6 in English); the reduce passes must fit the budget too.
	per := s.o.Words * 6
	if zh {
		per = s.o.Words * 2
	}
	calls := func(k int) int {
		total := k
		for k > 1 {
			perGroup := max(2, s.o.Chunk/per) // a reduce call takes two summaries at least
			k = (k + perGroup - 1) / perGroup
			total += k
		}
		return total
	}
	if calls(len(chunks)) > s.o.MaxCalls {
		most := 1
		for calls(most+1) <= s.o.MaxCalls {
			most++
		}
		return "", &tooLong{runes: n, max: most * s.o.Chunk}
	}
	lang := "in the text's language"
	limit := fmt.Sprintf("at most %d words", s.o.Words)
	if zh {
		lang = "in Chinese (简体中文)"
		limit = fmt.Sprintf("at most %d characters", s.o.Words*2)
	}
	made := 0
	one := func(system, body string) (string, error) {
		made++
		return ask(ctx, t, s.o.Model, []moltbot.Message{
			{Role: moltbot.RoleSystem, Content: system},
			{Role: moltbot.RoleUser, Content: body},
		}, moltbot.ChatOptions{}, usage)
	}
	if len(chunks) == 1 {
		return one("Summarize the text "+lang+", "+limit+". Keep names, numbers and dates. Answer with the summary only.", chunks[0])
	}
	parts := make([]string, 0, len(chunks))
	for i, c := range chunks {
		p, err := one(fmt.Sprintf("This is part %d of %d of a longer text. Summarize this part %s, %s. Keep names, numbers and dates. Answer with the summary only.",
			i+1, len(chunks), lang, limit), c)
		if err != nil {
			return "", err
		}
		parts = append(parts, strings.TrimSpace(p))
	}
	for len(parts) > 1 {
		groups := groupParts(parts, s.o.Chunk)
		if len(groups) == len(parts) {
			groups = pairs(parts) // summaries as long as a chunk: two by two
		}
		if made+len(groups) > s.o.MaxCalls {
			// The budget is spent (the summaries came out longer than
			// asked): they are the answer, in order.
			return strings.Join(parts, "\n\n"), nil
		}
		var next []string
		for _, g := range groups {
			p, err := one("These are summaries of consecutive parts of one text, in order. Combine them into one summary "+lang+", "+limit+
				". Keep names, numbers and dates. Answer with the summary only.", strings.Join(g, "\n\n"))
			if err != nil {
				return "", err
			}
			next = append(next, strings.TrimSpace(p))
		}
		parts = next
	}
	return parts[0], nil
}

// groupParts groups consecutive summaries into groups of at most size
// runes (at least one summary each).
func groupParts(parts []string, size int) [][]string {
	var out [][]string
	var cur []string
	n := 0
	for _, p := range parts {
		l := utf8.RuneCountInString(p)
		if len(cur) > 0 && n+l > size {
			out = append(out, cur)
			cur, n = nil, 0
		}
		cur = append(cur, p)
		n += l + 2
	}
	return append(out, cur)
}

func pairs(parts []string) [][]string {
	var out [][]string
	for i := 0; i < len(parts); i += 2 {
		out = append(out, parts[i:min(i+2, len(parts))])
	}
	return out
}
