package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/telegram/faketelegram"
)

const (
	token  = "123456:TESTsecretTOKEN_abc-def"
	secret = "TESTsecretTOKEN_abc-def" // the part of the token that must never show
)

// logBuf is a logger's output, safe to read while the adapter writes.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type fixture struct {
	a    *Adapter
	host *channeltest.Host
	log  *logBuf
}

func newAdapter(t *testing.T, api, tok string, opts map[string]string) fixture {
	t.Helper()
	lb := &logBuf{}
	h := &channeltest.Host{Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), Accepted: make(chan channels.Message, 16)}
	o := map[string]string{"token": tok, "api_url": api}
	for k, v := range opts {
		o[k] = v
	}
	ad, err := New(channels.Config{Name: "tg", Type: "telegram", Options: o}, h)
	if err != nil {
		t.Fatal(err)
	}
	a := ad.(*Adapter)
	a.pollTimeout = time.Second
	a.backoffBase, a.backoffMax = 10*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() {
		if strings.Contains(lb.String(), secret) {
			t.Errorf("the token is in the log:\n%s", lb.String())
		}
	})
	return fixture{a: a, host: h, log: lb}
}

// run starts Run and returns a stop that cancels it and waits.
func run(t *testing.T, a *Adapter) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func next(t *testing.T, h *channeltest.Host) channels.Message {
	t.Helper()
	select {
	case m := <-h.Accepted:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message accepted")
		return channels.Message{}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPollAcceptsAndResumesFromTheSavedOffset(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	fake.Push(faketelegram.Text(42, "private", 7, false, "hello", 1))
	last := fake.Push(faketelegram.Text(42, "private", 7, false, "again", 2))

	f := newAdapter(t, fake.URL(), token, nil)
	stop := run(t, f.a)
	m1, m2 := next(t, f.host), next(t, f.host)
	if m1.ID != "42:1" || m1.Text != "hello" || m1.Chat != "42" || m1.User != "7" || m1.Reply != "42/0/1" || m1.FromBot {
		t.Errorf("first message %+v", m1)
	}
	if m2.ID != "42:2" || m2.Text != "again" {
		t.Errorf("second message %+v", m2)
	}
	eventually(t, "the offset saved", func() bool {
		b, ok := f.host.Get(offsetKey)
		var s savedOffset
		return ok && json.Unmarshal(b, &s) == nil && s.Offset == last+1
	})
	stop()
	if f.host.State() != channels.StateStopped {
		t.Errorf("state after stop %q", f.host.State())
	}

	// Another node takes the poller over with the same shared state (and
	// its own dedup, empty): it asks from the saved offset and takes only
	// what came after.
	third := fake.Push(faketelegram.Text(42, "private", 7, false, "third", 3))
	saved, _ := f.host.Get(offsetKey)
	g := newAdapter(t, fake.URL(), token, nil)
	g.host.Put(offsetKey, saved)
	before := len(fake.Offsets())
	run(t, g.a)
	if m := next(t, g.host); m.ID != "42:3" {
		t.Fatalf("the second poller took %+v, want only message 3", m)
	}
	for _, got := range fake.Offsets()[before:] {
		if got < last+1 {
			t.Errorf("the second poller polled from offset %d, want the saved %d or later", got, last+1)
		}
	}
	eventually(t, "the new offset saved", func() bool {
		b, _ := g.host.Get(offsetKey)
		var s savedOffset
		return json.Unmarshal(b, &s) == nil && s.Offset == third+1
	})
	if n := len(g.host.Messages()); n != 1 {
		t.Errorf("the second poller accepted %d messages, want 1", n)
	}
}

func TestStaleSavedOffsetIsDropped(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", token, nil)
	now := time.Unix(1_800_000_000, 0)
	f.a.now = func() time.Time { return now }
	b, _ := json.Marshal(savedOffset{Offset: 99, At: now.Add(-7 * 24 * time.Hour).Unix()})
	f.host.Put(offsetKey, b)
	if got := f.a.loadOffset(); got != 0 {
		t.Errorf("a week-old offset loaded as %d, want 0", got)
	}
	b, _ = json.Marshal(savedOffset{Offset: 99, At: now.Add(-time.Hour).Unix()})
	f.host.Put(offsetKey, b)
	if got := f.a.loadOffset(); got != 99 {
		t.Errorf("an hour-old offset loaded as %d, want 99", got)
	}
}

func TestConflictBacksOffAndReconnects(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), token, nil)
	f.a.pollTimeout = time.Minute // its poll waits until the conflict ends it
	run(t, f.a)
	eventually(t, "connected", func() bool { return f.host.State() == channels.StateConnected })
	eventually(t, "the adapter polling", fake.Polling)

	// Another poller on the token ends the adapter's poll with 409.
	resp, err := http.Post(fake.URL()+"/bot"+token+"/getUpdates", "application/json", strings.NewReader(`{"timeout":0}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, "a 409 reported", func() bool {
		return strings.Contains(f.log.String(), "409 Conflict: terminated by other getUpdates request")
	})
	if !strings.Contains(f.log.String(), "another process polls this token") {
		t.Errorf("the 409 is not explained in the log:\n%s", f.log.String())
	}
	// It comes back and takes messages again.
	fake.Push(faketelegram.Text(5, "private", 9, false, "after the conflict", 11))
	if m := next(t, f.host); m.Text != "after the conflict" {
		t.Errorf("after the conflict %+v", m)
	}

	// A webhook set on the token: 409 again, said so.
	eventually(t, "the adapter polling again", fake.Polling)
	fake.SetWebhook("https://example.invalid/hook", "")
	eventually(t, "the webhook conflict reported", func() bool {
		return strings.Contains(f.log.String(), "while webhook is active")
	})
}

func TestUnauthorizedIsFatal(t *testing.T) {
	fake := faketelegram.New("999:OTHERtoken")
	defer fake.Close()
	f := newAdapter(t, fake.URL(), token, nil)
	err := f.a.Run(context.Background())
	if !channels.IsFatal(err) {
		t.Fatalf("Run with a refused token: %v, want a Fatal error", err)
	}
	if f.host.State() != channels.StateFatal {
		t.Errorf("state %q, want fatal", f.host.State())
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error carries the token: %v", err)
	}
}

func TestStalledPollIsCancelled(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	fake.Stall(true)
	f := newAdapter(t, fake.URL(), token, nil)
	f.a.pollMargin = 50 * time.Millisecond
	run(t, f.a)
	eventually(t, "the stall noticed", func() bool { return strings.Contains(f.log.String(), "a stalled connection") })
	fake.Stall(false)
	fake.Push(faketelegram.Text(5, "private", 9, false, "unstuck", 12))
	if m := next(t, f.host); m.Text != "unstuck" {
		t.Errorf("after the stall %+v", m)
	}
}

func TestNetworkErrorsDoNotCarryTheToken(t *testing.T) {
	// Nothing listens there: every call fails in the transport, whose
	// *url.Error prints the URL with the token.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	f := newAdapter(t, url, token, nil)
	stop := run(t, f.a)
	eventually(t, "a failure logged", func() bool { return strings.Contains(f.log.String(), "getMe") })
	stop()
	err := f.a.Send(context.Background(), "5", moltbot.Message{Role: moltbot.RoleAssistant, Content: "hi"})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Send to a closed port: %v", err)
	}
	if !strings.Contains(err.Error(), "botREDACTED") {
		t.Errorf("the error does not show the redacted URL: %v", err)
	}
	err = f.a.Typing(context.Background(), "5")
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Typing to a closed port: %v", err)
	}
}

func me() *user { return &user{ID: 123456, IsBot: true, Username: "moltbot_test_bot"} }

func TestFilter(t *testing.T) {
	ent := func(typ string, off, n int) map[string]any {
		return map[string]any{"type": typ, "offset": off, "length": n}
	}
	msg := func(chat int64, typ string, text string, extra map[string]any) *update {
		m := faketelegram.Text(chat, typ, 7, false, text, 3)["message"].(map[string]any)
		for k, v := range extra {
			m[k] = v
		}
		b, _ := json.Marshal(map[string]any{"update_id": 1, "message": m})
		u, err := parseUpdate(b)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	cases := []struct {
		name string
		u    *update
		ok   bool
		text string
		bot  bool
	}{
		{"private", msg(5, "private", "hi there", nil), true, "hi there", false},
		{"bot author marked", msg(5, "private", "beep", map[string]any{"from": map[string]any{"id": 8, "is_bot": true, "first_name": "B"}}), true, "beep", true},
		{"our own", msg(5, "private", "me", map[string]any{"from": map[string]any{"id": 123456, "is_bot": true, "first_name": "M"}}), false, "", false},
		{"edit", msg(5, "private", "edited", map[string]any{"edit_date": 1700000000}), false, "", false},
		{"service (joined)", msg(-5, "group", "", map[string]any{"new_chat_members": []any{map[string]any{"id": 1}}}), false, "", false},
		{"channel post", msg(-5, "channel", "news", map[string]any{"from": nil}), false, "", false},
		{"group, no mention", msg(-5, "group", "hello all", nil), false, "", false},
		{"group, mention", msg(-5, "supergroup", "@moltbot_test_bot what time is it", map[string]any{"entities": []any{ent("mention", 0, 17)}}), true, "what time is it", false},
		{"group, mention after emoji (UTF-16 offsets)", msg(-5, "group", "😀 @Moltbot_Test_Bot hi", map[string]any{"entities": []any{ent("mention", 3, 17)}}), true, "😀 hi", false},
		{"mention cut, lines kept", msg(-5, "group", "@moltbot_test_bot fix this:\n  if x {\n    y()\n  }", map[string]any{"entities": []any{ent("mention", 0, 17)}}), true, "fix this:\n  if x {\n    y()\n  }", false},
		{"group, someone else mentioned", msg(-5, "group", "@alice hi", map[string]any{"entities": []any{ent("mention", 0, 6)}}), false, "", false},
		{"group, command to the bot", msg(-5, "group", "/help@moltbot_test_bot now", map[string]any{"entities": []any{ent("bot_command", 0, 22)}}), true, "/help now", false},
		{"group, reply to the bot", msg(-5, "group", "and then?", map[string]any{"reply_to_message": map[string]any{"message_id": 1, "from": map[string]any{"id": 123456, "is_bot": true}}}), true, "and then?", false},
		{"group, entity out of range", msg(-5, "group", "@x", map[string]any{"entities": []any{ent("mention", 1, 50)}}), false, "", false},
		{"only a mention", msg(-5, "group", "@moltbot_test_bot", map[string]any{"entities": []any{ent("mention", 0, 17)}}), false, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, ok := filter(c.u, me(), true)
			if ok != c.ok {
				t.Fatalf("taken %v, want %v (%+v)", ok, c.ok, m)
			}
			if ok && (m.Text != c.text || m.FromBot != c.bot) {
				t.Errorf("text %q bot %v, want %q %v", m.Text, m.FromBot, c.text, c.bot)
			}
		})
	}
	// require_mention: false takes every group message.
	if _, ok := filter(msg(-5, "group", "hello all", nil), me(), false); !ok {
		t.Error("require_mention false dropped a group message")
	}
	// A forum topic's message carries its thread to the reply.
	m, _ := filter(msg(-100, "supergroup", "@moltbot_test_bot q", map[string]any{"entities": []any{ent("mention", 0, 17)},
		"is_topic_message": true, "message_thread_id": 77}), me(), true)
	if m.Thread != "77" || m.Reply != "-100/77/3" {
		t.Errorf("topic message: thread %q reply %q", m.Thread, m.Reply)
	}
}

func TestSendSplitsByUTF16AndRepliesFirst(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), token, nil)
	f.a.private.Rate = 0 // pacing is the limiter's test; here the parts
	// 3000 emoji: 3000 runes, 6000 UTF-16 units: one part by runes, two by
	// Telegram's count.
	text := strings.Repeat("😀", 3000)
	if err := f.a.Send(context.Background(), "42/0/9", moltbot.Message{ID: "r1", Role: moltbot.RoleAssistant, Content: text}); err != nil {
		t.Fatal(err)
	}
	sent := fake.Sent()
	if len(sent) != 2 {
		t.Fatalf("%d messages sent, want 2", len(sent))
	}
	var joined string
	for i, s := range sent {
		if n := len(utf16.Encode([]rune(s.Text))); n > MaxText {
			t.Errorf("part %d is %d UTF-16 units", i, n)
		}
		if s.ParseMode != "" {
			t.Errorf("part %d has parse_mode %q, want plain text", i, s.ParseMode)
		}
		joined += s.Text
	}
	if joined != text {
		t.Error("the parts do not make the text")
	}
	if sent[0].ReplyTo != 9 || sent[1].ReplyTo != 0 || sent[0].ChatID != 42 {
		t.Errorf("reply_to %d then %d (chat %d), want 9 then none", sent[0].ReplyTo, sent[1].ReplyTo, sent[0].ChatID)
	}
}

func TestSendWaitsOut429(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	fake.RateLimit(42, 1)
	f := newAdapter(t, fake.URL(), token, nil)
	if err := f.a.Send(context.Background(), "42/0/0", moltbot.Message{Role: moltbot.RoleAssistant, Content: "after the wait"}); err != nil {
		t.Fatal(err)
	}
	if got := fake.Calls("sendMessage"); got != 2 {
		t.Errorf("sendMessage called %d times, want 2 (the 429, then the message)", got)
	}
	if s := fake.Sent(); len(s) != 1 || s[0].Text != "after the wait" {
		t.Errorf("sent %+v", s)
	}
}

func TestSendResumesAtTheFailedPart(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), token, nil)
	f.a.private.Rate = 0
	text := strings.Repeat("a", 4000) + "\n\n" + strings.Repeat("b", 4000)
	msg := moltbot.Message{ID: "r2", Role: moltbot.RoleAssistant, Content: text}
	fake.Fail(42, 1) // the first part goes, the second meets a 500
	if err := f.a.Send(context.Background(), "42/0/0", msg); err == nil {
		t.Fatal("Send through a 500: no error")
	}
	if err := f.a.Send(context.Background(), "42/0/0", msg); err != nil {
		t.Fatal(err)
	}
	sent := fake.Sent()
	if len(sent) != 2 || sent[0].Text[0] != 'a' || sent[1].Text[0] != 'b' {
		t.Fatalf("after the retry %d messages sent (want the first part once, then the second)", len(sent))
	}
	if n := f.a.progress.Get("42/0/0\x00" + msg.ID); n != 0 {
		t.Errorf("progress kept after the whole message went: %d parts", n)
	}
}

func TestSendErrorsAreClassified(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), token, nil)
	if err := f.a.Send(context.Background(), "not/an/address/x", moltbot.Message{Content: "x"}); moltbot.ErrorCode(err) != moltbot.EInvalid {
		t.Errorf("a bad address: %v", err)
	}
	// The fake refuses an empty text with 400: given up, not retried.
	err := f.a.send(context.Background(), &address{chat: 42}, sendMessage{ChatID: 42, Text: " "})
	if moltbot.ErrorCode(err) != moltbot.EInvalid {
		t.Errorf("a 400: %v, want code invalid", err)
	}
}

func TestTypingSendsChatAction(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), token, nil)
	if err := f.a.Typing(context.Background(), "-100/5/3"); err != nil {
		t.Fatal(err)
	}
	if a := fake.Actions(); len(a) != 1 || a[0].ChatID != -100 || a[0].Action != "typing" {
		t.Errorf("actions %+v", a)
	}
}

func TestPhotoBecomesAnImagePart(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")
	fake.AddFile("big", png)
	u := faketelegram.Text(42, "private", 7, false, "", 4)
	m := u["message"].(map[string]any)
	delete(m, "text")
	m["caption"] = "what is this?"
	m["photo"] = []any{
		map[string]any{"file_id": "small", "width": 90, "height": 90, "file_size": 10},
		map[string]any{"file_id": "big", "width": 800, "height": 800, "file_size": len(png)},
		map[string]any{"file_id": "huge", "width": 4000, "height": 4000, "file_size": channels.MaxImageBytes + 1},
	}
	fake.Push(u)
	f := newAdapter(t, fake.URL(), token, nil)
	run(t, f.a)
	got := next(t, f.host)
	if got.Text != "what is this?" || len(got.Images) != 1 || got.Images[0].MIME != "image/png" || !bytes.Equal(got.Images[0].Data, png) {
		t.Errorf("photo message: text %q, %d images", got.Text, len(got.Images))
	}
}

func TestWebhookChecksTheSecretBeforeParsing(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), token, map[string]string{"mode": "webhook", "secret_token": "s3cr3t-Token_x"})
	if err := f.a.Run(context.Background()); err != nil || f.host.State() != channels.StateListening {
		t.Fatalf("webhook Run: %v, state %q", err, f.host.State())
	}
	srv := httptest.NewServer(f.a)
	defer srv.Close()
	upd := faketelegram.Text(42, "private", 7, false, "via webhook", 21)
	upd["update_id"] = 5
	ctx := context.Background()
	for _, c := range []struct {
		name, secret string
		want         int
	}{{"missing", "", 401}, {"wrong", "s3cr3t-Token_y", 401}, {"right", "s3cr3t-Token_x", 200}, {"again (a retry)", "s3cr3t-Token_x", 200}} {
		code, err := faketelegram.PostWebhook(ctx, srv.URL, c.secret, upd)
		if err != nil || code != c.want {
			t.Errorf("%s secret: %d %v, want %d", c.name, code, err, c.want)
		}
	}
	if n := len(f.host.Messages()); n != 1 {
		t.Errorf("%d messages accepted, want 1", n)
	}
	// Garbage with a wrong secret is refused as unauthorized (not parsed);
	// with the right one it is a 400.
	for _, c := range []struct {
		secret string
		want   int
	}{{"nope", 401}, {"s3cr3t-Token_x", 400}} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{not json"))
		req.Header.Set(secretHeader, c.secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("garbage with secret %q: %d, want %d", c.secret, resp.StatusCode, c.want)
		}
	}
	// A poller takes no webhook.
	p := newAdapter(t, fake.URL(), token, nil)
	rec := httptest.NewRecorder()
	p.a.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}")))
	if rec.Code != 404 {
		t.Errorf("poll mode ServeHTTP: %d, want 404", rec.Code)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		opts map[string]string
		key  string // "" valid
	}{
		{map[string]string{"token": token}, ""},
		{map[string]string{"token": "nope"}, "token"},
		{map[string]string{"token": "12:ab/cd"}, "token"},
		{map[string]string{"token": token, "mode": "push"}, "mode"},
		{map[string]string{"token": token, "mode": "webhook"}, "secret_token"},
		{map[string]string{"token": token, "mode": "webhook", "secret_token": "bad secret!"}, "secret_token"},
		{map[string]string{"token": token, "mode": "webhook", "secret_token": strings.Repeat("a", 257)}, "secret_token"},
		{map[string]string{"token": token, "mode": "webhook", "secret_token": "ok_-1"}, ""},
		{map[string]string{"token": token, "secret_token": "ok"}, "secret_token"},
		{map[string]string{"token": token, "api_url": "ftp://x"}, "api_url"},
		{map[string]string{"token": token, "require_mention": "yes"}, "require_mention"},
	} {
		err := check(channels.Config{Options: c.opts})
		switch {
		case c.key == "" && err != nil:
			t.Errorf("%v: %v", c.opts, err)
		case c.key != "" && (err == nil || !strings.Contains(err.Error(), c.key+":")):
			t.Errorf("%v: %v, want an error naming %s", c.opts, err, c.key)
		case err != nil && strings.Contains(err.Error(), secret):
			t.Errorf("the error quotes the token: %v", err)
		}
	}
}

func TestAddress(t *testing.T) {
	for _, s := range []string{"42", "-100/5/3", "42/0/0"} {
		d, err := parseAddress(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
		}
		if strings.Contains(s, "/") && d.String() != s {
			t.Errorf("%q round-trips as %q", s, d.String())
		}
	}
	for _, s := range []string{"", "0", "x", "1/2", "1/-2/3", "1/2/3/4", "1//3"} {
		if _, err := parseAddress(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func FuzzParseUpdate(f *testing.F) {
	f.Add([]byte(`{"update_id":1,"message":{"message_id":3,"from":{"id":7,"is_bot":false,"first_name":"A"},"chat":{"id":-5,"type":"group"},"date":1,"text":"😀 @moltbot_test_bot hi","entities":[{"type":"mention","offset":3,"length":17}]}}`))
	f.Add([]byte(`{"update_id":2,"message":{"message_id":4,"from":{"id":7},"chat":{"id":5,"type":"private"},"text":"/start@moltbot_test_bot x","entities":[{"type":"bot_command","offset":0,"length":23},{"type":"mention","offset":-1,"length":99}]}}`))
	f.Add([]byte(`{"update_id":3,"edited_message":{}}`))
	f.Add([]byte(`{"update_id":9,"message":{"message_id":1,"from":{"id":1},"chat":{"id":1,"type":"private"},"caption":"x","photo":[{"file_id":"a"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := parseUpdate(b)
		if err != nil {
			return
		}
		for _, rm := range []bool{true, false} {
			m, ok := filter(u, me(), rm)
			if !ok {
				continue
			}
			if m.ID == "" || m.Chat == "" || m.User == "" {
				t.Fatalf("a taken message without id, chat or user: %+v", m)
			}
			if _, err := parseAddress(m.Reply); err != nil {
				t.Fatalf("reply %q unreadable: %v", m.Reply, err)
			}
			if m.Text == "" && len(u.Message.images()) == 0 {
				t.Fatalf("an empty message taken")
			}
		}
	})
}

// busyHost answers the first busy Accepts with the core's EBusy (a full
// queue), then accepts.
type busyHost struct {
	*channeltest.Host
	mu   sync.Mutex
	busy int
}

func (b *busyHost) Accept(ctx context.Context, m channels.Message) error {
	b.mu.Lock()
	if b.busy > 0 {
		b.busy--
		b.mu.Unlock()
		return &moltbot.Error{Code: moltbot.EBusy, Message: "channels: busy", RetryAfter: time.Millisecond}
	}
	b.mu.Unlock()
	return b.Host.Accept(ctx, m)
}

func TestBusyCoreIsNotAcknowledged(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), token, nil)
	bh := &busyHost{Host: f.host, busy: 1}
	f.a.host = bh
	fake.Push(faketelegram.Text(42, "private", 7, false, "first", 1))
	id := fake.Push(faketelegram.Text(42, "private", 7, false, "second", 2))
	run(t, f.a)
	// Both arrive, in order, though the first was refused once for now.
	if m := next(t, f.host); m.Text != "first" {
		t.Fatalf("first accepted %+v", m)
	}
	if m := next(t, f.host); m.Text != "second" {
		t.Fatalf("second accepted %+v", m)
	}
	if !strings.Contains(f.log.String(), "not taken") {
		t.Error("the busy answer is not in the log")
	}
	eventually(t, "the offset past both", func() bool {
		b, _ := f.host.Get(offsetKey)
		var s savedOffset
		return json.Unmarshal(b, &s) == nil && s.Offset == id+1
	})

	// A webhook answers 503 with Retry-After, and takes it on the retry.
	w := newAdapter(t, fake.URL(), token, map[string]string{"mode": "webhook", "secret_token": "sec"})
	wb := &busyHost{Host: w.host, busy: 1}
	w.a.host = wb
	srv := httptest.NewServer(w.a)
	defer srv.Close()
	upd := faketelegram.Text(42, "private", 7, false, "hooked", 3)
	upd["update_id"] = 77
	for i, want := range []int{503, 200} {
		code, err := faketelegram.PostWebhook(context.Background(), srv.URL, "sec", upd)
		if err != nil || code != want {
			t.Errorf("post %d: %d %v, want %d", i, code, err, want)
		}
	}
	if n := len(w.host.Messages()); n != 1 {
		t.Errorf("%d accepted, want 1", n)
	}
}

func TestSendFollowsAMigratedGroup(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	fake.Migrate(-55, -1005555)
	f := newAdapter(t, fake.URL(), token, nil)
	if err := f.a.Send(context.Background(), "-55/0/3", moltbot.Message{Role: moltbot.RoleAssistant, Content: "moved"}); err != nil {
		t.Fatal(err)
	}
	if s := fake.Sent(); len(s) != 1 || s[0].ChatID != -1005555 || s[0].Text != "moved" {
		t.Errorf("sent %+v", s)
	}
}

func TestUnreadableUpdateIsSkipped(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	fake.Push(map[string]any{"message": "not an object"})
	id := fake.Push(faketelegram.Text(42, "private", 7, false, "readable", 2))
	f := newAdapter(t, fake.URL(), token, nil)
	run(t, f.a)
	if m := next(t, f.host); m.Text != "readable" {
		t.Fatalf("accepted %+v", m)
	}
	eventually(t, "the offset past both", func() bool {
		b, _ := f.host.Get(offsetKey)
		var s savedOffset
		return json.Unmarshal(b, &s) == nil && s.Offset == id+1
	})
	if !strings.Contains(f.log.String(), "unreadable update skipped") {
		t.Error("the skipped update is not in the log")
	}
}

func TestWebhookLimits(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", token, map[string]string{"mode": "webhook", "secret_token": "sec"})
	big := `{"update_id":1,"message":{"text":"` + strings.Repeat("x", channels.MaxBody) + `"}}`
	for _, c := range []struct {
		method, secret, body string
		want                 int
	}{
		{http.MethodGet, "sec", "", 405},
		{http.MethodPost, "sec", big, 413},
		{http.MethodPost, "", big, 401}, // the secret before the size: nothing read
		{http.MethodPost, "sec", `{"update_id":0}`, 400},
		{http.MethodPost, "sec", `{"update_id":5,"channel_post":{"message_id":1,"chat":{"id":-1,"type":"channel"},"text":"news"}}`, 200},
	} {
		req := httptest.NewRequest(c.method, "/", strings.NewReader(c.body))
		req.Header.Set(secretHeader, c.secret)
		rec := httptest.NewRecorder()
		f.a.me = me() // no getMe for this test (nothing listens at api_url)
		f.a.ServeHTTP(rec, req)
		if rec.Code != c.want || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Errorf("%s %d bytes (secret %q): %d %s, want %d", c.method, len(c.body), c.secret, rec.Code, rec.Header().Get("Content-Type"), c.want)
		}
	}
	if n := len(f.host.Messages()); n != 0 {
		t.Errorf("%d accepted", n)
	}
}

func TestImageDocumentBecomesAnImagePart(t *testing.T) {
	fake := faketelegram.New(token)
	defer fake.Close()
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")
	fake.AddFile("doc1", png)
	withDoc := func(id int64, mime string) map[string]any {
		u := faketelegram.Text(42, "private", 7, false, "", id)
		m := u["message"].(map[string]any)
		delete(m, "text")
		m["document"] = map[string]any{"file_id": "doc1", "file_name": "shot.png", "mime_type": mime, "file_size": len(png)}
		return u
	}
	fake.Push(withDoc(5, "application/pdf")) // not an image, no caption: not taken
	fake.Push(withDoc(6, "image/png"))
	f := newAdapter(t, fake.URL(), token, nil)
	run(t, f.a)
	got := next(t, f.host)
	if got.ID != "42:6" || len(got.Images) != 1 || got.Images[0].MIME != "image/png" {
		t.Errorf("document message %+v", got)
	}
}
