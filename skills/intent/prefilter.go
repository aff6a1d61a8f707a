package intent

import (
	"regexp/syntax"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// need is what every match of a rule's pattern contains: one of its
// literals (any of them; one for a pattern such as `(?i)\bcancel\b.*\border\b`,
// one per branch for `(?i)\b(invoice|receipt)s?\b`). When the message holds
// none of them, the pattern cannot match and is not run. Such a pattern
// costs the regexp engine a backtracking pass over the message (tens of
// microseconds on a paragraph, for every rule, on every turn: a third of a
// node's CPU at 1,500 stateless requests a second, issue 11's floor);
// strings.Contains decides most messages in a fraction of that. fold: the
// literals are case-insensitive, compared in canonical case (canon) with
// the message in canonical case.
type need struct {
	any  []string
	fold bool
}

// met reports whether text (or folded(), the text in canonical case) holds
// one of n's literals.
func (n *need) met(text string, folded func() string) bool {
	if n.fold {
		text = folded()
	}
	for _, l := range n.any {
		if strings.Contains(text, l) {
			return true
		}
	}
	return false
}

// required returns the requirement of pattern whose shortest literal is
// longest (at least two runes), or ok false when there is none to use.
func required(pattern string) (need, bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return need{}, false
	}
	var best need
	bestLen := 0
	for _, n := range requirements(re.Simplify()) {
		if l := shortest(n); l >= 2 && l > bestLen {
			best, bestLen = n, l
		}
	}
	return best, bestLen > 0
}

func shortest(n need) int {
	least := -1
	for _, l := range n.any {
		if c := utf8.RuneCountInString(l); least < 0 || c < least {
			least = c
		}
	}
	return least
}

// requirements are what every match of re contains, each one literal out
// of a set (a necessary condition, not a complete one).
func requirements(re *syntax.Regexp) []need {
	switch re.Op {
	case syntax.OpLiteral:
		fold := re.Flags&syntax.FoldCase != 0
		s := string(re.Rune)
		if fold {
			s = canon(s)
		}
		return []need{{any: []string{s}, fold: fold}}
	case syntax.OpCapture, syntax.OpPlus:
		return requirements(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requirements(re.Sub[0])
		}
	case syntax.OpConcat:
		var out []need
		for _, s := range re.Sub {
			out = append(out, requirements(s)...)
		}
		return out
	case syntax.OpAlternate:
		// Every branch must give a literal, all of one case mode: the
		// requirement is any of the branches' best.
		var any []string
		fold := false
		for i, b := range re.Sub {
			var best need
			bestLen := 0
			for _, n := range requirements(b) {
				if l := shortest(n); l > bestLen {
					best, bestLen = n, l
				}
			}
			if bestLen == 0 || (i > 0 && best.fold != fold) {
				return nil
			}
			fold = best.fold
			any = append(any, best.any...)
		}
		return []need{{any: any, fold: fold}}
	}
	return nil
}

// canon maps every rune of s to the smallest rune of its case-folding
// orbit (unicode.SimpleFold), the equivalence RE2's (?i) matches by: two
// strings a case-insensitive literal matches alike have the same canon.
func canon(s string) string {
	if isCanon(s) {
		return s
	}
	return string(appendCanon(make([]byte, 0, len(s)), s))
}

// isCanon reports whether s has no lower-case letter and nothing outside
// ASCII: it is its own canonical case.
func isCanon(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || ('a' <= c && c <= 'z') || c == 'k' || c == 's' {
			return false
		}
	}
	return true
}

// appendCanon appends s in canonical case to b.
func appendCanon(b []byte, s string) []byte {
	for _, r := range s {
		b = utf8.AppendRune(b, canonRune(r))
	}
	return b
}

// canonBufs hold a message in canonical case while its rules are tried
// (matchRules): a classification allocates only its result.
var canonBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func canonRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A' // the orbit's smallest: upper case (K and S too)
		}
		return r
	}
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}
