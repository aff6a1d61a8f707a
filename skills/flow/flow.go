// Package flow runs the workspace's YAML flows (skills/flows/*.yaml): small
// graphs of nodes and edges (trigger, collect a slot with a validator,
// call a skill, call the model with a template, branch, reply, hand off)
// that answer a conversation's turns before the model, one step per user
// message. A flow's cursor and variables live with the conversation
// (moltbot.Turn.SetState, under the name "flow"), stored with the reply of
// the turn that moved them: a flow survives a restart and moves with its
// conversation in a cluster. A flow's version is the hash of its source,
// and the source rides in the state too, so a conversation finishes a flow
// on the version it began, whatever a reload or another node holds.
//
// The format is what the console will edit visually (docs/DESIGN.md,
// "Built: YAML flows"; README.md, "Write a skill in YAML"):
//
//	flow: refund
//	vars: {order_id: ""}
//	nodes:
//	  - {id: start, type: trigger, with: {keywords: [refund]}}
//	  - {id: ask, type: collect, with: {var: order_id, prompt: "Your order number?", pattern: '^\d{6}$'}}
//	  - {id: done, type: reply, with: {text: "Refund for {{order_id}} started."}}
//	edges: [[start, ask], [ask, done]]
package flow

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Kind is a node's type.
type Kind string

// The node types.
const (
	Trigger Kind = "trigger" // starts the flow: patterns (RE2) or keywords match the user's message, or its intent is the turn's
	Collect Kind = "collect" // asks for a slot and waits for the answer, validated by a pattern
	Skill   Kind = "skill"   // calls a JavaScript skill by name; its reply goes into a var
	LLM     Kind = "llm"     // calls the model with a template prompt; its reply goes into a var
	Branch  Kind = "branch"  // takes the port of the first case whose condition holds, else "else"
	Reply   Kind = "reply"   // says a template text
	Handoff Kind = "handoff" // says a text, marks the conversation for a person, ends the flow
)

// Dir is where flows are read from, under the workspace's skills/.
const Dir = "flows"

// MaxFile bounds a flow's source: it rides in the state of every
// conversation running it, within moltbot.MaxStageState.
const MaxFile = 32 << 10

// Flow is a parsed flow. It is not changed after Parse: turns share it.
type Flow struct {
	Name        string
	Description string
	// File is the flow's file, as given to Parse (skills/flows/x.yaml).
	File string
	// Version is the hash of the source (16 hex digits of its SHA-256).
	Version string
	Nodes   []*Node
	// Vars are the variables' initial values (vars:).
	Vars map[string]string

	src      string
	byID     map[string]*Node
	triggers []*Node
	// Notes are what lint reports that does not stop the flow loading.
	Notes []string
}

// Node is a node of a flow.
type Node struct {
	ID   string
	Kind Kind
	Line int // where the node starts in its file

	// trigger
	patterns []*regexp.Regexp
	keywords []string
	// Intent: a trigger that fires when the turn's intent (the note the
	// intent stage writes) is this one, recognized with confidence.
	Intent string
	// collect, skill, llm: the var set; collect's validator
	Var     string
	pattern *regexp.Regexp
	retries int
	// collect's prompt and retry prompt; llm's prompt and system; skill's
	// input; reply's and handoff's text
	prompt, retry, system, input, text template
	// skill, llm
	Skill, Model string
	// branch
	cases []branchCase
	// next is the node each port leads to ("" is the node's one way on).
	next map[string]string
}

type branchCase struct {
	when cond
	port string
}

// Ports are the ports a node's edges may leave from ("" is its one way on).
func (n *Node) Ports() []string {
	switch n.Kind {
	case Collect:
		return []string{"", "fail"}
	case Skill, LLM:
		return []string{"", "error"}
	case Branch:
		ports := make([]string, 0, len(n.cases)+1)
		for _, c := range n.cases {
			ports = append(ports, c.port)
		}
		return append(ports, "else")
	case Handoff:
		return nil
	}
	return []string{""}
}

// Patterns are a trigger's patterns and keywords, as written, and its
// intent as intent:NAME.
func (n *Node) Patterns() []string {
	var out []string
	for _, re := range n.patterns {
		out = append(out, re.String())
	}
	out = append(out, n.keywords...)
	if n.Intent != "" {
		out = append(out, "intent:"+n.Intent)
	}
	return out
}

// Node returns the node named id, or nil.
func (f *Flow) Node(id string) *Node { return f.byID[id] }

// Triggers are the flow's trigger nodes.
func (f *Flow) Triggers() []*Node { return f.triggers }

// version is the hash of a flow's source.
func version(src []byte) string {
	sum := sha256.Sum256(src)
	return hex.EncodeToString(sum[:8])
}

// Set is the flows loaded from a directory: what a reload replaces.
type Set struct {
	Flows []*Flow // by file name
}

// Load reads dir's *.yaml and *.yml files (not below it) as flows; skills
// says which skills a skill node may call (nil: none). A file that does
// not parse, a node that names an unknown skill, two flows of one name:
// an error naming the file, the line and the key. No dir, or no flow in
// it: an empty set. rel is how errors name dir (skills/flows).
func Load(dir, rel string, skills func(name string) bool) (*Set, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return &Set{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("flow: %w", err)
	}
	set := &Set{}
	names := map[string]string{}
	var errs []error
	for _, e := range ents {
		ext := filepath.Ext(e.Name())
		if ext != ".yaml" && ext != ".yml" || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		file := rel + "/" + e.Name()
		if !e.Type().IsRegular() {
			errs = append(errs, fmt.Errorf("%s: not a regular file (a flow is read from %s only, no link out of it)", file, rel))
			continue
		}
		info, err := e.Info()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		if info.Size() > MaxFile {
			errs = append(errs, fmt.Errorf("%s: %d bytes; a flow is at most %d", file, info.Size(), MaxFile))
			continue
		}
		src, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		f, err := Parse(file, src, skills)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, ok := names[f.Name]; ok {
			errs = append(errs, fmt.Errorf("%s: flow %q is also the name of the flow in %s; a flow's name is unique", file, f.Name, other))
			continue
		}
		names[f.Name] = file
		set.Flows = append(set.Flows, f)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// Source is a flow's file given whole (a tenant's pushed flow): File
// names it in errors.
type Source struct {
	File string
	Src  []byte
}

// FromSources parses srcs as Load parses a directory's files: each at
// most MaxFile, a flow's name unique; every error names its file, line
// and key.
func FromSources(srcs []Source, skills func(name string) bool) (*Set, error) {
	set := &Set{}
	names := map[string]string{}
	var errs []error
	for _, x := range srcs {
		if len(x.Src) > MaxFile {
			errs = append(errs, fmt.Errorf("%s: %d bytes; a flow is at most %d", x.File, len(x.Src), MaxFile))
			continue
		}
		f, err := Parse(x.File, x.Src, skills)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, ok := names[f.Name]; ok {
			errs = append(errs, fmt.Errorf("%s: flow %q is also the name of the flow in %s; a flow's name is unique", x.File, f.Name, other))
			continue
		}
		names[f.Name] = x.File
		set.Flows = append(set.Flows, f)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// Flow returns the flow named name, or nil.
func (s *Set) Flow(name string) *Flow {
	if s == nil {
		return nil
	}
	i := slices.IndexFunc(s.Flows, func(f *Flow) bool { return f.Name == name })
	if i < 0 {
		return nil
	}
	return s.Flows[i]
}
