package handoff

import (
	"strings"
	"testing"
)

// TestDefaultRulesCompileLazily: the default rules compile (at first use,
// not at start) and read the explicit asks for a person, and a config with
// rules of its own does not use them.
func TestDefaultRulesCompileLazily(t *testing.T) {
	c, err := compile(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.rules()) != len(DefaultRules) {
		t.Fatalf("%d rules, want %d", len(c.rules()), len(DefaultRules))
	}
	for _, s := range []string{"我要转人工", "Human, please!", "can I talk to a real person"} {
		if !c.asks(s) {
			t.Errorf("%q: not read as an ask for a person", s)
		}
	}
	if c.asks("what is the weather") {
		t.Error("an ordinary question read as an ask for a person")
	}
	own, err := compile(Config{Rules: []string{`^agent$`}})
	if err != nil {
		t.Fatal(err)
	}
	if own.asks("转人工") || !own.asks("agent") {
		t.Error("a config's own rules did not replace the defaults")
	}
	if _, err := compile(Config{Rules: []string{`(`}}); err == nil || !strings.Contains(err.Error(), "handoff.rules[0]") {
		t.Errorf("a bad rule: %v", err)
	}
}
