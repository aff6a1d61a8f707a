package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/slack/fakeslack"
)

const (
	botToken = "xoxb-1-test-bot-token"
	appToken = "xapp-1-test-app-token"
	secret   = "8f742231b10e8888abcd99yyyzzz85a5"
	// wait bounds every wait for the fake or the adapter (a backstop:
	// nothing is asserted about how long things take).
	wait = 10 * time.Second
)

// fixture is an adapter against a fake Slack with a Host in memory.
type fixture struct {
	a    *Adapter
	fake *fakeslack.Server
	host *channeltest.Host
}

func newFixture(t *testing.T, mode string, host *channeltest.Host) *fixture {
	t.Helper()
	fake := fakeslack.New(botToken, appToken)
	t.Cleanup(fake.Close)
	if host == nil {
		host = &channeltest.Host{Accepted: make(chan channels.Message, 16)}
	}
	ad, err := New(channels.Config{Name: "team", Type: "slack", Options: map[string]string{
		"mode": mode, "bot_token": botToken, "app_token": appToken, "signing_secret": secret, "api_url": fake.URL(),
	}}, host)
	if err != nil {
		t.Fatal(err)
	}
	a := ad.(*Adapter)
	// Short intervals, so a watchdog or a backoff is met in a test; the
	// tests never assert on them.
	a.pingEvery = 50 * time.Millisecond
	a.idleTimeout = 2 * time.Second
	a.backoffBase = 5 * time.Millisecond
	a.backoffMax = 50 * time.Millisecond
	return &fixture{a: a, fake: fake, host: host}
}

// run starts Run; the returned channel has its result. The test's end
// cancels it and waits.
func (f *fixture) run(t *testing.T) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- f.a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(wait):
			t.Error("Run did not return after its context ended")
		}
	})
	return done
}

func (f *fixture) conn(t *testing.T) *fakeslack.Conn {
	t.Helper()
	c := f.fake.Conn(wait)
	if c == nil {
		t.Fatal("the adapter did not connect to the fake Slack")
	}
	return c
}

func (f *fixture) event(t *testing.T, c *fakeslack.Conn, ev fakeslack.Event) string {
	t.Helper()
	id, err := c.Event(f.fake.Callback(ev))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func ack(t *testing.T, c *fakeslack.Conn, want string) {
	t.Helper()
	got, ok := c.Ack(wait)
	if !ok {
		t.Fatalf("envelope %s was not acknowledged", want)
	}
	if got != want {
		t.Fatalf("acknowledged %s, want %s", got, want)
	}
}

func accepted(t *testing.T, h *channeltest.Host) channels.Message {
	t.Helper()
	select {
	case m := <-h.Accepted:
		return m
	case <-time.After(wait):
		t.Fatal("no message accepted")
	}
	return channels.Message{}
}

func mention(ts, text string) fakeslack.Event {
	return fakeslack.Event{Type: "app_mention", User: "U0ALICE", Text: text, TS: ts, Channel: "C0GENERAL"}
}

// A mention in a channel becomes one Message, with the mention removed,
// Slack's escaping undone, a reply address in its thread, and the
// envelope acknowledged.
func TestSocketMention(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.run(t)
	c := f.conn(t)
	id := f.event(t, c, mention("1700000001.000200", "<@UFAKEBOT> what is 1 &lt; 2 &amp;&amp; 3 &gt; 2?"))
	m := accepted(t, f.host)
	ack(t, c, id)
	want := channels.Message{ID: "C0GENERAL:1700000001.000200", User: "U0ALICE", Chat: "C0GENERAL", Thread: "1700000001.000200",
		Text: "what is 1 < 2 && 3 > 2?", Reply: "C0GENERAL/1700000001.000200", At: time.Unix(1700000001, 200000).UTC()}
	if m.ID != want.ID || m.User != want.User || m.Chat != want.Chat || m.Thread != want.Thread || m.Text != want.Text || m.Reply != want.Reply || !m.At.Equal(want.At) || m.FromBot {
		t.Fatalf("message\n got %+v\nwant %+v", m, want)
	}
	if f.host.State() != channels.StateConnected {
		t.Fatalf("state %q, want connected", f.host.State())
	}
}

// gateHost is a Host whose Accept waits for the test: it shows what the
// adapter does while a message is being taken.
type gateHost struct {
	channeltest.Host
	entered chan struct{}
	gate    chan struct{}
}

func (g *gateHost) Accept(ctx context.Context, m channels.Message) error {
	g.entered <- struct{}{}
	<-g.gate
	return g.Host.Accept(ctx, m)
}

// The ack goes once the Host took the message (durably, in the core) and
// not before; it does not wait for any reply (no model, no Send).
func TestSocketAckAfterAcceptBeforeWork(t *testing.T) {
	g := &gateHost{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	fake := fakeslack.New(botToken, appToken)
	t.Cleanup(fake.Close)
	ad, _ := New(channels.Config{Name: "team", Options: map[string]string{"bot_token": botToken, "app_token": appToken, "api_url": fake.URL()}}, g)
	f := &fixture{a: ad.(*Adapter), fake: fake}
	f.run(t)
	c := f.conn(t)
	id := f.event(t, c, mention("1700000001.000300", "<@UFAKEBOT> hi"))
	select {
	case <-g.entered:
	case <-time.After(wait):
		t.Fatal("Accept was not called")
	}
	if !c.NoAckYet() {
		t.Fatal("the envelope was acknowledged before the Host took the message")
	}
	close(g.gate)
	ack(t, c, id)
	if p := fake.Posts(); len(p) != 0 {
		t.Fatalf("posts before any reply was sent: %v", p)
	}
	if len(g.Messages()) != 1 {
		t.Fatalf("accepted %d messages, want 1", len(g.Messages()))
	}
}

// A mention written in a DM arrives as app_mention and as message.im;
// Slack may also send an envelope again (retry_attempt). One Message.
func TestSocketDuplicates(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.run(t)
	c := f.conn(t)
	ts := "1700000002.000100"
	ev := fakeslack.Event{Type: "message", ChannelType: "im", User: "U0ALICE", Text: "<@UFAKEBOT> hello", TS: ts, Channel: "D0ALICE"}
	id1 := f.event(t, c, ev)
	ack(t, c, id1)
	ev.Type, ev.ChannelType = "app_mention", ""
	id2 := f.event(t, c, ev)
	ack(t, c, id2)
	id3, _ := c.Envelope("events_api", f.fake.Callback(ev), 1)
	ack(t, c, id3)
	// A different message after them, to know the adapter has handled
	// the three before it.
	id4 := f.event(t, c, fakeslack.Event{Type: "message", ChannelType: "im", User: "U0ALICE", Text: "again", TS: "1700000003.000100", Channel: "D0ALICE"})
	ack(t, c, id4)
	msgs := f.host.Messages()
	if len(msgs) != 2 || msgs[0].ID != "D0ALICE:"+ts || msgs[0].Text != "hello" || msgs[1].Text != "again" {
		t.Fatalf("accepted %+v, want the mention once then \"again\"", msgs)
	}
	// A top-level DM is answered inline (no thread).
	if msgs[0].Reply != "D0ALICE" || msgs[0].Thread != "" {
		t.Fatalf("a DM's reply %q thread %q, want D0ALICE and none", msgs[0].Reply, msgs[0].Thread)
	}
}

// Bot messages, edits, our own messages, channel chatter and envelopes
// of other types are acknowledged and make no turn; another app's
// message reaches the Host marked FromBot (it counts and drops it).
func TestSocketFiltered(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.run(t)
	c := f.conn(t)
	edited := mention("1700000004.000100", "<@UFAKEBOT> edited")
	edited.Edited = &struct {
		User string `json:"user"`
		TS   string `json:"ts"`
	}{"U0ALICE", "1700000004.000900"}
	for _, ev := range []fakeslack.Event{
		{Type: "message", ChannelType: "im", Subtype: "bot_message", BotID: "B0OTHER", Text: "loop", TS: "1700000004.000200", Channel: "D0ALICE"},
		{Type: "message", ChannelType: "im", Subtype: "message_changed", Text: "x", TS: "1700000004.000300", Channel: "D0ALICE"},
		{Type: "message", ChannelType: "im", User: fakeslack.UserID, BotID: fakeslack.BotID, Text: "my own reply", TS: "1700000004.000400", Channel: "D0ALICE"},
		{Type: "message", ChannelType: "channel", User: "U0ALICE", Text: "chatter", TS: "1700000004.000500", Channel: "C0GENERAL"},
		{Type: "app_mention", User: "U0ALICE", Text: "<@UFAKEBOT>", TS: "1700000004.000600", Channel: "C0GENERAL"},
		{Type: "app_mention", User: "U0ALICE", Text: "bad channel", TS: "1700000004.000700", Channel: "c0/../x"},
		edited,
	} {
		ack(t, c, f.event(t, c, ev))
	}
	id, _ := c.Envelope("slash_commands", []byte(`{"command":"/x"}`), 0)
	ack(t, c, id)
	ack(t, c, f.event(t, c, fakeslack.Event{Type: "app_mention", User: "U0BOTUSER", BotID: "B0OTHER", Text: "<@UFAKEBOT> from a bot", TS: "1700000004.000800", Channel: "C0GENERAL"}))
	msgs := f.host.Messages()
	if len(msgs) != 1 || !msgs[0].FromBot || msgs[0].Text != "from a bot" {
		t.Fatalf("accepted %+v, want only the other bot's message, marked FromBot", msgs)
	}
}

// Slack's disconnect frame (each reason) makes the adapter fetch a fresh
// URL and connect again; the new connection carries events.
func TestSocketReconnectOnDisconnect(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.run(t)
	prev := f.conn(t)
	for i, reason := range []string{"refresh_requested", "warning", "too_many_websockets"} {
		if err := prev.Disconnect(reason); err != nil {
			t.Fatal(err)
		}
		next := f.conn(t)
		if next.URL == prev.URL {
			t.Fatalf("reconnected to the same URL %s", next.URL)
		}
		select {
		case <-prev.Done():
		case <-time.After(wait):
			t.Fatalf("%s: the old connection was not closed", reason)
		}
		if f.fake.Opens() != i+2 {
			t.Fatalf("%s: apps.connections.open called %d times, want %d", reason, f.fake.Opens(), i+2)
		}
		ts := "1700000005.00010" + string(rune('0'+i))
		ack(t, next, f.event(t, next, mention(ts, "<@UFAKEBOT> after "+reason)))
		if m := accepted(t, f.host); m.Text != "after "+reason {
			t.Fatalf("after %s: accepted %q", reason, m.Text)
		}
		prev = next
	}
}

// A socket that goes silent (a NAT that dropped the path: no frames, no
// pongs) is closed by the watchdog and replaced.
func TestSocketWatchdog(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.a.pingEvery = 20 * time.Millisecond
	f.a.idleTimeout = 300 * time.Millisecond
	f.run(t)
	c := f.conn(t)
	c.Silence()
	next := f.conn(t)
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Fatal("the silent connection was not closed")
	}
	if next.URL == c.URL || f.fake.Opens() != 2 {
		t.Fatalf("reconnect: url %s after %s, %d opens", next.URL, c.URL, f.fake.Opens())
	}
}

// A live socket is not closed by the watchdog: our pings are answered
// (the fake answers pings while it reads) and events still flow after
// many idle timeouts' worth of pings.
func TestSocketWatchdogKeepsLiveSocket(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.a.pingEvery = 10 * time.Millisecond
	f.a.idleTimeout = 500 * time.Millisecond
	f.run(t)
	c := f.conn(t)
	for i := range 3 {
		// Each round trip is an event; between them the socket idles
		// longer than the read deadline: only the pongs keep it.
		ts := "1700000006.00010" + string(rune('0'+i))
		ack(t, c, f.event(t, c, mention(ts, "<@UFAKEBOT> ping")))
		time.Sleep(600 * time.Millisecond) // idling, not an assertion on time
	}
	if f.fake.Opens() != 1 {
		t.Fatalf("a live socket was replaced: %d opens", f.fake.Opens())
	}
}

// A frame over the read limit ends the connection (it is not read into
// memory) and the adapter connects again.
func TestSocketFrameLimit(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.run(t)
	c := f.conn(t)
	big := `{"type":"events_api","envelope_id":"big","payload":{"x":"` + strings.Repeat("a", maxFrame) + `"}}`
	// The adapter may close the socket as soon as the frame's header says
	// it is over the limit, while the fake still writes its body: a reset
	// here is the limit at work (what must follow, a new connection and no
	// ack, is checked below).
	if err := c.Write([]byte(big)); err != nil {
		t.Logf("the oversize frame's write ended early: %v", err)
	}
	next := f.conn(t)
	if next.URL == c.URL {
		t.Fatal("same URL")
	}
	if _, ok := c.Ack(50 * time.Millisecond); ok {
		t.Fatal("the oversize envelope was acknowledged")
	}
}

// invalid_auth and account_inactive stop Run with a Fatal error and
// StateFatal; nothing is retried.
func TestSocketFatal(t *testing.T) {
	for _, code := range []string{"invalid_auth", "account_inactive", "token_revoked"} {
		t.Run(code, func(t *testing.T) {
			f := newFixture(t, ModeSocket, nil)
			f.fake.FailAuth(code)
			var err error
			select {
			case err = <-f.run(t):
			case <-time.After(wait):
				t.Fatal("Run did not stop")
			}
			if !channels.IsFatal(err) || !strings.Contains(err.Error(), code) {
				t.Fatalf("Run: %v, want a fatal %s", err, code)
			}
			if f.host.State() != channels.StateFatal {
				t.Fatalf("state %q, want fatal", f.host.State())
			}
			if strings.Contains(err.Error(), botToken) || strings.Contains(err.Error(), appToken) {
				t.Fatalf("the error carries a token: %v", err)
			}
		})
	}
	// A wrong app token (right bot token): auth.test passes,
	// apps.connections.open answers invalid_auth.
	t.Run("app_token", func(t *testing.T) {
		f := newFixture(t, ModeSocket, nil)
		f.a.app = "xapp-wrong"
		err := <-f.run(t)
		var apiErr *APIError
		if !channels.IsFatal(err) || !errors.As(err, &apiErr) || apiErr.Method != "apps.connections.open" {
			t.Fatalf("Run: %v, want a fatal apps.connections.open error", err)
		}
	})
}

// Cancelling Run's context closes the socket and reports stopped.
func TestSocketStop(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.a.Run(ctx) }()
	c := f.conn(t)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
	<-c.Done()
	if f.host.State() != channels.StateStopped {
		t.Fatalf("state %q", f.host.State())
	}
}

// An envelope over the in-flight bound is left unacknowledged (Slack
// sends it again) rather than queued without bound.
func TestSocketBusy(t *testing.T) {
	logs := make(chan string, 16)
	g := &gateHost{entered: make(chan struct{}, 4), gate: make(chan struct{})}
	g.Logger = slog.New(&chanHandler{logs})
	fake := fakeslack.New(botToken, appToken)
	t.Cleanup(fake.Close)
	ad, _ := New(channels.Config{Name: "team", Options: map[string]string{"bot_token": botToken, "app_token": appToken, "api_url": fake.URL()}}, g)
	a := ad.(*Adapter)
	a.inflight = 1
	f := &fixture{a: a, fake: fake}
	f.run(t)
	c := f.conn(t)
	id1 := f.event(t, c, mention("1700000007.000100", "<@UFAKEBOT> one"))
	<-g.entered // the one slot is taken
	f.event(t, c, mention("1700000007.000200", "<@UFAKEBOT> two"))
	for msg := range logs {
		if strings.Contains(msg, "busy") {
			break
		}
	}
	close(g.gate)
	ack(t, c, id1)
	id3 := f.event(t, c, mention("1700000007.000300", "<@UFAKEBOT> three"))
	ack(t, c, id3)
	if got := len(g.Messages()); got != 2 {
		t.Fatalf("accepted %d, want 2 (the busy one left for Slack to send again)", got)
	}
}

// chanHandler sends each log record's message to a channel (dropping
// when full).
type chanHandler struct{ c chan string }

func (h *chanHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *chanHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.c <- r.Message:
	default:
	}
	return nil
}
func (h *chanHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *chanHandler) WithGroup(string) slog.Handler      { return h }

// A 429 from apps.connections.open is waited out for its Retry-After
// (longer than the backoff), then the connection is made.
func TestSocketOpenRateLimited(t *testing.T) {
	f := newFixture(t, ModeSocket, nil)
	f.fake.RateLimitOpen(1, 1)
	start := time.Now()
	f.run(t)
	c := f.conn(t)
	// A lower bound, not a timing assertion: the second call cannot
	// precede the Retry-After second.
	if d := time.Since(start); d < time.Second {
		t.Fatalf("connected after %v, inside Retry-After: 1", d)
	}
	ack(t, c, f.event(t, c, mention("1700000008.000100", "<@UFAKEBOT> hi")))
}

// stateHost records every Report under its own lock (channeltest's
// States is for after Run ends).
type stateHost struct {
	channeltest.Host
	mu     sync.Mutex
	states []string
}

func (h *stateHost) Report(state string, err error) {
	h.mu.Lock()
	h.states = append(h.states, state)
	h.mu.Unlock()
	h.Host.Report(state, err)
}

func (h *stateHost) count(state string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.states {
		if s == state {
			n++
		}
	}
	return n
}

// Slack's disconnects are answered by reconnecting at once, three in a
// row; a fourth without an event between them waits a backoff (a Slack
// that keeps disconnecting is not hammered); an event resets the count.
func TestSocketDisconnectLoopBacksOff(t *testing.T) {
	h := &stateHost{}
	fake := fakeslack.New(botToken, appToken)
	t.Cleanup(fake.Close)
	ad, _ := New(channels.Config{Name: "team", Options: map[string]string{"bot_token": botToken, "app_token": appToken, "api_url": fake.URL()}}, h)
	a := ad.(*Adapter)
	a.backoffBase, a.backoffMax = 5*time.Millisecond, 10*time.Millisecond
	f := &fixture{a: a, fake: fake, host: &h.Host}
	f.run(t)
	c := f.conn(t)
	for i := range quickReconnects {
		c.Disconnect("refresh_requested")
		c = f.conn(t)
		if n := h.count(channels.StateBackoff); n != 0 {
			t.Fatalf("disconnect %d: backed off", i+1)
		}
	}
	c.Disconnect("refresh_requested")
	c = f.conn(t)
	if n := h.count(channels.StateBackoff); n != 1 {
		t.Fatalf("disconnect %d in a row: %d backoffs, want 1", quickReconnects+1, n)
	}
	// An event between disconnects: quick again.
	ack(t, c, f.event(t, c, mention("1700000009.000100", "<@UFAKEBOT> hi")))
	c.Disconnect("refresh_requested")
	f.conn(t)
	if n := h.count(channels.StateBackoff); n != 1 {
		t.Fatalf("after an event: %d backoffs, want still 1", n)
	}
}

// busyHost answers EBusy (its queue full) for the message with ID busy.
type busyHost struct {
	channeltest.Host
	busy string
}

func (h *busyHost) Accept(ctx context.Context, m channels.Message) error {
	if m.ID == h.busy {
		return &moltbot.Error{Code: moltbot.EBusy, Message: "channels: 1000 messages wait"}
	}
	return h.Host.Accept(ctx, m)
}

// A Host that is busy has not taken the message: the envelope is left
// unacknowledged (Slack sends it again) and the Events API answers 503;
// a Host that refuses it (a loop, a bot) is acknowledged.
func TestAcceptBusyOrRefused(t *testing.T) {
	logs := make(chan string, 64)
	h := &busyHost{busy: "C0GENERAL:1700000010.000100"}
	h.Logger = slog.New(&chanHandler{logs})
	fake := fakeslack.New(botToken, appToken)
	t.Cleanup(fake.Close)
	ad, _ := New(channels.Config{Name: "team", Options: map[string]string{"bot_token": botToken, "app_token": appToken, "signing_secret": secret, "api_url": fake.URL()}}, h)
	f := &fixture{a: ad.(*Adapter), fake: fake}
	f.run(t)
	c := f.conn(t)
	f.event(t, c, mention("1700000010.000100", "<@UFAKEBOT> busy"))
	for msg := range logs {
		if strings.Contains(msg, "not taken") {
			break
		}
	}
	id := f.event(t, c, mention("1700000010.000200", "<@UFAKEBOT> fine"))
	ack(t, c, id)
	if !c.NoAckYet() {
		t.Fatal("the envelope the Host was too busy to take was acknowledged")
	}

	// The Events API: 503 for busy, 200 for a refusal.
	f.a.mode = ModeHTTP
	body := fake.Callback(mention("1700000010.000100", "<@UFAKEBOT> busy"))
	if w := serve(f, fakeslack.Request("/", secret, time.Now().Unix(), body, 0)); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("busy: HTTP %d", w.Code)
	}
	r := &channeltest.Host{Refuse: fmt.Errorf("%w: the author is a bot", channels.ErrRefused)}
	ad2, _ := New(channels.Config{Name: "team", Options: map[string]string{"mode": "http", "bot_token": botToken, "signing_secret": secret, "api_url": fake.URL()}}, r)
	body = fake.Callback(mention("1700000010.000300", "<@UFAKEBOT> refused"))
	w := httptest.NewRecorder()
	ad2.ServeHTTP(w, fakeslack.Request("/", secret, time.Now().Unix(), body, 0))
	if w.Code != http.StatusOK {
		t.Fatalf("refused: HTTP %d", w.Code)
	}
}
