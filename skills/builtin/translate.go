package builtin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/moltbot/moltbot"
)

// TranslateOptions are the translate preset's (with: of use: translate).
// Glossary terms are kept intact: each is replaced by a placeholder
// ([[T1]]) before the model sees the text, the model is told to keep the
// placeholders, and they are checked (each exactly as often as sent, none
// made up) and put back as the glossary says; a translation that lost one
// is asked for again once, then the turn fails saying which.
type TranslateOptions struct {
	Model    string   `yaml:"model"`
	Commands []string `yaml:"commands"`
	Patterns []string `yaml:"patterns"`
	// To is the language translated into when the message does not say
	// (/translate to French: ...; 翻译成英文：...): auto (default:
	// Chinese text into English, any other into Chinese) or a language.
	To string `yaml:"to"`
	// Glossary maps a term to what it becomes in a translation ("" or
	// itself: kept as it is): {moltbot: moltbot, 工单: ticket}.
	Glossary map[string]string `yaml:"glossary"`
}

func (o *TranslateOptions) check() error {
	_, err := compileTrigger(o.Commands, o.Patterns)
	for term := range o.Glossary {
		if strings.TrimSpace(term) == "" {
			err = errors.Join(err, optErr("glossary", "an empty term"))
		} else if strings.Contains(term, "[[") {
			err = errors.Join(err, optErr("glossary."+term, "a term may not hold [[ (the placeholders' mark)"))
		}
	}
	if strings.TrimSpace(o.To) == "" {
		err = errors.Join(err, optErr("to", "want auto or a language"))
	}
	return err
}

func registerTranslate() {
	register("translate", "translates, keeping glossary terms intact through placeholders checked after",
		func() any {
			return &TranslateOptions{Commands: []string{"/translate", "/tr"},
				Patterns: []string{"(?s)^(?:请)?(?:把|将)?(?:以下|下面的?)?(?:内容|文字|这段话)?翻译(?:成|为)(?P<to>中文|英文|英语|汉语|日文|日语|韩文|韩语|法文|法语|德文|德语|西班牙语)[:：]\\s*(?P<input>.+)$",
					"(?is)^(?:please\\s+)?translate(?:\\s+this|\\s+the following)?(?:\\s+text)?\\s+(?:to|into)\\s+(?P<to>[a-z]+(?:\\s+[a-z]+)?)\\s*:\\s*(?P<input>.+)$"},
				To: "auto"}
		},
		func(name string, opts any, env Env) (Preset, error) {
			o := opts.(*TranslateOptions)
			tr, err := compileTrigger(o.Commands, o.Patterns)
			if err != nil {
				return nil, err
			}
			terms := make([]string, 0, len(o.Glossary))
			for t := range o.Glossary {
				terms = append(terms, t)
			}
			sort.Strings(terms)
			return &Translate{base: base{name, "translate"}, o: *o, tr: tr, terms: terms, m: newMasker(nil, terms)}, nil
		})
}

// Translate is the translate preset.
type Translate struct {
	base
	o     TranslateOptions
	tr    trigger
	terms []string
	m     *masker // finds the glossary's terms as a guard finds its words
}

// Describe implements Preset.
func (t *Translate) Describe() string {
	return fmt.Sprintf("on %s; into %s; %d glossary term(s)%s", t.tr.describe(), t.o.To, len(t.terms), modelNote(t.o.Model))
}

var toCommand = lazyRE(`(?is)^(?:(?:to|into)\s+([a-z]+(?:\s+[a-z]+)?)\s*[:：]|(?:成|为)?(中文|英文|英语|汉语|日文|日语|韩文|韩语|法文|法语|德文|德语)[:：])\s*`)

// Protect puts a placeholder in place of each glossary term of text: the
// text, and the terms by placeholder ("[[T1]]": the term as written).
func (t *Translate) Protect(text string) (string, map[string]string) {
	sp := t.m.spans(text)
	if len(sp) == 0 {
		return text, nil
	}
	found := map[string]string{}
	var b strings.Builder
	at := 0
	for i, x := range sp {
		ph := "[[T" + strconv.Itoa(i+1) + "]]"
		found[ph] = text[x.lo:x.hi]
		b.WriteString(text[at:x.lo])
		b.WriteString(ph)
		at = x.hi
	}
	b.WriteString(text[at:])
	return b.String(), found
}

var placeholderRE = lazyRE(`\[\[\s*T(\d+)\s*\]\]`)

// Restore checks that a translation holds each placeholder once and no
// other, and puts the glossary's forms in their place.
func (t *Translate) Restore(out string, found map[string]string) (string, error) {
	seen := map[string]int{}
	var unknown []string
	res := placeholderRE().ReplaceAllStringFunc(out, func(ph string) string {
		norm := "[[T" + placeholderRE().FindStringSubmatch(ph)[1] + "]]"
		term, ok := found[norm]
		if !ok {
			unknown = append(unknown, ph)
			return ph
		}
		seen[norm]++
		return t.form(term)
	})
	var problems []string
	for ph, term := range found {
		if n := seen[ph]; n != 1 {
			problems = append(problems, fmt.Sprintf("%s (%q) %d times", ph, term, n))
		}
	}
	sort.Strings(problems)
	if len(unknown) > 0 {
		problems = append(problems, "made up "+strings.Join(unknown, ", "))
	}
	if len(problems) > 0 {
		return "", errors.New("placeholders not kept once each: " + strings.Join(problems, "; "))
	}
	return res, nil
}

// form is what a term (as written) becomes: the glossary's value for it
// (matched case-folded), or the term itself.
func (t *Translate) form(term string) string {
	for k, v := range t.o.Glossary {
		if foldASCII(k) == foldASCII(term) {
			if v == "" {
				return term
			}
			return v
		}
	}
	return term
}

// BeforeModel translates the text of a message its trigger selects.
func (t *Translate) BeforeModel(ctx context.Context, turn *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if !t.runs(turn) {
		return nil, nil
	}
	msg, ok := userText(turn)
	if !ok {
		return nil, nil
	}
	text, named, ok := t.tr.matchNamed(msg)
	if !ok {
		return nil, nil
	}
	to := named["to"]
	if to == "" {
		if m := toCommand().FindStringSubmatch(text); m != nil {
			to = m[1] + m[2]
			text = text[len(m[0]):]
		}
	}
	if strings.TrimSpace(text) == "" {
		if isCJK(msg) {
			return t.answer(turn, fn, "请在命令后附上要翻译的文字。", moltbot.Usage{})
		}
		return t.answer(turn, fn, "Put the text to translate after the command.", moltbot.Usage{})
	}
	if to == "" {
		to = t.o.To
	}
	if en, ok := langNames()[to]; ok {
		to = en
	}
	if strings.EqualFold(to, "auto") {
		to = "Chinese (简体中文)"
		if isCJK(text) {
			to = "English"
		}
	}
	protected, found := t.Protect(text)
	system := "Translate the user's text into " + to + ". Answer with the translation only."
	if len(found) > 0 {
		system += " Keep every placeholder such as [[T1]] exactly as written, once each, where its term belongs in the translation."
	}
	msgs := []moltbot.Message{{Role: moltbot.RoleSystem, Content: system}, {Role: moltbot.RoleUser, Content: protected}}
	var usage moltbot.Usage
	for attempt := 0; ; attempt++ {
		out, err := ask(ctx, turn, t.o.Model, msgs, moltbot.ChatOptions{}, &usage)
		if err != nil {
			return nil, err
		}
		res, err := t.Restore(strings.TrimSpace(out), found)
		if err == nil {
			return t.answer(turn, fn, res, usage)
		}
		if attempt == 1 {
			return nil, moltbot.Errorf(moltbot.EUnavailable, "translate %s: the model's translation did not keep the glossary's terms twice: %v", t.name, err)
		}
		msgs = append(msgs, moltbot.Message{Role: moltbot.RoleAssistant, Content: out},
			moltbot.Message{Role: moltbot.RoleUser, Content: "The " + err.Error() + ". Translate again, keeping each placeholder exactly once."})
	}
}

// langNames are the languages a Chinese request names, as the prompt names
// them (built at first use, not at start).
var langNames = sync.OnceValue(func() map[string]string {
	return map[string]string{"中文": "Chinese (简体中文)", "汉语": "Chinese (简体中文)", "英文": "English", "英语": "English",
		"日文": "Japanese", "日语": "Japanese", "韩文": "Korean", "韩语": "Korean", "法文": "French", "法语": "French",
		"德文": "German", "德语": "German", "西班牙语": "Spanish"}
})
