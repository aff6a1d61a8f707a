package intent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot/internal/yamlnode"
	"github.com/moltbot/moltbot/skills/wire"
	"gopkg.in/yaml.v3"
)

// Error is an intents file that does not load: its file, the line and the
// key (intents[2].rules[0]; empty for the file as a whole).
type Error = yamlnode.Error

// rule is a compiled rule of an intent (by index in Set.Intents).
type rule struct {
	intent int
	re     *regexp.Regexp
	// lit is the rule when it is a plain literal: strings.Contains is a
	// tenth of the regexp's cost.
	lit string
	// need, when set, is a literal every match contains (prefilter.go):
	// without it in the message the pattern is not run.
	need    need
	hasNeed bool
}

func (r *rule) match(text string, folded func() string) bool {
	if r.lit != "" {
		return strings.Contains(text, r.lit)
	}
	if r.hasNeed && !r.need.met(text, folded) {
		return false
	}
	return r.re.MatchString(text)
}

// Load reads the intents file at path (rel names it in errors, such as
// skills/intents.yaml) and trains its classifier. No file: nil, nil (no
// intents, the stage idles).
func Load(path, rel string) (*Set, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("intent: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, &Error{File: rel, Line: 1, Msg: "not a regular file (no link: the intents are read from the workspace only)"}
	}
	if info.Size() > MaxFile {
		return nil, &Error{File: rel, Line: 1, Msg: fmt.Sprintf("%d bytes; an intents file is at most %d", info.Size(), MaxFile)}
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("intent: %w", err)
	}
	return Parse(rel, src)
}

type parser struct {
	yamlnode.Reader
	s *Set
}

// Parse parses an intents file's source (file names it in errors) and
// trains the classifier on its examples. It never panics on bad input.
//
//	settings: {threshold: 0.3, margin: 0.1, fallback: fallback, model: "", model_top: 3, min_examples: 5}
//	intents:
//	  - name: refund
//	    description: the user wants their money back
//	    rules: ['退款', '(?i)\brefund\b']
//	    examples: [我要退货, I want my money back]
func Parse(file string, src []byte) (*Set, error) {
	if len(src) > MaxFile {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("%d bytes; an intents file is at most %d", len(src), MaxFile)}
	}
	if !utf8.Valid(src) {
		return nil, &Error{File: file, Line: 1, Msg: "not UTF-8"}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: max(doc.Line, 1), Msg: "an intents file is a mapping: settings, intents"}
	}
	p := &parser{Reader: yamlnode.Reader{File: file, MaxQuote: 40}, s: &Set{File: file, byName: map[string]int{}, Settings: Settings{
		Threshold: DefaultThreshold, Margin: DefaultMargin, Fallback: DefaultFallback, ModelTop: DefaultModelTop, MinExamples: 5}}}
	if err := p.top(doc.Content[0]); err != nil {
		return nil, err
	}
	p.s.lint()
	p.s.clf = Train(p.s.Intents)
	return p.s, nil
}

// list calls fn with each element of a list (or a single text).
func (p *parser) list(n *yaml.Node, key string, fn func(i int, v *yaml.Node, at string) error) error {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return fn(0, n, key+"[0]")
	}
	if n.Kind != yaml.SequenceNode {
		return p.Errf(n, key, "want a list, not %s", p.KindOf(n))
	}
	for i, c := range n.Content {
		if err := fn(i, c, fmt.Sprintf("%s[%d]", key, i)); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) num(n *yaml.Node, key string, lo, hi float64) (float64, error) {
	s, err := p.Str(n, key)
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < lo || f > hi || f != f {
		return 0, p.Errf(n, key, "%q: want a number from %g to %g", s, lo, hi)
	}
	return f, nil
}

// ValidName reports whether s may name an intent (wire.ValidIntent: 1 to
// 64 of a-z, 0-9, '_', '-' and '.', starting with a letter or digit).
func ValidName(s string) bool { return wire.ValidIntent(s) }

const nameRule = "1 to 64 of a-z, 0-9, '_', '-', '.', starting with a letter or digit"

func (p *parser) top(m *yaml.Node) error {
	var intents *yaml.Node
	err := p.Pairs(m, "", func(key string, k, v *yaml.Node) error {
		switch key {
		case "settings":
			return p.settings(v)
		case "intents":
			intents = v
			return nil
		}
		return p.Errf(k, key, "unknown key (settings, intents)")
	})
	if err != nil {
		return err
	}
	if intents == nil {
		return p.Errf(m, "intents", "missing: the intents, each with a name and examples or rules")
	}
	if intents.Kind != yaml.SequenceNode {
		return p.Errf(intents, "intents", "want a list, not %s", p.KindOf(intents))
	}
	if len(intents.Content) > MaxIntents {
		return p.Errf(intents, "intents", "%d intents; at most %d", len(intents.Content), MaxIntents)
	}
	for i, n := range intents.Content {
		if err := p.intent(n, fmt.Sprintf("intents[%d]", i)); err != nil {
			return err
		}
	}
	if len(p.s.Intents) == 0 {
		return p.Errf(intents, "intents", "empty: no intent to recognize")
	}
	return nil
}

func (p *parser) settings(m *yaml.Node) error {
	st := &p.s.Settings
	return p.Pairs(m, "settings", func(key string, k, v *yaml.Node) error {
		at := yamlnode.Join("settings", key)
		var err error
		switch key {
		case "threshold":
			st.Threshold, err = p.num(v, at, 0, 1)
		case "margin":
			st.Margin, err = p.num(v, at, 0, 1)
		case "fallback":
			if st.Fallback, err = p.Str(v, at); err == nil && !ValidName(st.Fallback) {
				err = p.Errf(v, at, "%q: an intent's name is %s", st.Fallback, nameRule)
			}
		case "model":
			if v.Tag == "!!null" {
				st.Model = ""
				return nil
			}
			if st.Model, err = p.Str(v, at); err == nil && (len(st.Model) > 256 || strings.ContainsAny(st.Model, " \t\r\n")) {
				err = p.Errf(v, at, "%q: an alias or provider/model (no spaces, at most 256 bytes)", st.Model)
			}
		case "model_top":
			var f float64
			if f, err = p.num(v, at, 0, 3); err == nil && f != float64(int(f)) {
				err = p.Errf(v, at, "%q: want a whole number from 0 to 3", v.Value)
			}
			st.ModelTop = int(f)
		case "model_timeout":
			var str string
			if str, err = p.Str(v, at); err != nil {
				return err
			}
			d, derr := time.ParseDuration(str)
			if derr != nil || d <= 0 || d > time.Minute {
				return p.Errf(v, at, "%q: want a duration from 1ms to 1m, such as 5s", str)
			}
			st.ModelTimeout = d
		case "min_examples":
			var f float64
			if f, err = p.num(v, at, 0, MaxExamples); err == nil && f != float64(int(f)) {
				err = p.Errf(v, at, "%q: want a whole number", v.Value)
			}
			st.MinExamples = int(f)
		default:
			err = p.Errf(k, at, "unknown key (threshold, margin, fallback, model, model_top, model_timeout, min_examples)")
		}
		return err
	})
}

func (p *parser) intent(m *yaml.Node, at string) error {
	in := Intent{Line: m.Line}
	idx := len(p.s.Intents)
	var rules []rule
	seen := map[string]bool{}
	err := p.Pairs(m, at, func(key string, k, v *yaml.Node) error {
		kat := yamlnode.Join(at, key)
		switch key {
		case "name":
			s, err := p.Str(v, kat)
			if err != nil {
				return err
			}
			if !ValidName(s) {
				return p.Errf(v, kat, "%q: an intent's name is %s", s, nameRule)
			}
			if j, ok := p.s.byName[s]; ok {
				return p.Errf(v, kat, "intent %q is defined twice (first at line %d)", s, p.s.Intents[j].Line)
			}
			in.Name = s
		case "description":
			s, err := p.Str(v, kat)
			if err == nil && len(s) > 1024 {
				err = p.Errf(v, kat, "%d bytes; at most 1024", len(s))
			}
			in.Description = s
			return err
		case "rules":
			return p.list(v, kat, func(i int, v *yaml.Node, at string) error {
				s, err := p.Str(v, at)
				if err != nil {
					return err
				}
				if s == "" {
					return p.Errf(v, at, "an empty pattern would match every message")
				}
				re, err := regexp.Compile(s)
				if err != nil {
					return p.Errf(v, at, "pattern %q: %v (RE2 syntax: no lookaround, no backreferences)", s, err)
				}
				if re.MatchString("") {
					return p.Errf(v, at, "pattern %q matches the empty message, so every message", s)
				}
				in.Rules = append(in.Rules, s)
				r := rule{intent: idx, re: re}
				if lit, complete := re.LiteralPrefix(); complete && lit != "" {
					r.lit = lit
				} else {
					r.need, r.hasNeed = required(s)
				}
				rules = append(rules, r)
				return nil
			})
		case "examples":
			if v.Kind == yaml.SequenceNode && len(v.Content) > MaxExamples {
				return p.Errf(v, kat, "%d examples; at most %d", len(v.Content), MaxExamples)
			}
			return p.list(v, kat, func(i int, v *yaml.Node, at string) error {
				s, err := p.Str(v, at)
				if err != nil {
					return err
				}
				s = strings.TrimSpace(s)
				if s == "" || len(s) > MaxText {
					return p.Errf(v, at, "an example is 1 to %d bytes of text", MaxText)
				}
				if seen[s] {
					return p.Errf(v, at, "%q is listed twice", s)
				}
				seen[s] = true
				in.Examples = append(in.Examples, s)
				return nil
			})
		default:
			return p.Errf(k, kat, "unknown key (name, description, rules, examples)")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if in.Name == "" {
		return p.Errf(m, yamlnode.Join(at, "name"), "missing: an intent has a name")
	}
	if len(in.Examples) == 0 && len(in.Rules) == 0 {
		return p.Errf(m, at, "intent %q has neither examples nor rules: nothing would recognize it", in.Name)
	}
	p.s.byName[in.Name] = idx
	p.s.Intents = append(p.s.Intents, in)
	p.s.rules = append(p.s.rules, rules...)
	return nil
}

// lint notes what loads but works otherwise than it reads: an intent with
// fewer examples than settings.min_examples (the classifier hardly knows
// it), an example given to two intents (the classifier cannot tell them
// apart on it).
func (s *Set) lint() {
	owner := map[string]string{}
	for _, in := range s.Intents {
		if len(in.Examples) < s.Settings.MinExamples {
			s.Notes = append(s.Notes, fmt.Sprintf("%s:%d: intent %q has %d example(s); the classifier wants at least %d (settings.min_examples)",
				s.File, in.Line, in.Name, len(in.Examples), s.Settings.MinExamples))
		}
		for _, ex := range in.Examples {
			key := strings.ToLower(ex)
			if o, ok := owner[key]; ok && o != in.Name {
				s.Notes = append(s.Notes, fmt.Sprintf("%s:%d: intent %q: example %q is also an example of intent %q", s.File, in.Line, in.Name, ex, o))
				continue
			}
			owner[key] = in.Name
		}
	}
}
