//go:build unix

package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bot's turns run only its skills (bots[].skills); a key of no bot runs
// every skill, as a node without bots does.
func TestBotSkills(t *testing.T) {
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	opBytes, _ := os.ReadFile(filepath.Join(ws, "admin.key"))
	op := strings.TrimSpace(string(opBytes))
	writeSkill(t, ws, "code-assistant.js", seedSkill)
	writeSkill(t, ws, "hello.js", "module.exports = {name: 'hello', patterns: [/^hi there$/], handler: async () => 'hello from js'};\n")
	text := `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: true}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 5}}
models: {primary: sim/sim}
skills: {worker: ` + bin + `, timeout: 5s}
bots:
  - {name: coder, skills: [code-assistant, missing-flow]}
  - {name: quiet}
`
	n, logs := startNodeIn(t, ws, text, slog.LevelInfo)
	if !strings.Contains(logs.String(), `"skill":"missing-flow"`) || !strings.Contains(logs.String(), "a bot names a skill that skills/ does not hold") {
		t.Errorf("no warning for a skill the bot names and skills/ lacks:\n%s", logs.String())
	}
	keys := map[string]string{}
	for _, bot := range []string{"coder", "quiet", ""} {
		code, k := makeKey(t, n, op, `{"bot":"`+bot+`"}`)
		if code != 201 {
			t.Fatalf("key of bot %q: %d %s", bot, code, k)
		}
		keys[bot] = k
	}
	ask := func(key, msg string) string {
		t.Helper()
		code, out := authedDo(t, "POST", n.URL()+"/v1/chat/completions", key, `{"messages":[{"role":"user","content":"`+msg+`"}]}`)
		var r struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(out), &r); code != 200 || err != nil || len(r.Choices) != 1 {
			t.Fatalf("%s: %d %s", msg, code, out)
		}
		return r.Choices[0].Message.Content
	}
	for _, tc := range []struct {
		bot, msg string
		skill    bool
	}{
		{"coder", "请生成Go代码", true}, {"coder", "hi there", false},
		{"quiet", "请生成Go代码", false}, {"quiet", "hi there", false},
		{"", "请生成Go代码", true}, {"", "hi there", true},
	} {
		reply := ask(keys[tc.bot], tc.msg)
		bySkill := strings.HasPrefix(reply, "这是生成的代码") || reply == "hello from js"
		if bySkill != tc.skill {
			t.Errorf("bot %q, %q: %q (want a skill's reply: %v)", tc.bot, tc.msg, reply, tc.skill)
		}
	}
	// A conversation of the bot: its turns run its skills only, too.
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations", keys["coder"], `{"id":"c1"}`); code != 201 {
		t.Fatalf("create: %d %s", code, out)
	}
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations/c1/messages", keys["coder"], `{"content":"hi there"}`); code != 200 || strings.Contains(out, "hello from js") {
		t.Errorf("a skill the bot lacks in its conversation: %d %s", code, out)
	}
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations/c1/messages", keys["coder"], `{"content":"请生成Go代码"}`); code != 200 || !strings.Contains(out, "这是生成的代码") {
		t.Errorf("the bot's skill in its conversation: %d %s", code, out)
	}
}
