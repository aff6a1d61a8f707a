//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/skills/handoff"
	"github.com/moltbot/moltbot/skills/intent"
)

// scenarioFlow answers the intent order_status: it asks for the order
// number (6 digits) and answers with it, no model.
const scenarioFlow = `flow: orders
description: Where is my order?
vars: {order_id: ""}
nodes:
  - {id: start, type: trigger, with: {intent: order_status}}
  - id: ask
    type: collect
    with:
      var: order_id
      prompt: "Your order number? (6 digits)"
      pattern: '(\d{6})'
      retry_prompt: "That is not an order number: 6 digits, please."
  - {id: done, type: reply, with: {text: "Order {{order_id}} left our warehouse yesterday."}}
edges:
  - [start, ask]
  - [ask, done]
`

// scenarioConfig is appended to each node's moltbot.yaml: auth on, a
// tenant, its bot with a knowledge base, a flow and intents, a plain bot
// of the same tenant (no knowledge base, no skills) to compare turns with,
// and the hand-off.
const scenarioConfig = `auth: {enabled: true}
tenants: [{id: acme}]
bots:
  - name: support
    tenant: acme
    system: You are Lumen's support assistant.
    knowledge_bases: [lumen]
    skills: [orders]
    intents: [order_status, refund, shipping, payment, account, human, greeting, thanks, complaint, fallback]
  - {name: plain, tenant: acme}
handoff: {enabled: true, queue_timeout: 1h}
`

// scenarioReply is a conversation turn's answer.
type scenarioReply struct {
	Message struct {
		Content   string             `json:"content"`
		Citations []moltbot.Citation `json:"citations"`
	} `json:"message"`
	Model        string `json:"model"`
	FinishReason string `json:"finish_reason"`
}

// Issue 14's customer-service scenario end to end, on three node
// processes with the simulator and auth on: the shipped documents are
// added (moltbot kb add) through node 0; the user talks to the bot
// through node 1: a question the documents answer is answered by the model
// with a citation (document and heading); a message recognized as
// order_status starts a flow that collects the order number and answers,
// with no model; "转人工" queues the conversation (finish_reason handoff),
// which moltbot handoff list shows through another node. The
// conversation's owner is killed (-9) while it is queued; the user's next
// message, through a survivor, is kept and not answered; the node comes
// back. An agent (a key of scope agent) claims and replies through a node
// the user does not use: the reply is stored in the conversation and
// reaches a subscriber of it; release, and the bot (the model, with a
// citation) answers the next message.
func TestCustomerServiceScenario(t *testing.T) {
	nodes := clusterNodes(t, 3)
	for _, n := range nodes {
		path := filepath.Join(n.ws, "moltbot.yaml")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.Replace(string(b), "ttft: 2ms", "ttft: 0s", 1) + scenarioConfig
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, out, e := runCLI(t, "", "init", "--workspace", n.ws); code != 0 {
			t.Fatalf("init: %d %s %s", code, out, e)
		}
		// The shipped intents (what init writes in a new workspace) and
		// the flow, the same on every node, as a deployment copies skills/.
		os.MkdirAll(filepath.Join(n.ws, "skills"), 0o700)
		if err := os.WriteFile(filepath.Join(n.ws, intent.File), intent.DefaultYAML, 0o600); err != nil {
			t.Fatal(err)
		}
		writeFlow(t, n.ws, "orders.yaml", scenarioFlow)
		n.start(t)
	}
	// Each workspace's operator key (init wrote it) asks its own node.
	ops := map[*cnode]string{}
	for _, n := range nodes {
		b, err := os.ReadFile(filepath.Join(n.ws, adminKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		ops[n] = strings.TrimSpace(string(b))
	}
	converge := func() {
		t.Helper()
		testutil.Eventually(t, 60*time.Second, "3 nodes see 3 alive", func() bool {
			for _, n := range nodes {
				code, body := authedDo(t, "GET", n.url+"/v1/admin/cluster", ops[n], "")
				if code != 200 || strings.Count(body, `"state":"alive"`) != 3 {
					return false
				}
			}
			return true
		})
	}
	converge()
	op := ops[nodes[0]]
	key := func(body string) string {
		t.Helper()
		code, out := authedDo(t, "POST", nodes[0].url+"/v1/admin/keys", op, body)
		var k struct{ Key string }
		if code != 201 || json.Unmarshal([]byte(out), &k) != nil || k.Key == "" {
			t.Fatalf("key %s: %d %s", body, code, out)
		}
		return k.Key
	}
	admin := key(`{"tenant":"acme","name":"kb-admin","scope":"admin"}`)
	user := key(`{"tenant":"acme","name":"web","bot":"support"}`)
	plainUser := key(`{"tenant":"acme","name":"web-plain","bot":"plain"}`)
	agent := key(`{"tenant":"acme","name":"alice","scope":"agent"}`)
	for _, n := range nodes {
		testutil.Eventually(t, 60*time.Second, "the keys work on "+n.url, func() bool {
			c1, _ := authedDo(t, "GET", n.url+"/v1/models", user, "")
			c2, _ := authedDo(t, "GET", n.url+"/v1/admin/handoff", agent, "")
			c3, _ := authedDo(t, "GET", n.url+"/v1/admin/kb", admin, "")
			return c1 == 200 && c2 == 200 && c3 == 200
		})
	}
	keyFile := func(name, k string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(k), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	adminFile, agentFile := keyFile("admin.key", admin), keyFile("agent.key", agent)

	// The shipped documents, through node 0, by acme's admin.
	docs := filepath.Join("..", "..", "examples", "kb", "lumen")
	if code, out, e := runCLI(t, "", "kb", "add", "--url", nodes[0].url, "--admin-key-file", adminFile, "lumen", docs); code != 0 {
		t.Fatalf("kb add: %d %s %s", code, out, e)
	}
	for _, n := range nodes {
		testutil.Eventually(t, 60*time.Second, "the documents on "+n.url, func() bool {
			code, out, _ := runCLI(t, "", "kb", "list", "--url", n.url, "--admin-key-file", adminFile)
			return code == 0 && strings.Contains(out, "lumen ") && strings.Contains(out, " 10 ")
		})
	}

	// The user's conversation, created and spoken to through node 1.
	userNode := nodes[1]
	code, body := authedDo(t, "POST", userNode.url+"/v1/conversations", user, `{}`)
	var conv struct{ ID string }
	if (code != 201 && code != 200) || json.Unmarshal([]byte(body), &conv) != nil || conv.ID == "" {
		t.Fatalf("create: %d %s", code, body)
	}
	id := conv.ID
	turn := func(n *cnode, k, conv, text string) scenarioReply {
		t.Helper()
		code, body := authedDo(t, "POST", n.url+"/v1/conversations/"+conv+"/messages", k, `{"content":`+jsonString(text)+`}`)
		var r scenarioReply
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil {
			t.Fatalf("%q via %s: %d %s", text, n.url, code, body)
		}
		return r
	}
	cited := func(r scenarioReply, doc, heading string) bool {
		for _, c := range r.Message.Citations {
			if c.KB == "lumen" && c.Document == doc && strings.Contains(c.Heading, heading) {
				return true
			}
		}
		return false
	}

	// 1. A question the documents answer: the model, with a citation.
	r := turn(userNode, user, id, "可以用支付宝付款吗")
	if r.Model != "sim/sim" || r.FinishReason != "stop" || r.Message.Content == "" || !cited(r, "zh-账户与支付.md", "支付方式") {
		t.Fatalf("the knowledge base's answer: %+v", r)
	}
	// 2. order_status, recognized: the flow asks, takes the number, answers.
	r = turn(userNode, user, id, "where is my parcel")
	if r.Model != "flow/orders" || r.Message.Content != "Your order number? (6 digits)" {
		t.Fatalf("the intent's flow: %+v", r)
	}
	r = turn(userNode, user, id, "it is 123456")
	if r.Model != "flow/orders" || r.Message.Content != "Order 123456 left our warehouse yesterday." {
		t.Fatalf("the flow's answer: %+v", r)
	}
	// 3. 转人工: queued before any model, the notice, finish_reason handoff.
	r = turn(userNode, user, id, "转人工")
	if r.FinishReason != "handoff" || r.Message.Content != handoff.DefaultNotice {
		t.Fatalf("转人工: %+v", r)
	}
	// The queue, through another node, with the CLI.
	testutil.Eventually(t, 60*time.Second, "handoff list via node 2 shows the conversation queued", func() bool {
		code, out, _ := runCLI(t, "", "handoff", "list", "--url", nodes[2].url, "--admin-key-file", agentFile)
		return code == 0 && strings.Contains(out, id) && strings.Contains(out, "queue")
	})

	// 4. The owner dies (-9) while the conversation is queued.
	code, body = authedDo(t, "GET", nodes[0].url+"/v1/conversations/"+id, user, "")
	var held struct{ Owner string }
	if code != 200 || json.Unmarshal([]byte(body), &held) != nil {
		t.Fatalf("get: %d %s", code, body)
	}
	var victim *cnode
	var survivors []*cnode
	for _, n := range nodes {
		if n.gossip == held.Owner {
			victim = n
		} else {
			survivors = append(survivors, n)
		}
	}
	if victim == nil {
		t.Fatalf("owner %q is none of the nodes", held.Owner)
	}
	t.Logf("the conversation's owner, killed: %s (the user's node: %s)", victim.url, userNode.url)
	victim.p.cmd.Process.Signal(syscall.SIGKILL)
	victim.p.wait(t, 10*time.Second)
	if userNode == victim {
		userNode = survivors[0]
	}
	// While queued, a message through a survivor is kept, not answered:
	// the new owner has the hand-off state (it was replicated). Retried
	// until the cluster has moved the conversation; external_id makes a
	// retry of a turn that was stored the same turn.
	testutil.Eventually(t, 60*time.Second, "a queued turn after the kill", func() bool {
		code, body := authedDo(t, "POST", userNode.url+"/v1/conversations/"+id+"/messages", user, `{"content":"还在吗？我的订单 123456","external_id":"after-kill"}`)
		var r scenarioReply
		return code == 200 && json.Unmarshal([]byte(body), &r) == nil && r.FinishReason == "handoff" && r.Message.Content == ""
	})
	victim.start(t)
	converge()
	testutil.Eventually(t, 60*time.Second, "the restarted node lists the queue", func() bool {
		code, out, _ := runCLI(t, "", "handoff", "list", "--url", victim.url, "--admin-key-file", agentFile)
		return code == 0 && strings.Contains(out, id) && strings.Contains(out, "queue")
	})

	// A subscriber of the conversation (the user's other tab), on the
	// user's node.
	var evMu sync.Mutex
	var events []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", userNode.url+"/v1/conversations/"+id+"/events", nil)
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
		return slices.ContainsFunc(events, func(e string) bool { return strings.Contains(e, s) })
	}

	// 5. The agent claims and replies through a node the user does not use.
	var agentNode *cnode
	for _, n := range nodes {
		if n != userNode {
			agentNode = n
			break
		}
	}
	if code, out, e := runCLI(t, "", "handoff", "claim", "--epoch", "1", "--url", agentNode.url, "--admin-key-file", agentFile, id); code != 0 || !strings.Contains(out, "owner agent, epoch 2") {
		t.Fatalf("handoff claim via %s: %d %s %s", agentNode.url, code, out, e)
	}
	const said = "Hi, I am Alice: order 123456 arrives tomorrow."
	if code, out, e := runCLI(t, "", "handoff", "reply", "--epoch", "2", "--url", agentNode.url, "--admin-key-file", agentFile, id, said); code != 0 {
		t.Fatalf("handoff reply via %s: %d %s %s", agentNode.url, code, out, e)
	}
	testutil.Eventually(t, 60*time.Second, "the subscriber got the agent's reply", func() bool { return followed(said) })
	code, body = authedDo(t, "GET", userNode.url+"/v1/conversations/"+id, user, "")
	if code != 200 || strings.Count(body, said) != 1 || !strings.Contains(body, `"model":"agent/key:`) || !strings.Contains(body, "还在吗？我的订单 123456") {
		t.Fatalf("the stored conversation: %d %s", code, body)
	}

	// 6. Release (through a third node when there is one), and the bot
	// answers again: the model, with a citation.
	if code, out, e := runCLI(t, "", "handoff", "release", "--epoch", "2", "--url", victim.url, "--admin-key-file", agentFile, id); code != 0 {
		t.Fatalf("handoff release: %d %s %s", code, out, e)
	}
	r = turn(userNode, user, id, "How much does express delivery cost?")
	if r.Model != "sim/sim" || r.FinishReason != "stop" || r.Message.Content == "" || !cited(r, "shipping.md", "") {
		t.Fatalf("the bot after release: %+v", r)
	}
	testutil.Eventually(t, 60*time.Second, "the queue is empty on every node", func() bool {
		for _, n := range nodes {
			code, out, _ := runCLI(t, "", "handoff", "list", "--url", n.url, "--admin-key-file", agentFile)
			if code != 0 || strings.Contains(out, id) {
				return false
			}
		}
		return true
	})
	// The conversation, as stored: each message by what made it (the
	// agent's by its key).
	var got convBody
	if code, body = authedDo(t, "GET", nodes[0].url+"/v1/conversations/"+id, user, ""); code != 200 || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("get: %d %s", code, body)
	}
	var made []string
	for _, m := range got.Messages {
		model := m.Model
		if strings.HasPrefix(model, "agent/key:") {
			model = "agent/key"
		}
		made = append(made, m.Role+":"+model)
	}
	want := "system: user: assistant:sim/sim user: assistant:flow/orders user: assistant:flow/orders user: assistant:handoff/queue " +
		"user: assistant:agent/key user: assistant:sim/sim"
	if g := strings.Join(made, " "); g != want {
		t.Errorf("the conversation's messages:\n got %s\nwant %s", g, want)
	}

	// Figures (BENCHMARKS.md, "The customer-service scenario end to end"): with
	// MOLTBOT_SCENARIO_SAMPLES=n, n turns of each kind through a node that
	// does not own the conversation, timed from the client.
	if s := os.Getenv("MOLTBOT_SCENARIO_SAMPLES"); s != "" {
		samples, _ := strconv.Atoi(s)
		scenarioFigures(t, nodes, user, plainUser, samples)
	}
}

// scenarioFigures times turns through the cluster: the bot's knowledge
// base answer (intent stage, kb search, hand-off stage, the model), the
// intent's flow (two turns: the question and the number), and the plain
// bot's answer (intent stage, hand-off stage, the model; no kb, no skills).
func scenarioFigures(t *testing.T, nodes []*cnode, user, plainUser string, n int) {
	create := func(k string) (string, *cnode) {
		code, body := authedDo(t, "POST", nodes[0].url+"/v1/conversations", k, `{}`)
		var c struct{ ID string }
		if json.Unmarshal([]byte(body), &c) != nil || c.ID == "" {
			t.Fatalf("create: %d %s", code, body)
		}
		owner := ownerWithKey(t, nodes[0].url, k, c.ID)
		for _, nd := range nodes {
			if nd.gossip != owner {
				return c.ID, nd
			}
		}
		t.Fatal("no node but the owner")
		return "", nil
	}
	timed := func(nd *cnode, k, conv, text, model string) time.Duration {
		start := time.Now()
		code, body := authedDo(t, "POST", nd.url+"/v1/conversations/"+conv+"/messages", k, `{"content":`+jsonString(text)+`}`)
		d := time.Since(start)
		if code != 200 || !strings.Contains(body, `"model":"`+model) {
			t.Fatalf("%q: %d %s", text, code, body)
		}
		return d
	}
	var kbT, plainT, flowT []time.Duration
	var kb, flow, plain string
	var kbNode, flowNode, plainNode *cnode
	for i := 0; i < n; i++ {
		if i%25 == 0 { // new conversations now and then: the history stays short
			kb, kbNode = create(user)
			flow, flowNode = create(user)
			plain, plainNode = create(plainUser)
		}
		kbT = append(kbT, timed(kbNode, user, kb, "How much does express delivery cost?", "sim/sim"))
		plainT = append(plainT, timed(plainNode, plainUser, plain, "How much does express delivery cost?", "sim/sim"))
		flowT = append(flowT, timed(flowNode, user, flow, "where is my parcel", "flow/orders")+timed(flowNode, user, flow, "123456", "flow/orders"))
	}
	pct := func(ds []time.Duration, p int) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[(len(s)-1)*p/100]
	}
	for _, f := range []struct {
		name string
		ds   []time.Duration
	}{{"kb answer (bot support)", kbT}, {"intent flow, 2 turns", flowT}, {"plain bot answer", plainT}} {
		t.Logf("figures: %-24s n=%d p50 %v p90 %v", f.name, len(f.ds), pct(f.ds, 50).Round(10*time.Microsecond), pct(f.ds, 90).Round(10*time.Microsecond))
	}
}

// ownerWithKey is ownerOf with a credential.
func ownerWithKey(t *testing.T, url, key, id string) string {
	_, body := authedDo(t, "GET", url+"/v1/conversations/"+id, key, "")
	var c struct{ Owner string }
	json.Unmarshal([]byte(body), &c)
	return c.Owner
}
