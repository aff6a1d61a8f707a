package intent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/moltbot/moltbot"
)

// Stages chooses the cascade's stages (a bit set; 0 is all of them).
type Stages uint8

const (
	UseRules Stages = 1 << iota
	UseNgram
	UseModel
	UseAll = UseRules | UseNgram | UseModel
)

// ParseStages reads "rules,ngram,model" (any of them, in any order).
func ParseStages(s string) (Stages, error) {
	var st Stages
	for _, p := range strings.Split(s, ",") {
		switch strings.TrimSpace(p) {
		case StageRules:
			st |= UseRules
		case StageNgram:
			st |= UseNgram
		case StageModel:
			st |= UseModel
		default:
			return 0, fmt.Errorf("%q is no stage (rules, ngram, model)", strings.TrimSpace(p))
		}
	}
	return st, nil
}

func (st Stages) String() string {
	if st == 0 {
		st = UseAll
	}
	var out []string
	for _, x := range []struct {
		b Stages
		n string
	}{{UseRules, StageRules}, {UseNgram, StageNgram}, {UseModel, StageModel}} {
		if st&x.b != 0 {
			out = append(out, x.n)
		}
	}
	return strings.Join(out, ",")
}

// Asker asks a model for a reply in opts' format (moltbot.Turn.Model
// without the streaming); it returns the reply's text.
type Asker func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions) (string, error)

// Options are one classification's.
type Options struct {
	// Stages to run (0: all). The model stage runs only with Model set and
	// settings.model given.
	Stages Stages
	// Allowed narrows the intents (a bot's intents); empty: all.
	Allowed Allowed
	// Model asks the model stage's model; nil: no model stage.
	Model Asker
}

// allows reports whether the cascade may give name: one of the bot's
// intents, or the fallback's out-of-scope examples (every bot's).
func (o *Options) allows(name, fallback string) bool {
	return name == fallback || o.Allowed.has(name)
}

// Candidate is an intent and its score.
type Candidate struct {
	Intent string
	Score  float64
}

// Result is what the cascade found.
type Result struct {
	// Intent is the intent recognized, or the fallback.
	Intent string
	// Confidence: 1 for a rule; the classifier's score (0 to 1) for the
	// classifier, for the model stage's answer (a model's own confidence
	// is not calibrated) and for the fallback (its best candidate's).
	Confidence float64
	// Stage is the stage that was confident: rules, ngram, model, or
	// fallback when none was.
	Stage string
	// Low: the cascade fell back (below the threshold, or ambiguous).
	Low bool
	// Top are the classifier's best candidates, best first (at most 3),
	// when it ran.
	Top []Candidate
	// Model is what the model stage answered (its intent, or why it was
	// refused), when it was asked.
	Model string
}

// Classify runs the cascade on text (its first MaxText bytes).
func (s *Set) Classify(ctx context.Context, text string, o Options) Result {
	st := o.Stages
	if st == 0 {
		st = UseAll
	}
	text = Truncate(text, MaxText)
	set := &s.Settings
	if st&UseRules != 0 {
		if i, ok := s.matchRules(text, o.Allowed); ok {
			if s.Intents[i].Name == set.Fallback {
				return Result{Intent: set.Fallback, Confidence: 1, Stage: StageFallback, Low: true}
			}
			return Result{Intent: s.Intents[i].Name, Confidence: 1, Stage: StageRules}
		}
	}
	res := Result{Intent: set.Fallback, Stage: StageFallback, Low: true}
	if st&UseNgram != 0 && s.clf != nil {
		var buf [MaxIntents]float32
		scores := s.clf.Scores(text, buf[:])
		var top [3]int
		k := 0
		for i, sc := range scores {
			if !o.allows(s.Intents[i].Name, set.Fallback) || sc <= 0 {
				continue
			}
			// Insert i into top (best first, at most 3).
			j := min(k, len(top)-1)
			if k == len(top) && sc <= scores[top[j]] {
				continue
			}
			for j > 0 && scores[top[j-1]] < sc {
				top[j] = top[j-1]
				j--
			}
			top[j] = i
			if k < len(top) {
				k++
			}
		}
		res.Top = make([]Candidate, k)
		for j := range k {
			res.Top[j] = Candidate{s.Intents[top[j]].Name, float64(scores[top[j]])}
		}
		if k > 0 {
			best := res.Top[0].Score
			second := 0.0
			if k > 1 {
				second = res.Top[1].Score
			}
			res.Confidence = best
			if best >= set.Threshold && best-second >= set.Margin {
				if res.Top[0].Intent == set.Fallback {
					return res // confidently out of scope: its examples are the nearest
				}
				res.Intent, res.Stage, res.Low = res.Top[0].Intent, StageNgram, false
				return res
			}
		}
	}
	if st&UseModel != 0 && o.Model != nil && set.Model != "" {
		name, why := s.askModel(ctx, text, o, res.Top, st&UseNgram != 0)
		if why != "" {
			res.Model = why
			return res
		}
		res.Model = name
		if name == set.Fallback {
			return res
		}
		res.Intent, res.Stage, res.Low, res.Confidence = name, StageModel, false, 0
		for _, c := range res.Top {
			if c.Intent == name {
				res.Confidence = c.Score
			}
		}
	}
	return res
}

// matchRules is the intent whose rule matches text; two intents' rules
// matching is not confident (the classifier decides).
func (s *Set) matchRules(text string, allowed Allowed) (int, bool) {
	found := -1
	var canonText string
	var buf *[]byte
	folded := func() string { // the message in canonical case, once
		if canonText == "" {
			if isCanon(text) {
				canonText = text
			} else {
				// In a pooled buffer, read only while the rules are tried.
				buf = canonBufs.Get().(*[]byte)
				*buf = appendCanon((*buf)[:0], text)
				canonText = unsafe.String(unsafe.SliceData(*buf), len(*buf))
			}
		}
		return canonText
	}
	defer func() {
		if buf != nil && cap(*buf) <= 64<<10 {
			canonBufs.Put(buf)
		}
	}()
	for i := range s.rules {
		r := &s.rules[i]
		if r.intent == found || !allowed.has(s.Intents[r.intent].Name) && s.Intents[r.intent].Name != s.Settings.Fallback {
			continue
		}
		if r.match(text, folded) {
			if found >= 0 {
				return -1, false
			}
			found = r.intent
		}
	}
	return found, found >= 0
}

// schema is the model stage's response format: an object whose intent is
// one of names.
func schema(names []string) json.RawMessage {
	enum, _ := json.Marshal(names)
	var b bytes.Buffer
	b.WriteString(`{"type":"object","properties":{"intent":{"type":"string","enum":`)
	b.Write(enum)
	b.WriteString(`}},"required":["intent"],"additionalProperties":false}`)
	return b.Bytes()
}

// askModel asks the model stage's model; it returns the intent it chose
// (the fallback's name included), or why it was not taken.
func (s *Set) askModel(ctx context.Context, text string, o Options, top []Candidate, ranked bool) (string, string) {
	set := &s.Settings
	var names []string
	var sys strings.Builder
	sys.WriteString("Classify the user's message into exactly one intent. Answer with JSON: {\"intent\": NAME}. The intents:\n")
	for _, in := range s.Intents {
		if !o.Allowed.has(in.Name) || in.Name == set.Fallback {
			continue
		}
		names = append(names, in.Name)
		fmt.Fprintf(&sys, "- %s: %s\n", in.Name, in.Description)
	}
	names = append(names, set.Fallback)
	fmt.Fprintf(&sys, "- %s: none of the above\n", set.Fallback)
	zero := 0.0
	opts := moltbot.ChatOptions{Model: set.Model, MaxTokens: 64, Temperature: &zero,
		ResponseFormat: &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: "intent", Schema: schema(names), Strict: true}}
	d := set.ModelTimeout
	if d <= 0 {
		d = DefaultModelTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	reply, err := o.Model(ctx, []moltbot.Message{{Role: moltbot.RoleSystem, Content: sys.String()}, {Role: moltbot.RoleUser, Content: text}}, opts)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Sprintf("no answer within %s", d)
		}
		return "", "error: " + err.Error()
	}
	var ans struct {
		Intent *string `json:"intent"`
	}
	dec := json.NewDecoder(strings.NewReader(reply))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ans); err != nil || ans.Intent == nil {
		return "", fmt.Sprintf("refused: %q is not {\"intent\": NAME}", Truncate(reply, 80))
	}
	name := *ans.Intent
	if !containsStr(names, name) {
		return "", fmt.Sprintf("refused: %q is not in the enum", Truncate(name, 80))
	}
	if name != set.Fallback && ranked && set.ModelTop > 0 {
		ok := false
		for i, c := range top {
			if i < set.ModelTop && c.Intent == name {
				ok = true
			}
		}
		if !ok {
			return "", fmt.Sprintf("refused: %q is not among the classifier's top %d", name, set.ModelTop)
		}
	}
	return name, ""
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// DefaultModelTimeout bounds the model stage's call (settings.model_timeout).
const DefaultModelTimeout = 5 * time.Second
