//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/skills"
)

// The seed's JavaScript skill, dropped verbatim into the workspace's
// skills/, answers a matching message through the HTTP API (its model
// call goes to the simulator); another message goes to the model.
func TestSkillsThroughNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the worker")
	}
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeSkill(t, ws, "code-assistant.js", seedSkill)
	n, logs := startSkillsNode(t, ws, bin)
	ask := func(msg string) (string, string) { return askNode(t, n, msg) }
	if model, reply := ask("请生成Go代码"); !strings.HasPrefix(reply, "这是生成的代码：\n") || len(reply) <= len("这是生成的代码：\n") {
		t.Errorf("the skill's reply: %q (%s)", reply, model)
	}
	if model, reply := ask("hello"); strings.HasPrefix(reply, "这是生成的代码") || reply == "" {
		t.Errorf("the model's reply: %q (%s)", reply, model)
	}
	if !strings.Contains(logs.String(), `"skill loaded"`) {
		t.Errorf("no skill loaded in the logs:\n%s", logs.String())
	}
}

// seedSkill is the seed's skill, verbatim.
const seedSkill = "module.exports = {\n  name: 'code-assistant',\n  patterns: [/生成(.*)代码/],\n  handler: async (context) => {\n" +
	"    const { input } = context.matches[1];\n    const code = await context.callModel('code-generator', {\n" +
	"      prompt: `用${input}实现该功能`\n    });\n    return `这是生成的代码：\\n${code}`;\n  }\n};\n"

// buildSkillsWorker builds moltbot-skills into a temporary directory.
func buildSkillsWorker(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the worker")
	}
	bin := filepath.Join(t.TempDir(), skills.WorkerName)
	if out, err := buildWorkerCmd(bin).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	return bin
}

func writeSkill(t *testing.T, ws, name, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ws, "skills", name), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

// moltbot skills list and test, in process: the seed's skill listed and
// run with the simulator as its model; a message no skill takes; a
// pattern RE2 cannot take, named with its file.
func TestSkillsCommand(t *testing.T) {
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeSkill(t, ws, "code-assistant.js", seedSkill)
	code, out, e := runCLI(t, "", "skills", "list", "--workspace", ws, "--worker", bin)
	if code != 0 || !strings.Contains(out, "code-assistant") || !strings.Contains(out, "skills/code-assistant.js") || !strings.Contains(out, "生成(.*)代码") {
		t.Errorf("list: %d %q %q", code, out, e)
	}
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "--worker", bin, "请帮我生成Go代码")
	for _, want := range []string{"skill: code-assistant", `matches[0]: "生成Go代码"`, `matches[1]: "Go"`,
		`callModel 1: alias "code-generator", prompt "用Go实现该功能"`, "reply:\n这是生成的代码：\n[simulated]"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("test: want %q in %d %q %q", want, code, out, e)
		}
	}
	if code, out, e := runCLI(t, "", "skills", "test", "--workspace", ws, "--worker", bin, "hello"); code != 0 || out != "no skill matches\n" {
		t.Errorf("test hello: %d %q %q", code, out, e)
	}
	// lint: the seed's skill destructures a capture (the captured text
	// here) and calls "code-generator", which no model of the config is.
	code, out, e = runCLI(t, "", "skills", "lint", "--workspace", ws, "--worker", bin)
	if code != 0 || !strings.Contains(out, "skills/code-assistant.js:5: const { input } = context.matches[...] gives the captured text here") ||
		!strings.Contains(out, `skills/code-assistant.js:6: callModel("code-generator"): no models: map (the skill's, skills.models) takes it and no model of the config answers to it, so it goes to the chain`) ||
		!strings.Contains(e, "1 skill(s) loaded, 2 note(s)") {
		t.Errorf("lint: %d %q %q", code, out, e)
	}
	writeSkill(t, ws, "bad.js", "module.exports = {name: 'bad', patterns: [/(a)\\1/], handler: async () => 'x'};\n")
	code, out, e = runCLI(t, "", "skills", "list", "--workspace", ws, "--worker", bin)
	if code != 1 || !strings.Contains(e, "skills/bad.js") || !strings.Contains(e, `(a)\1`) {
		t.Errorf("list with a bad pattern: %d %q %q", code, out, e)
	}
	if code, out, e := runCLI(t, "", "skills", "list", "--workspace", ws, "--worker", filepath.Join(ws, "nope")); code != 1 || !strings.Contains(e, "skills.worker") {
		t.Errorf("no worker: %d %q %q", code, out, e)
	}
}

// startSkillsNode starts a node on ws with the simulator as its model and
// worker as skills.worker.
func startSkillsNode(t *testing.T, ws, worker string) (*Node, *syncBuf) {
	t.Helper()
	return startSkillsNodeWith(t, ws, worker, "timeout: 5s")
}

// startSkillsNodeWith is startSkillsNode with skills: keys of its own
// ("timeout: 5s").
func startSkillsNodeWith(t *testing.T, ws, worker, skillsKeys string) (*Node, *syncBuf) {
	t.Helper()
	text := `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 5}}
models: {primary: sim/sim}
skills: {worker: ` + worker + `, ` + skillsKeys + `}
`
	path := filepath.Join(ws, "moltbot.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	n := &Node{Config: cfg, Workspace: ws, Log: slog.New(slog.NewJSONHandler(logs, nil))}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	waitReady(t, n.URL())
	return n, logs
}

// askNode sends msg to n's chat API: the model that served it, the reply.
func askNode(t *testing.T, n *Node, msg string) (string, string) {
	t.Helper()
	resp, err := http.Post(n.URL()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"moltbot","messages":[{"role":"user","content":"`+msg+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 {
		t.Fatalf("%d %v %+v", resp.StatusCode, err, out)
	}
	return out.Model, out.Choices[0].Message.Content
}

// A reload (SIGHUP, moltbot keys reload: Node.Reload) reads skills/ again:
// a skill added is served, one that does not load keeps the skills in use
// (the error, naming the file, logged and returned), and skills/ emptied
// leaves every message to the model.
func TestSkillsReload(t *testing.T) {
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeSkill(t, ws, "code-assistant.js", seedSkill)
	n, logs := startSkillsNode(t, ws, bin)
	if _, reply := askNode(t, n, "hi there"); reply == "hello from js" {
		t.Fatal("a skill before it was written")
	}
	writeSkill(t, ws, "hello.js", "module.exports = {name: 'hello', patterns: [/^hi there$/], handler: async () => 'hello from js'};\n")
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, reply := askNode(t, n, "hi there"); reply != "hello from js" {
		t.Fatalf("after the reload: %q", reply)
	}
	if _, reply := askNode(t, n, "请生成Go代码"); !strings.HasPrefix(reply, "这是生成的代码") {
		t.Fatalf("the seed's skill after the reload: %q", reply)
	}
	writeSkill(t, ws, "hello.js", "module.exports = {name: 'hello', patterns: [/^hi there$/], handler: async () => 'hello again'};\n")
	writeSkill(t, ws, "bad.js", "module.exports = {name: 'bad', patterns: [/(a)\\1/], handler: async () => 'x'};\n")
	if _, err := n.Reload(); err == nil || !strings.Contains(err.Error(), "skills/bad.js") {
		t.Fatalf("a reload with a bad skill: %v", err)
	}
	if _, reply := askNode(t, n, "hi there"); reply != "hello from js" {
		t.Fatalf("the old skills stay after a failed reload: %q", reply)
	}
	if !strings.Contains(logs.String(), "skills not reloaded") {
		t.Errorf("the failed reload is not logged:\n%s", logs.String())
	}
	for _, f := range []string{"bad.js", "hello.js", "code-assistant.js"} {
		os.Remove(filepath.Join(ws, "skills", f))
	}
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if model, reply := askNode(t, n, "hi there"); strings.HasPrefix(reply, "hello") || strings.HasPrefix(model, "skill") {
		t.Fatalf("no skill left, yet: %q (%s)", reply, model)
	}
}

// A node whose skills/ holds JavaScript skills but finds no worker (the
// edge build does not build moltbot-skills) starts and serves without
// them, with a warning naming skills.worker; once the worker is there, a
// reload brings the skills in.
func TestSkillsNoWorker(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeSkill(t, ws, "code-assistant.js", seedSkill)
	missing := filepath.Join(t.TempDir(), skills.WorkerName)
	n, logs := startSkillsNode(t, ws, missing)
	if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), `"skills.worker":"`+missing+`"`) ||
		!strings.Contains(logs.String(), "not served") {
		t.Errorf("no warning naming skills.worker:\n%s", logs.String())
	}
	if model, reply := askNode(t, n, "请生成Go代码"); strings.HasPrefix(reply, "这是生成的代码") || reply == "" {
		t.Errorf("served by a skill without a worker: %q (%s)", reply, model)
	}
	if _, err := n.Reload(); err == nil || !errors.Is(err, skills.ErrNoWorker) {
		t.Errorf("a reload without the worker: %v", err)
	}
	if testing.Short() {
		return
	}
	if out, err := buildWorkerCmd(missing).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, reply := askNode(t, n, "请生成Go代码"); !strings.HasPrefix(reply, "这是生成的代码") {
		t.Errorf("the skill once the worker is there: %q", reply)
	}
}

// lint names an alias only when no model of the config answers to it, and
// says what a destructured capture is in each mode.
func TestLintSkill(t *testing.T) {
	cfg, err := configs.Parse("m.yaml", []byte("providers:\n  - {name: local, type: sim, models: [coder]}\n  - {name: cloud, type: sim}\nmodels: {primary: local/llama3.2, fallback: [cloud/big]}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	src := "const a = await context.callModel('coder', {});\n" +
		"const b = await context.callModel(\"llama3.2\", {});\n" +
		"const c = await context.callModel('cloud/big', {});\n" +
		"const d = await context.callModel('moltbot', {});\n" +
		"const e = await context.callModel('code-generator', {});\n" +
		"const { input } = context.matches[1];\n"
	notes := lintSkill(src, cfg, nil)
	if len(notes) != 2 || !strings.HasPrefix(notes[0], `5: callModel("code-generator")`) || !strings.HasPrefix(notes[1], "6: const { input }") || !strings.Contains(notes[1], "gives the captured text") {
		t.Fatalf("%q", notes)
	}
	if n := lintSkill("module.exports = {strict: true};\nconst { input } = context.matches[1];\n", nil, nil); len(n) != 1 || !strings.Contains(n[0], "undefined in strict mode") {
		t.Fatalf("%q", n)
	}
}

// buildWorkerCmd builds the worker as make build does, without cgo: with
// it (make test's -race sets CGO_ENABLED=1) the net package's threads get
// 8 MiB pthread stacks, which count against the worker's RLIMIT_DATA.
func buildWorkerCmd(out string) *exec.Cmd {
	c := exec.Command("go", "build", "-o", out, "github.com/moltbot/moltbot/cmd/moltbot-skills")
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	return c
}
