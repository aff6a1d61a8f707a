package builtin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/moltbot/moltbot"
	"gopkg.in/yaml.v3"
)

// FAQOptions are the faq preset's (with: of use: faq).
type FAQOptions struct {
	// File is the FAQ, a YAML file under skills/ (a path relative to it):
	//
	//	- q: [退货政策是什么？, What is the return policy?]
	//	  a: 30 天内可无理由退货。Returns are accepted within 30 days.
	//	- q: 营业时间
	//	  a: 每天 9:00-18:00。
	//
	// q is a question or a list of its phrasings; a is the answer, given
	// verbatim.
	File string `yaml:"file"`
	// Entries are FAQ entries written in the config itself (with File, or
	// instead of it).
	Entries []FAQEntry `yaml:"entries"`
}

// FAQEntry is a curated question (in its phrasings) and its answer.
type FAQEntry struct {
	Q []string `yaml:"q"`
	A string   `yaml:"a"`
}

func (o *FAQOptions) check() error {
	var errs []error
	if o.File == "" && len(o.Entries) == 0 {
		errs = append(errs, optErr("file", "the faq needs a file (under skills/) or entries"))
	}
	if o.File != "" && (filepath.IsAbs(o.File) || !filepath.IsLocal(o.File)) {
		errs = append(errs, optErr("file", "%q: want a path inside skills/, relative to it", o.File))
	}
	for i, e := range o.Entries {
		if err := e.check(); err != nil {
			errs = append(errs, optErr(fmt.Sprintf("entries[%d]", i), "%v", err))
		}
	}
	return joinErrs(errs)
}

func (e FAQEntry) check() error {
	if len(e.Q) == 0 {
		return errors.New("q: no question")
	}
	for _, q := range e.Q {
		if normalize(q) == "" {
			return fmt.Errorf("q: %q has nothing to match once punctuation and spaces are left out", q)
		}
	}
	if strings.TrimSpace(e.A) == "" {
		return errors.New("a: no answer")
	}
	return nil
}

// maxFAQFile bounds an FAQ file.
const maxFAQFile = 4 << 20

func registerFaq() {
	register("faq", "answers curated questions verbatim (no model)",
		func() any { return &FAQOptions{} },
		func(name string, opts any, env Env) (Preset, error) {
			f := &FAQ{base: base{name, "faq"}, o: *opts.(*FAQOptions), dir: env.Dir}
			if err := f.Reload(); err != nil {
				return nil, err
			}
			return f, nil
		})
}

// Reload reads the FAQ file again (Reloader); an error keeps the answers
// in use.
func (f *FAQ) Reload() error {
	idx := &faqIndex{answers: map[string]string{}}
	for _, e := range f.o.Entries {
		idx.add(e)
	}
	if f.o.File != "" {
		path := filepath.Join(f.dir, f.o.File)
		st, err := os.Stat(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("file: skills/%s does not exist", f.o.File)
			}
			return err
		}
		if st.Size() > maxFAQFile {
			return fmt.Errorf("skills/%s: %d bytes, more than an FAQ may hold (%d)", f.o.File, st.Size(), maxFAQFile)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		entries, err := ParseFAQ("skills/"+filepath.ToSlash(f.o.File), b)
		if err != nil {
			return err
		}
		for _, e := range entries {
			idx.add(e)
		}
	}
	f.cur.Store(idx)
	return nil
}

// ParseFAQ reads an FAQ file (FAQOptions.File); an error names the file,
// the line and the entry.
func ParseFAQ(file string, data []byte) ([]FAQEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: the FAQ is empty", file)
	}
	root := doc.Content[0]
	if root.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: want a list of entries ({q: question, a: answer}), got %s", file, root.Line, nodeKind(root))
	}
	var out []FAQEntry
	var errs []error
	fail := func(n *yaml.Node, i int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: [%d]: %s", file, n.Line, i, fmt.Sprintf(format, args...)))
	}
	for i, n := range root.Content {
		if n.Kind != yaml.MappingNode {
			fail(n, i, "want an entry {q: question, a: answer}, got %s", nodeKind(n))
			continue
		}
		var e FAQEntry
		ok := true
		seen := map[string]bool{}
		for k := 0; k+1 < len(n.Content); k += 2 {
			key, val := n.Content[k], n.Content[k+1]
			if seen[key.Value] {
				fail(key, i, "%s: given twice", key.Value)
				ok = false
				continue
			}
			seen[key.Value] = true
			switch key.Value {
			case "q":
				switch val.Kind {
				case yaml.ScalarNode:
					e.Q = []string{val.Value}
				case yaml.SequenceNode:
					for _, q := range val.Content {
						if q.Kind != yaml.ScalarNode {
							fail(q, i, "q: want a question, got %s", nodeKind(q))
							ok = false
							continue
						}
						e.Q = append(e.Q, q.Value)
					}
				default:
					fail(val, i, "q: want a question or a list of them, got %s", nodeKind(val))
					ok = false
				}
			case "a":
				if val.Kind != yaml.ScalarNode {
					fail(val, i, "a: want the answer's text, got %s", nodeKind(val))
					ok = false
					continue
				}
				e.A = val.Value
			default:
				fail(key, i, "%s: unknown key (known: q, a)", key.Value)
				ok = false
			}
		}
		if !ok {
			continue
		}
		if err := e.check(); err != nil {
			fail(n, i, "%v", err)
			continue
		}
		out = append(out, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return fmt.Sprintf("%q", v)
}

// FAQ is the faq preset: a stage before the model that answers a
// question of its list with its answer, verbatim.
type FAQ struct {
	base
	o   FAQOptions
	dir string
	cur atomic.Pointer[faqIndex]
}

// faqIndex is an FAQ as loaded.
type faqIndex struct {
	answers map[string]string // normalized question -> answer
	n       int
}

func (x *faqIndex) add(e FAQEntry) {
	for _, q := range e.Q {
		x.answers[normalize(q)] = e.A // a later entry wins, as a config's later key would
	}
	x.n++
}

// Describe implements Preset.
func (f *FAQ) Describe() string {
	x := f.cur.Load()
	return fmt.Sprintf("%d curated answer(s), %d phrasing(s)", x.n, len(x.answers))
}

// Answer returns the answer to a question, and whether there is one.
func (f *FAQ) Answer(q string) (string, bool) {
	a, ok := f.cur.Load().answers[normalize(q)]
	return a, ok
}

// BeforeModel answers a question of the list.
func (f *FAQ) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if !f.runs(t) {
		return nil, nil
	}
	s, ok := userText(t)
	if !ok || len(s) > 1024 {
		return nil, nil
	}
	a, ok := f.Answer(s)
	if !ok {
		return nil, nil
	}
	return f.answer(t, fn, a, moltbot.Usage{})
}

// normalize is a question as the FAQ matches it: full-width forms made
// half-width (Ａ→a, ？→?), the ideographic space a space, lower case, and
// punctuation, symbols and spaces left out ("What's the return policy?"
// and "whats the return policy" are one question; so are "退货政策？" and
// "退货政策").
func normalize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == 0x3000:
			r = ' '
		case r >= 0xFF01 && r <= 0xFF5E:
			r -= 0xFEE0
		}
		if unicode.IsPunct(r) || unicode.IsSymbol(r) || unicode.IsSpace(r) || unicode.IsControl(r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
