package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
)

const widgetNodeConfig = `server: {host: 127.0.0.1, port: 0, shutdown_timeout: 2s}
log: {level: error}
auth: {enabled: true}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 5}}
models: {primary: sim/sim}
handoff: {enabled: true, queue_timeout: 1h}
tenants: [{id: acme}]
bots:
  - {name: support, tenant: acme, system: "You help Acme's customers."}
`

// widgetEvent is one server-sent event.
type widgetEvent struct{ kind, data string }

func readWidgetEvents(r io.Reader, out chan<- widgetEvent) {
	defer close(out)
	sc := bufio.NewScanner(r)
	var ev widgetEvent
	for sc.Scan() {
		switch line := sc.Text(); {
		case strings.HasPrefix(line, "event: "):
			ev.kind = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[6:]
		case line == "":
			if ev.kind != "" {
				out <- ev
			}
			ev = widgetEvent{}
		}
	}
}

// widgetNode starts a node of widgetNodeConfig and serves its widget
// channel "support" (the type cmd registers, made with the node's chat
// service) as the core mounts it; it returns the node, the channel's base
// URL and an agent key of acme.
func widgetNode(t *testing.T) (*Node, string, string) {
	t.Helper()
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	n := startHandoffNode(t, ws, widgetNodeConfig, &toyChannel{})
	opb, _ := os.ReadFile(filepath.Join(ws, adminKeyFile))
	op := strings.TrimSpace(string(opb))
	code, agent := makeKey(t, n, op, `{"scope":"agent","name":"alice","tenant":"acme"}`)
	if code != 201 {
		t.Fatalf("agent key: %d %s", code, agent)
	}
	var typ *channels.Type
	for _, ct := range n.channelTypes() {
		if ct.Name == "widget" {
			typ = &ct
		}
	}
	if typ == nil {
		t.Fatal("cmd registers no widget type")
	}
	cfg := channels.Config{Name: "support", Type: "widget", Bot: "support", Tenant: "acme", Conversations: channels.PerUser,
		Options: map[string]string{"publishable_key": widgetKey, "origins": widgetOrigin,
			"visitor_secret": strings.Repeat("s3cr3t-", 6), "title": "Acme", "greeting": "Hello from Acme."}}
	if err := typ.Check(cfg); err != nil {
		t.Fatal(err)
	}
	a, err := typ.New(cfg, &channeltest.Host{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/channels/support", a))
	t.Cleanup(srv.Close)
	return n, srv.URL + "/channels/support/", agent
}

const (
	widgetKey    = "pk_test_abcdefghijklmnopqrstuvwx"
	widgetOrigin = "https://acme.example"
)

// Issue 15's widget on a real node (the simulator as its model, auth on,
// hand-off on): the channel type cmd registers, made with the node's chat
// service and served as the core mounts it. A visitor's streamed turn
// runs as the bot of tenant acme; asking for a person queues the
// conversation (the stream says handoff); an agent of acme claims and
// answers through the admin API, and the reply reaches the visitor's open
// events stream and the history, marked as a person's.
func TestWidgetOnNode(t *testing.T) {
	n, base, agent := widgetNode(t)
	op := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(n.Workspace, adminKeyFile)))))
	api := base + "api/"
	do := func(ctx context.Context, method, path, tok, body string) *http.Response {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, api+path, rd)
		req.Header.Set("Origin", widgetOrigin)
		req.Header.Set("X-Widget-Key", widgetKey)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := do(ctx, "POST", "session", "", "{}")
	var s struct{ Token, Visitor string }
	json.NewDecoder(res.Body).Decode(&s)
	res.Body.Close()
	if res.StatusCode != 200 || s.Token == "" {
		t.Fatalf("session: %d", res.StatusCode)
	}
	say := func(text string) []widgetEvent {
		t.Helper()
		res := do(ctx, "POST", "messages", s.Token, `{"content":`+jsonString(text)+`}`)
		defer res.Body.Close()
		if res.StatusCode != 200 {
			b, _ := io.ReadAll(res.Body)
			t.Fatalf("%q: %d %s", text, res.StatusCode, b)
		}
		ch := make(chan widgetEvent, 64)
		go readWidgetEvents(res.Body, ch)
		var evs []widgetEvent
		for ev := range ch {
			evs = append(evs, ev)
		}
		return evs
	}
	evs := say("hello")
	if len(evs) < 2 || evs[0].kind != "token" || evs[len(evs)-1].kind != "done" || !strings.Contains(evs[len(evs)-1].data, `"finish_reason":"stop"`) {
		t.Fatalf("the bot's streamed answer: %+v", evs)
	}
	// The conversation is the bot's, in acme's space, the visitor's.
	code, body := authedDo(t, "GET", n.URL()+"/v1/conversations/widget:support:"+s.Visitor, op, "")
	if code != 404 {
		t.Fatalf("the operator (default tenant) reads acme's conversation: %d %s", code, body)
	}
	c, err := n.rt.Get(ctx, "acme", "widget:support:"+s.Visitor)
	if err != nil || c.Bot != "support" || c.User != "visitor:"+s.Visitor || c.System != "You help Acme's customers." {
		t.Fatalf("the visitor's conversation: %+v %v", c, err)
	}

	evs = say("human please")
	kinds := ""
	for _, ev := range evs {
		kinds += ev.kind + " "
	}
	if !strings.Contains(kinds, "handoff") || !strings.Contains(evs[len(evs)-1].data, `"finish_reason":"handoff"`) {
		t.Fatalf("asking for a person: %+v", evs)
	}
	res = do(ctx, "GET", "history", s.Token, "")
	hb, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(hb), `"handoff":"queue"`) {
		t.Fatalf("history while queued: %s", hb)
	}

	// The page follows the conversation once a person was asked for.
	res = do(ctx, "GET", "events", s.Token, "")
	if res.StatusCode != 200 {
		t.Fatalf("events: %d", res.StatusCode)
	}
	defer res.Body.Close()
	follow := make(chan widgetEvent, 64)
	go readWidgetEvents(res.Body, follow)
	if ev := <-follow; ev.kind != "subscribed" {
		t.Fatalf("first event: %+v", ev)
	}
	q := listQueue(t, n, agent)
	if len(q.Data) != 1 || q.Data[0].Conversation != "widget:support:"+s.Visitor {
		t.Fatalf("acme's queue: %+v", q)
	}
	id := q.Data[0].Conversation
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/claim", agent, `{"epoch":1}`); code != 200 {
		t.Fatalf("claim: %d %s", code, body)
	}
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/reply", agent, `{"epoch":2,"text":"Hi, Alice here. How can I help?"}`); code != 200 {
		t.Fatalf("reply: %d %s", code, body)
	}
	for {
		select {
		case ev, ok := <-follow:
			if !ok {
				t.Fatal("the events stream ended before the agent's reply")
			}
			if ev.kind == "message" && strings.Contains(ev.data, "Hi, Alice here.") {
				if !strings.Contains(ev.data, `"agent":true`) || strings.Contains(ev.data, "key:") {
					t.Fatalf("the agent's reply as the visitor sees it: %s", ev.data)
				}
				res = do(ctx, "GET", "history", s.Token, "")
				hb, _ = io.ReadAll(res.Body)
				res.Body.Close()
				if !strings.Contains(string(hb), "Hi, Alice here.") || !strings.Contains(string(hb), `"handoff":"agent"`) {
					t.Fatalf("history after the agent's reply: %s", hb)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("the agent's reply did not reach the events stream")
		}
	}
}

// widgetSpace answers a tenant made through the API with its incarnation,
// a config tenant with its id, and no space for a tenant that is not.
func TestWidgetTenantSpace(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	n := startHandoffNode(t, ws, widgetNodeConfig, &toyChannel{})
	opb, _ := os.ReadFile(filepath.Join(ws, adminKeyFile))
	op := strings.TrimSpace(string(opb))
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/tenants", op, `{"id":"made"}`); code != 201 && code != 200 {
		t.Fatalf("tenant: %d %s", code, body)
	}
	if s, err := n.widgetSpace("acme"); err != nil || s != "acme" {
		t.Errorf("acme: %q %v", s, err)
	}
	if s, err := n.widgetSpace("made"); err != nil || !strings.HasPrefix(s, "made:") {
		t.Errorf("made: %q %v", s, err)
	}
	if s, err := n.widgetSpace("default"); err != nil || s != "default" {
		t.Errorf("default: %q %v", s, err)
	}
	if _, err := n.widgetSpace("nobody"); err == nil {
		t.Error("a tenant that does not exist has a space")
	}
	if code, body := authedDo(t, "DELETE", n.URL()+"/v1/admin/tenants/made", op, ""); code != 200 && code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if _, err := n.widgetSpace("made"); err == nil {
		t.Error("a deleted tenant has a space")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The script in a DOM (test/widget/widget.mjs, jsdom) against the node:
// after the bot's streamed answer, the visitor asks for a person; the
// script then follows the conversation, and the agent's reply, sent
// through the admin API, appears in the panel as a person's, once.
func TestWidgetDOMHandoff(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the script is not run in a DOM")
	}
	dir, _ := filepath.Abs("../../test/widget")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jsdom")); err != nil {
		t.Skip("test/widget's npm packages are not installed (make widget-deps): the script is not run in a DOM")
	}
	n, base, agent := widgetNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "widget.mjs", base, widgetKey, widgetOrigin, "handoff")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	lines := bufio.NewScanner(out)
	lines.Buffer(make([]byte, 0, 64<<10), 1<<20)
	if !lines.Scan() || lines.Text() != `{"queued":true}` {
		t.Fatalf("the script: %q %v\n%s", lines.Text(), cmd.Wait(), stderr.String())
	}
	q := listQueue(t, n, agent)
	if len(q.Data) != 1 {
		t.Fatalf("acme's queue: %+v", q)
	}
	id := q.Data[0].Conversation
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/claim", agent, `{"epoch":1}`); code != 200 {
		t.Fatalf("claim: %d %s", code, body)
	}
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/reply", agent, `{"epoch":2,"text":"Alice here: I will check your order."}`); code != 200 {
		t.Fatalf("reply: %d %s", code, body)
	}
	if !lines.Scan() {
		t.Fatalf("the script ended: %v\n%s", cmd.Wait(), stderr.String())
	}
	var got struct {
		Title   string
		Bubbles []struct{ Cls, Text string }
	}
	if err := json.Unmarshal(lines.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, lines.Text())
	}
	var texts []string
	agentReplies := 0
	for _, b := range got.Bubbles {
		texts = append(texts, strings.TrimSpace(b.Cls)+": "+b.Text)
		if strings.Contains(b.Cls, "mb-agent") {
			agentReplies++
		}
	}
	all := strings.Join(texts, "\n")
	if got.Title != "Acme" || agentReplies != 1 || !strings.Contains(all, "mb-msg mb-bot mb-agent: Alice here: I will check your order.") ||
		strings.Count(all, "mb-user: human please") != 1 || strings.Count(all, "mb-user: hello there") != 1 || len(got.Bubbles) != 6 {
		t.Fatalf("the panel shows:\n%s", all)
	}
}

// serveWidget serves a widget channel of node n (the type cmd registers)
// as the core mounts it and returns its base URL.
func serveWidget(t *testing.T, n *Node, cfg channels.Config) string {
	t.Helper()
	for _, ct := range n.channelTypes() {
		if ct.Name != "widget" {
			continue
		}
		if err := ct.Check(cfg); err != nil {
			t.Fatal(err)
		}
		a, err := ct.New(cfg, &channeltest.Host{})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(http.StripPrefix("/channels/"+cfg.Name, a))
		t.Cleanup(srv.Close)
		return srv.URL + "/channels/" + cfg.Name + "/"
	}
	t.Fatal("cmd registers no widget type")
	return ""
}
