package channels

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplitShort(t *testing.T) {
	if got := Split("  hello  ", 100, Runes); len(got) != 1 || got[0] != "hello" {
		t.Fatalf("got %q", got)
	}
	if got := Split(" \n ", 100, Runes); len(got) != 0 {
		t.Fatalf("empty text gave %q", got)
	}
}

func TestSplitParagraphs(t *testing.T) {
	p1 := strings.Repeat("a", 60)
	p2 := strings.Repeat("b", 60)
	got := Split(p1+"\n\n"+p2, 100, Runes)
	if len(got) != 2 || got[0] != p1 || got[1] != p2 {
		t.Fatalf("got %q", got)
	}
}

func TestSplitRunesAndUTF16(t *testing.T) {
	text := strings.Repeat("你好😀", 50) // no spaces: cut between runes
	for _, u := range []struct {
		name  string
		units Units
	}{{"runes", Runes}, {"utf16", UTF16}} {
		parts := Split(text, 40, u.units)
		if strings.Join(parts, "") != text {
			t.Fatalf("%s: parts do not join back to the text", u.name)
		}
		for _, p := range parts {
			if !utf8.ValidString(p) {
				t.Fatalf("%s: a part cuts a rune: %q", u.name, p)
			}
			if n := measure(p, u.units); n > 40 {
				t.Fatalf("%s: part of %d units over 40", u.name, n)
			}
		}
	}
}

func TestSplitCodeFence(t *testing.T) {
	code := "```go\n" + strings.Repeat("fmt.Println(1)\n", 20) + "```"
	text := "Here is the code:\n\n" + code + "\n\nDone."
	parts := Split(text, 120, Runes)
	if len(parts) < 3 {
		t.Fatalf("want several parts, got %d", len(parts))
	}
	for i, p := range parts {
		if n := measure(p, Runes); n > 120 {
			t.Fatalf("part %d has %d runes", i, n)
		}
		if strings.Count(p, "```")%2 != 0 {
			t.Fatalf("part %d has an unbalanced fence:\n%s", i, p)
		}
		if i > 0 && strings.Contains(p, "fmt.Println") && !strings.HasPrefix(p, "```go\n") {
			t.Fatalf("part %d does not reopen the fence with its language:\n%s", i, p)
		}
	}
	joined := strings.Join(parts, "\n")
	if got := strings.Count(joined, "fmt.Println(1)"); got != 20 {
		t.Fatalf("%d lines of code survive, want 20", got)
	}
}

func FuzzSplit(f *testing.F) {
	f.Add("hello world\n\n```py\nprint(1)\n```\nbye", 20)
	f.Add(strings.Repeat("😀", 30), 16)
	f.Add("```"+strings.Repeat("x", 100), 17)
	f.Fuzz(func(t *testing.T, text string, limit int) {
		if !utf8.ValidString(text) || len(text) > 4096 {
			return
		}
		limit = 16 + abs(limit)%200
		parts := Split(text, limit, UTF16)
		for _, p := range parts {
			if measure(p, UTF16) > limit {
				t.Fatalf("part over %d: %q", limit, p)
			}
			if p == "" {
				t.Fatal("an empty part")
			}
		}
		// Every non-space rune of the text is in some part, in order.
		want := strings.Join(strings.Fields(text), "")
		got := strings.Join(strings.Fields(strings.ReplaceAll(strings.Join(parts, ""), "```", "")), "")
		if strings.ReplaceAll(want, "```", "") != got && !strings.Contains(text, "``") {
			t.Fatalf("text lost: %q -> %q", text, parts)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
