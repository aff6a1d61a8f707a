//go:build unix

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

// The files a tenant pushes in the tests: a JavaScript skill and a flow
// whose skill node calls it.
const (
	pushedGreet = "module.exports = {\n  name: 'greet',\n  patterns: [/^greet (\\w+)$/],\n  handler: async (c) => `pushed hello, ${c.input.replace(/^greet /, '')}`\n};\n"
	pushedFlow  = `flow: order
nodes:
  - {id: start, type: trigger, with: {keywords: [where is my order]}}
  - {id: ask, type: collect, with: {var: order, prompt: "Which order? (digits)", pattern: '(\d+)'}}
  - {id: look, type: skill, with: {skill: greet, input: "greet {{order}}", var: g}}
  - {id: done, type: reply, with: {text: "order {{order}} is on its way ({{g}})"}}
edges:
  - [start, ask]
  - [ask, look]
  - [look, done]
`
)

// writePushDir writes a directory laid out as skills/: greet.js and
// flows/order.yaml.
func writePushDir(t *testing.T, greet string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "acme-skills")
	os.MkdirAll(filepath.Join(dir, "flows"), 0o700)
	os.WriteFile(filepath.Join(dir, "greet.js"), []byte(greet), 0o600)
	os.WriteFile(filepath.Join(dir, "flows", "order.yaml"), []byte(pushedFlow), 0o600)
	return dir
}

// A tenant's admin pushes a skill and a flow (moltbot skills push) to a
// node whose workspace has no skill: they answer that tenant's turns, not
// another's; a push that would not load is refused with the file and its
// line and changes nothing; a tenant's admin cannot push for another
// tenant, the operator can; files, pull, PUT, GET, DELETE and rm.
func TestSkillPushThroughNode(t *testing.T) {
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	opFile := filepath.Join(ws, "admin.key")
	opBytes, _ := os.ReadFile(opFile)
	op := strings.TrimSpace(string(opBytes))
	path := filepath.Join(ws, "moltbot.yaml")
	os.WriteFile(path, []byte(`server: {host: 127.0.0.1, port: 0, shutdown_timeout: 2s}
log: {level: error}
auth: {enabled: true}
providers: [{name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 4}}]
models: {primary: sim/sim}
tenants: [{id: acme}, {id: other}]
skills: {worker: `+bin+`, timeout: 10s}
`), 0o600)
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: ws}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	waitReady(t, n.URL())
	if n.skills.cur.Load() != nil {
		t.Fatal("a pool before any push")
	}
	_, acmeAdmin := makeKey(t, n, op, `{"tenant":"acme","name":"adm","scope":"admin"}`)
	_, acme := makeKey(t, n, op, `{"tenant":"acme","name":"u"}`)
	_, other := makeKey(t, n, op, `{"tenant":"other","name":"u"}`)
	acmeFile := filepath.Join(t.TempDir(), "acme.key")
	os.WriteFile(acmeFile, []byte(acmeAdmin), 0o600)
	cli := func(args ...string) (int, string, string) {
		return runCLI(t, "", append(append([]string{"skills"}, args[0], "--url", n.URL()), args[1:]...)...)
	}
	code, out, e := cli("push", "--admin-key-file", acmeFile, writePushDir(t, pushedGreet))
	if code != 0 || !strings.Contains(out, "pushed 2 files") || !strings.Contains(out, "skills: greet; flows: order") {
		t.Fatalf("push: %d %q %q", code, out, e)
	}
	ask := func(key, msg string) string {
		t.Helper()
		code, body := authedDo(t, "POST", n.URL()+"/v1/chat/completions", key, `{"messages":[{"role":"user","content":"`+msg+`"}]}`)
		if code != 200 {
			t.Fatalf("chat: %d %s", code, body)
		}
		var r struct {
			Model   string
			Choices []struct{ Message struct{ Content string } }
		}
		json.Unmarshal([]byte(body), &r)
		return r.Choices[0].Message.Content
	}
	if got := ask(acme, "greet Ann"); got != "pushed hello, Ann" {
		t.Fatalf("acme's skill: %q", got)
	}
	if got := ask(other, "greet Ann"); strings.Contains(got, "pushed hello") {
		t.Fatalf("another tenant runs acme's skill: %q", got)
	}
	// The flow, through the conversations API.
	code, body := authedDo(t, "POST", n.URL()+"/v1/conversations", acme, `{}`)
	var c convBody
	json.Unmarshal([]byte(body), &c)
	turn := func(text string) string {
		t.Helper()
		code, body := authedDo(t, "POST", n.URL()+"/v1/conversations/"+c.ID+"/messages", acme, `{"content":"`+text+`"}`)
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		var r struct{ Message struct{ Content string } }
		json.Unmarshal([]byte(body), &r)
		return r.Message.Content
	}
	if got := turn("where is my order"); got != "Which order? (digits)" {
		t.Fatalf("the flow's question: %q", got)
	}
	if got := turn("42"); got != "order 42 is on its way (pushed hello, 42)" {
		t.Fatalf("the flow's end: %q", got)
	}
	// --if-version: a push that expects another version is refused.
	if code, _, e := cli("push", "--admin-key-file", acmeFile, "--if-version", "0000000000000000", writePushDir(t, pushedGreet)); code != 1 || !strings.Contains(e, "409") || !strings.Contains(e, "not \"0000000000000000\"") {
		t.Fatalf("a stale --if-version: %d %s", code, e)
	}
	// A push that does not load: refused, naming the file and the line;
	// nothing of it kept (greet.js stays as it was).
	bad := filepath.Join(t.TempDir(), "broken.js")
	os.WriteFile(bad, []byte("module.exports = {\n  name: 'broken',\n  handler: async () => {\n};\n"), 0o600)
	code, out, e = cli("push", "--admin-key-file", acmeFile, bad, writePushDir(t, strings.ReplaceAll(pushedGreet, "pushed hello", "changed")))
	if code != 1 || !strings.Contains(e, "broken.js") || !strings.Contains(e, "Line 4") {
		t.Fatalf("a broken skill: %d %q %q", code, out, e)
	}
	if got := ask(acme, "greet Bo"); got != "pushed hello, Bo" {
		t.Fatalf("after a refused push: %q", got)
	}
	code, body = authedDo(t, "POST", n.URL()+"/v1/admin/skills/files", acmeAdmin,
		`{"files":[{"path":"flows/bad.yaml","source":"flow: bad\nnodes:\n  - {id: t, type: trigger, with: {patterns: ['(?<=a)b']}}\n"}]}`)
	if code != 400 || !strings.Contains(body, `flows/bad.yaml:3: nodes[0] (t).with.patterns`) || !strings.Contains(body, `"param":"flows/bad.yaml"`) {
		t.Fatalf("a bad flow: %d %s", code, body)
	}
	code, body = authedDo(t, "PUT", n.URL()+"/v1/admin/skills/files/m.js", acmeAdmin,
		putBody("module.exports = {name: 'm', patterns: [/^m$/], models: {coder: 'nope/nope'}, handler: async () => 'm'};\n"))
	if code != 400 || !strings.Contains(body, `m.js: models: coder: \"nope/nope\" is not a model the router knows`) {
		t.Fatalf("an unknown model: %d %s", code, body)
	}
	code, body = authedDo(t, "POST", n.URL()+"/v1/admin/skills/files", acmeAdmin, `{"files":[{"path":"../x.js","source":"x"}]}`)
	if code != 400 || !strings.Contains(body, "a file's name is 1 to 64") {
		t.Fatalf("a bad path: %d %s", code, body)
	}
	// Who may push: a tenant's admin its own; the operator any tenant's;
	// a plain key none.
	if code, _, e := cli("push", "--admin-key-file", acmeFile, "--tenant", "other", writePushDir(t, pushedGreet)); code != 1 || !strings.Contains(e, "only its own tenant") {
		t.Fatalf("acme's admin for other: %d %s", code, e)
	}
	if code, body := authedDo(t, "PUT", n.URL()+"/v1/admin/skills/files/x.js", acme, putBody(skillJSText("x"))); code != 403 {
		t.Fatalf("a chat key pushes: %d %s", code, body)
	}
	if code, body := authedDo(t, "PUT", n.URL()+"/v1/admin/skills/files/hey.js?tenant=other", op, putBody(skillJSText("hey"))); code != 200 || !strings.Contains(body, `"skills":["hey"]`) {
		t.Fatalf("the operator's PUT for other: %d %s", code, body)
	}
	if got := ask(other, "hey"); got != "pushed hey" {
		t.Fatalf("other's own skill: %q", got)
	}
	if got := ask(acme, "hey"); got == "pushed hey" {
		t.Fatal("acme runs other's skill")
	}
	// A pushed skill that exports tool: is offered to its tenant's turns
	// (the simulator calls it), not to another tenant's.
	if code, body := authedDo(t, "PUT", n.URL()+"/v1/admin/skills/files/weather.js?tenant=other", op, putBody(weatherTool)); code != 200 {
		t.Fatalf("PUT weather: %d %s", code, body)
	}
	if got := ask(other, "what is the weather in Paris?"); !strings.Contains(got, "weather returned sunny in ") {
		t.Fatalf("other's tool: %q", got)
	}
	if got := ask(acme, "what is the weather in Paris?"); strings.Contains(got, "weather returned") {
		t.Fatalf("acme is offered other's tool: %q", got)
	}
	if code, body := authedDo(t, "DELETE", n.URL()+"/v1/admin/skills/files/weather.js?tenant=other", op, ""); code != 200 {
		t.Fatalf("DELETE weather: %d %s", code, body)
	}
	// A tenant's own intents file (in place of the workspace's for its
	// turns) and a skill selected by one of its intents.
	intents := "intents:\n  - name: secret\n    rules: ['(?i)\\bplugh\\b']\n    examples: [plugh please, say plugh]\n"
	magic := "module.exports = {name: 'magic', intent: 'secret', handler: async () => 'pushed magic'};\n"
	pb, _ := json.Marshal(map[string]any{"tenant": "other", "files": []map[string]string{{"path": "intents.yaml", "source": intents}, {"path": "magic.js", "source": magic}}})
	code, body = authedDo(t, "POST", n.URL()+"/v1/admin/skills/files", op, string(pb))
	if code != 200 || !strings.Contains(body, `"skills":["hey","magic"]`) {
		t.Fatalf("push intents: %d %s", code, body)
	}
	if got := ask(other, "xyzzy and plugh"); got != "pushed magic" {
		t.Fatalf("other's intent: %q", got)
	}
	if got := ask(acme, "xyzzy and plugh"); got == "pushed magic" {
		t.Fatal("acme runs other's intent skill")
	}
	code, body = authedDo(t, "PUT", n.URL()+"/v1/admin/skills/files/intents.yaml?tenant=other", op, putBody("intents:\n  - name: Bad Name\n"))
	if code != 400 || !strings.Contains(body, "intents.yaml:2") || !strings.Contains(body, `"param":"intents.yaml"`) {
		t.Fatalf("a bad intents file: %d %s", code, body)
	}
	code, body = authedDo(t, "POST", n.URL()+"/v1/admin/skills/files", op, `{"tenant":"other","remove":["intents.yaml","magic.js"]}`)
	if code != 200 {
		t.Fatalf("rm intents: %d %s", code, body)
	}
	if code, body := authedGet(t, n.URL()+"/v1/admin/skills/files/hey.js?tenant=other", op); code != 200 || !strings.Contains(body, `"source":"module.exports`) {
		t.Fatalf("GET one: %d %s", code, body)
	}
	code, out, e = cli("files", "--admin-key-file", acmeFile)
	if code != 0 || !strings.Contains(out, "flows/order.yaml") || !strings.Contains(out, "greet.js") || !strings.Contains(out, "2 files") {
		t.Fatalf("files: %d %q %q", code, out, e)
	}
	pulled := t.TempDir()
	if code, out, e := cli("pull", "--admin-key-file", acmeFile, pulled); code != 0 || !strings.Contains(out, "pulled 2 files") {
		t.Fatalf("pull: %d %q %q", code, out, e)
	}
	if b, _ := os.ReadFile(filepath.Join(pulled, "flows", "order.yaml")); string(b) != pushedFlow {
		t.Fatalf("pulled flow: %q", b)
	}
	// A flow's skill node needs its skill: removing greet.js alone is
	// refused; with the flow it goes.
	if code, _, e := cli("rm", "--admin-key-file", acmeFile, "greet.js"); code != 1 || !strings.Contains(e, `no skill "greet"`) {
		t.Fatalf("rm the flow's skill: %d %s", code, e)
	}
	if code, out, e := cli("rm", "--admin-key-file", acmeFile, "greet.js", "flows/order.yaml"); code != 0 || !strings.Contains(out, "0 files left") {
		t.Fatalf("rm: %d %q %q", code, out, e)
	}
	if got := ask(acme, "greet Ann"); strings.Contains(got, "pushed hello") {
		t.Fatalf("after rm: %q", got)
	}
	if code, body := authedDo(t, "DELETE", n.URL()+"/v1/admin/skills/files/hey.js?tenant=other", op, ""); code != 200 || !strings.Contains(body, `"version":""`) {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, body := authedDo(t, "DELETE", n.URL()+"/v1/admin/skills/files/hey.js?tenant=other", op, ""); code != 404 {
		t.Fatalf("DELETE again: %d %s", code, body)
	}
}

// A tenant deleted loses its pushed files (auth's sweep of dead spaces,
// on every node); made again under the same id (a new incarnation, a new
// space) it starts with none.
func TestSkillPushTenantDeleted(t *testing.T) {
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	opBytes, _ := os.ReadFile(filepath.Join(ws, "admin.key"))
	op := strings.TrimSpace(string(opBytes))
	path := filepath.Join(ws, "moltbot.yaml")
	os.WriteFile(path, []byte(`server: {host: 127.0.0.1, port: 0, shutdown_timeout: 2s}
log: {level: error}
auth: {enabled: true}
providers: [{name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 4}}]
models: {primary: sim/sim}
skills: {worker: `+bin+`}
`), 0o600)
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: ws}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	waitReady(t, n.URL())
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/tenants", op, `{"id":"gone"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := authedDo(t, "PUT", n.URL()+"/v1/admin/skills/files/hey.js?tenant=gone", op, putBody(skillJSText("hey"))); code != 200 {
		t.Fatalf("push: %d %s", code, body)
	}
	spaces := n.skills.files.Spaces()
	if len(spaces) != 1 || !strings.HasPrefix(spaces[0], "gone:") {
		t.Fatalf("spaces %v", spaces)
	}
	if code, body := authedDo(t, "DELETE", n.URL()+"/v1/admin/tenants/gone", op, ""); code != 200 && code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	testutil.Eventually(t, 10*time.Second, "the dead tenant's files swept", func() bool { return !n.skills.files.Any() })
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/tenants", op, `{"id":"gone"}`); code != 201 {
		t.Fatalf("create again: %d %s", code, body)
	}
	if code, body := authedGet(t, n.URL()+"/v1/admin/skills/files?tenant=gone", op); code != 200 || !strings.Contains(body, `"files":[]`) {
		t.Fatalf("the new tenant's files: %d %s", code, body)
	}
}

// putBody is a PUT /v1/admin/skills/files/{path} body.
func putBody(src string) string {
	b, _ := json.Marshal(map[string]string{"source": src})
	return string(b)
}

func skillJSText(name string) string {
	return "module.exports = {name: '" + name + "', patterns: [/^" + name + "$/], handler: async () => 'pushed " + name + "'};\n"
}

// What `moltbot skills push` reads: a directory laid out as skills/ (its
// *.js and intents.yaml, flows/*.yaml; nothing else), files by their
// names; a name a push cannot take is refused before anything is sent.
func TestReadSkillFiles(t *testing.T) {
	dir := writePushDir(t, pushedGreet)
	os.WriteFile(filepath.Join(dir, "intents.yaml"), []byte("intents: []\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "flows", ".draft.yaml"), []byte("x"), 0o600)
	files, err := readSkillFiles([]string{dir})
	var got []string
	for _, f := range files {
		got = append(got, f.Path)
	}
	if err != nil || strings.Join(got, ",") != "greet.js,intents.yaml,flows/order.yaml" {
		t.Fatalf("%v %v", err, got)
	}
	one := filepath.Join(t.TempDir(), "refund.yml")
	os.WriteFile(one, []byte("x"), 0o600)
	if files, err := readSkillFiles([]string{one, filepath.Join(dir, "intents.yaml")}); err != nil || files[0].Path != "flows/refund.yml" || files[1].Path != "intents.yaml" {
		t.Fatalf("files: %v %+v", err, files)
	}
	bad := filepath.Join(t.TempDir(), "a b.js")
	os.WriteFile(bad, []byte("x"), 0o600)
	if _, err := readSkillFiles([]string{dir, bad}); err == nil || !strings.Contains(err.Error(), "a file's name") {
		t.Fatalf("a bad name: %v", err)
	}
	if _, err := readSkillFiles([]string{dir, filepath.Join(dir, "greet.js")}); err == nil || !strings.Contains(err.Error(), "would both be greet.js") {
		t.Fatalf("twice: %v", err)
	}
	if _, err := readSkillFiles([]string{t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no skill files") {
		t.Fatalf("empty: %v", err)
	}
}
