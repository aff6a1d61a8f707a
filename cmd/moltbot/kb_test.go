package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

// A node with an embedding chain (the simulator's embeddings): documents
// added with moltbot kb add get vectors in the background, and a turn's
// search fuses them with BM25 and still cites its sources.
func TestKBNodeWithEmbeddings(t *testing.T) {
	ws := t.TempDir()
	port := testutil.FreePort(t)
	n, _ := startNodeIn(t, ws, fmt.Sprintf(`server: {host: 127.0.0.1, port: %d}
providers:
  - {name: sim, type: sim, sim: {ttft: 1ms, itl: 0s, tokens: 4}}
models:
  primary: sim/sim
  embeddings: {primary: sim/sim}
skills: {kb: {default: [support], top_k: 3}}
`, port), slog.LevelWarn)
	docs := filepath.Join("..", "..", "examples", "kb", "lumen")
	if code, out, e := runCLI(t, "", "kb", "add", "--url", n.URL(), "support", docs); code != 0 {
		t.Fatalf("kb add: %d %s %s", code, out, e)
	}
	testutil.Eventually(t, 20*time.Second, "every chunk embedded", func() bool {
		resp, err := http.Get(n.URL() + "/v1/admin/kb/support")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var info struct {
			Chunks, Vectors int
			Model           string `json:"embedding_model"`
		}
		json.NewDecoder(resp.Body).Decode(&info)
		return info.Chunks > 0 && info.Vectors == info.Chunks && info.Model == "sim/sim"
	})
	code, body := post(t, n.URL()+"/v1/chat/completions", `{"model":"moltbot","messages":[{"role":"user","content":"怎么查物流"}]}`)
	var comp struct {
		Citations []struct{ Document string }
	}
	if code != 200 || json.Unmarshal(body, &comp) != nil || len(comp.Citations) != 3 {
		t.Fatalf("a completion: %d %s", code, body)
	}
	found := false
	for _, c := range comp.Citations {
		found = found || c.Document == "zh-配送.md"
	}
	if !found {
		t.Fatalf("the shipping document is not among the sources: %s", body)
	}
	if code, out, _ := runCLI(t, "", "kb", "list", "--url", n.URL()); code != 0 || !strings.Contains(out, "support") {
		t.Fatalf("kb list: %d %s", code, out)
	}
}

// A JavaScript skill's context.search reaches the node's knowledge
// bases, of the turn's tenant.
func TestKBSearchFromASkill(t *testing.T) {
	bin := buildSkillsWorker(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeSkill(t, ws, "ask.js", "module.exports = {name: 'ask', patterns: [/^ask: (.+)$/], handler: async (c) => {\n"+
		"  const r = await c.search('support', c.matches[1], 1);\n"+
		"  return r.length ? `${r[0].document} > ${r[0].heading}` : 'nothing' }};\n")
	n, _ := startSkillsNodeWith(t, ws, bin, "timeout: 30s")
	if code, out, e := runCLI(t, "", "kb", "add", "--url", n.URL(), "support", filepath.Join("..", "..", "examples", "kb", "lumen")); code != 0 {
		t.Fatalf("kb add: %d %s %s", code, out, e)
	}
	if _, reply := askNode(t, n, "ask: 网关怎么恢复出厂设置"); reply != "zh-保修.md > 保修政策 > 智能网关 H1 常见问题" {
		t.Fatalf("reply %q", reply)
	}
}

// moltbot kb add checks every file before it sends anything, and says
// what is wrong; kb rm and search check their arguments.
func TestKBAddRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.md", []byte("# ok\n\ntext"))
	bin := write("bin.md", []byte{0xff, 0xfe, 0})
	big := write("big.md", []byte(strings.Repeat("x", 512<<10+1)))
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o700)
	write("a/same.md", []byte("a"))
	write("b/same.md", []byte("b"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"kb", "add", "--url", "http://127.0.0.1:1", "bad/name", good}, `knowledge base name "bad/name"`},
		{[]string{"kb", "add", "--url", "http://127.0.0.1:1", "kb"}, "usage: moltbot kb add KB PATH..."},
		{[]string{"kb", "add", "--url", "http://127.0.0.1:1", "kb", filepath.Join(dir, "nope.md")}, "nope.md: no such file"},
		{[]string{"kb", "add", "--url", "http://127.0.0.1:1", "kb", bin}, "bin.md is not UTF-8 text"},
		{[]string{"kb", "add", "--url", "http://127.0.0.1:1", "kb", big}, "a document is at most 524288 bytes: split it"},
		{[]string{"kb", "add", "--url", "http://127.0.0.1:1", "kb", empty}, "no documents"},
		{[]string{"kb", "add", "--url", "http://127.0.0.1:1", "kb", filepath.Join(dir, "a", "same.md"), filepath.Join(dir, "b", "same.md")}, `would both be document "same.md"`},
		{[]string{"kb", "rm", "--url", "http://127.0.0.1:1", "kb"}, "usage: moltbot kb rm KB DOCUMENT, or moltbot kb rm KB --all"},
		{[]string{"kb", "search", "--url", "http://127.0.0.1:1", "kb"}, "usage: moltbot kb search KB QUERY"},
	} {
		code, _, stderr := runCLI(t, "", tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// Nothing wrong: the node unreachable is a runtime failure (1), after the checks.
	if code, _, stderr := runCLI(t, "", "kb", "add", "--url", "http://127.0.0.1:1", "kb", good); code != 1 || !strings.Contains(stderr, "cannot reach moltbot") {
		t.Errorf("unreachable: %d %q", code, stderr)
	}
}

// Per tenant and per bot, with auth: a tenant's admin fills its own
// knowledge base (and no other tenant's); a bot that names it answers
// with citations, a bot that does not answers without; a reload that
// takes the base from the bot takes the sources from its replies.
func TestKBBotsThroughNode(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	opBytes, _ := os.ReadFile(filepath.Join(ws, "admin.key"))
	op := strings.TrimSpace(string(opBytes))
	conf := func(helperKBs string) string {
		return `server: {host: 127.0.0.1, port: 0, shutdown_timeout: 2s}
log: {level: error}
auth: {enabled: true}
providers: [{name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 4}}]
models: {primary: sim/sim}
tenants: [{id: acme}, {id: other}]
bots:
  - {name: helper, tenant: acme, knowledge_bases: [` + helperKBs + `]}
  - {name: plain, tenant: acme}
`
	}
	path := filepath.Join(ws, "moltbot.yaml")
	os.WriteFile(path, []byte(conf("help")), 0o600)
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
	_, acmeAdmin := makeKey(t, n, op, `{"tenant":"acme","name":"adm","scope":"admin"}`)
	_, helper := makeKey(t, n, op, `{"tenant":"acme","name":"w1","bot":"helper"}`)
	_, plain := makeKey(t, n, op, `{"tenant":"acme","name":"w2","bot":"plain"}`)
	keyFile := filepath.Join(t.TempDir(), "acme.key")
	os.WriteFile(keyFile, []byte(acmeAdmin), 0o600)
	docs := filepath.Join("..", "..", "examples", "kb", "lumen")
	if code, out, e := runCLI(t, "", "kb", "add", "--url", n.URL(), "--admin-key-file", keyFile, "help", docs); code != 0 {
		t.Fatalf("kb add by acme's admin: %d %s %s", code, out, e)
	}
	if code, _, e := runCLI(t, "", "kb", "add", "--url", n.URL(), "--admin-key-file", keyFile, "--tenant", "other", "help", docs); code != 1 || !strings.Contains(e, "only its own tenant") {
		t.Fatalf("acme's admin adds to another tenant: %d %s", code, e)
	}
	if code, out, _ := runCLI(t, "", "kb", "list", "--url", n.URL(), "--admin-key-file", filepath.Join(ws, "admin.key"), "--tenant", "acme"); code != 0 || !strings.Contains(out, "help ") {
		t.Fatalf("the operator lists acme's bases: %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "", "kb", "list", "--url", n.URL(), "--admin-key-file", filepath.Join(ws, "admin.key")); code != 0 || strings.Contains(out, "help ") {
		t.Fatalf("the operator's own tenant holds acme's bases: %d %s", code, out)
	}
	ask := func(key string) string {
		code, body := authedDo(t, "POST", n.URL()+"/v1/chat/completions", key, `{"messages":[{"role":"user","content":"怎么查物流"}]}`)
		if code != 200 {
			t.Fatalf("chat: %d %s", code, body)
		}
		return body
	}
	if body := ask(helper); !strings.Contains(body, `"citations":[{"n":1,"kb":"help","document":"zh-配送.md"`) {
		t.Fatalf("the bot that names the base: %s", body)
	}
	if body := ask(plain); strings.Contains(body, "citations") {
		t.Fatalf("a bot that names no base cites: %s", body)
	}
	// skills.kb reloads too: a question the documents do not answer gets
	// the no_answer text the file says now.
	miss := func() string {
		code, body := authedDo(t, "POST", n.URL()+"/v1/chat/completions", helper, `{"messages":[{"role":"user","content":"what is the airspeed velocity of an unladen swallow"}]}`)
		if code != 200 {
			t.Fatalf("chat: %d %s", code, body)
		}
		return body
	}
	if body := miss(); !strings.Contains(body, "could not find an answer") {
		t.Fatalf("a miss before the reload: %s", body)
	}
	os.WriteFile(path, []byte(conf("help")+"skills: {kb: {no_answer: \"Nothing in our documents; ask a person.\"}}\n"), 0o600)
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if body := miss(); !strings.Contains(body, "Nothing in our documents; ask a person.") {
		t.Fatalf("a miss after skills.kb.no_answer was reloaded: %s", body)
	}
	os.WriteFile(path, []byte(conf("")), 0o600)
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if body := ask(helper); strings.Contains(body, "citations") {
		t.Fatalf("after the reload took the base from the bot: %s", body)
	}
}
