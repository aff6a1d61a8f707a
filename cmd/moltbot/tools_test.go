//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// weatherTool is a JavaScript skill the model calls as a tool (it has no
// patterns: only the model selects it).
const weatherTool = `module.exports = {
  name: 'weather',
  tool: {
    description: 'The weather in a city.',
    parameters: {type: 'object', properties: {city: {type: 'string'}}, required: ['city']},
  },
  handler: async (context) => 'sunny in ' + context.args.city + ' (asked: ' + context.input + ')',
};
`

// againTool answers in a way that makes the simulator call it again.
const againTool = `module.exports = {
  name: 'again',
  tool: {description: 'Asks to be called again.'},
  handler: async (context) => ({note: 'call again'}),
};
`

// buildMCPTest builds the fake MCP server (internal/mcptest).
func buildMCPTest(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mcptest")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/moltbot/moltbot/internal/mcptest").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	return bin
}

// startToolsNode starts a node on a new workspace holding files in its
// skills/, the simulator as its model, skills (a YAML mapping's body,
// indented two spaces) beside skills.worker; debug logs.
func startToolsNode(t *testing.T, worker string, files map[string]string, skillsYAML string) (*Node, string, *syncBuf) {
	t.Helper()
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	for name, src := range files {
		writeSkill(t, ws, name, src)
	}
	text := `server: {host: 127.0.0.1, port: 0}
log: {level: debug, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 5}}
models: {primary: sim/sim}
skills:
  worker: ` + worker + `
` + skillsYAML
	n, logs := startNodeIn(t, ws, text, slog.LevelDebug)
	return n, ws, logs
}

type toolReply struct {
	Choices []struct {
		Message struct {
			Content   string            `json:"content"`
			ToolCalls []json.RawMessage `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// chatTools sends a chat completion; the reply, decoded.
func chatTools(t *testing.T, n *Node, body string) toolReply {
	t.Helper()
	resp, err := http.Post(n.URL()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out toolReply
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 {
		t.Fatalf("%d %v %+v", resp.StatusCode, err, out)
	}
	return out
}

const askWeather = `{"model":"moltbot","messages":[{"role":"user","content":"what is the weather in Paris?"}]}`

// A JavaScript skill that says tool: is offered to the model; the model
// (the simulator) calls it, the node runs it in the worker with the
// model's arguments, and the answer quotes its result; the client sees
// neither the call nor the result, streamed or not; the usage of both
// model calls is charged.
func TestToolLoopJSSkill(t *testing.T) {
	worker := buildSkillsWorker(t)
	n, ws, logs := startToolsNode(t, worker, map[string]string{"weather.js": weatherTool}, "")
	r := chatTools(t, n, askWeather)
	c := r.Choices[0]
	if !strings.Contains(c.Message.Content, "weather returned sunny in ") || !strings.Contains(c.Message.Content, "(asked: what is the weather in Paris?)") ||
		c.FinishReason != "stop" || len(c.Message.ToolCalls) != 0 {
		t.Fatalf("reply %+v", r)
	}
	// Two model calls: the second's prompt holds the first's and the tool's result.
	one := chatTools(t, n, `{"model":"moltbot","messages":[{"role":"user","content":"what is the weather in Paris?"}],"tool_choice":"none",`+
		`"tools":[{"type":"function","function":{"name":"x"}}]}`)
	if r.Usage.PromptTokens <= 2*one.Usage.PromptTokens || r.Usage.CompletionTokens <= one.Usage.CompletionTokens {
		t.Errorf("usage %+v, one call's %+v", r.Usage, one.Usage)
	}
	if !strings.Contains(logs.String(), `"msg":"tool loaded","tool":"weather"`) || !strings.Contains(logs.String(), `"msg":"tool called","tool":"weather"`) {
		t.Errorf("logs:\n%s", logs.String())
	}

	// Streamed: the answer's text only, no tool call.
	resp, err := http.Post(n.URL()+"/v1/chat/completions", "application/json",
		strings.NewReader(strings.Replace(askWeather, `"model"`, `"stream":true,"model"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		if strings.Contains(line, "tool_calls\":[") {
			t.Errorf("a tool call streamed: %s", line)
		}
		var ch struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(line), &ch) == nil && len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if text.String() != c.Message.Content {
		t.Errorf("streamed %q, want %q", text.String(), c.Message.Content)
	}

	// moltbot skills list shows it.
	code, out, e := runCLI(t, "", "skills", "list", "--workspace", ws)
	if code != 0 || !strings.Contains(out, "TOOL") || !regexpMatch(`weather\s+skill weather\s+The weather in a city\.`, out) {
		t.Errorf("skills list: %d %q %q", code, out, e)
	}
}

// A model that keeps calling a tool is stopped at skills.tools.max_steps:
// the tool runs that many times, then the model answers without tools.
func TestToolLoopStepLimit(t *testing.T) {
	worker := buildSkillsWorker(t)
	n, _, logs := startToolsNode(t, worker, map[string]string{"again.js": againTool}, "  tools: {max_steps: 3}\n")
	r := chatTools(t, n, askWeather)
	c := r.Choices[0]
	if !strings.Contains(c.Message.Content, `again returned {"note":"call again"}`) || c.FinishReason != "stop" || len(c.Message.ToolCalls) != 0 {
		t.Fatalf("reply %+v", r)
	}
	if got := strings.Count(logs.String(), `"msg":"tool called","tool":"again"`); got != 3 {
		t.Errorf("the tool ran %d times, want 3", got)
	}
}

// Tools of MCP servers, over stdio (a command the worker starts) and
// streamable HTTP (with a header the server requires): listed as
// server__tool, offered, called, their results used; skills list shows
// them.
func TestToolLoopMCP(t *testing.T) {
	worker, mcpBin := buildSkillsWorker(t), buildMCPTest(t)
	n, ws, _ := startToolsNode(t, worker, nil, "  mcp:\n    - {name: files, command: ["+mcpBin+", stdio, echo]}\n")
	r := chatTools(t, n, askWeather)
	if c := r.Choices[0]; !strings.Contains(c.Message.Content, "files__echo returned echo: ") || c.FinishReason != "stop" {
		t.Fatalf("reply %+v", r)
	}
	code, out, e := runCLI(t, "", "skills", "list", "--workspace", ws)
	if code != 0 || !regexpMatch(`files__echo\s+mcp files\s+Echoes the text it is given\.`, out) {
		t.Errorf("skills list: %d %q %q", code, out, e)
	}
	// A result past max_result is cut (in the worker), saying so; an
	// error result reaches the model as an error.
	for tool, want := range map[string]string{"big": "[cut: 4032 of 204800 bytes shown]", "fail": "files__fail returned error: the fail tool failed, as it does"} {
		nt, _, _ := startToolsNode(t, worker, nil, "  tools: {max_result: 4KiB}\n  mcp:\n    - {name: files, command: ["+mcpBin+", stdio, "+tool+"]}\n")
		if c := chatTools(t, nt, askWeather).Choices[0]; !strings.Contains(c.Message.Content, want) || len(c.Message.Content) > 4200 {
			t.Errorf("%s: reply %.300q", tool, c.Message.Content)
		}
	}

	srv := exec.Command(mcpBin, "http", "echo", "Authorization", "Bearer s3cret")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	url = strings.TrimSpace(url)
	n2, _, _ := startToolsNode(t, worker, nil, "  mcp:\n    - {name: web, url: \""+url+"\", headers: {Authorization: Bearer s3cret}}\n")
	r = chatTools(t, n2, askWeather)
	if c := r.Choices[0]; !strings.Contains(c.Message.Content, "web__echo returned echo: ") || c.FinishReason != "stop" {
		t.Fatalf("reply %+v", r)
	}
	// Without the header the server refuses: its tools are not offered,
	// the node serves, skills list warns.
	n3, ws3, logs3 := startToolsNode(t, worker, nil, "  mcp:\n    - {name: web, url: \""+url+"\"}\n")
	if c := chatTools(t, n3, askWeather).Choices[0]; strings.Contains(c.Message.Content, "returned") || c.Message.Content == "" {
		t.Errorf("reply %+v", c)
	}
	if !strings.Contains(logs3.String(), "mcp server web:") {
		t.Errorf("no warning:\n%s", logs3.String())
	}
	if code, out, e := runCLI(t, "", "skills", "list", "--workspace", ws3); code != 0 || !strings.Contains(e, "warning: mcp server web:") {
		t.Errorf("skills list: %d %q %q", code, out, e)
	}
}

// An MCP server that never answers at load (a bare command, found in the
// node's PATH) is a warning after its timeout: the node starts, serves
// without its tools.
func TestToolLoopMCPNoAnswer(t *testing.T) {
	worker := buildSkillsWorker(t)
	start := time.Now()
	n, _, logs := startToolsNode(t, worker, nil, "  mcp:\n    - {name: mute, command: [sleep, \"30\"], timeout: 1s}\n")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the node took %s to start", d)
	}
	if !strings.Contains(logs.String(), "mcp server mute: no answer within 1s; its tools are not offered") {
		t.Errorf("no warning:\n%s", logs.String())
	}
	if c := chatTools(t, n, askWeather).Choices[0]; strings.Contains(c.Message.Content, "returned") || c.FinishReason != "stop" {
		t.Errorf("reply %+v", c)
	}
}

// An MCP server whose tool hangs gives the model an error result at
// skills.tools.call_timeout, not a hung turn; the next turn works too.
func TestToolLoopHangingMCP(t *testing.T) {
	worker, mcpBin := buildSkillsWorker(t), buildMCPTest(t)
	n, _, _ := startToolsNode(t, worker, nil, "  tools: {call_timeout: 1s}\n  mcp:\n    - {name: slow, command: ["+mcpBin+", stdio, hang]}\n")
	for range 2 {
		start := time.Now()
		r := chatTools(t, n, askWeather)
		c := r.Choices[0]
		// within 1s, or what is left of it after the wait for a worker
		if !regexp.MustCompile(`slow__hang returned error: mcp server slow did not answer within (1s|\d{3}ms)`).MatchString(c.Message.Content) || c.FinishReason != "stop" {
			t.Fatalf("reply %+v", r)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("the turn took %s", d)
		}
	}
	// A JavaScript tool that never returns is stopped the same way.
	spin := "module.exports = {name: 'spin', tool: {description: 'Spins.'}, handler: (context) => { for (;;) {} }};\n"
	n2, _, _ := startToolsNode(t, worker, map[string]string{"spin.js": spin}, "  tools: {call_timeout: 1s}\n")
	start := time.Now()
	r := chatTools(t, n2, askWeather)
	if c := r.Choices[0]; !strings.Contains(c.Message.Content, "spin returned error: skill spin: stopped at its deadline") || time.Since(start) > 8*time.Second {
		t.Fatalf("reply %+v after %s", r, time.Since(start))
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// Through the conversations API: the turn's answer uses the tool's
// result, and the conversation stores the user's message and the answer
// (the tool call and its result live in the turn only); the next turn
// runs the loop again on that history.
func TestToolLoopConversation(t *testing.T) {
	worker := buildSkillsWorker(t)
	n, _, _ := startToolsNode(t, worker, map[string]string{"weather.js": weatherTool}, "")
	post := func(url, body string, out any) {
		t.Helper()
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil || resp.StatusCode != 200 && resp.StatusCode != 201 {
			t.Fatalf("%s: %d %v %+v", url, resp.StatusCode, err, out)
		}
	}
	var conv struct{ ID string }
	post(n.URL()+"/v1/conversations", `{}`, &conv)
	type turn struct {
		Message struct {
			Role, Content string
		}
		FinishReason string `json:"finish_reason"`
	}
	for i, msg := range []string{"weather in Paris?", "and in Rome?"} {
		var tr turn
		post(n.URL()+"/v1/conversations/"+conv.ID+"/messages", `{"content":"`+msg+`"}`, &tr)
		if !strings.Contains(tr.Message.Content, "weather returned sunny in ") || tr.FinishReason != "stop" {
			t.Fatalf("turn %d: %+v", i, tr)
		}
	}
	resp, err := http.Get(n.URL() + "/v1/conversations/" + conv.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Messages []struct {
			Role      string
			Content   string
			ToolCalls []json.RawMessage `json:"tool_calls"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, m := range got.Messages {
		roles = append(roles, m.Role)
		if len(m.ToolCalls) > 0 {
			t.Errorf("a stored tool call: %+v", m)
		}
	}
	if strings.Join(roles, ",") != "user,assistant,user,assistant" {
		t.Errorf("stored %v", roles)
	}
}

// A server that lists thousands of tools, most with names no model takes
// and the rest with long descriptions, costs the node a warning and some
// of its tools, never its start: the worker bounds what one server puts
// in the load line.
func TestToolLoopMCPFlood(t *testing.T) {
	worker, mcpBin := buildSkillsWorker(t), buildMCPTest(t)
	n, _, logs := startToolsNode(t, worker, nil, "  mcp:\n    - {name: flood, command: ["+mcpBin+", stdio, flood]}\n")
	if !strings.Contains(logs.String(), "more warnings left out") {
		t.Errorf("no bounded warnings:\n%.2000s", logs.String())
	}
	if c := chatTools(t, n, askWeather).Choices[0]; c.FinishReason != "stop" {
		t.Errorf("reply %+v", c)
	}
}

// An MCP server's configured headers (a token) never follow a redirect to
// another host: the worker refuses it, and the server's tools are left
// out with a warning.
func TestToolLoopMCPRedirectKeepsHeaders(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer other.Close()
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/mcp", http.StatusTemporaryRedirect)
	}))
	defer first.Close()
	worker := buildSkillsWorker(t)
	_, _, logs := startToolsNode(t, worker, nil, "  mcp:\n    - {name: moved, url: \""+first.URL+"/mcp\", headers: {Authorization: \"Bearer s3cret\"}, timeout: 2s}\n")
	if leaked.Load() {
		t.Error("the token followed the redirect to another host")
	}
	if !strings.Contains(logs.String(), "mcp server moved") {
		t.Errorf("no warning:\n%.2000s", logs.String())
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("the token is in the logs")
	}
}
