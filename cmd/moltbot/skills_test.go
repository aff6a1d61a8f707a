//go:build unix

package main

import (
	"context"
	"encoding/json"
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
	text := `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 5}}
models: {primary: sim/sim}
skills: {worker: ` + bin + `, timeout: 5s}
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
	ask := func(msg string) (string, string) {
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
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/moltbot/moltbot/cmd/moltbot-skills").CombinedOutput(); err != nil {
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
	writeSkill(t, ws, "bad.js", "module.exports = {name: 'bad', patterns: [/(a)\\1/], handler: async () => 'x'};\n")
	code, out, e = runCLI(t, "", "skills", "list", "--workspace", ws, "--worker", bin)
	if code != 1 || !strings.Contains(e, "skills/bad.js") || !strings.Contains(e, `(a)\1`) {
		t.Errorf("list with a bad pattern: %d %q %q", code, out, e)
	}
	if code, out, e := runCLI(t, "", "skills", "list", "--workspace", ws, "--worker", filepath.Join(ws, "nope")); code != 1 || !strings.Contains(e, "skills.worker") {
		t.Errorf("no worker: %d %q %q", code, out, e)
	}
}
