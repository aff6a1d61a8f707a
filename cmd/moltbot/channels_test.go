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
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/webhook"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

const hookSecret = "integration-secret-0123456789"

// The test binary is the moltbot of the process tests: the toy type below
// is one of its channel types there too.
func init() { testChannelTypes = append(testChannelTypes, toyRunType()) }

// toyRunType is an outbound adapter for the placement tests: its Run
// holds a long GET open to the test's "platform" (option url) until it is
// canceled, so the platform sees where and how many times it runs.
func toyRunType() channels.Type {
	return channels.Type{Name: "toyrun", Options: []string{"url"}, Required: []string{"url"},
		New: func(c channels.Config, h channels.Host) (channels.Adapter, error) {
			return &toyRun{url: c.Options["url"], host: h}, nil
		}}
}

type toyRun struct {
	url  string
	host channels.Host
}

func (a *toyRun) Run(ctx context.Context) error {
	// The channel's state counts the Runs, whichever node ran them (the
	// cluster's shared state): the platform sees the count.
	runs := 0
	if v, ok := a.host.Get("runs"); ok {
		runs, _ = strconv.Atoi(string(v))
	}
	runs++
	if err := a.host.Put("runs", []byte(strconv.Itoa(runs))); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", a.url+"?runs="+strconv.Itoa(runs), nil)
	if err != nil {
		return channels.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	a.host.Report(channels.StateConnected, nil)
	io.Copy(io.Discard, resp.Body) // until the platform or ctx ends it
	return fmt.Errorf("the platform closed the connection")
}

func (a *toyRun) ServeHTTP(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
func (a *toyRun) Send(context.Context, string, moltbot.Message) error {
	return nil
}
func (a *toyRun) Typing(context.Context, string) error { return nil }

// platform counts the toy Runs connected to it.
type platform struct {
	*httptest.Server
	mu    sync.Mutex
	open  int
	total int
	runs  []string // each connection's count of runs
}

func newPlatform(t *testing.T) *platform {
	p := &platform{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.open++
		p.total++
		p.runs = append(p.runs, r.URL.Query().Get("runs"))
		p.mu.Unlock()
		defer func() { p.mu.Lock(); p.open--; p.mu.Unlock() }()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(func() { p.CloseClientConnections(); p.Close() })
	return p
}

func (p *platform) counts() (open, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open, p.total
}

// callbacks is a webhook's receiver: it checks each reply's signature as
// a customer's server would, and keeps the replies.
type callbacks struct {
	*httptest.Server
	mu      sync.Mutex
	replies []webhook.Reply
	bad     int
}

func newCallbacks(t *testing.T) *callbacks {
	cb := &callbacks{}
	cb.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		cb.mu.Lock()
		defer cb.mu.Unlock()
		if err := moltbot.VerifyHook(hookSecret, r.Header.Get(moltbot.HeaderHookTimestamp), r.Header.Get(moltbot.HeaderHookSignature), b, time.Now(), webhook.Skew); err != nil {
			cb.bad++
			w.WriteHeader(401)
			return
		}
		var rep webhook.Reply
		if json.Unmarshal(b, &rep) != nil || r.Header.Get("Idempotency-Key") != rep.ID {
			cb.bad++
			w.WriteHeader(400)
			return
		}
		cb.replies = append(cb.replies, rep)
	}))
	t.Cleanup(cb.Close)
	return cb
}

func (cb *callbacks) to(id string) []webhook.Reply {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	var out []webhook.Reply
	for _, r := range cb.replies {
		if r.InReplyTo == id {
			out = append(out, r)
		}
	}
	return out
}

func (cb *callbacks) badCount() int {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return cb.bad
}

// postEvent signs body and POSTs it to a node's webhook channel.
func postEvent(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	ts := time.Now().Unix()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(moltbot.HeaderHookTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(moltbot.HeaderHookSignature, moltbot.SignHook(hookSecret, ts, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func hookConfig(port int, callback string, extra string) string {
	return fmt.Sprintf(`server: {host: 127.0.0.1, port: %d, shutdown_timeout: 3s}
log: {level: info, format: text}
providers:
  - {name: sim, type: sim, sim: {ttft: 2ms, itl: 0s, tokens: 6}}
models: {primary: sim/sim}
bots:
  - {name: support, system: "You are the support bot."}
channels:
  - name: hooks
    type: webhook
    bot: support
    secret: ${HOOK_SECRET}
    callback_url: %s
  - name: quick
    type: webhook
    secret: ${HOOK_SECRET}
    reply: sync
    wait: 20s
%s`, port, callback, extra)
}

// A node with webhook channels and the simulator: a signed event gets a
// signed reply at the callback, from the channel's bot; its retry makes no
// second turn; a sync channel answers in the response; a bad signature is
// 401 and, repeated, 429; the admin API and the CLI show the channel; the
// metrics count it.
func TestWebhookChannelNode(t *testing.T) {
	t.Setenv("HOOK_SECRET", hookSecret)
	cb := newCallbacks(t)
	n, _ := startNodeIn(t, t.TempDir(), hookConfig(0, cb.URL, ""), slog.LevelInfo)
	url := n.URL() + "/channels/hooks/"
	ev := `{"id":"ev-1","user":"alice","text":"hello there"}`
	if code, out := postEvent(t, url, ev); code != 202 || out["status"] != "accepted" {
		t.Fatalf("%d %v", code, out)
	}
	testutil.Eventually(t, 20*time.Second, "the reply at the callback", func() bool { return len(cb.to("ev-1")) == 1 })
	rep := cb.to("ev-1")[0]
	if rep.Channel != "hooks" || rep.Text == "" || rep.ID == "" {
		t.Fatalf("reply %+v", rep)
	}
	// The conversation: the bot's, keyed by the user, one turn.
	conv := channels.ConversationID("hooks", channels.PerUser, channels.Message{ID: "ev-1", User: "alice", Chat: "alice"})
	_, body := getBody(t, n.URL()+"/v1/conversations/"+conv)
	var c struct {
		Bot      string
		Messages []struct{ Role, Content string }
	}
	json.Unmarshal([]byte(body), &c)
	if c.Bot != "support" || len(c.Messages) != 3 || c.Messages[0].Content != "You are the support bot." || c.Messages[1].Content != "hello there" {
		t.Fatalf("conversation %s", body)
	}
	// The retry: a duplicate; the next event's reply comes and the first
	// has still one.
	if code, out := postEvent(t, url, ev); code != 200 || out["status"] != "duplicate" {
		t.Fatalf("retry: %d %v", code, out)
	}
	if code, _ := postEvent(t, url, `{"id":"ev-2","user":"alice","text":"and again"}`); code != 202 {
		t.Fatal(code)
	}
	testutil.Eventually(t, 20*time.Second, "the second reply", func() bool { return len(cb.to("ev-2")) == 1 })
	if len(cb.to("ev-1")) != 1 || cb.badCount() != 0 {
		t.Fatalf("replies to ev-1: %d, bad callbacks %d", len(cb.to("ev-1")), cb.badCount())
	}
	// reply: sync answers in the response.
	code, out := postEvent(t, n.URL()+"/channels/quick/", `{"id":"q-1","user":"bob","text":"quick question"}`)
	if r, _ := out["reply"].(map[string]any); code != 200 || out["status"] != "answered" || r["text"] == "" || r["in_reply_to"] != "q-1" {
		t.Fatalf("sync: %d %v", code, out)
	}
	if code, _ := getBody(t, n.URL()+"/channels/nope/"); code != 404 {
		t.Fatalf("no such channel: %d", code)
	}
	// A bad signature: 401 before parsing; the address's budget then runs out.
	bad := func() int {
		req, _ := http.NewRequest("POST", url, strings.NewReader("{}"))
		req.Header.Set(moltbot.HeaderHookTimestamp, strconv.FormatInt(time.Now().Unix(), 10))
		req.Header.Set(moltbot.HeaderHookSignature, "sha256=00")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 30 {
		if code := bad(); code != 401 {
			t.Fatalf("a bad signature: %d", code)
		}
	}
	if code := bad(); code != 429 {
		t.Fatalf("past the failure budget: %d", code)
	}
	// The admin API and the CLI.
	_, body = getBody(t, n.URL()+"/v1/admin/channels")
	var list struct{ Channels []channels.Status }
	json.Unmarshal([]byte(body), &list)
	if len(list.Channels) != 2 || list.Channels[0].Name != "hooks" || list.Channels[0].State != channels.StateListening ||
		list.Channels[0].Counters.Accepted != 2 || list.Channels[0].Counters.Duplicates != 1 || list.Channels[0].Counters.Sent != 2 {
		t.Fatalf("channels %s", body)
	}
	code, stdout, stderr := runCLI(t, "", "channels", "status", "--url", n.URL(), "hooks")
	if code != 0 || !strings.Contains(stdout, "state:       listening") || !strings.Contains(stdout, "accepted:    2") || !strings.Contains(stdout, "duplicates:  1") {
		t.Fatalf("status: %d %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "channels", "list", "--url", n.URL())
	if code != 0 || !strings.Contains(stdout, "hooks") || !strings.Contains(stdout, "quick") {
		t.Fatalf("list: %d %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "channels", "test", "--url", n.URL(), "--to", "probe-1 "+cb.URL, "--text", "ping", "hooks")
	if code != 0 || len(cb.to("probe-1")) != 1 || cb.to("probe-1")[0].Text != "ping" {
		t.Fatalf("test: %d %s %s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, "", "channels", "status", "--url", n.URL(), "nope"); code == 0 || !strings.Contains(stderr, "not found") {
		t.Fatalf("status of no channel: %d %s", code, stderr)
	}
	_, metrics := getBody(t, n.URL()+"/metrics")
	for _, want := range []string{`moltbot_channel_events_total{channel="hooks",outcome="accepted"} 2`, `moltbot_channel_events_total{channel="hooks",outcome="duplicate"} 1`,
		`moltbot_channel_sends_total{channel="hooks",outcome="ok"} 3`, `moltbot_channel_inbox_depth{channel="hooks"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// The config's channels are checked against the types: an unknown type,
// an unknown option, a missing one, a bad value, each naming its key and
// line; the node does not start.
func TestChannelConfigErrors(t *testing.T) {
	base := "providers:\n  - {name: sim, type: sim}\nmodels: {primary: sim/sim}\nchannels:\n"
	for ch, want := range map[string]string{
		"  - {name: a, type: carrier-pigeon}\n":                                              `m.yaml:5: channels[0].type: unknown channel type "carrier-pigeon" (known: webhook`,
		"  - {name: a, type: webhook, secret: " + hookSecret + ", token: x}\n":               `m.yaml:5: channels[0].token: unknown key for a webhook channel`,
		"  - {name: a, type: webhook}\n":                                                     `m.yaml:5: channels[0].secret: is required by a webhook channel`,
		"  - name: a\n    type: webhook\n    secret: short\n":                                `m.yaml:7: channels[0].secret: at least 16 bytes`,
		"  - name: a\n    type: webhook\n    secret: " + hookSecret + "\n    reply: later\n": `m.yaml:8: channels[0].reply: want async or sync`,
	} {
		cfg, err := parseYAML(base + ch)
		if err != nil {
			t.Fatalf("%s: %v", ch, err)
		}
		_, err = channelSpecs(cfg, (&Node{}).channelTypes())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", ch, err, want)
		}
		n := &Node{Config: cfg}
		if err := n.Start(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("start: %v", err)
			if err == nil {
				n.Shutdown(context.Background())
			}
		}
	}
}

// moltbot doctor checks the channels as start does.
func TestDoctorChecksChannels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moltbot.yaml")
	os.WriteFile(path, []byte("providers:\n  - {name: sim, type: sim}\nmodels: {primary: sim/sim}\nchannels:\n  - {name: a, type: carrier-pigeon}\n"), 0o600)
	code, stdout, stderr := runCLI(t, "", "doctor", "--config", path)
	if code == 0 || !strings.Contains(stdout+stderr, `moltbot.yaml:5: channels[0].type: unknown channel type "carrier-pigeon"`) {
		t.Fatalf("doctor: %d %s %s", code, stdout, stderr)
	}
}

func parseYAML(s string) (*configs.Config, error) {
	return configs.Parse("m.yaml", []byte(s), os.LookupEnv)
}

// kill -9 between the acknowledgement and the reply: the event is in the
// inbox, and the restarted node answers it (signed, at the callback).
func TestWebhookKill9(t *testing.T) {
	cb := newCallbacks(t)
	port := testutil.FreePort(t)
	ws := t.TempDir()
	cfg := strings.Replace(hookConfig(port, cb.URL, ""), "ttft: 2ms", "ttft: 1500ms", 1)
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOOK_SECRET", hookSecret) // the nodes' environment
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	node := startProc(t, "moltbot", "start", "--workspace", ws)
	waitReady(t, base)
	if code, out := postEvent(t, base+"/channels/hooks/", `{"id":"k-1","user":"carol","text":"are you there?"}`); code != 202 {
		t.Fatalf("%d %v", code, out)
	}
	node.cmd.Process.Signal(syscall.SIGKILL)
	node.wait(t, 10*time.Second)
	if n := len(cb.to("k-1")); n != 0 {
		t.Skipf("the reply came before the kill (%d): nothing to test", n)
	}
	startProc(t, "moltbot", "start", "--workspace", ws)
	waitReady(t, base)
	testutil.Eventually(t, 30*time.Second, "the reply after the restart", func() bool { return len(cb.to("k-1")) >= 1 })
	if cb.badCount() != 0 {
		t.Fatalf("%d callbacks failed their signature check", cb.badCount())
	}
	// Once in the conversation, whatever was redone.
	conv := channels.ConversationID("hooks", channels.PerUser, channels.Message{User: "carol", Chat: "carol"})
	_, body := getBody(t, base+"/v1/conversations/"+conv)
	if strings.Count(body, "are you there?") != 1 {
		t.Fatalf("conversation %s", body)
	}
}

// Three node processes: the same event POSTed to two of them makes one
// turn and one reply; a toy outbound channel runs on exactly one node,
// moves to another when that node stops (SIGTERM), and to the last when
// that one dies (kill -9); its Get/Put state follows it.
func TestChannelsCluster(t *testing.T) {
	cb := newCallbacks(t)
	plat := newPlatform(t)
	t.Setenv("HOOK_SECRET", hookSecret)
	nodes := clusterNodes(t, 3)
	for _, n := range nodes {
		f, err := os.OpenFile(filepath.Join(n.ws, "moltbot.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "channels:\n  - {name: hooks, type: webhook, secret: \"${HOOK_SECRET}\", callback_url: %q}\n  - {name: outbound, type: toyrun, url: %q}\n",
			cb.URL, plat.URL)
		f.Close()
		n.start(t)
	}
	convergeProcs(t, nodes, 3)
	// Exactly one Run, and every node says which.
	runner := func() (string, bool) {
		holder, n := "", 0
		for _, nd := range nodes {
			if nd.p == nil {
				continue
			}
			_, body := getBody(t, nd.url+"/v1/admin/channels/outbound")
			var st channels.Status
			json.Unmarshal([]byte(body), &st)
			switch st.State {
			case channels.StateConnected:
				n++
				holder = nd.gossip
			case channels.StateElsewhere:
			default:
				return "", false
			}
		}
		open, _ := plat.counts()
		return holder, n == 1 && open == 1
	}
	var holder string
	testutil.Eventually(t, 30*time.Second, "one node runs the outbound channel", func() bool {
		h, ok := runner()
		holder = h
		return ok
	})
	for _, nd := range nodes {
		_, body := getBody(t, nd.url+"/v1/admin/channels/outbound")
		var st channels.Status
		json.Unmarshal([]byte(body), &st)
		if st.Node != holder {
			t.Fatalf("%s says %q runs it, want %q", nd.url, st.Node, holder)
		}
		// The others show how it runs there (the state the cluster shares).
		if nd.gossip != holder {
			testutil.Eventually(t, 20*time.Second, nd.url+" shows the run's state", func() bool {
				_, body := getBody(t, nd.url+"/v1/admin/channels/outbound")
				var st channels.Status
				json.Unmarshal([]byte(body), &st)
				return st.State == channels.StateElsewhere && st.RunState == channels.StateConnected
			})
		}
	}
	// The same event to two nodes at once: one turn, one reply.
	ev := `{"id":"twice-1","user":"dave","text":"one question"}`
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i], _ = postEvent(t, nodes[i].url+"/channels/hooks/", ev) }()
	}
	wg.Wait()
	if codes[0] != 202 || codes[1] != 202 {
		t.Fatalf("codes %v", codes)
	}
	testutil.Eventually(t, 30*time.Second, "the reply", func() bool { return len(cb.to("twice-1")) >= 1 })
	duplicates := func() uint64 {
		var d uint64
		for _, nd := range nodes {
			_, body := getBody(t, nd.url+"/v1/admin/channels/hooks")
			var st channels.Status
			json.Unmarshal([]byte(body), &st)
			d += st.Counters.Duplicates
		}
		return d
	}
	testutil.Eventually(t, 30*time.Second, "the second delivery counted a duplicate", func() bool { return duplicates() == 1 })
	conv := channels.ConversationID("hooks", channels.PerUser, channels.Message{User: "dave", Chat: "dave"})
	_, body := getBody(t, nodes[2].url+"/v1/conversations/"+conv)
	if strings.Count(body, "one question") != 1 || strings.Count(body, `"role":"assistant"`) != 1 {
		t.Fatalf("conversation %s", body)
	}
	// A later event's reply, then still one reply to the first.
	if code, _ := postEvent(t, nodes[2].url+"/channels/hooks/", `{"id":"later-1","user":"dave","text":"another"}`); code != 202 {
		t.Fatal(code)
	}
	testutil.Eventually(t, 30*time.Second, "the later reply", func() bool { return len(cb.to("later-1")) == 1 })
	if n := len(cb.to("twice-1")); n != 1 {
		t.Fatalf("%d replies to the event sent twice", n)
	}
	// The node running the outbound channel stops: another takes it.
	var stopped *cnode
	for _, nd := range nodes {
		if nd.gossip == holder {
			stopped = nd
		}
	}
	stopped.p.cmd.Process.Signal(syscall.SIGTERM)
	stopped.p.wait(t, 20*time.Second)
	stopped.p = nil
	var rest []*cnode
	for _, nd := range nodes {
		if nd.p != nil {
			rest = append(rest, nd)
		}
	}
	convergeProcs(t, rest, 2)
	testutil.Eventually(t, 30*time.Second, "another node runs the outbound channel", func() bool {
		h, ok := runner()
		if ok {
			holder = h
		}
		return ok && h != stopped.gossip
	})
	if _, total := plat.counts(); total < 2 {
		t.Fatalf("%d connections in all", total)
	}
	// The new node read the count the first one wrote (the channel's
	// state, replicated): its Run is the second or later, never a first.
	plat.mu.Lock()
	if plat.runs[0] != "1" || plat.runs[len(plat.runs)-1] == "1" {
		plat.mu.Unlock()
		t.Fatalf("runs seen by the platform %v: the state did not reach the new node", plat.runs)
	}
	plat.mu.Unlock()
	// Its new node dies (kill -9): the last one takes the channel.
	var last *cnode
	for _, nd := range rest {
		if nd.gossip == holder {
			nd.p.cmd.Process.Signal(syscall.SIGKILL)
			nd.p.wait(t, 10*time.Second)
			nd.p = nil
		} else {
			last = nd
		}
	}
	plat.CloseClientConnections() // the dead node's socket, as its peer's kernel would in time
	testutil.Eventually(t, 60*time.Second, "the last node runs the outbound channel", func() bool {
		h, ok := runner()
		return ok && h == last.gossip
	})
}

// A reload applies the file's channels: one added serves, one removed is
// 404, an unchanged one keeps its state; a bad one keeps what runs.
func TestChannelsReload(t *testing.T) {
	t.Setenv("HOOK_SECRET", hookSecret)
	cb := newCallbacks(t)
	ws := t.TempDir()
	n, _ := startNodeIn(t, ws, hookConfig(0, cb.URL, ""), slog.LevelInfo)
	if code, _ := postEvent(t, n.URL()+"/channels/hooks/", `{"id":"r-1","user":"u","text":"hi"}`); code != 202 {
		t.Fatal(code)
	}
	write := func(text string) {
		if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// quick removed, extra added, hooks unchanged.
	cfg := strings.Replace(hookConfig(0, cb.URL, "  - {name: extra, type: webhook, secret: \"${HOOK_SECRET}\"}\n"),
		"  - name: quick\n    type: webhook\n    secret: ${HOOK_SECRET}\n    reply: sync\n    wait: 20s\n", "", 1)
	write(cfg)
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _ := postEvent(t, n.URL()+"/channels/extra/", `{"id":"x-1","user":"u","text":"hi"}`); code != 202 {
		t.Fatalf("the channel added: %d", code)
	}
	if code, _ := postEvent(t, n.URL()+"/channels/quick/", `{"id":"q-1","user":"u","text":"hi"}`); code != 404 {
		t.Fatalf("the channel removed: %d", code)
	}
	if st, _ := n.chans.StatusOf("hooks"); st.Counters.Accepted != 1 {
		t.Fatalf("the unchanged channel: %+v", st)
	}
	write(strings.Replace(cfg, "name: extra, type: webhook", "name: extra, type: pigeon", 1))
	if _, err := n.Reload(); err == nil || !strings.Contains(err.Error(), `unknown channel type "pigeon"`) {
		t.Fatalf("a bad reload: %v", err)
	}
	if code, _ := postEvent(t, n.URL()+"/channels/extra/", `{"id":"x-2","user":"u","text":"hi"}`); code != 202 {
		t.Fatalf("after a bad reload: %d", code)
	}
}

// A node without channels runs no goroutine of theirs; one added by a
// reload starts them.
func TestNoChannelsNoGoroutines(t *testing.T) {
	t.Setenv("HOOK_SECRET", hookSecret)
	ws := t.TempDir()
	base := "server: {host: 127.0.0.1, port: 0}\nproviders:\n  - {name: sim, type: sim}\nmodels: {primary: sim/sim}\n"
	n, _ := startNodeIn(t, ws, base, slog.LevelInfo)
	channelGoroutines := func() int {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 2)
		k := 0
		for _, g := range strings.Split(b.String(), "\n\n") {
			if strings.Contains(g, "moltbot/channels.") {
				k++
			}
		}
		return k
	}
	// (Eventually: an earlier test's node may still be ending its own.)
	testutil.Eventually(t, 10*time.Second, "no goroutine of the channels on a node without any", func() bool { return channelGoroutines() == 0 })
	os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(base+"channels:\n  - {name: h, type: webhook, secret: \"${HOOK_SECRET}\"}\n"), 0o600)
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if k := channelGoroutines(); k == 0 {
		t.Fatal("a channel added, and no worker runs")
	}
	if code, _ := postEvent(t, n.URL()+"/channels/h/", `{"id":"1","user":"u","text":"hi"}`); code != 202 {
		t.Fatal(code)
	}
}

// A widget behind the node's TLS proxy counts visitors by their address,
// not the proxy's: server.trusted_proxies is the widget's default (the
// README tells a user behind a proxy to set it; without this a widget
// kept its own empty list and every visitor shared the proxy's 30 new
// visitors an hour). A widget's own trusted_proxies still wins.
func TestWidgetTrustsTheServersProxies(t *testing.T) {
	base := "server: {trusted_proxies: [10.0.0.0/8]}\nproviders:\n  - {name: sim, type: sim}\nmodels: {primary: sim/sim}\nchannels:\n" +
		"  - {name: w, type: widget, publishable_key: pk_test_0123456789abcdefghijklmn, origins: 'https://shop.example', visitor_secret: 0123456789abcdef0123456789abcdef}\n" +
		"  - {name: v, type: widget, publishable_key: pk_test_0123456789abcdefghijklmo, origins: 'https://shop.example', visitor_secret: 0123456789abcdef0123456789abcdef, trusted_proxies: 192.168.0.1}\n"
	cfg, err := parseYAML(base)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := channelSpecs(cfg, (&Node{}).channelTypes())
	if err != nil {
		t.Fatal(err)
	}
	if got := specs[0].Config.Options["trusted_proxies"]; got != "10.0.0.0/8" {
		t.Fatalf("w's trusted_proxies %q, want the server's", got)
	}
	if got := specs[1].Config.Options["trusted_proxies"]; got != "192.168.0.1" {
		t.Fatalf("v's own trusted_proxies became %q", got)
	}
	if _, ok := cfg.Channels[0].Options["trusted_proxies"]; ok {
		t.Fatal("the config itself was changed")
	}
}
