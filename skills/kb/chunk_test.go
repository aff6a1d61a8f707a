package kb

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestChunkHeadings(t *testing.T) {
	doc := "intro text\n\n# Returns\n\nreturn within 30 days\n\n## Refunds\n\nrefund in 5 days\n\n### Cards\n\ncard refunds\n\n## Exchanges\n\nexchange text\n\n# Shipping #\n\nship text\n"
	got := ChunkMarkdown(doc, 0)
	want := []struct {
		path, text string
	}{
		{"", "intro text"},
		{"Returns", "return within 30 days"},
		{"Returns > Refunds", "refund in 5 days"},
		{"Returns > Refunds > Cards", "card refunds"},
		{"Returns > Exchanges", "exchange text"},
		{"Shipping", "ship text"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d chunks, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].HeadingPath() != w.path || got[i].Text != w.text {
			t.Errorf("chunk %d = %q %q, want %q %q", i, got[i].HeadingPath(), got[i].Text, w.path, w.text)
		}
	}
}

func TestChunkKeepsFencesAndTables(t *testing.T) {
	fence := "```sh\n# not a heading\nmoltbot start\n\n\nmore code\n```"
	table := "| plan | price |\n|---|---|\n| basic | 10 |\n| pro | 20 |"
	para := strings.Repeat("word ", 30)
	doc := "# Setup\n\n" + para + "\n\n" + fence + "\n\n" + para + "\n\n" + table + "\n\n" + para + "\n"
	got := ChunkMarkdown(doc, 120) // smaller than the fence and the table
	var all []string
	for _, c := range got {
		if c.HeadingPath() != "Setup" {
			t.Errorf("chunk under %q, want Setup (the fence's # line is code)", c.HeadingPath())
		}
		all = append(all, c.Text)
	}
	joined := strings.Join(all, "\n\n")
	if !strings.Contains(joined, fence) || !strings.Contains(joined, table) {
		t.Fatalf("the fence or the table was cut:\n%s", joined)
	}
	for _, c := range got {
		if strings.Count(c.Text, "```")%2 != 0 {
			t.Errorf("a chunk holds half a fence: %q", c.Text)
		}
	}
}

func TestChunkSizeAndOverlap(t *testing.T) {
	var b strings.Builder
	b.WriteString("# 退货\n\n")
	for i := range 40 {
		b.WriteString(strings.Repeat("退货政策说明", 5))
		b.WriteString(string(rune('A' + i%26)))
		b.WriteString("\n\n")
	}
	got := ChunkMarkdown(b.String(), 250)
	if len(got) < 5 {
		t.Fatalf("%d chunks of 40 paragraphs of 31 runes at 250 runes each", len(got))
	}
	for i, c := range got {
		if n := utf8.RuneCountInString(c.Text); n > 250 {
			t.Errorf("chunk %d has %d runes, over 250", i, n)
		}
		if i > 0 {
			prev := strings.Split(got[i-1].Text, "\n\n")
			first := strings.Split(c.Text, "\n\n")[0]
			if first != prev[len(prev)-1] {
				t.Errorf("chunk %d does not start with the last paragraph of chunk %d (the overlap)", i, i-1)
			}
		}
	}
	// One line longer than the limit is cut, on rune boundaries.
	long := ChunkMarkdown(strings.Repeat("长", 450), 200)
	if len(long) != 3 || !slices.EqualFunc(long, long, func(a, b Chunk) bool { return utf8.ValidString(a.Text) }) {
		t.Fatalf("a 450-rune line at 200 runes: %d chunks", len(long))
	}
}

func FuzzChunkMarkdown(f *testing.F) {
	for _, s := range []string{"# a\n\ntext", "```\n# x\n```", "| a |\n|---|\n", "## \n#\n###### h ######", "~~~~\n~~~\n", "\r\n# x\r\n"} {
		f.Add(s, 50)
	}
	f.Fuzz(func(t *testing.T, doc string, max int) {
		if max < 1 || max > 5000 {
			max = 1 + max&1023
			if max < 1 {
				max = 1
			}
		}
		if len(doc) > 1<<16 {
			return
		}
		for _, c := range ChunkMarkdown(doc, max) {
			if strings.TrimSpace(c.Text) == "" {
				t.Fatalf("an empty chunk")
			}
			if utf8.ValidString(doc) && !utf8.ValidString(c.Text) {
				t.Fatalf("chunk %q cuts a rune", c.Text)
			}
			for _, h := range c.Heading {
				if h == "" || strings.Contains(h, "\n") {
					t.Fatalf("heading %q", h)
				}
			}
		}
	})
}
