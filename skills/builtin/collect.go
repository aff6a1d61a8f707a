package builtin

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/moltbot/moltbot"
)

// CollectOptions are the collect preset's (with: of use: collect): slot
// filling. A message its trigger selects starts it; it asks for each slot
// its validator has not found yet, in order, and once all are filled
// answers Done with the values in it.
//
// It keeps no state of its own: the conversation is its state. Each turn
// it reads the context back to the message that started it, through its
// own questions (an assistant message that is one of its asks), and
// takes each slot's value from the user's messages since then. So it
// survives a restart and moves with the conversation in a cluster; a
// context trimmed past its start ends it (the turn goes on to the model).
// A stateless completion works as well when the client sends the history.
type CollectOptions struct {
	Commands []string `yaml:"commands"`
	Patterns []string `yaml:"patterns"`
	// Slots are what is collected, in the order asked.
	Slots []SlotOptions `yaml:"slots"`
	// Done is the answer once every slot is filled: {slot} is replaced by
	// its value.
	Done string `yaml:"done"`
	// Cancel are the messages that stop it (default: 取消, cancel).
	Cancel []string `yaml:"cancel"`
	// Cancelled is the answer to a cancel, and to a slot asked for
	// MaxAsks times without an answer that holds.
	Cancelled string `yaml:"cancelled"`
	// MaxAsks bounds the questions of one collection (default 6).
	MaxAsks int `yaml:"max_asks"`
}

// SlotOptions is a slot: its name, its validator (RE2; the first group,
// else the whole match, is the value) and the question that asks for it.
type SlotOptions struct {
	Name    string `yaml:"name"`
	Pattern string `yaml:"pattern"`
	Ask     string `yaml:"ask"`
	// Retry is asked after an answer the validator did not take (default:
	// Ask again).
	Retry string `yaml:"retry"`
}

var slotName = lazyRE(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (o *CollectOptions) check() error {
	_, err := compileTrigger(o.Commands, o.Patterns)
	errs := []error{err}
	if len(o.Slots) == 0 {
		errs = append(errs, optErr("slots", "no slot to collect"))
	}
	seen := map[string]bool{}
	asks := map[string]bool{}
	for i, s := range o.Slots {
		key := fmt.Sprintf("slots[%d]", i)
		if !slotName().MatchString(s.Name) {
			errs = append(errs, optErr(key+".name", "want a name of letters, digits and _, got %q", s.Name))
		} else if seen[s.Name] {
			errs = append(errs, optErr(key+".name", "%q is another slot's name too", s.Name))
		}
		seen[s.Name] = true
		if _, err := regexp.Compile(s.Pattern); err != nil || s.Pattern == "" {
			errs = append(errs, optErr(key+".pattern", "want an RE2 pattern: %v", err))
		}
		if strings.TrimSpace(s.Ask) == "" {
			errs = append(errs, optErr(key+".ask", "the question that asks for the slot is missing"))
		}
		for _, a := range []string{s.Ask, s.Retry} {
			if a != "" && asks[a] {
				errs = append(errs, optErr(key+".ask", "%q is asked for another slot too: each question must say which slot it asks for", a))
			}
			asks[a] = true
		}
	}
	if strings.TrimSpace(o.Done) == "" {
		errs = append(errs, optErr("done", "the answer once every slot is filled is missing"))
	}
	for _, m := range regexp.MustCompile(`\{(\w+)\}`).FindAllStringSubmatch(o.Done, -1) {
		if !seen[m[1]] {
			errs = append(errs, optErr("done", "{%s} is no slot", m[1]))
		}
	}
	if o.MaxAsks < 1 || o.MaxAsks > 50 {
		errs = append(errs, optErr("max_asks", "want 1 to 50, got %d", o.MaxAsks))
	}
	return joinErrs(errs)
}

func registerCollect() {
	register("collect", "slot filling: asks for each slot its RE2 validator has not found, then answers with them (no model; the conversation is its state)",
		func() any {
			return &CollectOptions{Cancel: []string{"取消", "cancel"}, Cancelled: "好的，已取消。OK, cancelled.", MaxAsks: 6}
		},
		func(name string, opts any, env Env) (Preset, error) {
			o := opts.(*CollectOptions)
			tr, err := compileTrigger(o.Commands, o.Patterns)
			if err != nil {
				return nil, err
			}
			c := &Collect{base: base{name, "collect"}, o: *o, tr: tr}
			for _, s := range o.Slots {
				c.res = append(c.res, regexp.MustCompile(s.Pattern))
			}
			return c, nil
		})
}

// Collect is the collect preset.
type Collect struct {
	base
	o   CollectOptions
	tr  trigger
	res []*regexp.Regexp
}

// Describe implements Preset.
func (c *Collect) Describe() string {
	names := make([]string, 0, len(c.o.Slots))
	for _, s := range c.o.Slots {
		names = append(names, s.Name)
	}
	return "on " + c.tr.describe() + "; slots " + strings.Join(names, ", ")
}

// asked says which slot a message of the assistant asks for (-1: none of
// its questions).
func (c *Collect) asked(m moltbot.Message) int {
	if m.Role != moltbot.RoleAssistant {
		return -1
	}
	text := strings.TrimSpace(m.Content)
	for i, s := range c.o.Slots {
		if text == strings.TrimSpace(s.Ask) || s.Retry != "" && text == strings.TrimSpace(s.Retry) {
			return i
		}
	}
	return -1
}

// BeforeModel starts a collection, or goes on with one its last question
// left open.
func (c *Collect) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if !c.runs(t) {
		return nil, nil
	}
	msgs := t.Messages
	k := len(msgs) - 1
	if k < 0 || msgs[k].Role != moltbot.RoleUser {
		return nil, nil
	}
	cur, ok := userText(t)
	if !ok {
		return nil, nil
	}
	start, asks, last := -1, 0, -1
	if _, ok := c.tr.match(cur); ok {
		start = k
	} else {
		// Back through our questions and their answers to the message
		// that started it.
		i := k - 1
		for i >= 1 {
			slot := c.asked(msgs[i])
			if slot < 0 {
				break
			}
			if last < 0 {
				last = slot
			}
			asks++
			if msgs[i-1].Role != moltbot.RoleUser {
				break
			}
			if _, ok := c.tr.match(msgs[i-1].Text()); ok {
				start = i - 1
				break
			}
			i -= 2
		}
		if start < 0 {
			return nil, nil // not in a collection
		}
		if slices.ContainsFunc(c.o.Cancel, func(w string) bool { return normalize(w) == normalize(cur) }) {
			t.Note(c.name+".cancelled", "true")
			return c.answer(t, fn, c.o.Cancelled, moltbot.Usage{})
		}
	}
	// Each slot's value: its first match in the user's messages since the
	// start (the message that started it counts: "refund order
	// 123456789012" fills order_id at once).
	values := make([]string, len(c.o.Slots))
	missing := -1
	for s, re := range c.res {
		for i := start; i <= k; i++ {
			if msgs[i].Role != moltbot.RoleUser {
				continue
			}
			if m := re.FindStringSubmatch(msgs[i].Text()); m != nil {
				values[s] = m[0]
				if len(m) > 1 {
					values[s] = m[1]
				}
				break
			}
		}
		if values[s] == "" && missing < 0 {
			missing = s
		}
	}
	if missing >= 0 {
		if asks >= c.o.MaxAsks {
			t.Note(c.name+".cancelled", "true")
			return c.answer(t, fn, c.o.Cancelled, moltbot.Usage{})
		}
		q := c.o.Slots[missing].Ask
		if missing == last && c.o.Slots[missing].Retry != "" {
			q = c.o.Slots[missing].Retry // the answer to this question did not hold
		}
		return c.answer(t, fn, q, moltbot.Usage{})
	}
	done := c.o.Done
	for s, v := range values {
		name := c.o.Slots[s].Name
		done = strings.ReplaceAll(done, "{"+name+"}", v)
		t.Note(c.name+"."+name, v)
	}
	return c.answer(t, fn, done, moltbot.Usage{})
}
