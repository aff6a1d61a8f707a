package slack

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/slack/fakeslack"
)

func reply(text string) moltbot.Message {
	return moltbot.Message{Role: moltbot.RoleAssistant, Content: text}
}

// A long reply goes in the thread in parts of at most 4000 runes, in
// order, and nothing of it is lost.
func TestSendSplitsInThread(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.a.lim = channels.Limiter{} // unpaced: pacing has its own test
	var paras []string
	for i := range 30 {
		paras = append(paras, strings.Repeat(string(rune('a'+i%26)), 390)+" é✓")
	}
	text := strings.Join(paras, "\n\n")
	if err := f.a.Send(context.Background(), "C0GENERAL/1700000001.000100", reply(text)); err != nil {
		t.Fatal(err)
	}
	posts := f.fake.Posts()
	if len(posts) < 3 {
		t.Fatalf("%d posts, want at least 3", len(posts))
	}
	var got []string
	for _, p := range posts {
		if p.Channel != "C0GENERAL" || p.ThreadTS != "1700000001.000100" {
			t.Fatalf("post to %s thread %s", p.Channel, p.ThreadTS)
		}
		if n := len([]rune(p.Text)); n > 4000 {
			t.Fatalf("a part of %d runes", n)
		}
		got = append(got, p.Text)
	}
	if strings.Join(got, "\n\n") != text {
		t.Fatal("the parts, joined, are not the reply")
	}
}

// The model's text cannot ping a channel or a user: Slack's markup
// characters are escaped.
func TestSendNeutralisesMentions(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	in := "Hey <!channel> and <!here|here>, <!everyone>, <@U0BOSS>, <!subteam^S1> & <https://evil.example|bank>"
	if err := f.a.Send(context.Background(), "D0ALICE", reply(in)); err != nil {
		t.Fatal(err)
	}
	p := f.fake.Posts()
	if len(p) != 1 || p[0].ThreadTS != "" {
		t.Fatalf("posts %+v", p)
	}
	if strings.ContainsAny(p[0].Text, "<>") {
		t.Fatalf("posted %q: markup left", p[0].Text)
	}
	want := "Hey &lt;!channel&gt; and &lt;!here|here&gt;, &lt;!everyone&gt;, &lt;@U0BOSS&gt;, &lt;!subteam^S1&gt; &amp; &lt;https://evil.example|bank&gt;"
	if p[0].Text != want {
		t.Fatalf("posted %q\nwant %q", p[0].Text, want)
	}
}

// A 429 holds the channel back for its Retry-After, then the part is
// sent again, within Send.
func TestSend429(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.fake.RateLimit(1, 1)
	start := time.Now()
	if err := f.a.Send(context.Background(), "C0GENERAL", reply("hello")); err != nil {
		t.Fatal(err)
	}
	if p := f.fake.Posts(); len(p) != 1 || p[0].Text != "hello" {
		t.Fatalf("posts %+v", p)
	}
	// A lower bound, not a timing assertion: the retry cannot have gone
	// before the Retry-After second.
	if d := time.Since(start); d < time.Second {
		t.Fatalf("retried after %v, before Retry-After: 1", d)
	}
	// Send's context bounds the waiting.
	f.fake.RateLimit(1000, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := f.a.Send(ctx, "C0OTHER", reply("x")); err == nil {
		t.Fatal("Send succeeded while rate limited")
	}
}

// A reply that failed halfway is sent again by the outbox: only the
// parts not yet posted go.
func TestSendResumesAfterFailure(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.a.lim = channels.Limiter{}
	text := strings.Repeat("x", 3999) + "\n\n" + strings.Repeat("y", 3999) + "\n\n" + strings.Repeat("z", 100)
	f.fake.FailPost(1, "internal_error")
	if err := f.a.Send(context.Background(), "C0GENERAL/1700000001.000100", reply(text)); err == nil {
		t.Fatal("Send succeeded over a failed post")
	}
	if err := f.a.Send(context.Background(), "C0GENERAL/1700000001.000100", reply(text)); err != nil {
		t.Fatal(err)
	}
	p := f.fake.Posts()
	if len(p) != 3 || p[0].Text[0] != 'x' || p[1].Text[0] != 'y' || p[2].Text[0] != 'z' {
		t.Fatalf("%d posts, want x, y, z once each", len(p))
	}
	// The same reply again later is a new reply: all of it goes.
	f.fake.FailPost(-1, "")
	if err := f.a.Send(context.Background(), "C0GENERAL/1700000001.000100", reply(text)); err != nil || len(f.fake.Posts()) != 6 {
		t.Fatalf("err %v, %d posts", err, len(f.fake.Posts()))
	}
}

// Replies to one channel are paced (about one a second after a burst of
// two): the third waits its turn.
func TestSendPaced(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	start := time.Now()
	for i := range 3 {
		if err := f.a.Send(context.Background(), "C0GENERAL", reply("part "+string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("three posts to one channel in %v: not paced", d)
	}
	if len(f.fake.Posts()) != 3 {
		t.Fatal("posts lost")
	}
}

func TestSendErrors(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	for _, addr := range []string{"", "C0/../x", "C0GENERAL/abc", "c0lower", strings.Repeat("C", 40)} {
		if err := f.a.Send(context.Background(), addr, reply("x")); err == nil || !strings.Contains(err.Error(), "address") {
			t.Fatalf("address %q: %v", addr, err)
		}
	}
	// An empty reply posts nothing.
	if err := f.a.Send(context.Background(), "C0GENERAL", reply("  ")); err != nil || len(f.fake.Posts()) != 0 {
		t.Fatalf("empty reply: %v, %d posts", err, len(f.fake.Posts()))
	}
	// Slack's refusal is the error (the outbox tries again later).
	f.a.bot = "xoxb-wrong"
	err := f.a.Send(context.Background(), "C0GENERAL", reply("x"))
	if err == nil || !strings.Contains(err.Error(), "invalid_auth") || strings.Contains(err.Error(), "xoxb-") {
		t.Fatalf("Send with a wrong token: %v", err)
	}
}

// Images attached to a mention arrive as image parts, fetched with the
// bot token; an image too large, or hosted off Slack, is left out.
func TestImages(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.run(t)
	c := f.conn(t)
	png := []byte("\x89PNG\r\n\x1a\nfake")
	ev := mention("1700000020.000100", "<@UFAKEBOT> what is this?")
	ev.Files = []fakeslack.File{
		{ID: "F1", Name: "a.png", Mimetype: "image/png", Size: int64(len(png)), URLPrivate: f.fake.AddFile("a.png", png)},
		{ID: "F2", Name: "huge.png", Mimetype: "image/png", Size: channels.MaxImageBytes + 1, URLPrivate: f.fake.AddFile("huge.png", png)},
		{ID: "F3", Name: "x.png", Mimetype: "image/png", Size: 10, URLPrivate: "https://evil.example/x.png"},
		{ID: "F4", Name: "doc.pdf", Mimetype: "application/pdf", Size: 10, URLPrivate: f.fake.AddFile("doc.pdf", []byte("%PDF"))},
	}
	ack(t, c, f.event(t, c, ev))
	m := accepted(t, f.host)
	if len(m.Images) != 1 || m.Images[0].Type != moltbot.PartImage || m.Images[0].MIME != "image/png" || string(m.Images[0].Data) != string(png) {
		t.Fatalf("images %+v", m.Images)
	}
	if m.Text != "what is this?" {
		t.Fatalf("text %q", m.Text)
	}
}

func TestCheck(t *testing.T) {
	ok := map[string]string{"bot_token": "xoxb-1", "app_token": "xapp-1"}
	for _, tc := range []struct {
		opts map[string]string
		key  string
	}{
		{map[string]string{"bot_token": "xoxp-user", "app_token": "xapp-1"}, "bot_token"},
		{map[string]string{"bot_token": "xoxb-1"}, "app_token"},
		{map[string]string{"bot_token": "xoxb-1", "app_token": "xoxb-1"}, "app_token"},
		{map[string]string{"bot_token": "xoxb-1", "mode": "http"}, "signing_secret"},
		{map[string]string{"bot_token": "xoxb-1", "mode": "rtm"}, "mode"},
		{map[string]string{"bot_token": "xoxb-1", "app_token": "xapp-1", "api_url": "ftp://x"}, "api_url"},
	} {
		err := check(channels.Config{Options: tc.opts})
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%v: %v, want an error naming %s", tc.opts, err, tc.key)
		}
	}
	if err := check(channels.Config{Options: ok}); err != nil {
		t.Fatal(err)
	}
	if err := check(channels.Config{Options: map[string]string{"bot_token": "xoxb-1", "mode": "http", "signing_secret": "s"}}); err != nil {
		t.Fatal(err)
	}
	ty := Type()
	if ty.Name != "slack" || ty.New == nil || ty.Check == nil || len(ty.Required) != 1 {
		t.Fatalf("Type %+v", ty)
	}
}
