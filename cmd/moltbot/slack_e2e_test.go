// The Slack adapter through a whole node: the channels core, its
// /channels/{name}/ mount and the outbox, against fakeslack.

package main

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels/slack/fakeslack"
)

// slackNode starts a node whose bot helper answers on a Slack channel
// "team" (mode: socket or http) against a fake Slack.
func slackNode(t *testing.T, mode string) (*Node, *fakeslack.Server, *syncBuf) {
	t.Helper()
	fake := fakeslack.New("xoxb-e2e", "xapp-e2e")
	t.Cleanup(fake.Close)
	text := `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 5}}
models: {primary: sim/sim}
bots:
  - {name: helper}
channels:
  - name: team
    type: slack
    bot: helper
    conversations: thread
    mode: ` + mode + `
    bot_token: xoxb-e2e
    app_token: xapp-e2e
    signing_secret: e2e-signing-secret
    api_url: "` + fake.URL() + `"
`
	n, logs := startNodeIn(t, t.TempDir(), text, slog.LevelInfo)
	return n, fake, logs
}

// A mention on Slack, through the whole node: Socket Mode envelope →
// the core's durable inbox → a turn of the bot → the outbox → Send →
// chat.postMessage in the mention's thread. The same mention delivered
// again (Slack's redelivery, its message.im twin) makes no second reply.
func TestSlackEndToEndSocket(t *testing.T) {
	_, fake, logs := slackNode(t, "socket")
	c := fake.Conn(30 * time.Second)
	if c == nil {
		t.Fatalf("the node did not open Socket Mode\n%s", logs)
	}
	ev := fakeslack.Event{Type: "app_mention", User: "U0ALICE", Text: "<@" + fakeslack.UserID + "> hello there", TS: "1700000001.000100", Channel: "C0GENERAL"}
	id, _ := c.Event(fake.Callback(ev))
	if got, ok := c.Ack(30 * time.Second); !ok || got != id {
		t.Fatalf("ack %q %v\n%s", got, ok, logs)
	}
	posts := fake.WaitPosts(1, 30*time.Second)
	if len(posts) != 1 || posts[0].Channel != "C0GENERAL" || posts[0].ThreadTS != ev.TS || strings.TrimSpace(posts[0].Text) == "" {
		t.Fatalf("posts %+v\n%s", posts, logs)
	}
	// Redelivered, then a new message in the same thread: one reply more.
	c.Envelope("events_api", fake.Callback(ev), 1)
	c.Ack(30 * time.Second)
	ev2 := ev
	ev2.TS, ev2.ThreadTS, ev2.Text = "1700000002.000100", ev.TS, "<@"+fakeslack.UserID+"> and again"
	c.Event(fake.Callback(ev2))
	c.Ack(30 * time.Second)
	posts = fake.WaitPosts(2, 30*time.Second)
	if len(posts) != 2 || posts[1].ThreadTS != ev.TS {
		t.Fatalf("posts %+v", posts)
	}
	// Give a duplicate reply the time to show up (a bound, not a timing
	// assertion): still two.
	if p := fake.WaitPosts(3, 500*time.Millisecond); len(p) != 2 {
		t.Fatalf("%d posts: the redelivered mention was answered twice", len(p))
	}
}

// The Events API through the node's /channels/team/: signed requests
// only; a retry makes no second reply.
func TestSlackEndToEndHTTP(t *testing.T) {
	n, fake, logs := slackNode(t, "http")
	ev := fakeslack.Event{Type: "message", ChannelType: "im", User: "U0ALICE", Text: "hello in a DM", TS: "1700000003.000100", Channel: "D0ALICE"}
	body := fake.Callback(ev)
	url := n.URL() + "/channels/team/"
	bad := fakeslack.Request(url, "wrong-secret", time.Now().Unix(), body, 0)
	if resp, err := http.DefaultClient.Do(bad); err != nil || resp.StatusCode != 401 {
		t.Fatalf("a bad signature: %v %v", resp, err)
	}
	for retry := range 2 {
		resp, err := http.DefaultClient.Do(fakeslack.Request(url, "e2e-signing-secret", time.Now().Unix(), body, retry))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("retry %d: %v %v\n%s", retry, resp, err, logs)
		}
		resp.Body.Close()
	}
	posts := fake.WaitPosts(1, 30*time.Second)
	if len(posts) != 1 || posts[0].Channel != "D0ALICE" || posts[0].ThreadTS != "" {
		t.Fatalf("posts %+v\n%s", posts, logs)
	}
	if p := fake.WaitPosts(2, 500*time.Millisecond); len(p) != 1 {
		t.Fatalf("%d posts: the retry was answered twice", len(p))
	}
}
