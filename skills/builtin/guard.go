package builtin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/moltbot/moltbot"
)

// GuardOptions are the guard preset's (with: of use: guard).
type GuardOptions struct {
	// Mask lists what is masked: email, phone, id_card, card (default:
	// all four; [] for none, a blocklist alone).
	Mask []string `yaml:"mask"`
	// Blocklist are words masked as ***: ASCII letters case-folded, a
	// word of ASCII letters whole only ("darn" not in "darnell").
	Blocklist []string `yaml:"blocklist"`
	// Allow are e-mail addresses and numbers never masked: the operator's
	// own (a support address, a hotline) that an FAQ, a flow or the
	// persona gives out. Compared case-folded (addresses) or by digits
	// (numbers: "400-800-1234" allows "400 800 1234" too).
	Allow []string `yaml:"allow"`
	// Action is what a hit in the user's message does: mask (default; the
	// model gets the masked text) or refuse (the turn is answered with
	// Refusal and the model is not asked).
	Action string `yaml:"action"`
	// Refusal is the answer of a refused turn.
	Refusal string `yaml:"refusal"`
	// Input and Output say where the guard works: the user's messages
	// before the model, the model's reply (streamed or not). Both on by
	// default.
	Input  bool `yaml:"input"`
	Output bool `yaml:"output"`
}

const defaultRefusal = "抱歉，您的消息包含敏感信息，无法处理。Sorry, your message contains sensitive content and cannot be processed."

func (o *GuardOptions) check() error {
	var errs []error
	for i, k := range o.Mask {
		if !slices.Contains(maskKinds, k) {
			errs = append(errs, optErr(fmt.Sprintf("mask[%d]", i), "unknown kind %q (known: %s)", k, strings.Join(maskKinds, ", ")))
		}
	}
	for i, w := range o.Blocklist {
		if strings.TrimSpace(w) == "" {
			errs = append(errs, optErr(fmt.Sprintf("blocklist[%d]", i), "is empty"))
		}
	}
	for i, a := range o.Allow {
		if k := allowKey(a); len(k) < 5 {
			errs = append(errs, optErr(fmt.Sprintf("allow[%d]", i), "%q is no e-mail address or number of at least 5 digits", a))
		}
	}
	if o.Action != "mask" && o.Action != "refuse" {
		errs = append(errs, optErr("action", "want mask or refuse, got %q", o.Action))
	}
	if !o.Input && !o.Output {
		errs = append(errs, optErr("input", "input and output are both off: the guard would do nothing"))
	}
	return joinErrs(errs)
}

func registerGuard() {
	register("guard", "masks e-mails, phone numbers, ID and card numbers and blocklisted words in the input and the output",
		func() any {
			return &GuardOptions{Mask: slices.Clone(maskKinds), Action: "mask", Refusal: defaultRefusal, Input: true, Output: true}
		},
		func(name string, opts any, env Env) (Preset, error) {
			o := opts.(*GuardOptions)
			m := newMasker(o.Mask, o.Blocklist)
			for _, a := range o.Allow {
				m.allow = append(m.allow, allowKey(a))
			}
			return &Guard{base: base{name, "guard"}, o: *o, m: m}, nil
		})
}

// Guard is the guard preset: a stage before the model (the user's
// messages) and around it (the reply, as it streams).
type Guard struct {
	base
	o GuardOptions
	m *masker
}

// Describe implements Preset.
func (g *Guard) Describe() string {
	var where []string
	if g.o.Input {
		where = append(where, "input ("+g.o.Action+")")
	}
	if g.o.Output {
		where = append(where, "output (mask)")
	}
	return fmt.Sprintf("masks %s and %d blocklisted word(s) in the %s", strings.Join(g.o.Mask, ", "), len(g.m.words), strings.Join(where, " and "))
}

// watches reports whether the guard watches t: every turn of no bot; a
// bot's when the bot names it in its guards (or its skills), or names no
// guard at all (secure by default: a guard is left out of a bot's turns
// only by a guards: list that does not name it).
func (g *Guard) watches(t *moltbot.Turn) bool {
	return t.Bot == nil || len(t.Bot.Guards) == 0 || slices.Contains(t.Bot.Guards, g.name) || slices.Contains(t.Bot.Skills, g.name)
}

// Mask returns s masked as the guard masks it, and how many things it
// masked.
func (g *Guard) Mask(s string) (string, int) { return g.m.mask(s) }

// BeforeModel masks the user's messages the model gets (a copy: the
// stored conversation keeps what the user wrote), or refuses a turn whose
// last user message has a hit, under action: refuse. The count masked is
// noted as "<name>.masked".
func (g *Guard) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if !g.o.Input || !g.watches(t) {
		return nil, nil
	}
	if g.o.Action == "refuse" {
		if s := moltbot.LastUserText(t.Messages); s != "" && len(g.m.spans(s)) > 0 {
			t.Note(g.name+".refused", "true")
			return g.answer(t, fn, g.o.Refusal, moltbot.Usage{})
		}
		return nil, nil
	}
	var msgs []moltbot.Message
	total := 0
	for i, m := range t.Messages {
		if m.Role != moltbot.RoleUser {
			continue
		}
		n := 0
		if m.Parts != nil {
			var parts []moltbot.Part
			for j, p := range m.Parts {
				if p.Type != moltbot.PartText {
					continue
				}
				masked, k := g.m.mask(p.Text)
				if k == 0 {
					continue
				}
				if parts == nil {
					parts = slices.Clone(m.Parts)
				}
				parts[j].Text = masked
				n += k
			}
			if parts != nil {
				m.Parts = parts
				m.Content = moltbot.TextOf(parts)
			}
		} else {
			m.Content, n = g.m.mask(m.Content)
		}
		if n == 0 {
			continue
		}
		if msgs == nil {
			msgs = slices.Clone(t.Messages)
		}
		msgs[i] = m
		total += n
	}
	if msgs != nil {
		t.Messages = msgs
		t.Note(g.name+".masked", strconv.Itoa(total))
	}
	return nil, nil
}

// AroundModel masks the model's reply: each streamed piece as it comes,
// holding back what could be the start of something to mask until the
// next piece says (streamMasker), and the completion's text.
func (g *Guard) AroundModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc,
	next func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	if !g.o.Output || !g.watches(t) {
		return next(ctx, fn)
	}
	sm := &streamMasker{m: g.m}
	var last moltbot.Chunk
	flush := func() error {
		if rest := sm.Flush(); rest != "" {
			return fn(moltbot.Chunk{Content: rest, Served: last.Served, Failovers: last.Failovers})
		}
		return nil
	}
	c, err := next(ctx, func(ch moltbot.Chunk) error {
		last = ch
		if ch.ToolCall != nil {
			if err := flush(); err != nil {
				return err
			}
			return fn(ch)
		}
		if out := sm.Write(ch.Content); out != "" {
			ch.Content = out
			return fn(ch)
		}
		return nil
	})
	if ferr := flush(); err == nil && ferr != nil {
		err = ferr
	}
	if c != nil {
		masked, n := g.m.mask(c.Content)
		if n > 0 {
			cc := *c // c may be shared (a cached reply)
			cc.Content = masked
			c = &cc
			t.Note(g.name+".masked_output", strconv.Itoa(n))
		}
	}
	return c, err
}
