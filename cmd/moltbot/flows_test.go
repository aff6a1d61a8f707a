//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/skills"
)

// orderFlow asks for an order number (6 digits, validated), branches on
// it, and answers with a reply that quotes the model (an llm node).
const orderFlow = `flow: order
description: Starts a refund for an order.
vars: {order_id: ""}
nodes:
  - {id: start, type: trigger, with: {keywords: [refund, 退款]}}
  - id: ask
    type: collect
    with:
      var: order_id
      prompt: "Your order number? (6 digits)"
      pattern: '(\d{6})'
      retry_prompt: "That is not an order number: 6 digits, please."
  - id: gate
    type: branch
    with:
      cases:
        - {when: 'order_id matches "^9"', port: vip}
  - {id: note, type: llm, with: {prompt: "One sentence about refunding order {{order_id}}.", var: note}}
  - {id: done, type: reply, with: {text: "Refund for {{order_id}} started. {{note}}"}}
  - {id: vip, type: reply, with: {text: "Order {{order_id}} is a priority order: a person will call you."}}
edges:
  - [start, ask]
  - [ask, gate]
  - [gate.vip, vip]
  - [gate.else, note]
  - [note, done]
`

func writeFlow(t *testing.T, ws, name, src string) {
	t.Helper()
	dir := filepath.Join(ws, "skills", "flows")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

// say posts a message to a conversation: the reply and the model that
// made it.
func say(t *testing.T, n *Node, conv, msg string) (reply, model string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"content": msg})
	code, body := post(t, n.URL()+"/v1/conversations/"+conv+"/messages", string(b))
	var out struct {
		Model   string `json:"model"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	}
	if err := json.Unmarshal(body, &out); err != nil || code != 200 {
		t.Fatalf("%q: %d %s", msg, code, body)
	}
	return out.Message.Content, out.Model
}

func newConv(t *testing.T, n *Node) string {
	t.Helper()
	code, body := post(t, n.URL()+"/v1/conversations", `{}`)
	var c convBody
	if err := json.Unmarshal(body, &c); err != nil || code != 201 && code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	return c.ID
}

// A YAML flow through the conversations API against the simulator: a
// trigger starts it, its collect step rejects a bad answer and, after the
// node restarted, takes a good one (the flow's place was stored with the
// conversation); the branch, the llm node and the reply follow. A reload
// that changes the flow leaves a conversation inside it on its version;
// one that does not load keeps the flows in use.
func TestFlowThroughNode(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeFlow(t, ws, "order.yaml", orderFlow)
	nowhere := filepath.Join(t.TempDir(), "no-worker")
	n, logs := startSkillsNode(t, ws, nowhere)
	if !strings.Contains(logs.String(), `"flow loaded"`) {
		t.Errorf("no flow loaded in the logs:\n%s", logs.String())
	}
	conv := newConv(t, n)
	if reply, model := say(t, n, conv, "hello"); model == "flow/order" || reply == "" {
		t.Fatalf("a message no trigger takes: %q %s", reply, model)
	}
	if reply, model := say(t, n, conv, "I want a refund"); reply != "Your order number? (6 digits)" || model != "flow/order" {
		t.Fatalf("the trigger: %q %s", reply, model)
	}
	if reply, _ := say(t, n, conv, "it is abc"); reply != "That is not an order number: 6 digits, please." {
		t.Fatalf("the validator: %q", reply)
	}

	// The node restarts: the flow waits at its collect step still.
	n.Shutdown(context.Background())
	n, _ = startSkillsNode(t, ws, nowhere)
	reply, model := say(t, n, conv, "sure, 123456")
	if !strings.HasPrefix(reply, "Refund for 123456 started. ") || len(reply) <= len("Refund for 123456 started. ") || model != "flow/order" {
		t.Fatalf("after the restart: %q %s", reply, model)
	}
	// The flow ended: the next message goes to the model.
	if reply, model := say(t, n, conv, "thanks"); model == "flow/order" || reply == "" {
		t.Fatalf("after the flow: %q %s", reply, model)
	}
	// The branch's other port.
	vip := newConv(t, n)
	say(t, n, vip, "退款")
	if reply, _ := say(t, n, vip, "923456"); reply != "Order 923456 is a priority order: a person will call you." {
		t.Fatalf("the vip port: %q", reply)
	}

	// A conversation inside the flow when a reload changes it finishes on
	// the version it began; a new one starts on the new version.
	inside := newConv(t, n)
	say(t, n, inside, "refund")
	writeFlow(t, ws, "order.yaml", strings.Replace(orderFlow, "Your order number? (6 digits)", "Order number, please.", 1))
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if reply, _ := say(t, n, inside, "x"); reply != "That is not an order number: 6 digits, please." {
		t.Fatalf("the old version after the reload: %q", reply)
	}
	if reply, _ := say(t, n, newConv(t, n), "refund"); reply != "Order number, please." {
		t.Fatalf("the new version: %q", reply)
	}
	// A flow that does not load: the reload fails naming file, line and
	// key, and the flows in use stay.
	writeFlow(t, ws, "bad.yaml", "flow: bad\nnodes:\n  - {id: t, type: trigger, with: {keywords: [bad]}}\n  - {id: r, type: reply, with: {text: '{{nope}}'}}\n")
	if _, err := n.Reload(); err == nil || !strings.Contains(err.Error(), `skills/flows/bad.yaml:4: nodes[1] (r).with.text: "nope" is no variable`) {
		t.Fatalf("a bad flow: %v", err)
	}
	if reply, _ := say(t, n, newConv(t, n), "refund"); reply != "Order number, please." {
		t.Fatalf("after the failed reload: %q", reply)
	}
}

// moltbot skills list, lint and test show the flows.
func TestFlowsCommand(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeFlow(t, ws, "order.yaml", strings.Replace(orderFlow, "edges:", "  - {id: orphan, type: reply, with: {text: lost}}\nedges:", 1))
	code, out, e := runCLI(t, "", "skills", "list", "--workspace", ws)
	if code != 0 || !strings.Contains(out, "FLOW") || !strings.Contains(out, "order") || !strings.Contains(out, "skills/flows/order.yaml") ||
		!strings.Contains(out, "refund 退款") {
		t.Errorf("list: %d %q %q", code, out, e)
	}
	code, out, e = runCLI(t, "", "skills", "lint", "--workspace", ws)
	if code != 0 || !strings.Contains(out, `skills/flows/order.yaml:21: node "orphan": no trigger leads to it`) || !strings.Contains(e, "1 flow(s) loaded, 1 note(s)") {
		t.Errorf("lint: %d %q %q", code, out, e)
	}
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "I want a refund", "abc", "123456")
	for _, want := range []string{"> I want a refund\nflow: order (version ", "nodes: start -> ask\nreply:\nYour order number? (6 digits)\nwaiting at: ask",
		"nodes: ask\nreply:\nThat is not an order number", `callModel 1: alias "", prompt "One sentence about refunding order 123456."`,
		"nodes: ask -> gate -> note -> done\nreply:\nRefund for 123456 started. [simulated]", "the flow ended"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("test: want %q in %d %q %q", want, code, out, e)
		}
	}
	if code, out, e := runCLI(t, "", "skills", "test", "--workspace", ws, "hello"); code != 0 || out != "no skill matches\n" {
		t.Errorf("test hello: %d %q %q", code, out, e)
	}
	writeFlow(t, ws, "bad.yaml", "flow: bad\nnodes:\n  - {id: t, type: trigger, with: {patterns: ['(?=x)']}}\n")
	if code, out, e := runCLI(t, "", "skills", "lint", "--workspace", ws); code != 1 || !strings.Contains(e, `skills/flows/bad.yaml:3: nodes[0] (t).with.patterns: pattern "(?=x)"`) {
		t.Errorf("lint a bad flow: %d %q %q", code, out, e)
	}
}

// README's flow, as written, loads and runs: a bad order number, then a
// good one; the trigger's group skips the question; the priority port
// hands off.
func TestReadmeFlow(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Write a skill in YAML\n")
	if i < 0 {
		t.Fatal("README has no flow section")
	}
	s = s[i:]
	start := strings.Index(s, "```yaml\n") + len("```yaml\n")
	src := s[start : start+strings.Index(s[start:], "```")]
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeFlow(t, ws, "refund.yaml", src)
	if code, out, e := runCLI(t, "", "skills", "lint", "--workspace", ws); code != 0 || !strings.Contains(e, "1 flow(s) loaded, 0 note(s)") {
		t.Fatalf("lint: %d %q %q", code, out, e)
	}
	code, out, e := runCLI(t, "", "skills", "test", "--workspace", ws, "I want a refund", "abc", "654321")
	for _, want := range []string{"Your order number? (6 digits)", "That is not an order number", "Refund for 654321 started. [simulated]", "the flow ended"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("test: want %q in %d %q %q", want, code, out, e)
		}
	}
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "please refund order 923456")
	if code != 0 || !strings.Contains(out, "nodes: start -> ask -> gate -> person") || !strings.Contains(out, "handed off") {
		t.Errorf("test: %d %q %q", code, out, e)
	}
}

// A flow's skill node calls a JavaScript skill (through the worker) with
// a template input; its reply, which asked the model, goes into a var
// the flow's reply quotes. A flow naming a skill that is not loaded does
// not load.
func TestFlowCallsSkill(t *testing.T) {
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeSkill(t, ws, "status.js", "module.exports = {name: 'order-status', patterns: [/^status of (\\d+)$/],\n"+
		"  handler: async (context) => {\n    const m = await context.callModel('moltbot', {prompt: 'status?'});\n"+
		"    return `order ${context.matches[0]} is on its way (${m.length > 0 ? 'asked' : 'not asked'})`;\n  }\n};\n")
	writeFlow(t, ws, "track.yaml", `flow: track
nodes:
  - {id: start, type: trigger, with: {patterns: ['^track (?P<order>\d+)$']}}
  - {id: look, type: skill, with: {skill: order-status, input: "{{order}}", var: status}}
  - {id: say, type: reply, with: {text: "Tracking: {{status}}."}}
edges: [[start, look], [look, say]]
`)
	n, _ := startSkillsNode(t, ws, bin)
	conv := newConv(t, n)
	if reply, model := say(t, n, conv, "track 42"); reply != "Tracking: order 42 is on its way (asked)." || model != "flow/track" {
		t.Fatalf("%q %s", reply, model)
	}
	code, out, e := runCLI(t, "", "skills", "test", "--workspace", ws, "--worker", bin, "track 7")
	if code != 0 || !strings.Contains(out, "Tracking: order 7 is on its way (asked).") || !strings.Contains(out, "nodes: start -> look -> say") {
		t.Errorf("skills test: %d %q %q", code, out, e)
	}
	writeFlow(t, ws, "bad.yaml", "flow: bad\nnodes:\n  - {id: t, type: trigger, with: {keywords: [x]}}\n  - {id: s, type: skill, with: {skill: nope}}\nedges: [[t, s]]\n")
	if _, err := n.Reload(); err == nil || !strings.Contains(err.Error(), `skills/flows/bad.yaml:4: nodes[1] (s).with.skill: no skill "nope" is loaded`) {
		t.Fatalf("a flow naming no loaded skill: %v", err)
	}
}

// A node serves without its JavaScript skills when their worker is not
// there, never with a flow that does not load.
func TestWithoutNoWorker(t *testing.T) {
	noWorker := fmt.Errorf("skills: start the worker: %w", skills.ErrNoWorker)
	bad := errors.New("skills/flows/x.yaml:1: bad")
	for _, tc := range []struct {
		err  error
		want error
	}{
		{noWorker, nil},
		{errors.Join(noWorker, nil), nil},
		{errors.Join(noWorker, bad), bad},
		{bad, bad},
	} {
		got := withoutNoWorker(tc.err)
		if (got == nil) != (tc.want == nil) || got != nil && (!errors.Is(got, tc.want) || errors.Is(got, skills.ErrNoWorker)) {
			t.Errorf("%v: %v", tc.err, got)
		}
	}
}
