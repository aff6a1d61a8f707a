// Package yamlnode reads hand-written YAML files node by node with errors
// that name the file, the line and the key (nodes[2].with.pattern): what
// the YAML flows (skills/flow) and the intents file (skills/intent) share.
package yamlnode

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Error is a file that does not load: its file, the line and the key.
type Error struct {
	File string
	Line int
	Key  string // empty for the file as a whole
	Msg  string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
}

// Reader reads the nodes of one file.
type Reader struct {
	File string
	// MaxQuote bounds the text of a scalar an error quotes (KindOf); 0:
	// all of it.
	MaxQuote int
}

// Errf is an *Error at n's line (1 when n is nil or has none) and key.
func (r Reader) Errf(n *yaml.Node, key, format string, args ...any) error {
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	return &Error{File: r.File, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Pairs calls fn with each key of mapping m (at names m), in order: a
// key that is not a plain name, or is given twice, is an error.
func (r Reader) Pairs(m *yaml.Node, at string, fn func(key string, k, v *yaml.Node) error) error {
	if m.Kind != yaml.MappingNode {
		return r.Errf(m, at, "want a mapping, not %s", r.KindOf(m))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return r.Errf(k, at, "a key is a plain name")
		}
		if seen[k.Value] {
			return r.Errf(k, Join(at, k.Value), "given twice")
		}
		seen[k.Value] = true
		if err := fn(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

// Str is n's text: a scalar that is not null.
func (r Reader) Str(n *yaml.Node, key string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", r.Errf(n, key, "want a text, not %s", r.KindOf(n))
	}
	return n.Value, nil
}

// Join is key under at ("nodes[2]" and "with": "nodes[2].with").
func Join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

// KindOf says what n is, for an error: "a mapping", "a list", "an alias",
// or a scalar's text quoted (its first MaxQuote bytes and "..." when
// longer).
func (r Reader) KindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if r.MaxQuote > 0 && len(n.Value) > r.MaxQuote {
		return fmt.Sprintf("%q...", n.Value[:r.MaxQuote])
	}
	return fmt.Sprintf("%q", n.Value)
}
