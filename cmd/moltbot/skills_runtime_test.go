//go:build unix

package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/configs"
)

// genSkill maps its alias in its own models: map and bounds its model
// calls.
const genSkill = "module.exports = {\n  name: 'gen',\n  patterns: [/^gen (\\w+)$/i, '写代码'],\n" +
	"  models: {'code-generator': 'sim/coder', helper: 'sim/sim'},\n  limits: {model_calls: 2},\n" +
	"  handler: async (c) => String(await c.callModel('code-generator', {prompt: c.matches[1] + ''})) + String(await c.callModel('helper', {prompt: 'x'})),\n};\n"

// skills show prints a skill's file, patterns in both forms, models: map
// (with skills.models over it) and limits; a models: entry naming a model
// the config does not know stops list, lint and test, naming the file,
// the alias and the model; lint takes mapped aliases as known.
func TestSkillsShowAndModels(t *testing.T) {
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	cfg := "providers:\n  - {name: sim, type: sim, models: [coder, big]}\nmodels: {primary: sim/sim}\nskills: {models: {helper: sim/big}}\n"
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	writeSkill(t, ws, "gen.js", genSkill)
	code, out, e := runCLI(t, "", "skills", "show", "--workspace", ws, "--worker", bin, "gen")
	for _, want := range []string{"name: gen\n", "file: skills/gen.js\n", "  /^gen (\\w+)$/i  (RE2: (?i)^gen (\\w+)$)\n", "  /写代码/  (RE2: 写代码)\n",
		"  code-generator: sim/coder\n", "  helper: sim/sim (skills.models: sim/big)\n", "  model_calls: 2 a run\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show: want %q in %d %q %q", want, code, out, e)
		}
	}
	if code, out, e := runCLI(t, "", "skills", "show", "--workspace", ws, "--worker", bin, "nope"); code != 1 || !strings.Contains(e, `no skill named "nope" (skills: gen)`) {
		t.Errorf("show nope: %d %q %q", code, out, e)
	}
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "--worker", bin, "gen Go")
	if code != 0 || !strings.Contains(out, `callModel 1: alias "code-generator" (model "sim/coder"), prompt "Go"`) ||
		!strings.Contains(out, `callModel 2: alias "helper" (model "sim/big"), prompt "x"`) {
		t.Errorf("test: %d %q %q", code, out, e)
	}
	if code, out, e := runCLI(t, "", "skills", "lint", "--workspace", ws, "--worker", bin); code != 0 || out != "" || !strings.Contains(e, "1 skill(s) loaded, 0 note(s)") {
		t.Errorf("lint: %d %q %q", code, out, e)
	}
	writeSkill(t, ws, "gen.js", strings.Replace(genSkill, "sim/coder", "ollama/qwen2.5-coder:1.5b", 1))
	for _, sub := range []string{"list", "lint"} {
		code, out, e := runCLI(t, "", "skills", sub, "--workspace", ws, "--worker", bin)
		if code != 1 || !strings.Contains(e, `skills/gen.js: models: code-generator: "ollama/qwen2.5-coder:1.5b" is not a model the router knows`) {
			t.Errorf("%s with an unknown model: %d %q %q", sub, code, out, e)
		}
	}
}

// skills.workers, skills.memory and skills.models are checked with the
// key named.
func TestSkillsConfigChecked(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"skills: {workers: 100}", "skills.workers"},
		{"skills: {memory: 1MiB}", "skills.memory"},
		{"skills: {models: {a: ''}}", "skills.models"},
	} {
		_, err := configs.Parse("m.yaml", []byte(tc.yaml+"\n"), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.yaml, err)
		}
	}
	c, err := configs.Parse("m.yaml", []byte("providers: [{name: local, type: sim}]\nmodels: {primary: local/m}\nskills: {workers: 3, memory: 64MiB, models: {coder: local/qwen}}\n"), nil)
	if err != nil || c.Skills.Workers != 3 || c.Skills.Memory != 64<<20 || c.Skills.Models["coder"] != "local/qwen" {
		t.Fatalf("%v %+v", err, c)
	}
}

// Through a node: a skill that allocates without bound fails its turn
// with the memory error, and the node goes on serving, skills (whose kv
// records are in the node's database) and the model alike.
func TestSkillsHostileThroughNode(t *testing.T) {
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeSkill(t, ws, "hog.js", "module.exports = {name: 'hog', patterns: [/^hog$/], handler: async () => { const a = []; for (;;) a.push(new Array(1e5).fill(1)) }};\n")
	writeSkill(t, ws, "count.js", "module.exports = {name: 'count', patterns: [/^count$/], handler: async (c) => {\n"+
		"  const n = Number((await c.kv.get('n')) ?? 0) + 1; await c.kv.set('n', String(n)); return 'visit ' + n }};\n")
	n, logs := startSkillsNodeWith(t, ws, bin, "memory: 64MiB, timeout: 30s")
	resp, err := http.Post(n.URL()+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"moltbot","messages":[{"role":"user","content":"hog"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(body), "skill hog exceeded its memory budget (64 MiB)") {
		t.Errorf("hog: %d %s\n%s", resp.StatusCode, body, logs.String())
	}
	for _, want := range []string{"visit 1", "visit 2"} {
		if _, reply := askNode(t, n, "count"); reply != want {
			t.Fatalf("count: %q, want %q", reply, want)
		}
	}
	if model, reply := askNode(t, n, "hello"); reply == "" || strings.HasPrefix(model, "skill") {
		t.Errorf("the model after the hog: %q (%s)", reply, model)
	}
	// "fatal error: runtime: out of memory", or "fatal error: out of
	// memory allocating heap arena metadata" when the runtime fails there.
	if !regexp.MustCompile(`"skills worker crashed","stderr":"fatal error: [^"]*out of memory`).MatchString(logs.String()) || strings.Contains(logs.String(), "goroutine 1 [") {
		t.Errorf("the worker's crash is not logged by its first line alone:\n%s", logs.String())
	}
}
