package builtin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// Spec is a configured preset: its name, its kind (use) and its options,
// the value Options(use) returned, decoded from with: and checked by
// Check.
type Spec struct {
	Name string
	Use  string
	With any
}

// Env is what a preset gets from the node when it is built.
type Env struct {
	// Dir is the workspace's skills/ directory: a preset's files (an FAQ)
	// are read from there, by a path relative to it.
	Dir    string
	Logger *slog.Logger
}

// Preset is a built preset: a turn-pipeline stage. Each implements
// actors.BeforeModel, actors.AroundModel or both (declared there; this
// package does not import actors): cmd wires it by what it implements.
type Preset interface {
	Name() string
	Use() string
	// Describe says in a line what it does, for moltbot skills list.
	Describe() string
}

// Reloader is a preset that reads files (an FAQ): Reload reads them
// again, safe while turns run; an error keeps what it had.
type Reloader interface {
	Reload() error
}

// OptionError is a wrong option: Key is its key under with: ("action",
// "patterns[1]"), so that the config's error names it and its line.
type OptionError struct {
	Key string
	Msg string
}

func (e *OptionError) Error() string { return e.Key + ": " + e.Msg }

func optErr(key, format string, args ...any) error {
	return &OptionError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// kind is a preset kind: its options with their defaults, their check,
// and how it is built.
type kind struct {
	about   string
	options func() any
	build   func(name string, opts any, env Env) (Preset, error)
}

// kinds are the preset kinds by use:, registered on first use (loadKinds):
// a node that configures no preset pays nothing for them at start.
var (
	kinds     = map[string]kind{}
	kindsOnce sync.Once
)

func loadKinds() {
	registerCodeexplain()
	registerCodegen()
	registerCollect()
	registerFaq()
	registerGuard()
	registerSentiment()
	registerSummarize()
	registerTools()
	registerTranslate()
}

// kindOf is the kind of a use: (ok false: none).
func kindOf(use string) (kind, bool) {
	kindsOnce.Do(loadKinds)
	k, ok := kinds[use]
	return k, ok
}

func register(use, about string, options func() any, build func(name string, opts any, env Env) (Preset, error)) {
	kinds[use] = kind{about: about, options: options, build: build}
}

// Uses lists the preset kinds, sorted.
func Uses() []string {
	kindsOnce.Do(loadKinds)
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// About says what a kind does, in a line ("" for none).
func About(use string) string { k, _ := kindOf(use); return k.about }

// Options returns a new options value of a kind, its defaults filled, for
// with: to be decoded into (a pointer to a struct with yaml tags); nil
// when there is no such kind.
func Options(use string) any {
	k, ok := kindOf(use)
	if !ok {
		return nil
	}
	return k.options()
}

// checker is an options value that checks itself; its errors are
// *OptionError.
type checker interface{ check() error }

// Check checks decoded options; every problem is an *OptionError (joined).
func Check(use string, opts any) error {
	if _, ok := kindOf(use); !ok {
		return fmt.Errorf("builtin: no preset %q (known: %s)", use, strings.Join(Uses(), ", "))
	}
	if c, ok := opts.(checker); ok {
		return c.check()
	}
	return nil
}

// New builds a preset. Its options are checked again; a file it reads (an
// FAQ) that does not parse is an error naming the file and the line.
func New(s Spec, env Env) (Preset, error) {
	k, ok := kindOf(s.Use)
	if !ok {
		return nil, fmt.Errorf("builtin: preset %s: no kind %q (known: %s)", s.Name, s.Use, strings.Join(Uses(), ", "))
	}
	if s.With == nil {
		s.With = k.options()
	}
	if err := Check(s.Use, s.With); err != nil {
		return nil, fmt.Errorf("builtin: preset %s: %w", s.Name, err)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := k.build(s.Name, s.With, env)
	if err != nil {
		return nil, fmt.Errorf("builtin: preset %s: %w", s.Name, err)
	}
	return p, nil
}

// base is what every preset has.
type base struct {
	name, use string
}

func (b base) Name() string { return b.name }
func (b base) Use() string  { return b.use }

// runs reports whether the preset runs on t: a turn of no bot runs every
// preset; a bot's, only those its skills name (Bot.HasSkill).
func (b base) runs(t *moltbot.Turn) bool { return t.Bot.HasSkill(b.name) }

// served names a preset as the model that answered.
func (b base) served() moltbot.ModelRef {
	return moltbot.ModelRef{Provider: "preset", Model: b.name}
}

// answer is a preset's reply: streamed to fn in one piece when the caller
// streams, and returned as the turn's completion.
func (b base) answer(t *moltbot.Turn, fn moltbot.StreamFunc, text string, usage moltbot.Usage) (*moltbot.Completion, error) {
	served := b.served()
	if t.Visible && fn != nil && text != "" {
		if err := fn(moltbot.Chunk{Content: text, Served: served}); err != nil {
			return nil, err
		}
	}
	return &moltbot.Completion{Content: text, Served: served, Usage: usage, FinishReason: "stop"}, nil
}

// maxInput bounds the text a preset looks at (bytes): a longer message
// goes past it, to the model.
const maxInput = 64 << 10

// userText is the last user message when a preset may look at it: valid
// UTF-8, not empty, within maxInput.
func userText(t *moltbot.Turn) (string, bool) {
	s := moltbot.LastUserText(t.Messages)
	if s == "" || len(s) > maxInput || !utf8.ValidString(s) {
		return "", false
	}
	return s, true
}

// trigger is what selects a preset that answers through the model: a
// command prefix ("/summarize"), the rest of the message being the input;
// or an RE2 pattern, its first group (when it has one) being the input.
type trigger struct {
	commands []string
	patterns []*regexp.Regexp
}

func compileTrigger(commands, patterns []string) (trigger, error) {
	var tr trigger
	var errs []error
	for i, c := range commands {
		if strings.TrimSpace(c) == "" {
			errs = append(errs, optErr(fmt.Sprintf("commands[%d]", i), "is empty"))
			continue
		}
		tr.commands = append(tr.commands, strings.TrimSpace(c))
	}
	for i, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			errs = append(errs, optErr(fmt.Sprintf("patterns[%d]", i), "not an RE2 pattern: %v", err))
			continue
		}
		tr.patterns = append(tr.patterns, re)
	}
	if len(commands) == 0 && len(patterns) == 0 {
		errs = append(errs, optErr("commands", "the preset needs a command or a pattern to answer to"))
	}
	return tr, errors.Join(errs...)
}

// match returns the input a message gives the preset, and whether it
// selects it.
func (tr trigger) match(s string) (string, bool) {
	in, _, ok := tr.matchNamed(s)
	return in, ok
}

// matchNamed is match, with a pattern's named groups besides: its group
// "input", when it has one, is the input (else its first group).
func (tr trigger) matchNamed(s string) (string, map[string]string, bool) {
	s = strings.TrimSpace(s)
	for _, c := range tr.commands {
		if rest, ok := strings.CutPrefix(s, c); ok {
			if last, _ := utf8.DecodeLastRuneInString(c); rest != "" && isWordByte(last) && isWordByte(rune(rest[0])) {
				continue // "/summarizer" is another word than "/summarize"
			}
			rest = strings.TrimLeft(rest, " \t\n:：")
			return strings.TrimSpace(rest), nil, true
		}
	}
	for _, re := range tr.patterns {
		m := re.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		named := map[string]string{}
		for i, n := range re.SubexpNames() {
			if n != "" {
				named[n] = m[i]
			}
		}
		if in, ok := named["input"]; ok {
			return strings.TrimSpace(in), named, true
		}
		if len(m) > 1 {
			return strings.TrimSpace(m[1]), named, true
		}
		return s, named, true
	}
	return "", nil, false
}

// describe is a trigger as moltbot skills list shows it.
func (tr trigger) describe() string {
	parts := slices.Clone(tr.commands)
	for _, re := range tr.patterns {
		parts = append(parts, "/"+re.String()+"/")
	}
	return strings.Join(parts, " ")
}

// ask asks the turn's model for a reply to msgs (not streamed): model is
// the model to ask ("" for the chain); a model the router does not know
// falls back to the chain, as a JS skill's alias does. usage adds up.
func ask(ctx context.Context, t *moltbot.Turn, model string, msgs []moltbot.Message, opts moltbot.ChatOptions, usage *moltbot.Usage) (string, error) {
	if t.Model == nil {
		return "", moltbot.Errorf(moltbot.EUnavailable, "no model in this turn")
	}
	opts.Model = model
	c, err := t.Model(ctx, msgs, opts, nil)
	var me *moltbot.Error
	if model != "" && errors.As(err, &me) && me.Code == moltbot.ENotFound && me.Param == "model" {
		opts.Model = ""
		c, err = t.Model(ctx, msgs, opts, nil)
	}
	if err != nil {
		return "", err
	}
	usage.PromptTokens += c.Usage.PromptTokens
	usage.CompletionTokens += c.Usage.CompletionTokens
	return c.Content, nil
}

// isCJK reports whether s has a Han character: a preset then answers in
// Chinese.
func isCJK(s string) bool {
	for _, r := range s {
		if r >= 0x4e00 && r <= 0x9fff || r >= 0x3400 && r <= 0x4dbf {
			return true
		}
	}
	return false
}

func isWordByte(r rune) bool {
	return r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
}

func joinErrs(errs []error) error { return errors.Join(errs...) }
