package intent

import (
	"regexp"
	"strings"
	"testing"
)

// The prefilter never changes what a rule matches: only messages the
// pattern cannot match skip it.
func TestPrefilterAgrees(t *testing.T) {
	patterns := []string{`(?i)\bcancel\b.*\border\b`, `(?i)\b(change|update|wrong)\b.*\baddress\b`, `(改|修改|更改|换)(一下)?(收货|配送|送货)?地址`,
		`(?i)keep.*going`, `(?i)\bstatus of (my )?order\b`, `order(ed)?\s+\d{6,}`, `(?i)s{2,}top`, `退款`, `(?i)\b(invoice|receipt)s?\b`,
		`(?i)\b(human|real person|live agent)\b`, `(ab|cd|e)x`, `(?i:ab)|cd`}
	texts := []string{"please CANCEL my Order now", "cancel it", "I need to update the address", "我要改收货地址", "换地址", "\u212Aeep going",
		"\u212AEEP GOING", "Keep Going!", "what is the status of order", "ordered 1234567", "order 12", "SSTOP", "ſſtop", "stop", "", "my RECEIPTS please", "a real Person", "cdx", "CD", "AB",
		strings.Repeat("please summarize the notes about edge devices ", 10)}
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		r := rule{re: re}
		r.need, r.hasNeed = required(p)
		for _, s := range texts {
			folded := func() string { return canon(s) }
			if got, want := r.match(s, folded), re.MatchString(s); got != want {
				t.Errorf("%q on %q: %v with the prefilter, %v without (need %+v)", p, s, got, want, r.need)
			}
		}
	}
	if n, ok := required(`(?i)\bcancel\b.*\border\b`); !ok || len(n.any) != 1 || n.any[0] != "CANCEL" || !n.fold {
		t.Fatalf("required = %+v %v, want the fold literal CANCEL", n, ok)
	}
	if n, ok := required(`(?i)\b(invoice|receipt)s?\b`); !ok || strings.Join(n.any, ",") != "INVOICE,RECEIPT" {
		t.Fatalf("required = %+v %v, want any of INVOICE, RECEIPT", n, ok)
	}
	if _, ok := required(`(a|b)c`); ok {
		t.Fatal("a single-rune literal is no prefilter")
	}
}

func FuzzPrefilter(f *testing.F) {
	f.Add(`(?i)\bcancel\b.*\border\b`, "CANCEL the ORDER")
	f.Add(`(?i)keep`, "\u212Aeep")
	f.Add(`(?i)ss+x`, "ſSx")
	f.Add(`ab(cd)+e{2,3}`, "abcdcdeee")
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 200 || len(s) > 1000 {
			return
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return
		}
		r := rule{re: re}
		r.need, r.hasNeed = required(p)
		if got, want := r.match(s, func() string { return canon(s) }), re.MatchString(s); got != want {
			t.Fatalf("%q on %q: %v with the prefilter, %v without (need %+v)", p, s, got, want, r.need)
		}
	})
}
