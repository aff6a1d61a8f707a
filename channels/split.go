package channels

import (
	"strings"
	"unicode/utf8"
)

// Units counts a rune in a platform's length unit: Runes (Discord, Slack,
// Feishu) or UTF16 (Telegram counts UTF-16 code units).
type Units func(r rune) int

// Runes counts every rune as one.
func Runes(rune) int { return 1 }

// UTF16 counts a rune as its UTF-16 length (two above U+FFFF).
func UTF16(r rune) int {
	if r >= 0x10000 {
		return 2
	}
	return 1
}

const fence = "```"

// Split cuts text into parts of at most limit units each, in order: at a
// paragraph break when one falls in the second half of a part, else at a
// line break, else at a space, else between runes. A part that ends inside
// a fenced code block is closed ("```") and the next one opens it again
// with the same fence line (its language kept), so every part renders.
// Whitespace at a cut is dropped; an empty text gives no part. limit below
// 16 is taken as 16.
func Split(text string, limit int, units Units) []string {
	if units == nil {
		units = Runes
	}
	limit = max(limit, 16)
	text = strings.TrimSpace(text)
	var out []string
	open := "" // the fence line (with "\n") the next part starts with
	for text != "" {
		body := text
		if open != "" {
			body = open + text
		}
		if measure(body, units) <= limit {
			return append(out, body)
		}
		budget := limit
		if strings.Contains(body, fence) {
			budget -= len("\n" + fence) // room to close a fence
		}
		if budget <= len(open)+8 { // a fence line too long to carry: drop it
			open, body, budget = "", text, limit
		}
		end := prefix(body, budget, units)
		cut := boundary(body, len(open), end)
		part := strings.TrimRightFunc(body[:cut], isSpace)
		rest := strings.TrimLeftFunc(body[cut:], isSpace)
		if line, inside := openFence(part); inside {
			part += "\n" + fence
			open = line + "\n"
		} else {
			open = ""
		}
		if strings.TrimSpace(part) != "" {
			out = append(out, part)
		}
		text = rest
	}
	return out
}

func isSpace(r rune) bool { return r == ' ' || r == '\n' || r == '\t' || r == '\r' }

// measure is s's length in units.
func measure(s string, units Units) int {
	n := 0
	for _, r := range s {
		n += units(r)
	}
	return n
}

// prefix is the byte length of the longest prefix of s of at most budget
// units (at least one rune, so that Split always moves on).
func prefix(s string, budget int, units Units) int {
	n := 0
	for i, r := range s {
		n += units(r)
		if n > budget {
			if i == 0 {
				return utf8.RuneLen(r)
			}
			return i
		}
	}
	return len(s)
}

// boundary picks where to cut s[:end] (not before min): the last
// paragraph break in its second half, else the last line break or space
// there, else end.
func boundary(s string, min, end int) int {
	half := min + (end-min)/2
	for _, sep := range []string{"\n\n", "\n", " "} {
		if i := strings.LastIndex(s[:end], sep); i > half {
			return i
		}
	}
	return end
}

// openFence reports whether part ends inside a fenced block, and the
// fence line that opened it.
func openFence(part string) (line string, inside bool) {
	for l := range strings.Lines(part) {
		t := strings.TrimSpace(l)
		if !strings.HasPrefix(t, fence) {
			continue
		}
		if inside {
			inside, line = false, ""
		} else {
			inside, line = true, t
		}
	}
	return line, inside
}
