package builtin

import (
	"context"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// SentimentOptions are the sentiment preset's (with: of use: sentiment).
type SentimentOptions struct {
	// Threshold is the score from which a message is positive (and below
	// whose opposite it is negative); default 0.2.
	Threshold float64 `yaml:"threshold"`
	// Hint, when set, tells the model of a negative message, in a system
	// message after the others ("The user seems upset: ..."), so that it
	// answers with care.
	Hint bool `yaml:"hint"`
	// Positive and Negative add words to the lexicon (zh or en).
	Positive []string `yaml:"positive"`
	Negative []string `yaml:"negative"`
}

func (o *SentimentOptions) check() error {
	var errs []error
	if o.Threshold <= 0 || o.Threshold >= 1 {
		errs = append(errs, optErr("threshold", "want a number between 0 and 1, got %v", o.Threshold))
	}
	for key, ws := range map[string][]string{"positive": o.Positive, "negative": o.Negative} {
		for i, w := range ws {
			if strings.TrimSpace(w) == "" || utf8.RuneCountInString(w) > maxLexWord {
				errs = append(errs, optErr(fmt.Sprintf("%s[%d]", key, i), "want a word of 1 to %d characters, got %q", maxLexWord, w))
			}
		}
	}
	return joinErrs(errs)
}

func registerSentiment() {
	register("sentiment", "scores the user's mood (zh and en lexicon, negation, intensifiers) into Turn.Notes; never answers",
		func() any { return &SentimentOptions{Threshold: 0.2} },
		func(name string, opts any, env Env) (Preset, error) {
			o := opts.(*SentimentOptions)
			s := &Sentiment{base: base{name, "sentiment"}, o: *o, lex: maps.Clone(lexicon())}
			for _, w := range o.Positive {
				s.lex[strings.ToLower(strings.TrimSpace(w))] = 1
			}
			for _, w := range o.Negative {
				s.lex[strings.ToLower(strings.TrimSpace(w))] = -1
			}
			return s, nil
		})
}

// Sentiment is the sentiment preset: a stage before the model that
// scores the last user message and notes it on the turn, as
// Notes["sentiment"] (positive, neutral, negative) and
// Notes["sentiment.score"] (-1 to 1, two decimals), for the stages after
// it (a hand-off's triggers) to read.
type Sentiment struct {
	base
	o   SentimentOptions
	lex map[string]float64
}

// Describe implements Preset.
func (s *Sentiment) Describe() string {
	d := fmt.Sprintf("%d lexicon words, threshold %v", len(s.lex), s.o.Threshold)
	if s.o.Hint {
		d += ", hints the model of a negative mood"
	}
	return d
}

// Score scores a text: -1 (very negative) to 1 (very positive), and its
// label.
func (s *Sentiment) Score(text string) (float64, string) {
	sum := 0.0
	scale, neg, window := 1.0, false, 0
	for _, tok := range tokenize(text, s.lex) {
		switch {
		case tok == "":
			scale, neg, window = 1, false, 0 // a clause ends
			continue
		case butWords()[tok]:
			sum *= 0.5 // what follows "but" counts more
			scale, neg, window = 1, false, 0
			continue
		case negators()[tok] || strings.HasSuffix(tok, "n't"):
			neg, window = !neg, 3
			continue
		case intensifiers()[tok] > 0:
			scale *= intensifiers()[tok]
			window = 3
			continue
		}
		if v, ok := s.lex[tok]; ok {
			if neg {
				v *= -0.75 // "not good" is bad, less than "bad" is
			}
			sum += v * scale
			scale, neg, window = 1, false, 0
			continue
		}
		if window > 0 {
			if window--; window == 0 {
				scale, neg = 1, false
			}
		}
	}
	score := sum / math.Sqrt(sum*sum+4)
	score = math.Round(score*100) / 100
	label := "neutral"
	switch {
	case score >= s.o.Threshold:
		label = "positive"
	case score <= -s.o.Threshold:
		label = "negative"
	}
	return score, label
}

// BeforeModel notes the last user message's sentiment; it never answers.
func (s *Sentiment) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if !s.runs(t) {
		return nil, nil
	}
	text, ok := userText(t)
	if !ok {
		return nil, nil
	}
	score, label := s.Score(text)
	t.Note("sentiment", label)
	t.Note("sentiment.score", strconv.FormatFloat(score, 'f', 2, 64))
	if s.o.Hint && label == "negative" {
		// Before the last message, in a new slice: the stored context is
		// not written to.
		last := len(t.Messages) - 1
		msgs := make([]moltbot.Message, 0, len(t.Messages)+1)
		msgs = append(msgs, t.Messages[:last]...)
		msgs = append(msgs, moltbot.Message{Role: moltbot.RoleSystem,
			Content: "The user seems upset (sentiment " + strconv.FormatFloat(score, 'f', 2, 64) + "): acknowledge it, be brief and concrete, and offer help. 用户情绪不佳：请先共情，简洁具体地回答。"})
		t.Messages = append(msgs, t.Messages[last])
	}
	return nil, nil
}

// maxLexWord bounds a lexicon word (runes): the Chinese tokenizer tries
// words up to this long.
const maxLexWord = 6

// tokenize splits text into lower-case English words and Chinese words
// (the longest lexicon, negator or intensifier word at each place, else
// one character); "" marks the end of a clause (punctuation).
func tokenize(text string, lex map[string]float64) []string {
	var out []string
	rs := []rune(strings.ToLower(text))
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.Is(unicode.Han, r):
			n := 1
			for k := min(maxLexWord, len(rs)-i); k > 1; k-- {
				w := string(rs[i : i+k])
				if _, ok := lex[w]; ok || negators()[w] || intensifiers()[w] > 0 || butWords()[w] {
					n = k
					break
				}
			}
			out = append(out, string(rs[i:i+n]))
			i += n
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			j := i
			for j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '\'' || rs[j] == '’') && !unicode.Is(unicode.Han, rs[j]) {
				j++
			}
			out = append(out, strings.ReplaceAll(string(rs[i:j]), "’", "'"))
			i = j
		case strings.ContainsRune(".,;!?。，；！？、…\n", r):
			out = append(out, "")
			i++
		default:
			i++
		}
	}
	return out
}

var lexicon = sync.OnceValue(func() map[string]float64 {
	return map[string]float64{
		// English
		"good": 1, "great": 1.5, "excellent": 2, "love": 1.5, "like": 0.5, "happy": 1.5, "thanks": 1, "thank": 1,
		"awesome": 2, "amazing": 2, "perfect": 2, "helpful": 1.5, "nice": 1, "wonderful": 2, "fast": 0.5, "easy": 0.5,
		"glad": 1, "satisfied": 1.5, "recommend": 1, "best": 1.5, "fantastic": 2, "pleased": 1.5, "works": 0.5, "fine": 0.5,
		"bad": -1.5, "terrible": -2, "awful": -2, "hate": -2, "angry": -2, "disappointed": -2, "disappointing": -2, "slow": -1,
		"broken": -1.5, "useless": -2, "worst": -2, "poor": -1.5, "annoying": -1.5, "annoyed": -1.5, "frustrated": -2,
		"frustrating": -2, "horrible": -2, "wrong": -1, "problem": -0.5, "sad": -1.5, "upset": -1.5, "fail": -1, "failed": -1,
		"fails": -1, "crash": -1, "crashes": -1, "rude": -2, "scam": -2, "ridiculous": -1.5, "unacceptable": -2, "waste": -1.5,
		// 中文
		"好": 1, "喜欢": 1.5, "满意": 1.5, "棒": 1.5, "开心": 1.5, "高兴": 1.5, "感谢": 1, "谢谢": 1, "优秀": 2, "完美": 2,
		"不错": 1, "赞": 1.5, "爱": 1.5, "快": 0.5, "方便": 1, "推荐": 1, "值得": 1, "舒服": 1, "惊喜": 1.5, "专业": 1,
		"耐心": 1, "及时": 1, "没问题": 1, "好用": 1.5, "给力": 1.5, "靠谱": 1.5,
		"差": -1.5, "糟糕": -2, "失望": -2, "生气": -2, "愤怒": -2, "讨厌": -2, "烂": -2, "垃圾": -2, "慢": -1, "坏": -1.5,
		"投诉": -1.5, "骗": -2, "骗子": -2, "难用": -1.5, "麻烦": -1, "崩溃": -1.5, "问题": -0.5, "故障": -1, "恶心": -2,
		"后悔": -1.5, "无语": -1.5, "气死": -2, "不满": -1.5, "郁闷": -1.5, "难过": -1.5, "伤心": -1.5, "烦": -1.5, "差劲": -2,
		"坑": -1.5, "离谱": -1.5,
	}
})

var negators = sync.OnceValue(func() map[string]bool {
	return map[string]bool{
		"not": true, "no": true, "never": true, "cannot": true, "hardly": true, "nothing": true, "without": true,
		"不": true, "没": true, "没有": true, "别": true, "无": true, "未": true, "并不": true, "不太": true, "不是": true, "毫不": true,
	}
})

var intensifiers = sync.OnceValue(func() map[string]float64 {
	return map[string]float64{
		"very": 1.5, "really": 1.5, "so": 1.5, "extremely": 2, "too": 1.5, "super": 1.5, "totally": 1.5, "absolutely": 2, "quite": 1.2,
		"很": 1.5, "非常": 1.8, "太": 1.8, "特别": 1.8, "超": 1.5, "超级": 1.8, "极其": 2, "十分": 1.8, "真": 1.5, "好好": 1.2, "相当": 1.5, "最": 1.8,
	}
})

var butWords = sync.OnceValue(func() map[string]bool {
	return map[string]bool{"but": true, "however": true, "though": true, "但是": true, "但": true, "不过": true, "可是": true, "然而": true}
})
