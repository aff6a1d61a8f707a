package builtin

import (
	"strings"
	"testing"
	"unicode/utf8"
)

var testMasker = newMasker(maskKinds, []string{"坏蛋", "darn", "Secret Project"})

func TestMask(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"write to alice.b+x@example.co.uk today", "write to [email] today"},
		{"邮箱是 bob@mail.cn。", "邮箱是 [email]。"},
		{"手机13800138000谢谢", "手机[phone]谢谢"},
		{"call 138 0013 8000 or +86 139-0013-9000", "call [phone] or [phone]"},
		{"+44 20 7946 0958", "[phone]"},
		{"US: 415-555-2671, 1-415-555-2671", "US: [phone], [phone]"},
		{"座机 010-12345678", "座机 [phone]"},
		{"身份证11010519491231002X。", "身份证[id_card]。"},
		{"身份证 110105194912310021", "身份证 110105194912310021"}, // bad check digit
		{"card 4111 1111 1111 1111 ok", "card [card] ok"},
		{"card 4111-1111-1111-1112", "card 4111-1111-1111-1112"}, // Luhn fails
		{"4111111111111111 2 times", "[card] 2 times"},
		{"13800138000 2", "[phone] 2"},
		{"order 2026-12-01, 3 items, 12345", "order 2026-12-01, 3 items, 12345"},
		{"you DARN fool, darnell", "you *** fool, darnell"},
		{"他是个坏蛋！", "他是个***！"},
		{"the secret project is", "the *** is"},
		{"", ""},
	} {
		if got, _ := testMasker.mask(tc.in); got != tc.want {
			t.Errorf("mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidIDAndLuhn(t *testing.T) {
	if !validID("11010519491231002", true) || validID("11010519491231002", false) || !validID("440524198001010013", false) {
		t.Error("validID")
	}
	if !luhn("4111111111111111") || luhn("4111111111111112") || !luhn("79927398713") {
		t.Error("luhn")
	}
}

// streamed masks s given in pieces cut at cuts.
func streamed(m *masker, s string, cuts []int) string {
	sm := &streamMasker{m: m}
	var b strings.Builder
	at := 0
	for _, c := range cuts {
		if c <= at || c > len(s) {
			continue
		}
		b.WriteString(sm.Write(s[at:c]))
		at = c
	}
	b.WriteString(sm.Write(s[at:]))
	b.WriteString(sm.Flush())
	return b.String()
}

func TestStreamMasker(t *testing.T) {
	for _, s := range []string{
		"mail me at alice@example.com, or call 13800138000.",
		"卡号 4111 1111 1111 1111，身份证11010519491231002X，坏蛋！",
		"plain text with no secrets at all, as a model writes it.",
	} {
		want, _ := testMasker.mask(s)
		for step := 1; step <= 7; step++ {
			var cuts []int
			for c := step; c < len(s); c += step {
				cuts = append(cuts, c)
			}
			if got := streamed(testMasker, s, cuts); got != want {
				t.Errorf("step %d: %q, want %q", step, got, want)
			}
		}
	}
	// Streaming holds back little: a piece of prose is shown but its last word.
	sm := &streamMasker{m: testMasker}
	if got := sm.Write("Hello there, how are"); got != "Hello there, how " {
		t.Errorf("held back too much: %q", got)
	}
	if got := sm.Write("你好，坏"); got != "are你好，" {
		t.Errorf("a possible blocklisted word: %q", got)
	}
	if got := sm.Write("人"); got != "坏人" {
		t.Errorf("not a word after all: %q", got)
	}
}

// FuzzGuardStream: the masked stream, in any pieces, is the masked whole;
// masking again finds nothing more of the PII kinds; nothing panics.
func FuzzGuardStream(f *testing.F) {
	f.Add("mail alice@example.com or 13800138000", 3, 7)
	f.Add("卡 4111 1111 1111 1111 坏蛋 11010519491231002X", 5, 11)
	f.Add("+86 139-0013-9000 and 415-555-2671 darn", 1, 2)
	f.Fuzz(func(t *testing.T, s string, a, b int) {
		if len(s) > 2048 || !utf8.ValidString(s) {
			return
		}
		want, _ := testMasker.mask(s)
		var cuts []int
		if a > 0 && b >= 0 {
			for c := a % 17; c > 0 && c < len(s); c += a%17 + b%5 + 1 {
				cuts = append(cuts, c)
			}
		}
		if got := streamed(testMasker, s, cuts); got != want {
			t.Fatalf("streamed in pieces at %v: %q, whole: %q", cuts, got, want)
		}
		for _, x := range testMasker.spans(want) {
			if x.kind != KindBlocked && !strings.Contains(s, want[x.lo:x.hi]) {
				t.Fatalf("masking made a new %s: %q in %q", x.kind, want[x.lo:x.hi], want)
			}
		}
	})
}

// allow: the operator's own address and number are never masked, in any
// spelling; what is not allowed still is; an entry that allows nothing
// is an error naming it.
func TestGuardAllow(t *testing.T) {
	m := newMasker(maskKinds, nil)
	m.allow = []string{allowKey("Help@Example.com"), allowKey("400-800-1234")}
	got, n := m.mask("mail help@example.com or HELP@EXAMPLE.COM, call 400 800 1234 or 4008001234; alice@example.com, 13800138000")
	if want := "mail help@example.com or HELP@EXAMPLE.COM, call 400 800 1234 or 4008001234; [email], [phone]"; got != want || n != 2 {
		t.Errorf("%q (%d), want %q", got, n, want)
	}
	o := &GuardOptions{Mask: maskKinds, Action: "mask", Input: true, Output: true, Allow: []string{"help@example.com", "12"}}
	if err := o.check(); err == nil || !strings.Contains(err.Error(), "allow[1]") {
		t.Errorf("a short allow entry: %v", err)
	}
}
