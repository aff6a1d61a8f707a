package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/skills/handoff"
)

// toyChannel is an outbox adapter that records what it is given.
type toyChannel struct {
	mu  sync.Mutex
	got []string // address: content
}

func (c *toyChannel) Deliver(ctx context.Context, space, conversation string, to moltbot.Destination, m moltbot.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, to.Address+": "+m.Content)
	return nil
}

func (c *toyChannel) has(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.got {
		if g == s {
			return true
		}
	}
	return false
}

// startHandoffNode starts a node on ws (init'ed) with config and the toy
// channel; the node shuts down with the test (or earlier, by the caller).
func startHandoffNode(t *testing.T, ws, config string, toy *toyChannel) *Node {
	t.Helper()
	path := filepath.Join(ws, "moltbot.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: ws, Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Channels: map[string]actors.Deliverer{"toy": toy}}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	waitReady(t, n.URL())
	return n
}

// modelCalls is how many requests the node sent its models
// (moltbot_inference_requests_total, every label).
func modelCalls(t *testing.T, n *Node, key string) int {
	t.Helper()
	code, body := authedDo(t, "GET", n.URL()+"/metrics", key, "")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	total := 0
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "moltbot_inference_requests_total{") {
			f := strings.Fields(line)
			v, _ := strconv.Atoi(f[len(f)-1])
			total += v
		}
	}
	return total
}

type handoffList struct {
	Data []handoff.Entry `json:"data"`
}

func listQueue(t *testing.T, n *Node, key string) handoffList {
	t.Helper()
	code, body := authedDo(t, "GET", n.URL()+"/v1/admin/handoff", key, "")
	if code != 200 {
		t.Fatalf("GET /v1/admin/handoff: %d %s", code, body)
	}
	var l handoffList
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// sayTo posts a user message (not streamed) and returns the reply's text
// and finish reason.
func sayTo(t *testing.T, n *Node, key, id, text string) (string, string) {
	t.Helper()
	code, body := authedDo(t, "POST", n.URL()+"/v1/conversations/"+id+"/messages", key, `{"content":`+jsonString(text)+`}`)
	if code != 200 {
		t.Fatalf("turn %q: %d %s", text, code, body)
	}
	var r struct {
		Message      struct{ Content string }
		FinishReason string `json:"finish_reason"`
	}
	json.Unmarshal([]byte(body), &r)
	return r.Message.Content, r.FinishReason
}

const handoffNodeConfig = `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: true}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}
models: {primary: sim/sim}
handoff: {enabled: true, queue_timeout: 1h}
`

// Issue 14, hand-off to a person, through the HTTP API with the
// simulator: "转人工" queues the conversation (its stream ends with
// finish_reason handoff and the notice; no model is asked), the queue
// shows it with the user's last message, an agent claims it (epoch 1 to
// 2), answers (the reply reaches a subscriber of the conversation and the
// channel the user last spoke from, through the outbox), a stale epoch is
// 409, an agent's key can do nothing else and nothing in another tenant,
// release gives it back (the model answers again), and the owner survives
// a restart.
func TestHandoffThroughHTTP(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	toy := &toyChannel{}
	n := startHandoffNode(t, ws, handoffNodeConfig, toy)
	opb, _ := os.ReadFile(filepath.Join(ws, adminKeyFile))
	op := strings.TrimSpace(string(opb))
	_, user := makeKey(t, n, op, `{"scope":"chat","name":"user"}`)
	code, agent := makeKey(t, n, op, `{"scope":"agent","name":"alice"}`)
	if code != 201 {
		t.Fatalf("agent key: %d %s", code, agent)
	}
	code, body := authedDo(t, "POST", n.URL()+"/v1/conversations", user, `{}`)
	if code != 200 && code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var conv struct{ ID string }
	json.Unmarshal([]byte(body), &conv)
	id := conv.ID

	// A follower of the conversation (the user's other tab, a console).
	var evMu sync.Mutex
	var events []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/conversations/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+user)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, resp)
	}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			evMu.Lock()
			events = append(events, sc.Text())
			evMu.Unlock()
		}
	}()
	followed := func(s string) bool {
		evMu.Lock()
		defer evMu.Unlock()
		for _, e := range events {
			if strings.Contains(e, s) {
				return true
			}
		}
		return false
	}

	if reply, fr := sayTo(t, n, user, id, "hello"); reply == "" || fr != "stop" {
		t.Fatalf("the bot's first answer: %q %q", reply, fr)
	}
	calls := modelCalls(t, n, op)
	if calls < 1 {
		t.Fatalf("the model was not asked: %d", calls)
	}

	// 转人工, streamed: the notice, finish_reason handoff, no model.
	code, body = authedDo(t, "POST", n.URL()+"/v1/conversations/"+id+"/messages", user, `{"content":"我要转人工","stream":true}`)
	if code != 200 || !strings.Contains(body, handoff.DefaultNotice) || !strings.Contains(body, `"finish_reason":"handoff"`) {
		t.Fatalf("转人工: %d %s", code, body)
	}
	if got := modelCalls(t, n, op); got != calls {
		t.Fatalf("the model was asked at the hand-off: %d calls, was %d", got, calls)
	}
	// While queued, the user's messages are kept and relayed, not answered;
	// this one comes through a channel, which the conversation remembers.
	res, err := n.rt.Turn(context.Background(), "default", id, moltbot.TurnInput{Content: "my order is 1234", ReplyTo: &moltbot.Destination{Channel: "toy", Address: "chat-1"}}, nil)
	if err != nil || res.Message.Content != "" || res.Completion.FinishReason != moltbot.FinishHandoff {
		t.Fatalf("a queued turn: %+v %v", res, err)
	}
	if reply, fr := sayTo(t, n, user, id, "anyone there?"); reply != "" || fr != "handoff" {
		t.Fatalf("a queued turn over HTTP: %q %q", reply, fr)
	}
	if got := modelCalls(t, n, op); got != calls {
		t.Fatalf("the model was asked while queued: %d calls, was %d", got, calls)
	}
	testutil.Eventually(t, 5*time.Second, "the follower saw the relayed message", func() bool { return followed("my order is 1234") })

	// The queue, to the agent and with the CLI.
	q := listQueue(t, n, agent)
	if len(q.Data) != 1 || q.Data[0].Conversation != id || q.Data[0].Owner != "queue" || q.Data[0].Epoch != 1 || q.Data[0].Reason != "ask" || q.Data[0].Last != "anyone there?" {
		t.Fatalf("queue: %+v", q)
	}
	keyFile := filepath.Join(t.TempDir(), "agent.key")
	os.WriteFile(keyFile, []byte(agent), 0o600)
	if code, out, e := runCLI(t, "", "handoff", "list", "--url", n.URL(), "--admin-key-file", keyFile); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "queue") {
		t.Fatalf("handoff list: %d %s %s", code, out, e)
	}

	if _, m := authedDo(t, "GET", n.URL()+"/metrics", op, ""); !strings.Contains(m, `moltbot_handoff_conversations{owner="queue"} 1`) {
		t.Errorf("metrics lack the queue: %s", grep(m, "handoff"))
	}
	// Claim: epoch 1 -> 2; the same claim again is stale.
	if code, out, e := runCLI(t, "", "handoff", "claim", "--epoch", "1", "--url", n.URL(), "--admin-key-file", keyFile, id); code != 0 || !strings.Contains(out, "owner agent, epoch 2") {
		t.Fatalf("handoff claim: %d %s %s", code, out, e)
	}
	code, body = authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/claim", agent, `{"epoch":1}`)
	if code != 409 || !strings.Contains(body, "epoch is 2") {
		t.Fatalf("a stale claim: %d %s", code, body)
	}
	// The agent's reply: to the follower and to the channel, not the model.
	code, body = authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/reply", agent, `{"epoch":2,"text":"Hi, I am Alice. Let me look.","id":"r1"}`)
	if code != 200 || !strings.Contains(body, "Hi, I am Alice") {
		t.Fatalf("reply: %d %s", code, body)
	}
	testutil.Eventually(t, 5*time.Second, "the follower saw the agent's reply", func() bool { return followed("Hi, I am Alice. Let me look.") })
	testutil.Eventually(t, 5*time.Second, "the channel got the agent's reply", func() bool { return toy.has("chat-1: Hi, I am Alice. Let me look.") })
	// Sent again with the same id: said once.
	if code, body = authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/reply", agent, `{"epoch":2,"text":"Hi, I am Alice. Let me look.","id":"r1"}`); code != 200 {
		t.Fatalf("reply again: %d %s", code, body)
	}
	if code, body = authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/reply", agent, `{"epoch":1,"text":"stale"}`); code != 409 || !strings.Contains(body, "epoch is 2") {
		t.Fatalf("a stale reply: %d %s", code, body)
	}
	code, body = authedDo(t, "GET", n.URL()+"/v1/conversations/"+id, user, "")
	if !strings.Contains(body, `"handoff":{"owner":"agent","epoch":2,"agent":"key:`) {
		t.Errorf("the conversation does not show who has it: %s", body)
	}
	if code != 200 || strings.Count(body, "Hi, I am Alice") != 1 || strings.Contains(body, "stale") || !regexp.MustCompile(`"model":"agent/key:[a-z0-9]+"`).MatchString(body) {
		t.Fatalf("the stored conversation: %d %s", code, body)
	}
	if got := modelCalls(t, n, op); got != calls {
		t.Fatalf("the model was asked while an agent had it: %d calls, was %d", got, calls)
	}

	// An agent's key does nothing else.
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/chat/completions", `{"model":"moltbot","messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/conversations", `{}`},
		{"GET", "/v1/conversations/" + id, ""},
		{"POST", "/v1/conversations/" + id + "/messages", `{"content":"hi"}`},
		{"GET", "/v1/admin/keys", ""},
		{"POST", "/v1/admin/keys", `{"scope":"admin"}`},
		{"GET", "/v1/admin/status", ""},
		{"GET", "/v1/models", ""},
		{"GET", "/metrics", ""},
		{"GET", "/v1/admin/audit", ""},
	} {
		if code, body := authedDo(t, c.method, n.URL()+c.path, agent, c.body); code != 403 {
			t.Errorf("agent key, %s %s: %d %s", c.method, c.path, code, body)
		}
	}
	// Nor anything in another tenant.
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/tenants", op, `{"id":"other"}`); code != 201 && code != 200 {
		t.Fatalf("tenant: %d %s", code, body)
	}
	_, other := makeKey(t, n, op, `{"scope":"agent","name":"bob","tenant":"other"}`)
	if q := listQueue(t, n, other); len(q.Data) != 0 {
		t.Fatalf("another tenant's agent sees %+v", q)
	}
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/release", other, `{"epoch":2}`); code != 404 {
		t.Fatalf("another tenant's agent released: %d %s", code, body)
	}
	// It may rotate itself; the new key works the queue.
	code, body = authedDo(t, "POST", n.URL()+"/v1/auth/rotate", agent, `{}`)
	var rotated struct{ Key string }
	json.Unmarshal([]byte(body), &rotated)
	if code != 201 || rotated.Key == "" || !strings.Contains(body, `"scope":"agent"`) {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if q := listQueue(t, n, rotated.Key); len(q.Data) != 1 {
		t.Fatalf("the rotated key's queue: %+v", q)
	}
	// A chat key may not work the queue.
	if code, body := authedDo(t, "GET", n.URL()+"/v1/admin/handoff", user, ""); code != 403 {
		t.Fatalf("a chat key read the queue: %d %s", code, body)
	}

	// Release: epoch 3, the bot answers again.
	code, body = authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/release", agent, `{"epoch":2}`)
	if code != 200 || !strings.Contains(body, `"epoch":3`) || !strings.Contains(body, `"owner":"bot"`) {
		t.Fatalf("release: %d %s", code, body)
	}
	if q := listQueue(t, n, agent); len(q.Data) != 0 {
		t.Fatalf("released, still queued: %+v", q)
	}
	if reply, fr := sayTo(t, n, user, id, "thanks, and the weather?"); reply == "" || fr != "stop" {
		t.Fatalf("after release: %q %q", reply, fr)
	}
	if got := modelCalls(t, n, op); got != calls+1 {
		t.Fatalf("after release the model answers: %d calls, want %d", got, calls+1)
	}

	// Handed off again, then a restart: the owner and the queue stay.
	if reply, fr := sayTo(t, n, user, id, "human please"); reply != handoff.DefaultNotice || fr != "handoff" {
		t.Fatalf("human please: %q %q", reply, fr)
	}
	cancel()
	n.Shutdown(context.Background())
	n = startHandoffNode(t, ws, handoffNodeConfig, toy)
	q = listQueue(t, n, agent)
	if len(q.Data) != 1 || q.Data[0].Epoch != 4 || q.Data[0].Owner != "queue" {
		t.Fatalf("the queue after a restart: %+v", q)
	}
	calls = modelCalls(t, n, op)
	if reply, fr := sayTo(t, n, user, id, "still there?"); reply != "" || fr != "handoff" {
		t.Fatalf("queued after a restart: %q %q", reply, fr)
	}
	if got := modelCalls(t, n, op); got != calls {
		t.Fatalf("the model was asked after a restart: %d, was %d", got, calls)
	}
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+id+"/claim", agent, `{"epoch":4}`); code != 200 || !strings.Contains(body, `"epoch":5`) {
		t.Fatalf("claim after a restart: %d %s", code, body)
	}
}

// The queue's timeout: a ticket, signed, reaches the webhook (a loopback
// server that checks the signature), retried while the webhook fails and
// across a restart of the node; the user is told, and the bot answers
// again.
func TestHandoffQueueTimeoutTicket(t *testing.T) {
	const secret = "s3cret-for-tickets"
	t.Setenv("HANDOFF_TICKET_SECRET", secret)
	var mu sync.Mutex
	var tickets []handoff.Ticket
	var refused, attempts int
	down := true // the helpdesk is down until the node restarted
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if err := handoff.Verify(secret, r.Header.Get(handoff.HeaderTimestamp), r.Header.Get(handoff.HeaderSignature), b, time.Now(), 5*time.Minute); err != nil {
			refused++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var tk handoff.Ticket
		if err := json.Unmarshal(b, &tk); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tickets = append(tickets, tk)
	}))
	defer srv.Close()
	ws := filepath.Join(t.TempDir(), "ws")
	os.MkdirAll(ws, 0o700)
	config := fmt.Sprintf(`server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}
models: {primary: sim/sim}
handoff: {enabled: true, queue_timeout: 1s, ticket_url: %q, ticket_secret: "${HANDOFF_TICKET_SECRET}"}
`, srv.URL)
	n := startHandoffNode(t, ws, config, &toyChannel{})
	code, body := authedDo(t, "POST", n.URL()+"/v1/conversations", "", `{}`)
	if code != 200 && code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var conv struct{ ID string }
	json.Unmarshal([]byte(body), &conv)
	if reply, fr := sayTo(t, n, "", conv.ID, "转人工"); reply != handoff.DefaultNotice || fr != "handoff" {
		t.Fatalf("转人工: %q %q", reply, fr)
	}
	// The webhook fails: the ticket waits in the conversation's outbox,
	// across a restart, and goes when the webhook is back.
	testutil.Eventually(t, 30*time.Second, "a first attempt at the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return attempts > 0
	})
	n.Shutdown(context.Background())
	mu.Lock()
	down = false
	mu.Unlock()
	n = startHandoffNode(t, ws, config, &toyChannel{})
	testutil.Eventually(t, 30*time.Second, "the ticket reached the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(tickets) > 0
	})
	mu.Lock()
	tk := tickets[0]
	mu.Unlock()
	if tk.Conversation != conv.ID || tk.Tenant != "default" || !strings.HasPrefix(tk.Ticket, "tk_") || tk.Reason != "ask" || !strings.Contains(tk.Message, tk.Ticket) {
		t.Fatalf("ticket %+v", tk)
	}
	if len(tk.Transcript) == 0 || !strings.Contains(fmt.Sprint(tk.Transcript), "转人工") {
		t.Fatalf("ticket transcript %+v", tk.Transcript)
	}
	code, body = authedDo(t, "GET", n.URL()+"/v1/conversations/"+conv.ID, "", "")
	if code != 200 || !strings.Contains(body, tk.Ticket) {
		t.Fatalf("the user was not told: %d %s", code, body)
	}
	calls := modelCalls(t, n, "")
	if reply, fr := sayTo(t, n, "", conv.ID, "ok, what now?"); reply == "" || fr != "stop" {
		t.Fatalf("the bot did not resume: %q %q", reply, fr)
	}
	if got := modelCalls(t, n, ""); got != calls+1 {
		t.Fatalf("the model was not asked after the timeout: %d, was %d", got, calls)
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != 0 || len(tickets) != 1 || attempts < 2 {
		t.Fatalf("%d tickets failed their signature, %d delivered in %d attempts", refused, len(tickets), attempts)
	}
}

// A flow's handoff node queues the conversation (hand-off triggers off:
// the flow's author asked for a person): its text is the reply, the queue
// shows it with the reason flow, and the bot is silent until released.
func TestHandoffFromFlow(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	os.MkdirAll(ws, 0o700)
	os.MkdirAll(filepath.Join(ws, "skills", "flows"), 0o700)
	os.WriteFile(filepath.Join(ws, "skills", "flows", "complaint.yaml"), []byte(`flow: complaint
nodes:
  - {id: start, type: trigger, with: {keywords: [complaint, 投诉]}}
  - {id: human, type: handoff, with: {text: "A person will take your complaint."}}
edges:
  - [start, human]
`), 0o600)
	n := startHandoffNode(t, ws, `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}
models: {primary: sim/sim}
`, &toyChannel{})
	code, body := authedDo(t, "POST", n.URL()+"/v1/conversations", "", `{}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var conv struct{ ID string }
	json.Unmarshal([]byte(body), &conv)
	if reply, fr := sayTo(t, n, "", conv.ID, "I have a complaint"); reply != "A person will take your complaint." || fr != "handoff" {
		t.Fatalf("the flow's handoff: %q %q", reply, fr)
	}
	q := listQueue(t, n, "")
	if len(q.Data) != 1 || q.Data[0].Reason != "flow" || q.Data[0].Epoch != 1 || q.Data[0].Owner != "queue" {
		t.Fatalf("queue %+v", q)
	}
	calls := modelCalls(t, n, "")
	if reply, fr := sayTo(t, n, "", conv.ID, "hello?"); reply != "" || fr != "handoff" {
		t.Fatalf("queued: %q %q", reply, fr)
	}
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+conv.ID+"/release", "", `{"epoch":1}`); code != 200 {
		t.Fatalf("release: %d %s", code, body)
	}
	// A queued conversation deleted leaves the queue.
	code, body = authedDo(t, "POST", n.URL()+"/v1/conversations", "", `{}`)
	var gone struct{ ID string }
	json.Unmarshal([]byte(body), &gone)
	sayTo(t, n, "", gone.ID, "a complaint")
	if q := listQueue(t, n, ""); len(q.Data) != 1 || q.Data[0].Conversation != gone.ID {
		t.Fatalf("queue %+v", q)
	}
	if code, body := authedDo(t, "DELETE", n.URL()+"/v1/conversations/"+gone.ID, "", ""); code/100 != 2 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if q := listQueue(t, n, ""); len(q.Data) != 0 {
		t.Fatalf("a deleted conversation is still queued: %+v", q)
	}
	if reply, fr := sayTo(t, n, "", conv.ID, "what is 2+2?"); reply == "" || fr != "stop" {
		t.Fatalf("after release: %q %q", reply, fr)
	}
	if got := modelCalls(t, n, ""); got != calls+1 {
		t.Fatalf("model calls %d, want %d", got, calls+1)
	}
}

// While a person has the conversation no model is asked even when its
// history outgrows the context: no summary is made for a relayed turn.
func TestHandoffNoSummaryWhileHeld(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	os.MkdirAll(ws, 0o700)
	n := startHandoffNode(t, ws, `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}
models: {primary: sim/sim}
conversations: {max_context_tokens: 256, summary: {enabled: true, max_tokens: 32}}
handoff: {enabled: true, queue_timeout: 1h}
`, &toyChannel{})
	code, body := authedDo(t, "POST", n.URL()+"/v1/conversations", "", `{}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var conv struct{ ID string }
	json.Unmarshal([]byte(body), &conv)
	if _, fr := sayTo(t, n, "", conv.ID, "human please"); fr != "handoff" {
		t.Fatalf("not handed off: %q", fr)
	}
	calls := modelCalls(t, n, "")
	long := strings.Repeat("my parcel never arrived and nobody answers the phone ", 4)
	for i := 0; i < 20; i++ {
		if reply, fr := sayTo(t, n, "", conv.ID, fmt.Sprint(i, " ", long)); reply != "" || fr != "handoff" {
			t.Fatalf("turn %d: %q %q", i, reply, fr)
		}
	}
	if got := modelCalls(t, n, ""); got != calls {
		t.Fatalf("%d model calls while queued (a summary?), want none", got-calls)
	}
	// Released, the bot answers, and a summary may be made then.
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+conv.ID+"/release", "", `{"epoch":1}`); code != 200 {
		t.Fatalf("release: %d %s", code, body)
	}
	if reply, fr := sayTo(t, n, "", conv.ID, "hello again"); reply == "" || fr != "stop" {
		t.Fatalf("after release: %q %q", reply, fr)
	}
	if got := modelCalls(t, n, ""); got <= calls {
		t.Fatal("the model was not asked after release")
	}
}

// An agent who goes quiet for handoff.agent_timeout gives the
// conversation back: the bot answers again.
func TestHandoffAgentTimeout(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	os.MkdirAll(ws, 0o700)
	n := startHandoffNode(t, ws, `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}
models: {primary: sim/sim}
handoff: {enabled: true, queue_timeout: 1h, agent_timeout: 1s}
`, &toyChannel{})
	code, body := authedDo(t, "POST", n.URL()+"/v1/conversations", "", `{}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var conv struct{ ID string }
	json.Unmarshal([]byte(body), &conv)
	sayTo(t, n, "", conv.ID, "转人工")
	if code, body := authedDo(t, "POST", n.URL()+"/v1/admin/handoff/"+conv.ID+"/claim", "", `{"epoch":1}`); code != 200 {
		t.Fatalf("claim: %d %s", code, body)
	}
	testutil.Eventually(t, 30*time.Second, "the quiet agent's conversation back with the bot", func() bool {
		_, body := authedDo(t, "GET", n.URL()+"/v1/conversations/"+conv.ID, "", "")
		return strings.Contains(body, `"handoff":{"owner":"bot","epoch":3}`)
	})
	if reply, fr := sayTo(t, n, "", conv.ID, "hello?"); reply == "" || fr != "stop" {
		t.Fatalf("after the agent's timeout: %q %q", reply, fr)
	}
}

// With the intents `moltbot init` writes, two messages in a row that no
// intent recognizes (intent.low) hand the conversation to a person, after
// the model answered the second (skills/handoff TestTriggers: a
// recognized one between resets the run).
func TestHandoffAfterLowConfidence(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	n := startHandoffNode(t, ws, `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}
models: {primary: sim/sim}
handoff: {enabled: true, queue_timeout: 1h}
`, &toyChannel{})
	code, body := authedDo(t, "POST", n.URL()+"/v1/conversations", "", `{}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var conv struct{ ID string }
	json.Unmarshal([]byte(body), &conv)
	if _, fr := sayTo(t, n, "", conv.ID, "zxqv blorp flarn quux"); fr != "stop" {
		t.Fatalf("first low: %q", fr)
	}
	reply, fr := sayTo(t, n, "", conv.ID, "wibble frobnicate glork")
	if fr != "handoff" || !strings.HasSuffix(reply, handoff.DefaultNotice) || reply == handoff.DefaultNotice {
		t.Fatalf("second low: %q %q", reply, fr)
	}
	if q := listQueue(t, n, ""); len(q.Data) != 1 || q.Data[0].Reason != "low_confidence" {
		t.Fatalf("queue %+v", q)
	}
}
