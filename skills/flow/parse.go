package flow

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/moltbot/moltbot/internal/yamlnode"
	"github.com/moltbot/moltbot/skills/wire"
	"gopkg.in/yaml.v3"
)

// Error is a flow that does not load: its file, the line and the key.
type Error = yamlnode.Error

// parser holds what Parse has read of one file.
type parser struct {
	yamlnode.Reader
	f      *Flow
	skills func(string) bool
	// defined are the variables the flow sets (vars:, a node's var, a
	// trigger's named group, input); uses are those referenced, with where.
	defined map[string]bool
	uses    []use
}

type use struct {
	name string
	line int
	key  string
}

var idRE = lazyRE(`^[A-Za-z0-9_-]{1,64}$`)
var varRE = lazyRE(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

// Parse parses a flow's source; file names it in errors. skills says which
// skills a skill node may call (nil: any, as when a conversation resumes
// a version of a flow kept in its state). It never panics on bad input.
func Parse(file string, src []byte, skills func(string) bool) (*Flow, error) {
	p := &parser{Reader: yamlnode.Reader{File: file}, skills: skills, defined: map[string]bool{"input": true}}
	if len(src) > MaxFile {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("%d bytes; a flow is at most %d", len(src), MaxFile)}
	}
	if !utf8.Valid(src) {
		return nil, &Error{File: file, Line: 1, Msg: "not UTF-8"}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: max(doc.Line, 1), Msg: "a flow is a mapping: flow, description, vars, nodes, edges"}
	}
	p.f = &Flow{File: file, Version: version(src), src: string(src), byID: map[string]*Node{}, Vars: map[string]string{}}
	if err := p.top(doc.Content[0]); err != nil {
		return nil, err
	}
	return p.f, nil
}

// strs is a list of texts, or one text.
func (p *parser) strs(n *yaml.Node, key string) ([]string, error) {
	if n.Kind == yaml.ScalarNode {
		s, err := p.Str(n, key)
		return []string{s}, err
	}
	if n.Kind != yaml.SequenceNode {
		return nil, p.Errf(n, key, "want a list of texts, not %s", p.KindOf(n))
	}
	var out []string
	for i, c := range n.Content {
		s, err := p.Str(c, fmt.Sprintf("%s[%d]", key, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *parser) top(m *yaml.Node) error {
	var nodes, edges *yaml.Node
	err := p.Pairs(m, "", func(key string, k, v *yaml.Node) error {
		switch key {
		case "flow":
			s, err := p.Str(v, key)
			if err == nil && !idRE().MatchString(s) {
				err = p.Errf(v, key, "%q: a flow's name is 1-64 letters, digits, '-' and '_'", s)
			}
			p.f.Name = s
			return err
		case "description":
			s, err := p.Str(v, key)
			p.f.Description = s
			return err
		case "vars":
			return p.Pairs(v, key, func(name string, k, v *yaml.Node) error {
				if !varRE().MatchString(name) || name == "input" {
					return p.Errf(k, yamlnode.Join(key, name), "a variable's name is a letter or '_', then letters, digits, '_', '.' and '-' (and not input, the user's message)")
				}
				if v.Tag == "!!null" {
					p.f.Vars[name], p.defined[name] = "", true
					return nil
				}
				s, err := p.Str(v, yamlnode.Join(key, name))
				p.f.Vars[name], p.defined[name] = s, true
				return err
			})
		case "nodes":
			nodes = v
		case "edges":
			edges = v
		case "ui":
			// The console's (positions): not the runtime's.
		default:
			return p.Errf(k, key, "unknown key (flow, description, vars, nodes, edges, ui)")
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case p.f.Name == "":
		return p.Errf(m, "flow", "missing: the flow's name")
	case nodes == nil:
		return p.Errf(m, "nodes", "missing: a flow has nodes")
	case nodes.Kind != yaml.SequenceNode || len(nodes.Content) == 0:
		return p.Errf(nodes, "nodes", "want a list of nodes")
	}
	for i, n := range nodes.Content {
		if err := p.node(n, fmt.Sprintf("nodes[%d]", i)); err != nil {
			return err
		}
	}
	if len(p.f.triggers) == 0 {
		return p.Errf(nodes, "nodes", "no trigger: nothing would start the flow")
	}
	if edges != nil {
		if err := p.edges(edges); err != nil {
			return err
		}
	}
	for _, u := range p.uses {
		if !p.defined[u.name] {
			known := slices.Sorted(maps.Keys(p.defined))
			return &Error{File: p.File, Line: u.line, Key: u.key, Msg: fmt.Sprintf("%q is no variable of the flow (%s): declare it in vars, or set it with a node's var",
				u.name, strings.Join(known, ", "))}
		}
	}
	p.f.Notes = append(p.f.Notes, p.unreachable()...)
	return nil
}

// node parses nodes[i].
func (p *parser) node(m *yaml.Node, at string) error {
	n := &Node{Line: m.Line, next: map[string]string{}}
	var with *yaml.Node
	err := p.Pairs(m, at, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "id":
			n.ID, err = p.Str(v, yamlnode.Join(at, key))
			if err == nil && !idRE().MatchString(n.ID) {
				err = p.Errf(v, yamlnode.Join(at, key), "%q: a node's id is 1-64 letters, digits, '-' and '_'", n.ID)
			}
		case "type":
			var s string
			s, err = p.Str(v, yamlnode.Join(at, key))
			n.Kind = Kind(s)
			if err == nil && !slices.Contains([]Kind{Trigger, Collect, Skill, LLM, Branch, Reply, Handoff}, n.Kind) {
				err = p.Errf(v, yamlnode.Join(at, key), "%q is no node type (trigger, collect, skill, llm, branch, reply, handoff)", s)
			}
		case "with":
			with = v
		case "ui":
		default:
			err = p.Errf(k, yamlnode.Join(at, key), "unknown key (id, type, with, ui)")
		}
		return err
	})
	if err != nil {
		return err
	}
	switch {
	case n.ID == "":
		return p.Errf(m, yamlnode.Join(at, "id"), "missing: every node has an id")
	case n.Kind == "":
		return p.Errf(m, yamlnode.Join(at, "type"), "missing (trigger, collect, skill, llm, branch, reply, handoff)")
	case p.f.byID[n.ID] != nil:
		return p.Errf(m, yamlnode.Join(at, "id"), "%q is the id of the node at line %d too", n.ID, p.f.byID[n.ID].Line)
	}
	at = fmt.Sprintf("%s (%s)", at, n.ID)
	if with == nil {
		with = &yaml.Node{Kind: yaml.MappingNode, Line: m.Line}
	}
	if err := p.with(n, with, yamlnode.Join(at, "with")); err != nil {
		return err
	}
	p.f.byID[n.ID] = n
	p.f.Nodes = append(p.f.Nodes, n)
	if n.Kind == Trigger {
		p.f.triggers = append(p.f.triggers, n)
	}
	return nil
}

// with parses a node's parameters.
func (p *parser) with(n *Node, m *yaml.Node, at string) error {
	allowed := map[Kind][]string{
		Trigger: {"patterns", "keywords", "intent"},
		Collect: {"var", "prompt", "pattern", "retries", "retry_prompt"},
		Skill:   {"skill", "input", "var"},
		LLM:     {"prompt", "system", "model", "var"},
		Branch:  {"cases"},
		Reply:   {"text"},
		Handoff: {"text"},
	}[n.Kind]
	tmpl := func(v *yaml.Node, key string) (template, error) {
		s, err := p.Str(v, key)
		if err != nil {
			return template{}, err
		}
		t, err := parseTemplate(s, func(name string) { p.uses = append(p.uses, use{name, v.Line, key}) })
		if err != nil {
			return t, p.Errf(v, key, "%v", err)
		}
		return t, nil
	}
	has := map[string]bool{}
	err := p.Pairs(m, at, func(key string, k, v *yaml.Node) error {
		at := yamlnode.Join(at, key)
		if !slices.Contains(allowed, key) {
			return p.Errf(k, at, "unknown key for a %s node (%s)", n.Kind, strings.Join(allowed, ", "))
		}
		has[key] = true
		var err error
		switch key {
		case "patterns":
			var ps []string
			if ps, err = p.strs(v, at); err != nil {
				return err
			}
			for _, s := range ps {
				re, err := regexp.Compile(s)
				if err != nil {
					return p.Errf(v, at, "pattern %q: %v (RE2 syntax: no lookaround, no backreferences)", s, err)
				}
				for _, g := range re.SubexpNames() {
					if g != "" {
						p.defined[g] = true
					}
				}
				n.patterns = append(n.patterns, re)
			}
		case "keywords":
			if n.keywords, err = p.strs(v, at); err != nil {
				return err
			}
			for i, kw := range n.keywords {
				if strings.TrimSpace(kw) == "" {
					return p.Errf(v, at, "an empty keyword would match every message")
				}
				n.keywords[i] = strings.ToLower(kw)
			}
		case "intent":
			if n.Intent, err = p.Str(v, at); err != nil {
				return err
			}
			if !wire.ValidIntent(n.Intent) {
				return p.Errf(v, at, "%q: an intent's name is 1 to 64 of a-z, 0-9, '_', '-', '.' (skills/intents.yaml)", n.Intent)
			}
		case "var":
			if n.Var, err = p.Str(v, at); err != nil {
				return err
			}
			if !varRE().MatchString(n.Var) || n.Var == "input" {
				return p.Errf(v, at, "%q: a variable's name is a letter or '_', then letters, digits, '_', '.' and '-' (and not input)", n.Var)
			}
			p.defined[n.Var] = true
		case "prompt":
			n.prompt, err = tmpl(v, at)
		case "retry_prompt":
			n.retry, err = tmpl(v, at)
		case "system":
			n.system, err = tmpl(v, at)
		case "input":
			n.input, err = tmpl(v, at)
		case "text":
			n.text, err = tmpl(v, at)
		case "pattern":
			var s string
			if s, err = p.Str(v, at); err != nil {
				return err
			}
			if n.pattern, err = regexp.Compile(s); err != nil {
				return p.Errf(v, at, "pattern %q: %v (RE2 syntax: no lookaround, no backreferences)", s, err)
			}
		case "retries":
			var s string
			if s, err = p.Str(v, at); err != nil {
				return err
			}
			if n.retries, err = strconv.Atoi(s); err != nil || n.retries < 0 || n.retries > 10 {
				return p.Errf(v, at, "%q: a number from 0 to 10", s)
			}
		case "skill":
			if n.Skill, err = p.Str(v, at); err != nil {
				return err
			}
			if p.skills != nil && !p.skills(n.Skill) {
				return p.Errf(v, at, "no skill %q is loaded (skills/*.js): a skill node calls a JavaScript skill by its name", n.Skill)
			}
		case "model":
			n.Model, err = p.Str(v, at)
		case "cases":
			return p.cases(n, v, at)
		}
		return err
	})
	if err != nil {
		return err
	}
	need := map[Kind][]string{Collect: {"var", "prompt"}, Skill: {"skill"}, LLM: {"prompt"}, Branch: {"cases"}, Reply: {"text"}}[n.Kind]
	for _, k := range need {
		if !has[k] {
			return p.Errf(m, yamlnode.Join(at, k), "missing: a %s node needs %s", n.Kind, strings.Join(need, " and "))
		}
	}
	switch n.Kind {
	case Trigger:
		if len(n.patterns) == 0 && len(n.keywords) == 0 && n.Intent == "" {
			return p.Errf(m, at, "a trigger needs patterns, keywords or an intent")
		}
	case Collect:
		if !has["retries"] {
			n.retries = 2
		}
		if !has["retry_prompt"] {
			n.retry = n.prompt
		}
	case Skill, LLM:
		if n.Var == "" {
			n.Var = n.ID
			p.defined[n.ID] = true
		}
		if n.Kind == Skill && !has["input"] {
			n.input = template{parts: []string{"", "input", ""}}
		}
	case Handoff:
		if !has["text"] {
			n.text = template{parts: []string{"I am handing you over to a person, who will answer here."}}
		}
	}
	return nil
}

// cases parses a branch's cases: [{when: COND, port: NAME}, ...].
func (p *parser) cases(n *Node, v *yaml.Node, at string) error {
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		return p.Errf(v, at, "want a list of {when: CONDITION, port: NAME}")
	}
	for i, c := range v.Content {
		at := fmt.Sprintf("%s[%d]", at, i)
		var bc branchCase
		err := p.Pairs(c, at, func(key string, k, v *yaml.Node) error {
			switch key {
			case "when":
				s, err := p.Str(v, yamlnode.Join(at, key))
				if err != nil {
					return err
				}
				bc.when, err = parseCond(s, func(name string) { p.uses = append(p.uses, use{name, v.Line, yamlnode.Join(at, key)}) })
				if err != nil {
					return p.Errf(v, yamlnode.Join(at, key), "%v", err)
				}
			case "port":
				s, err := p.Str(v, yamlnode.Join(at, key))
				if err != nil {
					return err
				}
				if !idRE().MatchString(s) || s == "else" {
					return p.Errf(v, yamlnode.Join(at, key), "%q: a port is 1-64 letters, digits, '-' and '_' (else is the branch's own)", s)
				}
				bc.port = s
			default:
				return p.Errf(k, yamlnode.Join(at, key), "unknown key (when, port)")
			}
			return nil
		})
		if err != nil {
			return err
		}
		if bc.when == nil || bc.port == "" {
			return p.Errf(c, at, "a case needs when and port")
		}
		if slices.ContainsFunc(n.cases, func(o branchCase) bool { return o.port == bc.port }) {
			return p.Errf(c, yamlnode.Join(at, "port"), "port %q is another case's too", bc.port)
		}
		n.cases = append(n.cases, bc)
	}
	return nil
}

// edges parses [[from, to], ...]: from is a node's id, or id.port.
func (p *parser) edges(v *yaml.Node) error {
	if v.Kind != yaml.SequenceNode {
		return p.Errf(v, "edges", "want a list of [from, to] pairs")
	}
	for i, e := range v.Content {
		at := fmt.Sprintf("edges[%d]", i)
		if e.Kind != yaml.SequenceNode || len(e.Content) != 2 {
			return p.Errf(e, at, "want a pair [from, to] (from: a node's id, or id.port)")
		}
		from, err := p.Str(e.Content[0], at)
		if err != nil {
			return err
		}
		to, err := p.Str(e.Content[1], at)
		if err != nil {
			return err
		}
		id, port, _ := strings.Cut(from, ".")
		src := p.f.byID[id]
		if src == nil {
			return p.Errf(e, at, "from %q: no node %q", from, id)
		}
		if !slices.Contains(src.Ports(), port) {
			ports := src.Ports()
			for j := range ports {
				if ports[j] == "" {
					ports[j] = "(none)"
				}
			}
			if len(ports) == 0 {
				return p.Errf(e, at, "from %q: a %s node ends the flow; no edge leaves it", from, src.Kind)
			}
			return p.Errf(e, at, "from %q: a %s node has no port %q (its ports: %s)", from, src.Kind, port, strings.Join(ports, ", "))
		}
		dst := p.f.byID[to]
		switch {
		case dst == nil:
			return p.Errf(e, at, "to %q: no such node", to)
		case dst.Kind == Trigger:
			return p.Errf(e, at, "to %q: a trigger starts a flow; no edge leads to it", to)
		}
		if prev, ok := src.next[port]; ok {
			return p.Errf(e, at, "from %q: it already leads to %q; a port leads to one node", from, prev)
		}
		src.next[port] = to
	}
	return nil
}

// unreachable notes the nodes no trigger leads to.
func (p *parser) unreachable() []string {
	seen := map[string]bool{}
	var walk func(id string)
	walk = func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		for _, to := range p.f.byID[id].next {
			walk(to)
		}
	}
	for _, t := range p.f.triggers {
		walk(t.ID)
	}
	var notes []string
	for _, n := range p.f.Nodes {
		if !seen[n.ID] {
			notes = append(notes, fmt.Sprintf("%s:%d: node %q: no trigger leads to it", p.File, n.Line, n.ID))
		}
	}
	return notes
}
