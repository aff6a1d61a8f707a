package flow

import (
	"strings"
	"testing"
)

func TestCond(t *testing.T) {
	vars := map[string]string{"n": "7", "s": "shipped today", "empty": "", "kb.score": "0.25", "name": "Ann"}
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{`n == 7`, true},
		{`n == 7.0`, true},
		{`n != "7"`, false},
		{`n < 10`, true},
		{`n > 10`, false},
		{`n >= 7 and n <= 7`, true},
		{`kb.score < 0.3`, true},
		{`s contains "shipped"`, true},
		{`s matches "^ship"`, true},
		{`s matches '^today'`, false},
		{`not (s contains "lost")`, true},
		{`!empty`, true},
		{`empty or n`, true},
		{`empty || missing`, false},
		{`n == 7 && name == "Ann"`, true},
		{`name < "Bob"`, true}, // strings compare as strings
		{`true and not false`, true},
		{`"10" < "9"`, false}, // numbers, both sides
		{`(n == 1 or n == 7) and s contains "today"`, true},
		{`-1 < 0`, true},
	} {
		c, err := parseCond(tc.src, nil)
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if got := c.eval(vars).truth(); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.src, got, tc.want)
		}
	}
}

func TestCondErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{``, "expected a value, found end of condition"},
		{`n ==`, "expected a value"},
		{`n = 1`, "unknown operator"},
		{`"open`, "without its closing quote"},
		{`s matches x`, "matches wants a pattern in quotes"},
		{`s matches "(?=x)"`, "RE2 syntax"},
		{`(n == 1`, "expected )"},
		{`n == 1 n`, "unexpected"},
		{`1.2.3 < n`, "is not a number"},
		{strings.Repeat("not ", 40) + "n", "nested more than"},
		{strings.Repeat("(", 40) + "n" + strings.Repeat(")", 40), "nested more than"},
		{`n ^ 2`, `unexpected "^"`},
	} {
		_, err := parseCond(tc.src, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestTemplate(t *testing.T) {
	var names []string
	tm, err := parseTemplate("Hi {{ name }}, order {{order_id}}{{x}}.", func(n string) { names = append(names, n) })
	if err != nil {
		t.Fatal(err)
	}
	if got := tm.render(map[string]string{"name": "Ann", "order_id": "123"}); got != "Hi Ann, order 123." {
		t.Errorf("%q", got)
	}
	if strings.Join(names, ",") != "name,order_id,x" {
		t.Errorf("names %v", names)
	}
	for _, bad := range []string{"{{name", "{{}}", "{{a b}}"} {
		if _, err := parseTemplate(bad, nil); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
