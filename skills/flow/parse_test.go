package flow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRefund(t *testing.T) {
	src, err := os.ReadFile("testdata/refund.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("skills/flows/refund.yaml", src, func(s string) bool { return s == "order-status" })
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "refund" || len(f.Nodes) != 9 || len(f.Triggers()) != 1 || len(f.Version) != 16 || len(f.Notes) != 0 {
		t.Fatalf("%+v", f)
	}
	if got := f.Node("gate").Ports(); strings.Join(got, ",") != "vip,shipped,else" {
		t.Errorf("ports %v", got)
	}
	if f.Node("ask").retries != 1 || f.Node("note").Var != "note" || f.Node("status").Var != "status" {
		t.Errorf("%+v %+v", f.Node("ask"), f.Node("note"))
	}
	// The version is the source's: one byte more, another version.
	g, err := Parse("x.yaml", append(src, '\n'), nil)
	if err != nil || g.Version == f.Version {
		t.Errorf("versions %s %s %v", f.Version, g.Version, err)
	}
}

// Each error names the file, the line and the key.
func TestParseErrors(t *testing.T) {
	const head = "flow: f\nnodes:\n  - {id: t, type: trigger, with: {keywords: [go]}}\n"
	for _, tc := range []struct{ name, src, want string }{
		{"not yaml", "flow: [", "f.yaml: yaml: line 1"},
		{"not a mapping", "- a\n", "f.yaml:1: a flow is a mapping"},
		{"unknown top key", "flow: f\nnodez: []\n", "f.yaml:2: nodez: unknown key"},
		{"no name", "nodes: []\n", "f.yaml:1: flow: missing"},
		{"bad name", "flow: 'a b'\n", `f.yaml:1: flow: "a b": a flow's name`},
		{"no nodes", "flow: f\n", "f.yaml:1: nodes: missing"},
		{"no trigger", "flow: f\nnodes:\n  - {id: r, type: reply, with: {text: hi}}\n", "f.yaml:3: nodes: no trigger"},
		{"unknown type", head + "  - {id: x, type: loop}\n", `f.yaml:4: nodes[1].type: "loop" is no node type`},
		{"duplicate id", head + "  - {id: t, type: reply, with: {text: a}}\n", `f.yaml:4: nodes[1].id: "t" is the id of the node at line 3 too`},
		{"unknown with key", head + "  - {id: r, type: reply, with: {txt: a}}\n", "f.yaml:4: nodes[1] (r).with.txt: unknown key for a reply node (text)"},
		{"missing key", head + "  - {id: c, type: collect, with: {var: x}}\n", "f.yaml:4: nodes[1] (c).with.prompt: missing"},
		{"bad pattern", head + "  - id: c\n    type: collect\n    with: {var: x, prompt: p, pattern: '(?<=a)b'}\n",
			"f.yaml:6: nodes[1] (c).with.pattern: pattern \"(?<=a)b\""},
		{"bad trigger pattern", "flow: f\nnodes:\n  - {id: t, type: trigger, with: {patterns: ['(a']}}\n", "f.yaml:3: nodes[0] (t).with.patterns: pattern \"(a\""},
		{"intent", "flow: f\nnodes:\n  - {id: t, type: trigger, with: {intent: Refund!}}\n", `f.yaml:3: nodes[0] (t).with.intent: "Refund!": an intent's name is`},
		{"empty trigger", "flow: f\nnodes:\n  - {id: t, type: trigger}\n", "f.yaml:3: nodes[0] (t).with: a trigger needs"},
		{"unknown skill", head + "  - {id: s, type: skill, with: {skill: nope}}\n", `f.yaml:4: nodes[1] (s).with.skill: no skill "nope" is loaded`},
		{"retries", head + "  - {id: c, type: collect, with: {var: x, prompt: p, retries: many}}\n", `f.yaml:4: nodes[1] (c).with.retries: "many"`},
		{"unknown var", head + "  - {id: r, type: reply, with: {text: 'hi {{nmae}}'}}\n", `f.yaml:4: nodes[1] (r).with.text: "nmae" is no variable`},
		{"unclosed template", head + "  - {id: r, type: reply, with: {text: 'hi {{name'}}\n", "f.yaml:4: nodes[1] (r).with.text:"},
		{"bad condition", head + "  - id: b\n    type: branch\n    with:\n      cases:\n        - {when: 'x = 1', port: p}\n",
			"f.yaml:8: nodes[1] (b).with.cases[0].when: condition \"x = 1\", at 3: unknown operator"},
		{"condition var", head + "  - id: b\n    type: branch\n    with:\n      cases:\n        - {when: 'y == 1', port: p}\n",
			`f.yaml:8: nodes[1] (b).with.cases[0].when: "y" is no variable`},
		{"else port", head + "  - id: b\n    type: branch\n    with: {cases: [{when: 'input', port: else}]}\n", `f.yaml:6: nodes[1] (b).with.cases[0].port: "else"`},
		{"edge from nowhere", head + "edges: [[x, t]]\n", `f.yaml:4: edges[0]: from "x": no node "x"`},
		{"edge to nowhere", head + "edges: [[t, x]]\n", `f.yaml:4: edges[0]: to "x": no such node`},
		{"edge to trigger", head + "  - {id: r, type: reply, with: {text: a}}\nedges: [[r, t]]\n", `f.yaml:5: edges[0]: to "t": a trigger starts a flow`},
		{"bad port", head + "  - {id: r, type: reply, with: {text: a}}\nedges: [[t.yes, r]]\n", `f.yaml:5: edges[0]: from "t.yes": a trigger node has no port "yes"`},
		{"two edges", head + "  - {id: r, type: reply, with: {text: a}}\nedges: [[t, r], [t, r]]\n", `f.yaml:5: edges[1]: from "t": it already leads to "r"`},
		{"handoff out", head + "  - {id: h, type: handoff}\n  - {id: r, type: reply, with: {text: a}}\nedges: [[t, h], [h, r]]\n",
			`f.yaml:6: edges[1]: from "h": a handoff node ends the flow`},
		{"edge shape", head + "edges: [t]\n", "f.yaml:4: edges[0]: want a pair"},
		{"key twice", "flow: f\nflow: g\n", "f.yaml:2: flow: given twice"},
		{"var input", "flow: f\nvars: {input: x}\n", "f.yaml:2: vars.input:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.src), func(string) bool { return false })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestParseNotes(t *testing.T) {
	f, err := Parse("f.yaml", []byte("flow: f\nnodes:\n  - {id: t, type: trigger, with: {keywords: [go]}}\n  - {id: r, type: reply, with: {text: a}}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Notes) != 1 || !strings.Contains(f.Notes[0], `f.yaml:4: node "r": no trigger leads to it`) {
		t.Errorf("%q", f.Notes)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if set, err := Load(filepath.Join(dir, "none"), "skills/flows", nil); err != nil || len(set.Flows) != 0 {
		t.Fatalf("no dir: %v %v", set, err)
	}
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "flow: a\nnodes: [{id: t, type: trigger, with: {keywords: [a]}}]\n")
	write("b.yml", "flow: b\nnodes: [{id: t, type: trigger, with: {keywords: [b]}}]\n")
	write("notes.txt", "not a flow")
	set, err := Load(dir, "skills/flows", nil)
	if err != nil || len(set.Flows) != 2 || set.Flow("b") == nil || set.Flow("b").File != "skills/flows/b.yml" {
		t.Fatalf("%+v %v", set, err)
	}
	write("c.yaml", "flow: a\nnodes: [{id: t, type: trigger, with: {keywords: [c]}}]\n")
	if _, err := Load(dir, "skills/flows", nil); err == nil || !strings.Contains(err.Error(), `skills/flows/c.yaml: flow "a" is also the name of the flow in skills/flows/a.yaml`) {
		t.Errorf("two flows of a name: %v", err)
	}
	os.Remove(filepath.Join(dir, "c.yaml"))
	write("big.yaml", "flow: big\n#"+strings.Repeat("x", MaxFile))
	if _, err := Load(dir, "skills/flows", nil); err == nil || !strings.Contains(err.Error(), "skills/flows/big.yaml:") {
		t.Errorf("a big file: %v", err)
	}
	os.Remove(filepath.Join(dir, "big.yaml"))
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, "skills/flows", nil); err == nil || !strings.Contains(err.Error(), "skills/flows/link.yaml: not a regular file") {
		t.Errorf("a link: %v", err)
	}
}

// FuzzParse: whatever the input, Parse returns a flow or an error, never
// panics; a flow it returns parses again to the same version.
func FuzzParse(f *testing.F) {
	src, _ := os.ReadFile("testdata/refund.yaml")
	f.Add(src)
	f.Add([]byte("flow: f\nnodes:\n  - {id: t, type: trigger, with: {keywords: [go]}}\n"))
	f.Add([]byte("flow: f\nnodes: [{id: b, type: branch, with: {cases: [{when: 'not (a == 1)', port: p}]}}]\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := Parse("f.yaml", b, nil)
		if err != nil {
			return
		}
		again, err := Parse("f.yaml", b, nil)
		if err != nil || again.Version != fl.Version || len(again.Nodes) != len(fl.Nodes) {
			t.Fatalf("parsed twice: %v", err)
		}
		// Its conditions and templates evaluate without panicking.
		vars := map[string]string{"input": string(b)}
		for _, n := range fl.Nodes {
			for _, c := range n.cases {
				c.when.eval(vars)
			}
			n.prompt.render(vars)
			n.text.render(vars)
			n.accept(string(b))
		}
	})
}
