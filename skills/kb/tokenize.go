package kb

import (
	"unicode"
	"unicode/utf8"
)

// Tokenize calls fn with every term of s, in order: words of letters and
// digits lowercased (Latin, Cyrillic, ...), and, for runs of CJK
// characters (Han, Hiragana, Katakana, Hangul), their overlapping bigrams
// as Lucene's CJKBigramFilter makes them ("申请退款" -> 申请 请退 退款; a
// lone CJK character is a term of its own). English stop words and words
// over MaxTermBytes are dropped. term is only valid during the call (it
// may point into a buffer reused for the next term): copy it to keep it.
// Tokenize allocates a constant few times, never per term.
func Tokenize(s string, fn func(term []byte)) {
	var buf [MaxTermBytes]byte
	w := buf[:0] // the word being read
	long := false
	var prev rune // the previous CJK character of the run, 0: none
	cjkRun := 0   // characters in the current CJK run
	flushWord := func() {
		if len(w) > 0 && !long && !isStop(w) {
			fn(w)
		}
		w, long = buf[:0], false
	}
	var pair [8]byte
	flushRun := func() {
		if cjkRun == 1 {
			n := utf8.EncodeRune(pair[:], prev)
			fn(pair[:n])
		}
		prev, cjkRun = 0, 0
	}
	for _, r := range s {
		switch {
		case isCJK(r):
			flushWord()
			if prev != 0 {
				n := utf8.EncodeRune(pair[:], prev)
				n += utf8.EncodeRune(pair[n:], r)
				fn(pair[:n])
			}
			prev = r
			cjkRun++
		case r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9'):
			flushRun()
			w = appendTerm(w, r, &long)
		case r < utf8.RuneSelf && r >= 'A' && r <= 'Z':
			flushRun()
			w = appendTerm(w, r+('a'-'A'), &long)
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			flushRun()
			w = appendTerm(w, unicode.ToLower(r), &long)
		default:
			flushRun()
			flushWord()
		}
	}
	flushRun()
	flushWord()
}

// MaxTermBytes bounds a word: a longer one (a hash, a base64 blob) is no
// term.
const MaxTermBytes = 64

func appendTerm(w []byte, r rune, long *bool) []byte {
	if *long {
		return w
	}
	if len(w)+utf8.RuneLen(r) > MaxTermBytes {
		*long = true
		return w
	}
	return utf8.AppendRune(w, r)
}

// isCJK reports whether r is written without spaces between words: Han
// (and its extensions), Hiragana, Katakana, Hangul.
func isCJK(r rune) bool {
	if r < 0x2e80 {
		return false
	}
	return unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) || unicode.Is(unicode.Katakana, r) || unicode.Is(unicode.Hangul, r)
}

// isStop reports whether w is an English stop word (Lucene's
// EnglishAnalyzer list, with a few question words that every question
// holds). A switch, not a map: nothing is built at package start.
func isStop(w []byte) bool {
	if len(w) > 5 {
		return false
	}
	switch string(w) {
	case "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
		"no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
		"they", "this", "to", "was", "will", "with",
		"i", "me", "my", "you", "your", "we", "our", "do", "does", "did", "can", "how", "what", "when",
		"where", "which", "who", "why", "have", "has", "had", "from", "about", "so", "get", "s":
		return true
	}
	return false
}

// Terms is Tokenize's terms as strings (for tests and tools).
func Terms(s string) []string {
	var out []string
	Tokenize(s, func(t []byte) { out = append(out, string(t)) })
	return out
}
