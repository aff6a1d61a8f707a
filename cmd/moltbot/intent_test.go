//go:build unix

package main

import (
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

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/skills/intent"
)

// intentFlows start on the intents order_status and refund.
const (
	orderIntentFlow  = "flow: where\nnodes:\n  - {id: t, type: trigger, with: {intent: order_status}}\n  - {id: r, type: reply, with: {text: order desk}}\nedges: [[t, r]]\n"
	refundIntentFlow = "flow: money\nnodes:\n  - {id: t, type: trigger, with: {intent: refund}}\n  - {id: r, type: reply, with: {text: refund desk}}\nedges: [[t, r]]\n"
)

// writeIntents writes the shipped intents with settings changed.
func writeIntents(t *testing.T, ws string, repl ...string) {
	t.Helper()
	src := string(intent.DefaultYAML)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(src, repl[i]) {
			t.Fatalf("the shipped intents have no %q", repl[i])
		}
		src = strings.Replace(src, repl[i], repl[i+1], 1)
	}
	if err := os.WriteFile(filepath.Join(ws, intent.File), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

// metric is a counter's value on n's /metrics (0 when absent).
func metric(t *testing.T, n *Node, series string) int {
	t.Helper()
	_, body := getBody(t, n.URL()+"/metrics")
	m := regexp.MustCompile(regexp.QuoteMeta(series) + ` (\d+)`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// rogue is an OpenAI-compatible server whose model ignores the response
// format: it answers {"intent":"lottery"}, outside any enum. It keeps the
// response_format of the last chat request.
type rogue struct {
	mu     sync.Mutex
	format json.RawMessage
	calls  int
}

func (r *rogue) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case "/v1/models":
		io.WriteString(w, `{"object":"list","data":[{"id":"rogue","object":"model"}]}`)
	case "/v1/chat/completions":
		var body struct {
			Stream         bool            `json:"stream"`
			ResponseFormat json.RawMessage `json:"response_format"`
		}
		json.NewDecoder(io.LimitReader(req.Body, 1<<20)).Decode(&body)
		r.mu.Lock()
		r.format, r.calls = body.ResponseFormat, r.calls+1
		r.mu.Unlock()
		content := `{\"intent\":\"lottery\"}`
		if body.Stream {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "data: {\"id\":\"r\",\"object\":\"chat.completion.chunk\",\"model\":\"rogue\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"%s\"},\"finish_reason\":null}]}\n\n", content)
			io.WriteString(w, "data: {\"id\":\"r\",\"object\":\"chat.completion.chunk\",\"model\":\"rogue\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
			return
		}
		fmt.Fprintf(w, `{"id":"r","object":"chat.completion","model":"rogue","choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, content)
	default:
		http.NotFound(w, req)
	}
}

// The intent stage through the conversations API, against the simulator:
// a message the rules or the classifier recognize starts the flow whose
// trigger names its intent, without the model stage; one no stage is
// confident of falls back (moltbot_intent_turns_total{stage="fallback"})
// and goes to the model; with settings.model set, the model stage runs
// only when the first two are not confident, is asked for the enum of the
// intents, and its answer starts the flow; a model that answers outside
// the enum is refused, and the turn falls back to the chain's model.
func TestIntentThroughNode(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 || !strings.Contains(out, "skills/intents.yaml") {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeFlow(t, ws, "where.yaml", orderIntentFlow)
	writeFlow(t, ws, "money.yaml", refundIntentFlow)
	rs := &rogue{}
	srv := httptest.NewServer(rs)
	defer srv.Close()
	cfgText := fmt.Sprintf(`server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 5}}
  - {name: rogue, type: openai, url: "%s/v1", models: [rogue]}
models: {primary: sim/sim}
skills: {worker: %s}
`, srv.URL, filepath.Join(t.TempDir(), "no-worker"))
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(filepath.Join(ws, "moltbot.yaml"))
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
	if !strings.Contains(logs.String(), `"intents loaded"`) {
		t.Fatalf("no intents loaded:\n%s", logs.String())
	}
	simCalls := func() int {
		return metric(t, n, `moltbot_inference_requests_total{provider="sim",model="sim",outcome="ok"}`)
	}
	stage := func(s string) int { return metric(t, n, `moltbot_intent_turns_total{stage="`+s+`"}`) }

	// The rules (退款) and the classifier (a parcel is an order's) start
	// the flows naming their intents; the model is not asked.
	conv := newConv(t, n)
	if reply, model := say(t, n, conv, "我要退款"); reply != "refund desk" || model != "flow/money" {
		t.Fatalf("refund: %q %s", reply, model)
	}
	conv = newConv(t, n)
	if reply, model := say(t, n, conv, "where is my parcel"); reply != "order desk" || model != "flow/where" {
		t.Fatalf("order status: %q %s", reply, model)
	}
	if stage("rules") != 1 || stage("ngram") != 1 || simCalls() != 0 {
		t.Fatalf("rules %d, ngram %d, model calls %d", stage("rules"), stage("ngram"), simCalls())
	}
	// Out of scope: the fallback (intent.low), no flow, the model answers.
	conv = newConv(t, n)
	if reply, model := say(t, n, conv, "explain quantum physics"); model != "sim/sim" || reply == "" {
		t.Fatalf("out of scope: %q %s", reply, model)
	}
	if stage("fallback") != 1 || simCalls() != 1 {
		t.Fatalf("fallback %d, model calls %d", stage("fallback"), simCalls())
	}
	// A stateless completion starts no flow and nothing else asks its
	// intent: it is not classified (moltbot.Turn.Later), only answered.
	if code, body := post(t, n.URL()+"/v1/chat/completions", `{"model":"moltbot","messages":[{"role":"user","content":"我要退款"}]}`); code != 200 || simCalls() != 2 {
		t.Fatalf("stateless: %d %s, %d model calls", code, body, simCalls())
	}
	if stage("rules") != 1 || stage("ngram") != 1 || stage("fallback") != 1 {
		t.Fatalf("a stateless turn was classified: rules %d, ngram %d, fallback %d", stage("rules"), stage("ngram"), stage("fallback"))
	}

	// The model stage, through the simulator (it answers the enum value
	// whose words the message holds), with a threshold the classifier
	// never reaches: a rule still decides alone; an unsure message asks
	// the model, whose answer starts the flow.
	writeIntents(t, ws, `model: ""`, `model: sim/sim`, "threshold: 0.12", "threshold: 0.99")
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	conv = newConv(t, n)
	if reply, model := say(t, n, conv, "我要退款"); reply != "refund desk" || model != "flow/money" || simCalls() != 2 {
		t.Fatalf("refund with the model stage on: %q %s, %d model calls", reply, model, simCalls())
	}
	conv = newConv(t, n)
	if reply, model := say(t, n, conv, "what is my order status"); reply != "order desk" || model != "flow/where" {
		t.Fatalf("order status by the model: %q %s", reply, model)
	}
	if stage("model") != 1 || simCalls() != 3 {
		t.Fatalf("model stage %d, model calls %d", stage("model"), simCalls())
	}

	// A model that answers outside the enum is refused: the turn falls
	// back and goes to the chain's model; it was asked for the enum.
	writeIntents(t, ws, `model: ""`, `model: rogue/rogue`, "threshold: 0.12", "threshold: 0.99")
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	fb := stage("fallback")
	conv = newConv(t, n)
	if reply, model := say(t, n, conv, "what is my order status"); model != "sim/sim" || reply == "order desk" {
		t.Fatalf("a refused model answer: %q %s", reply, model)
	}
	rs.mu.Lock()
	format, calls := string(rs.format), rs.calls
	rs.mu.Unlock()
	if calls != 1 || stage("fallback") != fb+1 || stage("model") != 1 {
		t.Fatalf("rogue calls %d, fallback %d (was %d), model %d", calls, stage("fallback"), fb, stage("model"))
	}
	if !strings.Contains(format, `"json_schema"`) || !strings.Contains(format, `"enum":["refund","order_status",`) || !strings.Contains(format, `"fallback"]`) {
		t.Fatalf("the model was asked %s", format)
	}

	// A file that does not load keeps the intents in use, naming the
	// file, the line and the pattern.
	writeIntents(t, ws, `rules: ['退款', '(?i)\brefund']`, `rules: ['退款', '(?<=x)refund']`)
	_, err = n.Reload()
	if err == nil || !strings.Contains(err.Error(), `skills/intents.yaml:22: intents[0].rules[1]: pattern "(?<=x)refund"`) {
		t.Fatalf("reload: %v", err)
	}
	conv = newConv(t, n)
	if reply, _ := say(t, n, conv, "我要退款"); reply != "refund desk" {
		t.Fatalf("after a failed reload: %q", reply)
	}
}

// moltbot skills eval, list, lint and test with the intents.
func TestIntentsCommand(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	sets, _ := filepath.Glob("../../skills/intent/testdata/intents/*.jsonl")
	if len(sets) == 0 {
		t.Fatal("no eval sets")
	}
	code, out, e := runCLI(t, "", append([]string{"skills", "eval", "--workspace", ws, "--min-f1", "0.8"}, sets...)...)
	for _, want := range []string{"stages: rules,ngram\n", "samples: 280\n", "macro-F1: 0.", "fallback rate (in scope): ", "false-accept rate (out of scope): ",
		"INTENT          SUPPORT  PRECISION  RECALL  F1\naccount ", "out_of_scope    40 ", "WANT "} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("eval: want %q in %d %q %q", want, code, out, e)
		}
	}
	// Above any bar the set reaches: exit 1, saying so.
	if code, _, e := runCLI(t, "", append([]string{"skills", "eval", "--workspace", ws, "--min-f1", "0.99"}, sets...)...); code != 1 || !strings.Contains(e, "is below --min-f1 0.99") {
		t.Fatalf("a bar not reached: %d %q", code, e)
	}
	// The model stage needs settings.model; with it, --sim answers.
	if code, _, e := runCLI(t, "", append([]string{"skills", "eval", "--workspace", ws, "--stages", "rules,ngram,model"}, sets...)...); code != 2 || !strings.Contains(e, "needs settings.model") {
		t.Fatalf("model stage without a model: %d %q", code, e)
	}
	writeIntents(t, ws, `model: ""`, `model: sim/tiny`, "threshold: 0.12", "threshold: 0.99")
	code, out, e = runCLI(t, "", append([]string{"skills", "eval", "--workspace", ws, "--stages", "rules,ngram,model", "--sim"}, sets...)...)
	if code != 0 || !strings.Contains(out, "stages: rules,ngram,model") || strings.Contains(out, "model 0,") {
		t.Fatalf("eval with the model stage: %d %q %q", code, out, e)
	}
	// Without --sim, the config's providers: the preset's has no provider sim.
	if code, _, e := runCLI(t, "", append([]string{"skills", "eval", "--workspace", ws, "--stages", "model"}, sets...)...); code != 2 || !strings.Contains(e, `settings.model "sim/tiny"`) {
		t.Fatalf("eval with an unknown provider: %d %q", code, e)
	}
	// Bad input: a stage, a line of a set.
	if code, _, e := runCLI(t, "", "skills", "eval", "--workspace", ws, "--stages", "rules,vibes", sets[0]); code != 2 || !strings.Contains(e, `--stages: "vibes" is no stage`) {
		t.Fatalf("bad stage: %d %q", code, e)
	}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte("{\"text\":\"hi\",\"intent\":\"greeting\"}\n{\"text\":\"x\",\"intent\":\"lottery\"}\n"), 0o600)
	if code, _, e := runCLI(t, "", "skills", "eval", "--workspace", ws, bad); code != 1 || !strings.Contains(e, `bad.jsonl:2: intent "lottery" is not an intent of skills/intents.yaml`) {
		t.Fatalf("unknown intent in a set: %d %q", code, e)
	}
	os.WriteFile(bad, []byte("{\"text\":\"hi\",\"intnet\":\"greeting\"}\n"), 0o600)
	if code, _, e := runCLI(t, "", "skills", "eval", "--workspace", ws, bad); code != 1 || !strings.Contains(e, `bad.jsonl:1: json: unknown field "intnet"`) {
		t.Fatalf("unknown field in a set: %d %q", code, e)
	}

	// list shows the intents; lint notes a trigger naming an unknown
	// intent, an intent with few examples, an example of two intents.
	writeIntents(t, ws, "      - 我要退货\n", "      - 我要退货\n      - where is my order\n", "  min_examples: 8", "  min_examples: 31")
	writeFlow(t, ws, "where.yaml", orderIntentFlow)
	writeFlow(t, ws, "lost.yaml", "flow: lost\nnodes:\n  - {id: t, type: trigger, with: {intent: lottery}}\n  - {id: r, type: reply, with: {text: x}}\nedges: [[t, r]]\n")
	code, out, e = runCLI(t, "", "skills", "list", "--workspace", ws)
	if code != 0 || !strings.Contains(out, "intents (skills/intents.yaml): threshold 0.12, margin 0.02, fallback fallback, model off") ||
		!strings.Contains(out, "refund          2      31        the user wants") || !strings.Contains(out, "intent:order_status") {
		t.Fatalf("list: %d %q %q", code, out, e)
	}
	code, out, e = runCLI(t, "", "skills", "lint", "--workspace", ws)
	for _, want := range []string{
		`skills/flows/lost.yaml:3: trigger "t": intent "lottery" is not defined in skills/intents.yaml (refund, order_status,`,
		`skills/intents.yaml:55: intent "order_status" has 30 example(s); the classifier wants at least 31 (settings.min_examples)`,
		`skills/intents.yaml:55: intent "order_status": example "where is my order" is also an example of intent "refund"`,
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("lint: want %q in %d %q %q", want, code, out, e)
		}
	}
	// test: the intent starts the flow that names it.
	writeIntents(t, ws)
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "where is my parcel")
	if code != 0 || !strings.Contains(out, "intent: order_status (ngram, ") || !strings.Contains(out, "flow: where (version ") || !strings.Contains(out, "order desk") {
		t.Fatalf("test: %d %q %q", code, out, e)
	}
	// A file that does not load: file, line, key.
	writeIntents(t, ws, "  - name: shipping", "  - name: Shipping")
	if code, _, e := runCLI(t, "", "skills", "list", "--workspace", ws); code != 1 || !strings.Contains(e, `skills/intents.yaml:`) || !strings.Contains(e, `.name: "Shipping": an intent's name is`) {
		t.Fatalf("a bad file: %d %q", code, e)
	}
}

// A node whose skills/intents.yaml does not load does not start, naming
// the file, the line and the key.
func TestIntentsBadFileAtStart(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	writeIntents(t, ws, "  threshold: 0.12", "  threshold: 1.5")
	cfg, err := configs.Load(filepath.Join(ws, "moltbot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: ws, Log: slog.New(slog.DiscardHandler)}
	err = n.Start()
	if err == nil {
		n.Shutdown(context.Background())
		t.Fatal("the node started")
	}
	if !strings.Contains(err.Error(), `skills/intents.yaml:13: settings.threshold: "1.5": want a number from 0 to 1`) {
		t.Fatalf("got %v", err)
	}
}
