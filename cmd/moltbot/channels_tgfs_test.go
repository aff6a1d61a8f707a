package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels/feishu/fakefeishu"
	"github.com/moltbot/moltbot/channels/telegram/faketelegram"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

const (
	tgfsToken  = "777001:NodeTestTokenSecret_xyz"
	tgfsAppID  = "cli_nodetest"
	tgfsSecret = "node-test-app-secret-1234"
	tgfsEKey   = "node-test-encrypt-key"
	tgfsVTok   = "node-test-verification-token"
)

func tgfsConfig(tg, fs string) string {
	return fmt.Sprintf(`server: {host: 127.0.0.1, port: 0, shutdown_timeout: 3s}
log: {level: info, format: text}
providers:
  - {name: sim, type: sim, sim: {ttft: 2ms, itl: 0s, tokens: 6}}
models: {primary: sim/sim}
bots:
  - {name: support, system: "You are the support bot."}
channels:
  - name: tg
    type: telegram
    bot: support
    token: ${TG_TOKEN}
    api_url: %[1]s
  - name: tghook
    type: telegram
    bot: support
    token: ${TG_TOKEN}
    mode: webhook
    secret_token: hook_Secret-1
    api_url: %[1]s
  - name: fs
    type: feishu
    bot: support
    app_id: %[2]s
    app_secret: ${FS_SECRET}
    encrypt_key: ${FS_EKEY}
    verification_token: ${FS_VTOK}
    api_url: %[3]s
`, tg, tgfsAppID, fs)
}

// startChannelsNode starts a node from text.
func startChannelsNode(t *testing.T, ws, text string) (*Node, *syncBuf) {
	t.Helper()
	return startNodeIn(t, ws, text, slog.LevelInfo)
}

// A node with a Telegram poller and a Feishu event endpoint, against the
// fakes, the simulator as the model: a Telegram message gets a reply in
// its chat, answering it; a signed, encrypted Feishu event gets a reply
// to its message; Feishu's redelivery under a new event id is a
// duplicate; the token and the app secret appear in no log line; after a
// restart the poller resumes at the saved offset (no message taken or
// answered twice).
func TestTelegramAndFeishuChannelsNode(t *testing.T) {
	t.Setenv("TG_TOKEN", tgfsToken)
	t.Setenv("FS_SECRET", tgfsSecret)
	t.Setenv("FS_EKEY", tgfsEKey)
	t.Setenv("FS_VTOK", tgfsVTok)
	tg := faketelegram.New(tgfsToken)
	defer tg.Close()
	fs := fakefeishu.New(tgfsAppID, tgfsSecret)
	defer fs.Close()
	ws := t.TempDir()
	n, logs := startChannelsNode(t, ws, tgfsConfig(tg.URL(), fs.URL()))

	first := tg.Push(faketelegram.Text(4242, "private", 99, false, "hello from telegram", 7))
	testutil.Eventually(t, 20*time.Second, "the Telegram reply", func() bool { return len(tg.Sent()) == 1 })
	s := tg.Sent()[0]
	if s.ChatID != 4242 || s.ReplyTo != 7 || s.Text == "" {
		t.Fatalf("telegram reply %+v", s)
	}

	post := func(eventID, messageID, text string) int {
		body := fakefeishu.Encrypt(tgfsEKey, fakefeishu.Event(tgfsVTok, eventID, messageID, "oc_chat1", "p2p", "user", "ou_user1", text))
		code, _, err := fakefeishu.Post(context.Background(), n.URL()+"/channels/fs/", body, fakefeishu.Sign(tgfsEKey, time.Now(), body))
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	if code := post("ev-1", "om_1", "hello from feishu"); code != 200 {
		t.Fatalf("feishu event: %d", code)
	}
	if code := post("ev-1-again", "om_1", "hello from feishu"); code != 200 {
		t.Fatalf("feishu redelivery: %d", code)
	}
	testutil.Eventually(t, 20*time.Second, "the Feishu reply", func() bool { return len(fs.Sent()) >= 1 })
	if f := fs.Sent()[0]; f.ReplyTo != "om_1" || f.Text == "" {
		t.Fatalf("feishu reply %+v", f)
	}
	_, body := getBody(t, n.URL()+"/v1/admin/channels")
	var list struct {
		Channels []struct {
			Name, State string
			Counters    struct{ Accepted, Duplicates uint64 }
		}
	}
	json.Unmarshal([]byte(body), &list)
	for _, c := range list.Channels {
		switch {
		case c.Name == "fs" && (c.Counters.Accepted != 1 || c.Counters.Duplicates != 1):
			t.Errorf("feishu counters %+v, want 1 accepted, 1 duplicate", c.Counters)
		case c.Name == "tg" && (c.Counters.Accepted != 1 || c.State != "connected"):
			t.Errorf("telegram %+v", c)
		}
	}

	// Telegram's webhook mode and Feishu's challenge, through the node.
	hook := faketelegram.Text(5151, "private", 51, false, "via the webhook", 9)
	hook["update_id"] = 424242
	for _, c := range []struct {
		secret string
		want   int
	}{{"wrong", 401}, {"hook_Secret-1", 200}} {
		if code, err := faketelegram.PostWebhook(context.Background(), n.URL()+"/channels/tghook/", c.secret, hook); err != nil || code != c.want {
			t.Fatalf("webhook with secret %q: %d %v, want %d", c.secret, code, err, c.want)
		}
	}
	testutil.Eventually(t, 20*time.Second, "the webhook's reply", func() bool {
		for _, s := range tg.Sent() {
			if s.ChatID == 5151 && s.ReplyTo == 9 {
				return true
			}
		}
		return false
	})
	ch := fakefeishu.Encrypt(tgfsEKey, fakefeishu.Challenge(tgfsVTok, "node-challenge"))
	if code, b, err := fakefeishu.Post(context.Background(), n.URL()+"/channels/fs/", ch, nil); err != nil || code != 200 || !strings.Contains(string(b), `"challenge":"node-challenge"`) {
		t.Fatalf("the challenge through the node: %d %s %v", code, b, err)
	}

	// moltbot channels test: a bare chat id (Telegram) or chat_id (Feishu).
	for _, c := range []struct{ name, to string }{{"tg", "4242"}, {"fs", "oc_chat1"}} {
		if code, stdout, stderr := runCLI(t, "", "channels", "test", "--url", n.URL(), "--to", c.to, "--text", "ping "+c.name, c.name); code != 0 {
			t.Fatalf("channels test %s: %d %s %s", c.name, code, stdout, stderr)
		}
	}
	if s := tg.Sent(); len(s) != 3 || s[2].ChatID != 4242 || s[2].Text != "ping tg" || s[2].ReplyTo != 0 {
		t.Fatalf("telegram after channels test: %+v", s)
	}
	if f := fs.Sent(); len(f) != 2 || f[1].ChatID != "oc_chat1" || f[1].Text != "ping fs" {
		t.Fatalf("feishu after channels test: %+v", f)
	}

	// A restart: the new poller starts at the saved offset.
	n.Shutdown(context.Background())
	before := len(tg.Offsets())
	n2, logs2 := startChannelsNode(t, ws, tgfsConfig(tg.URL(), fs.URL()))
	tg.Push(faketelegram.Text(4242, "private", 99, false, "after the restart", 8))
	testutil.Eventually(t, 20*time.Second, "the reply after the restart", func() bool { return len(tg.Sent()) == 4 })
	if s := tg.Sent()[3]; s.ReplyTo != 8 {
		t.Errorf("after the restart the reply answers %d, want 8 (message 7 answered twice?)", s.ReplyTo)
	}
	for _, off := range tg.Offsets()[before:] {
		if off <= first {
			t.Errorf("the restarted poller polled from %d, at or before the first update %d", off, first)
		}
	}
	n2.Shutdown(context.Background())
	for _, l := range []string{logs.String(), logs2.String()} {
		if strings.Contains(l, "NodeTestTokenSecret") || strings.Contains(l, tgfsSecret) {
			t.Fatalf("a credential in the log:\n%s", l)
		}
	}
}

// Three node processes with one Telegram channel: exactly one polls (no
// 409 from the fake once the ring stands: never two pollers at once); its
// node killed -9,
// another takes the poller over from the shared offset; every message,
// before and after, is answered (those after exactly once).
func TestClusterProcessesTelegramPoller(t *testing.T) {
	t.Setenv("TG_TOKEN", tgfsToken)
	tg := faketelegram.New(tgfsToken)
	defer tg.Close()
	nodes := clusterNodes(t, 3)
	for _, n := range nodes {
		f, err := os.OpenFile(filepath.Join(n.ws, "moltbot.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "bots:\n  - {name: support, system: \"You are the support bot.\"}\nchannels:\n  - {name: tg, type: telegram, bot: support, token: \"${TG_TOKEN}\", api_url: %q}\n", tg.URL())
		f.Close()
	}
	if _, err := configs.Load(filepath.Join(nodes[0].ws, "moltbot.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		n.start(t)
	}
	convergeProcs(t, nodes, 3)
	holder := func() (string, bool) {
		var who []string
		for _, nd := range nodes {
			if nd.p == nil {
				continue
			}
			_, body := getBody(t, nd.url+"/v1/admin/channels/tg")
			var st struct{ State, Node string }
			json.Unmarshal([]byte(body), &st)
			if st.State == "connected" {
				who = append(who, nd.gossip)
			}
		}
		if len(who) != 1 {
			return "", false
		}
		return who[0], true
	}
	var h string
	testutil.Eventually(t, 30*time.Second, "one node polls", func() (ok bool) { h, ok = holder(); return ok })

	// While the nodes joined, the ring moved the poller (a node's poll can
	// meet its successor's: a 409, absorbed); from here it stays.
	conflicts := tg.Conflicts()
	answered := func(n int) func() bool { return func() bool { return len(tg.Sent()) >= n } }
	for i := range 3 {
		tg.Push(faketelegram.Text(int64(100+i), "private", int64(100+i), false, fmt.Sprint("before ", i), 1))
	}
	testutil.Eventually(t, 30*time.Second, "three replies", answered(3))
	if c := tg.Conflicts() - conflicts; c != 0 {
		t.Fatalf("%d polls ended by another poller while the ring stood still", c)
	}

	var victim *cnode
	for _, nd := range nodes {
		if nd.gossip == h {
			victim = nd
		}
	}
	victim.p.cmd.Process.Signal(syscall.SIGKILL)
	victim.p.wait(t, 20*time.Second)
	victim.p = nil
	for i := range 3 {
		tg.Push(faketelegram.Text(int64(200+i), "private", int64(200+i), false, fmt.Sprint("after ", i), 1))
	}
	var rest []*cnode
	for _, nd := range nodes {
		if nd.p != nil {
			rest = append(rest, nd)
		}
	}
	convergeProcs(t, rest, 2)
	chats := []int64{100, 101, 102, 200, 201, 202}
	count := func() map[int64]int {
		seen := map[int64]int{}
		for _, s := range tg.Sent() {
			seen[s.ChatID]++
		}
		return seen
	}
	testutil.Eventually(t, 60*time.Second, "every message answered", func() bool {
		seen := count()
		for _, c := range chats {
			if seen[c] == 0 {
				return false
			}
		}
		return true
	})
	if h2, ok := holder(); !ok || h2 == h {
		t.Errorf("after the kill the poller is on %q (%v), want another node than %s", h2, ok, h)
	}
	// Every message made one turn: a chat's replies are one text (the
	// simulator's text differs from turn to turn). The messages taken
	// after the kill are answered once. One answered just before it may be
	// answered again with the same reply: the outbox delivers at least
	// once (a node killed between a delivery and the replicated write that
	// records it), and Telegram's sendMessage has no idempotency key.
	texts := map[int64]map[string]bool{}
	for _, s := range tg.Sent() {
		if texts[s.ChatID] == nil {
			texts[s.ChatID] = map[string]bool{}
		}
		texts[s.ChatID][s.Text] = true
	}
	seen := count()
	for _, c := range chats {
		if len(texts[c]) != 1 {
			t.Errorf("chat %d got %d different replies: one message made several turns (%v)", c, len(texts[c]), texts[c])
		}
		if seen[c] > 2 || (c >= 200 && seen[c] != 1) {
			t.Errorf("chat %d answered %d times (%v)", c, seen[c], seen)
		}
		if seen[c] == 2 {
			t.Logf("chat %d got its reply twice: delivered just before the kill, delivered again by the outbox's new owner", c)
		}
	}
}
