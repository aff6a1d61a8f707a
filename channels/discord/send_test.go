package discord

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/discord/fakediscord"
)

func reply(id, text string) moltbot.Message {
	return moltbot.Message{ID: id, Role: moltbot.RoleAssistant, Content: text}
}

// A long reply goes as parts of at most 2000 characters, in order, the
// first replying to the user's message, none pinging anyone.
func TestSendSplitsInOrder(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	a := testAdapter(t, f, &channeltest.Host{}, nil)
	var b strings.Builder
	for i := range 60 {
		b.WriteString(strings.Repeat(string(rune('a'+i%26)), 70) + " @everyone\n\n")
	}
	text := b.String()
	addr := "c/" + fakediscord.ChannelID + "/1300000000000000009"
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.Send(ctx, addr, reply("m1", text)); err != nil {
		t.Fatal(err)
	}
	got := f.Created()
	want := channels.Split(text, 2000, channels.Runes)
	if len(got) != len(want) || len(want) < 3 {
		t.Fatalf("%d messages, want %d (>= 3)", len(got), len(want))
	}
	for i, c := range got {
		if c.Content != want[i] || c.Channel != fakediscord.ChannelID {
			t.Errorf("part %d: %q in %s", i, c.Content, c.Channel)
		}
		if string(c.AllowedMentions) != `{"parse":[]}` {
			t.Errorf("part %d: allowed_mentions %s, want {\"parse\":[]}", i, c.AllowedMentions)
		}
		if (i == 0) != (c.Reference == "1300000000000000009") {
			t.Errorf("part %d: message_reference %q", i, c.Reference)
		}
		if c.Nonce == "" || len(c.Nonce) > 25 {
			t.Errorf("part %d: nonce %q", i, c.Nonce)
		}
	}
	// The outbox tries a delivery again when an answer was lost: the
	// nonces make Discord show no part twice.
	if err := a.Send(ctx, addr, reply("m1", text)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Created()); n != len(want) {
		t.Errorf("%d messages after the same delivery twice, want %d", n, len(want))
	}
}

// A bucket at 0 waits for its reset instead of drawing a 429; a 429
// (the bucket's or the global one) is waited out and the part sent.
func TestSendRateLimits(t *testing.T) {
	f := newFake(t, fakediscord.Options{BucketLimit: 2, BucketWindow: 100 * time.Millisecond})
	a := testAdapter(t, f, &channeltest.Host{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	addr := "c/" + fakediscord.DMID
	for i := range 5 {
		if err := a.Send(ctx, addr, reply("b"+string(rune('0'+i)), "hello "+string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.Invalids(); n != 0 {
		t.Errorf("%d 429s: the adapter must wait for a bucket's reset (X-RateLimit-Remaining 0)", n)
	}
	f.Throttle(1, 30*time.Millisecond, false)
	f.Throttle(1, 30*time.Millisecond, true)
	if err := a.Send(ctx, addr, reply("after429", "after the 429s")); err != nil {
		t.Fatal(err)
	}
	got := f.Created()
	if len(got) != 6 || got[5].Content != "after the 429s" {
		t.Fatalf("created %+v", got)
	}
	for i, c := range got[:5] {
		if c.Content != "hello "+string(rune('0'+i)) {
			t.Errorf("message %d: %q: out of order", i, c.Content)
		}
	}
	if n := a.rest.invalidCount(); n != 2 {
		t.Errorf("invalid responses counted: %d, want 2", n)
	}
	// A 429 longer than a delivery may wait is the outbox's to retry.
	f.Throttle(1, time.Minute, false)
	err := a.Send(ctx, addr, reply("long", "x"))
	if moltbot.ErrorCode(err) != moltbot.ERateLimited {
		t.Fatalf("a 60 s 429: %v, want rate_limited", err)
	}
}

func TestSendStopsNearTheInvalidRequestBan(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	a := testAdapter(t, f, &channeltest.Host{}, nil)
	for range invalidStop {
		a.rest.countInvalid()
	}
	err := a.Send(context.Background(), "c/"+fakediscord.DMID, reply("x", "x"))
	if err == nil || !strings.Contains(err.Error(), "ban") {
		t.Fatalf("Send: %v", err)
	}
	if len(f.Created()) != 0 {
		t.Error("sent anyway")
	}
}

func TestSendErrors(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	a := testAdapter(t, f, &channeltest.Host{}, nil)
	ctx := context.Background()
	for _, c := range []struct{ addr, code string }{
		{"c/1999999999999999999/1", moltbot.ENotFound},
		{"c/abc", moltbot.EInvalid},
		{"c/1/../../x", moltbot.EInvalid},
		{"x/1", moltbot.EInvalid},
		{"", moltbot.EInvalid},
	} {
		if err := a.Send(ctx, c.addr, reply("e", "hi")); moltbot.ErrorCode(err) != c.code {
			t.Errorf("Send to %q: %v, want %s", c.addr, err, c.code)
		}
	}
	// Bad token: refused, not retried in a loop.
	b := testAdapter(t, f, &channeltest.Host{}, map[string]string{"token": "wrong"})
	if err := b.Send(ctx, "c/"+fakediscord.DMID, reply("e", "hi")); moltbot.ErrorCode(err) != moltbot.EUnauthorized {
		t.Errorf("bad token: %v", err)
	}
}

func TestTyping(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	a := testAdapter(t, f, &channeltest.Host{}, nil)
	if err := a.Typing(context.Background(), "c/"+fakediscord.ChannelID+"/12"); err != nil {
		t.Fatal(err)
	}
	if got := f.Typing(); len(got) != 1 || got[0] != fakediscord.ChannelID {
		t.Errorf("typing %v", got)
	}
	// Again within 8 s: Discord still shows it; no call.
	a.Typing(context.Background(), "c/"+fakediscord.ChannelID+"/13")
	if got := f.Typing(); len(got) != 1 {
		t.Errorf("typing twice within its 10 s: %v", got)
	}
	// A message ends the indicator: the next turn's typing is sent.
	if err := a.Send(context.Background(), "c/"+fakediscord.ChannelID, reply("t", "done")); err != nil {
		t.Fatal(err)
	}
	a.Typing(context.Background(), "c/"+fakediscord.ChannelID+"/14")
	if got := f.Typing(); len(got) != 2 {
		t.Errorf("typing after a reply: %v", got)
	}
}

// 1x1 PNG.
var png1 = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

func TestImages(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{Accepted: make(chan channels.Message, 8)}
	run(t, testAdapter(t, f, h, nil))
	connected(t, f, h)
	good := f.Image("a.png", png1)
	notImage := f.Image("b.png", []byte("<html>not an image</html>"))
	f.MessageCreate(fakediscord.Message{Channel: fakediscord.DMID, Attachments: []map[string]any{
		{"id": "1", "filename": "a.png", "content_type": "image/png", "size": len(png1), "url": good},
		{"id": "2", "filename": "b.png", "content_type": "image/png", "size": 25, "url": notImage},
		{"id": "3", "filename": "c.png", "content_type": "image/png", "size": 10, "url": "https://evil.example/c.png"},
		{"id": "4", "filename": "d.txt", "content_type": "text/plain", "size": 10, "url": good},
	}})
	m := accepted(t, h)
	if m.Text != "" || len(m.Images) != 1 || m.Images[0].MIME != "image/png" || string(m.Images[0].Data) != string(png1) {
		t.Fatalf("accepted %+v", m)
	}
	// Only an image that is not one: nothing to take.
	f.MessageCreate(fakediscord.Message{Channel: fakediscord.DMID, Attachments: []map[string]any{
		{"id": "2", "filename": "b.png", "content_type": "image/png", "size": 25, "url": notImage}}})
	f.MessageCreate(fakediscord.Message{Channel: fakediscord.DMID, Content: "next"})
	if m := accepted(t, h); m.Text != "next" {
		t.Errorf("accepted %+v", m)
	}
}

// A transport error never carries the URL: an interaction's token is in
// some paths.
func TestRESTErrorsHoldNoToken(t *testing.T) {
	r := newREST("http://127.0.0.1:1/api/v10", "bot-secret", &http.Client{Timeout: time.Second})
	_, _, err := r.call(context.Background(), "POST", "/interactions/1/SECRETTOKEN/callback", "/interactions/{id}/{token}/callback", "1", map[string]int{"type": 5}, false)
	if err == nil || strings.Contains(err.Error(), "SECRETTOKEN") || strings.Contains(err.Error(), "bot-secret") {
		t.Fatalf("%v", err)
	}
	_, _, err = r.call(context.Background(), "POST", "/webhooks/1/SECRETTOKEN", "/webhooks/{app}/{token}", "1", map[string]int{}, false)
	if err == nil || strings.Contains(err.Error(), "SECRETTOKEN") {
		t.Fatalf("%v", err)
	}
}

// A delivery that fails after some parts went out is tried again by the
// outbox: the parts already sent are not sent again, the rest follow in
// order.
func TestSendGoesOnAfterAFailure(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	a := testAdapter(t, f, &channeltest.Host{}, nil)
	text := strings.Repeat("one two three four five six seven eight nine ten. ", 100) // 5,100 characters
	want := channels.Split(text, 2000, channels.Runes)
	addr := "c/" + fakediscord.DMID + "/1300000000000000001"
	ctx := context.Background()
	f.Fail(0, 500) // the first part goes, the second meets a 500
	if err := a.Send(ctx, addr, reply("m", text)); moltbot.ErrorCode(err) != moltbot.EUnavailable {
		t.Fatalf("a 500: %v, want unavailable (retried by the outbox)", err)
	}
	if err := a.Send(ctx, addr, reply("m", text)); err != nil {
		t.Fatal(err)
	}
	got := f.Created()
	if len(want) != 3 || len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Content != want[i] {
			t.Errorf("part %d out of order", i)
		}
	}
	if strings.Contains(strings.Join(f.Log(), " "), "nonce") {
		t.Error("a part was sent twice (Discord's nonce caught it, the adapter should not have sent it)")
	}
}

// FuzzAddress: a Reply address (from the outbox, or `moltbot channels
// test --to`) parses to ids that are Discord ids, or is refused; it never
// puts anything else into a URL path.
func FuzzAddress(f *testing.F) {
	a, err := newAdapter(channels.Config{Options: map[string]string{"token": "t"}}, &channeltest.Host{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("c/1/2")
	f.Add("c/1")
	f.Add("i/1/2/3/" + a.seal("3", "tok"))
	f.Add("c/1/../2")
	f.Add("i/1/2/3/%2e%2e")
	f.Fuzz(func(t *testing.T, s string) {
		ad, err := a.parseAddress(s)
		if err != nil {
			return
		}
		for _, id := range []string{ad.channel, ad.message, ad.app, ad.id} {
			if id != "" && !snowflake(id) {
				t.Fatalf("%q: id %q", s, id)
			}
		}
		if !snowflake(ad.channel) {
			t.Fatalf("%q: no channel", s)
		}
		if ad.token != "" && ad.token != "tok" {
			t.Fatalf("%q opened to %q", s, ad.token)
		}
	})
}
