package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/inference/sim"
)

// recorder is an OpenAI-compatible simulator that keeps the messages of
// every chat request it gets.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	msgs [][]struct{ Role, Content string }
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	s := sim.NewServer(fastSim())
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v1/chat/completions" {
			b, _ := io.ReadAll(req.Body)
			var body struct {
				Messages []struct{ Role, Content string }
			}
			json.Unmarshal(b, &body)
			r.mu.Lock()
			r.msgs = append(r.msgs, body.Messages)
			r.mu.Unlock()
			req.Body = io.NopCloser(strings.NewReader(string(b)))
		}
		s.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// last is the messages of the last request, and how many there were.
func (r *recorder) last() ([]struct{ Role, Content string }, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		return nil, 0
	}
	return r.msgs[len(r.msgs)-1], len(r.msgs)
}

const persona = "You are Molly, ACME's support bot."

// botsNode starts a node with auth on over ws (made by init: its operator
// key is in admin.key), two upstreams (main, the node's chain; botm, the
// support bot's) and bots of two tenants.
func botsNode(t *testing.T, ws string, main, botm *recorder) *Node {
	t.Helper()
	yaml := fmt.Sprintf(`server: {host: 127.0.0.1, port: 0, shutdown_timeout: 2s}
log: {level: error}
auth: {enabled: true}
providers:
  - {name: main, type: openai, url: "%s/v1"}
  - {name: botm, type: openai, url: "%s/v1"}
models: {primary: main/m, health_interval: 1h}
tenants: [{id: acme}, {id: other}]
bots:
  - name: support
    tenant: acme
    system: %q
    models: {primary: botm/m}
    intents: [refund, human]
  - {name: sales, tenant: acme, system: "You sell."}
  - {name: rival, tenant: other}
`, main.srv.URL, botm.srv.URL, persona)
	path := filepath.Join(ws, "moltbot.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: ws}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, n.URL())
	return n
}

// makeKey creates a key through the admin API with the operator's key.
func makeKey(t *testing.T, n *Node, op, body string) (int, string) {
	t.Helper()
	code, out := authedDo(t, "POST", n.URL()+"/v1/admin/keys", op, body)
	if code != 201 {
		return code, out
	}
	var k struct{ Key string }
	json.Unmarshal([]byte(out), &k)
	return code, k.Key
}

// A key bound to a bot speaks as it, through the HTTP API against the
// simulator: the bot's persona is the system prompt of its completions and
// of the conversations it creates, its chain serves them, a model outside
// it is refused, it sees only its bot's conversations, and a conversation
// keeps its bot across a restart.
func TestBotsThroughNode(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	opBytes, err := os.ReadFile(filepath.Join(ws, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(opBytes))
	main, botm := newRecorder(t), newRecorder(t)
	n := botsNode(t, ws, main, botm)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			n.Shutdown(context.Background())
		}
	})

	// Binding: through the API and the CLI; another tenant's bot, an
	// unknown bot and a bot's admin key are refused.
	code, support := makeKey(t, n, op, `{"tenant":"acme","name":"widget","bot":"support"}`)
	if code != 201 || !strings.HasPrefix(support, "mb_") {
		t.Fatalf("a key of bot support: %d %s", code, support)
	}
	for body, want := range map[string]string{
		`{"tenant":"acme","bot":"rival"}`:                   `bot \"rival\" is not configured for tenant \"acme\"`,
		`{"tenant":"acme","bot":"nope"}`:                    `bot \"nope\" is not configured`,
		`{"tenant":"acme","bot":"support","scope":"admin"}`: "a key bound to a bot has the chat scope",
	} {
		if code, out := makeKey(t, n, op, body); code != 400 || !strings.Contains(out, want) {
			t.Errorf("%s: %d %s (want 400 with %s)", body, code, out, want)
		}
	}
	cli := []string{"--workspace", ws, "--url", n.URL()}
	code, sales, e := runCLI(t, "", append([]string{"keys", "create", "--tenant", "acme", "--bot", "sales"}, cli...)...)
	sales = strings.TrimSpace(sales)
	if code != 0 || !strings.HasPrefix(sales, "mb_") || !strings.Contains(e, "bot sales") {
		t.Fatalf("keys create --bot sales: %d %q %s", code, sales, e)
	}
	if code, _, e := runCLI(t, "", append([]string{"keys", "create", "--tenant", "acme", "--bot", "rival"}, cli...)...); code == 0 || !strings.Contains(e, `bot "rival" is not configured for tenant "acme"`) {
		t.Errorf("keys create --bot of another tenant: %d %s", code, e)
	}
	if code, out, e := runCLI(t, "", append([]string{"keys", "list", "--tenant", "acme"}, cli...)...); code != 0 || !strings.Contains(out, "BOT") || !strings.Contains(out, "support") || !strings.Contains(out, "sales") {
		t.Errorf("keys list: %d %s %s", code, out, e)
	}
	_, acmeAdmin := makeKey(t, n, op, `{"tenant":"acme","scope":"admin"}`)

	// A stateless completion: the persona first, on the bot's chain.
	code, out := authedDo(t, "POST", n.URL()+"/v1/chat/completions", support, `{"messages":[{"role":"user","content":"hello"}]}`)
	msgs, calls := botm.last()
	if code != 200 || !strings.Contains(out, `"model":"botm/m"`) || calls != 1 || len(msgs) != 2 || msgs[0].Role != "system" || msgs[0].Content != persona {
		t.Fatalf("completion: %d %s; botm got %d calls, last %+v", code, out, calls, msgs)
	}
	if _, k := main.last(); k != 0 {
		t.Errorf("the node's chain was asked %d times for the bot", k)
	}
	for _, model := range []string{"main/m", "m"} {
		code, out = authedDo(t, "POST", n.URL()+"/v1/chat/completions", support, `{"model":"`+model+`","messages":[{"role":"user","content":"hello"}]}`)
		if code != 403 || !strings.Contains(out, `is not in the chain of bot \"support\" (botm/m)`) {
			t.Errorf("model %s outside the bot's chain: %d %s", model, code, out)
		}
	}
	if code, out = authedDo(t, "POST", n.URL()+"/v1/chat/completions", support, `{"model":"botm/m","messages":[{"role":"user","content":"hello"}]}`); code != 200 {
		t.Errorf("the bot's own model: %d %s", code, out)
	}
	// /v1/models: what the bot may ask for.
	if code, out = authedGet(t, n.URL()+"/v1/models", support); code != 200 || !strings.Contains(out, `"botm/m"`) || strings.Contains(out, `"main/m"`) {
		t.Errorf("models of the bot: %d %s", code, out)
	}

	// A conversation: the bot's, with its persona; a system of its own is refused.
	if code, out = authedDo(t, "POST", n.URL()+"/v1/conversations", support, `{"system":"be someone else"}`); code != 400 || !strings.Contains(out, "persona") {
		t.Errorf("a bot's conversation with a system: %d %s", code, out)
	}
	code, out = authedDo(t, "POST", n.URL()+"/v1/conversations", support, `{"id":"c1"}`)
	if code != 201 || !strings.Contains(out, `"bot":"support"`) || !strings.Contains(out, `"system":"`+persona+`"`) {
		t.Fatalf("create: %d %s", code, out)
	}
	code, out = authedDo(t, "POST", n.URL()+"/v1/conversations/c1/messages", support, `{"content":"where is my order?"}`)
	msgs, calls = botm.last()
	if code != 200 || calls != 3 || len(msgs) != 2 || msgs[0].Content != persona || msgs[1].Content != "where is my order?" {
		t.Fatalf("turn: %d %s; botm: %d calls, last %+v", code, out, calls, msgs)
	}
	// Another bot of the tenant does not see it; the tenant's admin does.
	for _, do := range []struct{ method, path, body string }{{"GET", "", ""}, {"POST", "/messages", `{"content":"hi"}`}, {"DELETE", "", ""}} {
		if code, out := authedDo(t, do.method, n.URL()+"/v1/conversations/c1"+do.path, sales, do.body); code != 404 {
			t.Errorf("%s by another bot: %d %s", do.method, code, out)
		}
	}
	if code, out := authedDo(t, "GET", n.URL()+"/v1/conversations/c1", acmeAdmin, ""); code != 200 || !strings.Contains(out, `"bot":"support"`) {
		t.Errorf("the tenant's admin: %d %s", code, out)
	}
	// The tenant's admin continues it: as the conversation's bot.
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations/c1/messages", acmeAdmin, `{"content":"and now?"}`); code != 200 {
		t.Errorf("the admin's turn: %d %s", code, out)
	}
	if msgs, calls = botm.last(); calls != 4 || msgs[0].Content != persona {
		t.Errorf("the admin's turn in the bot's conversation: %d calls, %+v", calls, msgs)
	}
	// The sales bot's conversation: no chain of its own (the node's).
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations", sales, `{"id":"s1"}`); code != 201 || !strings.Contains(out, `"system":"You sell."`) {
		t.Fatalf("sales create: %d %s", code, out)
	}
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations/s1/messages", sales, `{"content":"price?"}`); code != 200 || !strings.Contains(out, "main/m") {
		t.Errorf("sales turn: %d %s", code, out)
	}
	if msgs, _ := main.last(); len(msgs) == 0 || msgs[0].Content != "You sell." {
		t.Errorf("sales on the node's chain: %+v", msgs)
	}

	// bots list and show.
	code, out, e = runCLI(t, "", append([]string{"bots", "list"}, cli...)...)
	for _, want := range []string{"support", "sales", "rival", "acme", "other", "botm/m", "(the node's chain)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("bots list: want %q in %d %s %s", want, code, out, e)
		}
	}
	if code, out, e := runCLI(t, "", append([]string{"bots", "show", "support"}, cli...)...); code != 0 || !strings.Contains(out, persona) || !strings.Contains(out, "botm/m") ||
		!strings.Contains(out, "intents:         refund, human") {
		t.Errorf("bots show: %d %s %s", code, out, e)
	}
	if code, out := authedGet(t, n.URL()+"/v1/admin/bots", acmeAdmin); code != 200 || !strings.Contains(out, "support") || strings.Contains(out, "rival") {
		t.Errorf("a tenant admin's bots: %d %s", code, out)
	}
	if code, _ := authedGet(t, n.URL()+"/v1/admin/bots", support); code != 403 {
		t.Errorf("a bot's key lists bots: %d", code)
	}

	// A restart: the conversation is still the bot's.
	n.Shutdown(context.Background())
	stopped = true
	n = botsNode(t, ws, main, botm)
	defer n.Shutdown(context.Background())
	if code, out := authedDo(t, "GET", n.URL()+"/v1/conversations/c1", support, ""); code != 200 || !strings.Contains(out, `"bot":"support"`) {
		t.Fatalf("after a restart: %d %s", code, out)
	}
	if code, _ := authedDo(t, "GET", n.URL()+"/v1/conversations/c1", sales, ""); code != 404 {
		t.Errorf("another bot after a restart: %d", code)
	}
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations/c1/messages", support, `{"content":"still there?"}`); code != 200 || !strings.Contains(out, "botm/m") {
		t.Errorf("a turn after the restart: %d %s", code, out)
	}
	if msgs, _ := botm.last(); len(msgs) == 0 || msgs[0].Content != persona {
		t.Errorf("after the restart: %+v", msgs)
	}
}

// A reload (SIGHUP, moltbot keys reload) reads bots: again: a new persona
// starts new conversations (an existing one keeps the persona it began
// with), a new chain serves every conversation of the bot from its next
// turn, and a key whose bot is gone is refused.
func TestBotsReload(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	opBytes, _ := os.ReadFile(filepath.Join(ws, "admin.key"))
	op := strings.TrimSpace(string(opBytes))
	main, botm := newRecorder(t), newRecorder(t)
	n := botsNode(t, ws, main, botm)
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	_, support := makeKey(t, n, op, `{"tenant":"acme","bot":"support"}`)
	_, sales := makeKey(t, n, op, `{"tenant":"acme","bot":"sales"}`)
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations", support, `{"id":"old"}`); code != 201 {
		t.Fatalf("create: %d %s", code, out)
	}
	yaml := fmt.Sprintf(`server: {host: 127.0.0.1, port: 0, shutdown_timeout: 2s}
log: {level: error}
auth: {enabled: true}
providers:
  - {name: main, type: openai, url: "%s/v1"}
  - {name: botm, type: openai, url: "%s/v1"}
models: {primary: main/m, health_interval: 1h}
tenants: [{id: acme}, {id: other}]
bots:
  - {name: support, tenant: acme, system: "A new persona.", models: {primary: main/m}}
`, main.srv.URL, botm.srv.URL)
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations", support, `{"id":"new"}`); code != 201 || !strings.Contains(out, `"system":"A new persona."`) {
		t.Errorf("a conversation after the reload: %d %s", code, out)
	}
	_, before := botm.last()
	if code, out := authedDo(t, "POST", n.URL()+"/v1/conversations/old/messages", support, `{"content":"hi"}`); code != 200 || !strings.Contains(out, "main/m") {
		t.Errorf("the old conversation on the bot's new chain: %d %s", code, out)
	}
	if msgs, _ := main.last(); len(msgs) == 0 || msgs[0].Content != persona {
		t.Errorf("the old conversation keeps its persona: %+v", msgs)
	}
	if _, after := botm.last(); after != before {
		t.Errorf("the bot's old chain was asked after the reload")
	}
	code, out := authedDo(t, "POST", n.URL()+"/v1/chat/completions", sales, `{"messages":[{"role":"user","content":"hi"}]}`)
	if code != 403 || !strings.Contains(out, `bound to bot \"sales\", which is not configured`) {
		t.Errorf("a key of a bot the reload removed: %d %s", code, out)
	}
}

// README's bots: example is a valid config (with the providers and the
// tenant it names) and gives the bot it describes.
func TestBotsREADMEExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Bots\n")
	if i < 0 {
		t.Fatal("README has no Bots section")
	}
	s = s[i:]
	start := strings.Index(s, "```yaml\n") + len("```yaml\n")
	block := s[start : start+strings.Index(s[start:], "```")]
	yaml := `providers:
  - {name: local, type: ollama, url: "http://127.0.0.1:11434"}
  - {name: cloud, type: openai, url: "https://api.example.com/v1"}
models: {primary: local/llama3.2}
tenants: [{id: acme}]
` + block
	cfg, err := configs.Parse("README.md", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("README's bots: %v\n%s", err, yaml)
	}
	bots := cfg.BotProfiles()
	if len(bots) != 1 || bots[0].Name != "support" || bots[0].Tenant != "acme" || bots[0].ChainString() != "local/llama3.2, cloud/gpt-4o-mini" ||
		!bots[0].HasSkill("code-assistant") || bots[0].System == "" {
		t.Fatalf("README's bot: %+v", bots)
	}
}
