package skills

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
)

// A skill's exports.tool as the worker loads it, and what it refuses, by
// file.
func TestToolExports(t *testing.T) {
	worker := buildWorker(t)
	load := func(src string) (*Skills, error) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "t.js"), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{Dir: dir, Worker: worker})
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}
	s, err := load(`module.exports = {name: 'calc', tool: {description: 'Adds.', name: 'add',
  parameters: {type: 'object', properties: {a: {type: 'number'}, b: {type: 'number'}}}},
  handler: async (context) => ({sum: context.args.a + context.args.b, input: context.input})};`)
	if err != nil {
		t.Fatal(err)
	}
	tools := s.ServerTools(nil)
	if len(tools) != 1 || tools[0].Name != "add" || tools[0].Description != "Adds." || !strings.Contains(string(tools[0].Parameters), `"a":{"type":"number"}`) {
		t.Fatalf("tools %+v", tools)
	}
	// A bot is offered the tools of the skills it names only.
	if got := s.ServerTools(&moltbot.Bot{Name: "b", Skills: []string{"other"}}); len(got) != 0 {
		t.Errorf("a bot that does not name calc is offered %+v", got)
	}
	if got := s.ServerTools(&moltbot.Bot{Name: "b", Skills: []string{"calc"}}); len(got) != 1 || got[0].Name != "add" {
		t.Errorf("a bot that names calc is offered %+v", got)
	}
	if ti := s.Tools(); ti[0].Skill != "calc" || ti[0].Server != "" {
		t.Errorf("tool info %+v", ti)
	}
	if name, _ := s.Match("anything"); name != "" {
		t.Errorf("a tool-only skill matched %q", name)
	}
	tn := &moltbot.Turn{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "two plus three"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _, err := s.CallTool(ctx, tn, "add", `{"a":2,"b":3}`)
	if err != nil || out != `{"sum":5,"input":"two plus three"}` {
		t.Errorf("%q %v", out, err)
	}
	if _, _, err := s.CallTool(ctx, tn, "add", `[1]`); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("array arguments: %v", err)
	}
	if _, _, err := s.CallTool(ctx, tn, "nope", `{}`); err == nil || !strings.Contains(err.Error(), `no tool "nope"`) {
		t.Errorf("no such tool: %v", err)
	}

	for src, want := range map[string]string{
		`module.exports = {name: 'a b', tool: {description: 'x'}, handler: async () => 'x'}`:                             `tool name "a b": a model takes only`,
		`module.exports = {name: 'a', tool: {}, handler: async () => 'x'}`:                                               "tool.description is missing",
		`module.exports = {name: 'a', tool: {description: 'x', parameters: {type: 'string'}}, handler: async () => 'x'}`: "the arguments are an object",
		`module.exports = {name: 'a', tool: 'x', handler: async () => 'x'}`:                                              "module.exports.tool is not an object",
		`module.exports = {name: 'a', handler: async () => 'x'}`:                                                         "patterns is missing (a skill the model calls says tool:",
	} {
		if _, err := load(src); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "skills/t.js") {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
}
