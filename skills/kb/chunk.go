package kb

import (
	"strings"
	"unicode/utf8"
)

// ChunkerVersion names the chunker's rules (shown with each knowledge
// base). No index is stored: every node builds its indexes from the
// documents when it starts, so a build with other rules (or another
// skills.kb.chunk_runes) reindexes by itself; vectors are kept by their
// chunk's text, so changed chunks are embedded again and unchanged ones
// are not.
const ChunkerVersion = 1

// Chunk is a piece of a document that a search finds: the text under one
// heading path (or a part of it), never cut inside a code fence or a
// table.
type Chunk struct {
	// Heading is the path of headings above the text, outermost first
	// ("Returns", "Refunds"); empty for text before the first heading.
	Heading []string
	Text    string
}

// HeadingPath is the chunk's headings joined by " > ".
func (c *Chunk) HeadingPath() string { return strings.Join(c.Heading, " > ") }

// block is a run of lines that must stay together: a paragraph, a list,
// a fenced code block, a table.
type block struct {
	text  string
	runes int
}

// ChunkMarkdown splits a Markdown (or plain text) document into chunks:
// at every ATX heading ("# ...", up to ######), each heading's text kept
// as the chunk's path; a section longer than maxRunes (runes, so a CJK
// text counts its characters) is cut between blocks (blank-line separated
// paragraphs and lists, whole code fences, whole tables), the last block
// of one chunk starting the next when it is short (an overlap of up to
// 15%). A block longer than maxRunes is cut at line ends, but for a fence
// or a table, which stay whole. A "#" line inside a fence is code, not a
// heading. maxRunes <= 0 means DefaultChunkRunes.
func ChunkMarkdown(doc string, maxRunes int) []Chunk {
	if maxRunes <= 0 {
		maxRunes = DefaultChunkRunes
	}
	var (
		out     []Chunk
		path    []string
		levels  []int // levels[i] is the level of path[i]
		blocks  []block
		cur     []string // lines of the block being read
		fence   string   // the open fence's marker ("```", "~~~~"), "" outside one
		inTable bool
	)
	endBlock := func() {
		if len(cur) == 0 {
			return
		}
		text := strings.Join(cur, "\n")
		cur = cur[:0]
		if strings.TrimSpace(text) == "" {
			return
		}
		blocks = append(blocks, block{text: text, runes: utf8.RuneCountInString(text)})
	}
	endSection := func() {
		endBlock()
		out = appendChunks(out, path, blocks, maxRunes)
		blocks = blocks[:0]
	}
	for _, line := range strings.Split(strings.ReplaceAll(doc, "\r\n", "\n"), "\n") {
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		if fence != "" {
			cur = append(cur, line)
			if indent < 4 && strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t") == "" {
				fence = ""
				endBlock()
			}
			continue
		}
		if m := fenceMarker(trimmed); m != "" && indent < 4 {
			endBlock()
			inTable = false
			fence = m
			cur = append(cur, line)
			continue
		}
		if lvl, title := heading(trimmed); lvl > 0 && indent < 4 {
			endSection()
			inTable = false
			for len(levels) > 0 && levels[len(levels)-1] >= lvl {
				levels, path = levels[:len(levels)-1], path[:len(path)-1]
			}
			levels, path = append(levels, lvl), append(path, title)
			continue
		}
		isRow := strings.HasPrefix(trimmed, "|")
		switch {
		case strings.TrimSpace(line) == "":
			endBlock()
			inTable = false
		case isRow && !inTable:
			endBlock() // a table starts a block of its own
			inTable = true
			cur = append(cur, line)
		case !isRow && inTable:
			endBlock()
			inTable = false
			cur = append(cur, line)
		default:
			cur = append(cur, line)
		}
	}
	endSection()
	return out
}

// DefaultChunkRunes is the chunk size when none is given: about 400
// tokens of English, 400 characters of Chinese.
const DefaultChunkRunes = 1200

// fenceMarker is the fence a line opens ("```" or more, "~~~" or more), or "".
func fenceMarker(s string) string {
	for _, c := range []byte{'`', '~'} {
		n := 0
		for n < len(s) && s[n] == c {
			n++
		}
		if n >= 3 {
			return s[:n]
		}
	}
	return ""
}

// heading reads an ATX heading: its level (1-6) and text, or 0.
func heading(s string) (int, string) {
	n := 0
	for n < len(s) && s[n] == '#' {
		n++
	}
	if n == 0 || n > 6 || (n < len(s) && s[n] != ' ' && s[n] != '\t') {
		return 0, ""
	}
	title := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(s[n:]), "#"))
	if title == "" {
		return 0, ""
	}
	return n, title
}

// appendChunks cuts a section's blocks into chunks of about maxRunes.
func appendChunks(out []Chunk, path []string, blocks []block, maxRunes int) []Chunk {
	if len(blocks) == 0 {
		return out
	}
	hp := append([]string(nil), path...)
	var parts []string
	size := 0
	var last block
	flush := func() {
		if text := strings.Join(parts, "\n\n"); strings.TrimSpace(text) != "" {
			out = append(out, Chunk{Heading: hp, Text: text})
		}
		parts, size = parts[:0], 0
	}
	for _, b := range splitLong(blocks, maxRunes) {
		if size > 0 && size+2+b.runes > maxRunes {
			flush()
			if last.runes <= maxRunes*15/100 && last.runes+2+b.runes <= maxRunes {
				parts, size = append(parts, last.text), last.runes // the overlap
			}
		}
		if size > 0 {
			size += 2 // the blank line between blocks
		}
		parts = append(parts, b.text)
		size += b.runes
		last = b
	}
	flush()
	return out
}

// splitLong cuts a paragraph longer than maxRunes at line ends (and a
// line longer than that at maxRunes); fences and tables stay whole.
func splitLong(blocks []block, maxRunes int) []block {
	var out []block
	for _, b := range blocks {
		if b.runes <= maxRunes || fenceMarker(strings.TrimLeft(b.text, " ")) != "" || strings.HasPrefix(strings.TrimLeft(b.text, " "), "|") {
			out = append(out, b)
			continue
		}
		var cur strings.Builder
		n := 0
		emit := func() {
			if n > 0 {
				out = append(out, block{text: cur.String(), runes: n})
			}
			cur.Reset()
			n = 0
		}
		for _, line := range strings.Split(b.text, "\n") {
			for utf8.RuneCountInString(line) > maxRunes {
				emit()
				cut := 0
				for i := range line {
					if cut == maxRunes {
						cut = i
						break
					}
					cut++
				}
				out = append(out, block{text: line[:cut], runes: maxRunes})
				line = line[cut:]
			}
			ln := utf8.RuneCountInString(line)
			if n > 0 && n+1+ln > maxRunes {
				emit()
			}
			if n > 0 {
				cur.WriteByte('\n')
				n++
			}
			cur.WriteString(line)
			n += ln
		}
		emit()
	}
	return out
}
