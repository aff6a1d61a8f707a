package flow

import (
	"fmt"
	"strings"
)

// template is a text with {{var}} references: the text around them, and
// the names. A var that has no value renders as nothing.
type template struct {
	parts []string // text, then a name, then text, ...: odd indexes are names
}

// parseTemplate parses s; vars gets each name it references. "{{" without
// its "}}", or with no name, is an error.
func parseTemplate(s string, vars func(string)) (template, error) {
	var t template
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			t.parts = append(t.parts, s)
			return t, nil
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			return t, fmt.Errorf("%q opens {{ and does not close it", s)
		}
		name := strings.TrimSpace(s[i+2 : i+2+j])
		if name == "" || strings.IndexFunc(name, func(r rune) bool { return !identRune(r) }) >= 0 {
			return t, fmt.Errorf("{{%s}}: a variable's name is letters, digits, '_', '-' and '.'", s[i+2:i+2+j])
		}
		if vars != nil {
			vars(name)
		}
		t.parts = append(t.parts, s[:i], name)
		s = s[i+2+j+2:]
	}
}

func (t template) render(vars map[string]string) string {
	if len(t.parts) == 1 {
		return t.parts[0]
	}
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 1 {
			b.WriteString(vars[p])
		} else {
			b.WriteString(p)
		}
	}
	return b.String()
}

func (t template) empty() bool { return len(t.parts) == 0 || len(t.parts) == 1 && t.parts[0] == "" }
