package builtin

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// The kinds of text a guard masks, and what it puts in their place.
const (
	KindEmail   = "email"
	KindPhone   = "phone"
	KindIDCard  = "id_card"
	KindCard    = "card"
	KindBlocked = "blocked"
)

var maskKinds = []string{KindEmail, KindPhone, KindIDCard, KindCard}

func placeholder(kind string) string {
	if kind == KindBlocked {
		return "***"
	}
	return "[" + kind + "]"
}

// masker finds what a guard masks in a text. It is read-only once built:
// safe for concurrent use.
type masker struct {
	email, phone, id, card bool
	words                  []string // folded (ASCII lower case), longest first
	asciiWords             bool     // a word of ASCII letters or digits
	// allow are what is never masked, in allowKey form: the operator's own
	// support address and phone number, which an FAQ or a flow gives out.
	allow []string
}

// allowKey is the form an allowed value is compared in: an e-mail address
// lower-cased, a number by its digits alone ("400-800-1234" is
// "4008001234").
func allowKey(s string) string {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "@") {
		return strings.ToLower(s)
	}
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func newMasker(kinds, blocklist []string) *masker {
	m := &masker{}
	for _, k := range kinds {
		switch k {
		case KindEmail:
			m.email = true
		case KindPhone:
			m.phone = true
		case KindIDCard:
			m.id = true
		case KindCard:
			m.card = true
		}
	}
	for _, w := range blocklist {
		w = foldASCII(strings.TrimSpace(w))
		if w == "" || slices.Contains(m.words, w) {
			continue
		}
		m.words = append(m.words, w)
		if isASCIIWord(w[0]) || isASCIIWord(w[len(w)-1]) {
			m.asciiWords = true
		}
	}
	slices.SortStableFunc(m.words, func(a, b string) int { return len(b) - len(a) })
	return m
}

// span is a found piece of text: s[lo:hi] is of kind.
type span struct {
	lo, hi int
	kind   string
}

// mask returns s with every span found replaced by its placeholder, and
// how many there were.
func (m *masker) mask(s string) (string, int) {
	sp := m.spans(s)
	if len(sp) == 0 {
		return s, 0
	}
	return render(s, sp), len(sp)
}

func render(s string, sp []span) string {
	var b strings.Builder
	at := 0
	for _, x := range sp {
		b.WriteString(s[at:x.lo])
		b.WriteString(placeholder(x.kind))
		at = x.hi
	}
	b.WriteString(s[at:])
	return b.String()
}

// spans finds what is masked in s, in order, none overlapping (the
// earlier, then the longer, wins).
func (m *masker) spans(s string) []span {
	var sp []span
	if m.email {
		for _, ix := range emailRE().FindAllStringIndex(s, -1) {
			sp = append(sp, span{ix[0], ix[1], KindEmail})
		}
	}
	if m.phone || m.id || m.card {
		sp = m.numbers(s, sp)
	}
	if len(m.allow) > 0 {
		sp = slices.DeleteFunc(sp, func(x span) bool { return x.kind != KindBlocked && slices.Contains(m.allow, allowKey(s[x.lo:x.hi])) })
	}
	if len(m.words) > 0 {
		sp = m.blocked(s, sp)
	}
	if len(sp) < 2 {
		return sp
	}
	slices.SortFunc(sp, func(a, b span) int {
		if a.lo != b.lo {
			return a.lo - b.lo
		}
		return b.hi - a.hi
	})
	out := sp[:1]
	for _, x := range sp[1:] {
		if x.lo >= out[len(out)-1].hi {
			out = append(out, x)
		}
	}
	return out
}

var emailRE = lazyRE(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`)

// numbers finds phone, ID and card numbers: in each run of digit groups
// (digits joined by single spaces or dashes, maybe a leading +), the
// longest window of groups from each start that is one, left to right.
func (m *masker) numbers(s string, sp []span) []span {
	for i := 0; i < len(s); {
		if !isDigit(s[i]) && !(s[i] == '+' && i+1 < len(s) && isDigit(s[i+1])) {
			i++
			continue
		}
		// A run: its groups' [start, end) in s.
		type group struct{ lo, hi int }
		var groups []group
		j := i
		if s[j] == '+' {
			j++
		}
		for {
			lo := j
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			groups = append(groups, group{lo, j})
			if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
				j++
				continue
			}
			break
		}
		plus := s[i] == '+'
		start := i
		i = j
		for g := 0; g < len(groups); {
			found := false
			for e := min(len(groups), g+8); e > g; e-- {
				lo, hi := groups[g].lo, groups[e-1].hi
				if g == 0 && plus {
					lo = start
				}
				digits := make([]byte, 0, 24)
				for _, gr := range groups[g:e] {
					digits = append(digits, s[gr.lo:gr.hi]...)
				}
				sizes := make([]int, 0, e-g)
				for _, gr := range groups[g:e] {
					sizes = append(sizes, gr.hi-gr.lo)
				}
				x := hi < len(s) && (s[hi] == 'X' || s[hi] == 'x') && e == len(groups)
				if kind := m.classify(string(digits), sizes, g == 0 && plus, x); kind != "" {
					if kind == KindIDCard && len(digits) == 17 {
						hi++
					}
					sp = append(sp, span{lo, hi, kind})
					g, found = e, true
					break
				}
			}
			if !found {
				g++
			}
		}
	}
	return sp
}

// classify says what a number is: its digits, the sizes of its groups,
// whether a + led it and whether an X follows it.
func (m *masker) classify(d string, sizes []int, plus, x bool) string {
	n := len(d)
	if m.id && len(sizes) == 1 && (n == 18 || n == 17 && x) && validID(d, x) {
		return KindIDCard
	}
	if m.phone && phoneNumber(d, sizes, plus) {
		return KindPhone
	}
	if m.card && !plus && n >= 13 && n <= 19 && d[0] != '0' && luhn(d) {
		return KindCard
	}
	return ""
}

func phoneNumber(d string, sizes []int, plus bool) bool {
	n := len(d)
	mobile := func(d string) bool { return len(d) == 11 && d[0] == '1' && d[1] >= '3' && d[1] <= '9' }
	switch {
	case mobile(d) && (len(sizes) == 1 || slices.Equal(sizes, []int{3, 4, 4})):
		return true // a Chinese mobile number: 13800138000, 138 0013 8000
	case strings.HasPrefix(d, "86") && mobile(d[2:]) && (plus || sizes[0] == 2):
		return true // +86 138...
	case plus && n >= 8 && n <= 15:
		return true // international: +44 20 7946 0958
	case n == 10 && slices.Equal(sizes, []int{3, 3, 4}):
		return true // 415-555-2671
	case n == 11 && d[0] == '1' && slices.Equal(sizes, []int{1, 3, 3, 4}):
		return true // 1-415-555-2671
	case len(sizes) == 2 && d[0] == '0' && (sizes[0] == 3 || sizes[0] == 4) && (sizes[1] == 7 || sizes[1] == 8):
		return true // a Chinese landline: 010-12345678, 0755 1234567
	}
	return false
}

// validID checks a Chinese resident ID number (GB 11643): 17 digits, a
// plausible birth date, and the check character (d's 18th, or X).
func validID(d string, x bool) bool {
	if d[0] == '0' {
		return false
	}
	y := atoi(d[6:10])
	mo := atoi(d[10:12])
	day := atoi(d[12:14])
	if y < 1900 || y > 2100 || mo < 1 || mo > 12 || day < 1 || day > 31 {
		return false
	}
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i := range 17 {
		sum += int(d[i]-'0') * weights[i]
	}
	check := "10X98765432"[sum%11]
	if len(d) == 17 {
		return x && check == 'X'
	}
	return d[17] == check
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// luhn checks a card number's check digit.
func luhn(d string) bool {
	sum := 0
	for i := range len(d) {
		v := int(d[len(d)-1-i] - '0')
		if i%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// blocked finds the blocklist's words: ASCII case folded; a word that
// begins or ends with an ASCII letter or digit only as a whole word there
// ("darn" not in "darnell").
func (m *masker) blocked(s string, sp []span) []span {
	f := foldASCII(s)
	for _, w := range m.words {
		for at := 0; at < len(f); {
			k := strings.Index(f[at:], w)
			if k < 0 {
				break
			}
			lo, hi := at+k, at+k+len(w)
			if (isASCIIWord(w[0]) && lo > 0 && isASCIIWord(f[lo-1])) || (isASCIIWord(w[len(w)-1]) && hi < len(f) && isASCIIWord(f[hi])) {
				_, size := utf8.DecodeRuneInString(f[lo:])
				at = lo + size
				continue
			}
			sp = append(sp, span{lo, hi, KindBlocked})
			at = hi
		}
	}
	return sp
}

// foldASCII lowers ASCII letters only: offsets stay those of s.
func foldASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isASCIIWord(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isEmailChar(c byte) bool {
	return isASCIIWord(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-' || c == '@'
}

func isNumberChar(c byte) bool { return isDigit(c) || c == ' ' || c == '-' || c == '+' }

// maxHold bounds what a stream masker holds back (bytes): a run past it
// (a 4 KiB word) is masked and let go as it is.
const maxHold = 4 << 10

// streamMasker masks a streamed text: Write takes the next piece and
// returns what can be shown of the text so far, masked, holding back
// what could still become (part of) something to mask when the next
// piece comes: the last word of ASCII letters or digits, a number that
// may go on, the beginning of a blocklisted word. Flush returns the rest.
// The pieces shown add up to m.mask(whole text) (a fuzz test holds it to
// that), but for a run longer than maxHold.
type streamMasker struct {
	m       *masker
	pending string
}

func (sm *streamMasker) Write(piece string) string {
	sm.pending += piece
	s := sm.pending
	sp := sm.m.spans(s)
	cut := sm.cut(s, sp)
	if cut == 0 && len(s) > maxHold {
		cut = len(s)
	}
	var in []span
	for _, x := range sp {
		if x.hi <= cut {
			in = append(in, x)
		}
	}
	sm.pending = s[cut:]
	return render(s[:cut], in)
}

func (sm *streamMasker) Flush() string {
	s := sm.pending
	sm.pending = ""
	out, _ := sm.m.mask(s)
	return out
}

// cut is where s can be split: nothing found crosses it, no run a
// detector reads across it, and what follows it cannot become something
// to mask when more text comes.
func (sm *streamMasker) cut(s string, sp []span) int {
	m := sm.m
	cut := len(s)
	// A rune cut in two by the pieces waits for its end.
	for p := len(s) - 1; p >= 0 && p >= len(s)-utf8.UTFMax; p-- {
		if utf8.RuneStart(s[p]) {
			if !utf8.FullRuneInString(s[p:]) {
				cut = p
			}
			break
		}
	}
	words := m.email || m.asciiWords
	numbers := m.phone || m.id || m.card
	// The beginning of a blocklisted word at the end.
	for p := max(0, len(s)-maxWordLen(m.words)); p < len(s); p++ {
		if !utf8.RuneStart(s[p]) {
			continue
		}
		tail := foldASCII(s[p:])
		if slices.ContainsFunc(m.words, func(w string) bool { return strings.HasPrefix(w, tail) }) {
			cut = p
			break
		}
	}
	safe := func(c int) bool {
		if c == 0 || c >= len(s) {
			return true
		}
		a, b := s[c-1], s[c]
		if words && isEmailChar(a) && isEmailChar(b) {
			return false
		}
		if numbers && isNumberChar(a) && isNumberChar(b) && (isDigit(a) || isDigit(b) || a == '+') {
			return false
		}
		if m.id && isDigit(a) && (b == 'X' || b == 'x') {
			return false
		}
		return true
	}
	// The last run, which may go on: a word, a number.
	if cut == len(s) && cut > 0 {
		if words {
			c := len(s)
			for c > 0 && isEmailChar(s[c-1]) {
				c--
			}
			cut = min(cut, c)
		}
		if numbers {
			c := len(s)
			for c > 0 && isNumberChar(s[c-1]) {
				c--
			}
			// Spaces or dashes alone at the end hold nothing back.
			if strings.ContainsFunc(s[c:], func(r rune) bool { return r != ' ' && r != '-' }) {
				cut = min(cut, c)
			}
		}
	}
	for {
		moved := false
		for !safe(cut) {
			cut--
			moved = true
		}
		for _, x := range sp {
			if x.lo < cut && cut < x.hi {
				cut = x.lo
				moved = true
			}
		}
		if !moved {
			return cut
		}
	}
}

func maxWordLen(words []string) int {
	n := 0
	for _, w := range words {
		n = max(n, len(w))
	}
	return n
}
