package discord

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/discord/fakediscord"
)

// wait bounds every wait of these tests for an event (never a sleep that
// asserts time).
const wait = 10 * time.Second

func newFake(t *testing.T, o fakediscord.Options) *fakediscord.Server {
	t.Helper()
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 100 * time.Millisecond
	}
	f := fakediscord.New(o)
	t.Cleanup(f.Close)
	return f
}

func testAdapter(t *testing.T, f *fakediscord.Server, h channels.Host, extra map[string]string) *Adapter {
	t.Helper()
	opts := map[string]string{"token": "test-token", "api_url": f.API(), "public_key": f.PublicKeyHex(), "application_id": fakediscord.AppID}
	for k, v := range extra {
		opts[k] = v
	}
	a, err := newAdapter(channels.Config{Name: "dc", Type: "discord", Options: opts}, h)
	if err != nil {
		t.Fatal(err)
	}
	a.jitter = func() float64 { return 0.5 }
	a.backoff = func(n int) time.Duration { return channels.Backoff(n, time.Millisecond, 5*time.Millisecond) }
	a.invalidWait = func() time.Duration { return time.Millisecond }
	return a
}

// run starts a.Run; the returned func stops it and returns its error.
func run(t *testing.T, a *Adapter) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	var err error
	stop := func() error {
		if !stopped {
			cancel()
			select {
			case err = <-done:
			case <-time.After(wait):
				t.Fatal("Run did not return after its context ended")
			}
			stopped = true
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func must(t *testing.T, f *fakediscord.Server, prefix string) string {
	t.Helper()
	e, ok := f.Wait(prefix, wait)
	if !ok {
		t.Fatalf("no %q from the fake; its log: %v", prefix, f.Log())
	}
	return e
}

// logged waits until the fake's log holds event e (in whatever order
// with the events around it).
func logged(t *testing.T, f *fakediscord.Server, e string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !slices.Contains(f.Log(), e) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q from the fake; its log: %v", e, f.Log())
		}
		time.Sleep(time.Millisecond)
	}
}

func accepted(t *testing.T, h *channeltest.Host) channels.Message {
	t.Helper()
	select {
	case m := <-h.Accepted:
		return m
	case <-time.After(wait):
		t.Fatalf("no message accepted; took %d", len(h.Messages()))
	}
	return channels.Message{}
}

func waitState(t *testing.T, h *channeltest.Host, state string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for h.State() != state {
		if time.Now().After(deadline) {
			t.Fatalf("state %q, want %q (states %v)", h.State(), state, h.States)
		}
		time.Sleep(time.Millisecond)
	}
}

// connected waits for the adapter's IDENTIFY, READY and a heartbeat
// after GUILD_CREATE (sequence 2: everything the fake sent is read).
func connected(t *testing.T, f *fakediscord.Server, h *channeltest.Host) {
	t.Helper()
	must(t, f, "identify")
	waitState(t, h, channels.StateConnected)
	must(t, f, "heartbeat 2")
}

func TestIdentifyThenMessage(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{Accepted: make(chan channels.Message, 8)}
	a := testAdapter(t, f, h, nil)
	run(t, a)
	if e := must(t, f, "identify"); e != "identify intents=37376" {
		t.Errorf("%s: want the default intents GUILD_MESSAGES|DIRECT_MESSAGES|MESSAGE_CONTENT (37376)", e)
	}
	waitState(t, h, channels.StateConnected)
	f.MessageCreate(fakediscord.Message{ID: "1300000000000000001", Content: "<@" + fakediscord.BotID + "> what is   2+2?"})
	m := accepted(t, h)
	if m.ID != "1300000000000000001" || m.Text != "what is   2+2?" || m.Chat != fakediscord.ChannelID ||
		m.User != fakediscord.UserID || m.UserName != "A User" || m.Reply != "c/"+fakediscord.ChannelID+"/1300000000000000001" || m.At.IsZero() {
		t.Errorf("accepted %+v", m)
	}
	// A DM needs no mention.
	f.MessageCreate(fakediscord.Message{Channel: fakediscord.DMID, Content: "hello"})
	if m := accepted(t, h); m.Text != "hello" || m.Chat != fakediscord.DMID {
		t.Errorf("DM accepted as %+v", m)
	}
}

func TestHeartbeatsCarryTheSequence(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{}
	run(t, testAdapter(t, f, h, nil))
	must(t, f, "identify")
	waitState(t, h, channels.StateConnected)
	// READY (1) and GUILD_CREATE (2) came: a heartbeat after them says 2.
	for {
		e := must(t, f, "heartbeat")
		if e == "heartbeat 2" {
			break
		}
		if e != "heartbeat 0" && e != "heartbeat 1" {
			t.Fatalf("%s: want the last sequence number", e)
		}
	}
	f.AskHeartbeat() // op 1 from the server: a heartbeat at once
	must(t, f, "heartbeat 2")
}

func TestZombieIsClosedAndResumed(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{Accepted: make(chan channels.Message, 8)}
	run(t, testAdapter(t, f, h, nil))
	connected(t, f, h)
	f.DropACKs(true)
	// A zombie connection is closed with a code other than 1000/1001.
	logged(t, f, "client closed 4900")
	f.DropACKs(false)
	if e := must(t, f, "resume"); e != "resume 2" {
		t.Errorf("%s: want a resume from sequence 2", e)
	}
	waitState(t, h, channels.StateConnected)
	f.MessageCreate(fakediscord.Message{Channel: fakediscord.DMID, Content: "after"})
	if m := accepted(t, h); m.Text != "after" {
		t.Errorf("after the resume: %+v", m)
	}
	for _, e := range f.Log() {
		if strings.HasPrefix(e, "identify") && e != "identify intents=37376" {
			t.Errorf("%s", e)
		}
	}
}

func TestReconnectOp7Resumes(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{}
	run(t, testAdapter(t, f, h, nil))
	connected(t, f, h)
	f.Reconnect()
	must(t, f, "resume 2")
	logged(t, f, "client closed 4900")
	logged(t, f, "connect /resume") // op 7 reconnects to resume_gateway_url
}

func TestInvalidSession(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{}
	run(t, testAdapter(t, f, h, nil))
	connected(t, f, h)
	f.InvalidSession(true) // resumable
	must(t, f, "resume 2")
	f.InvalidSession(false) // not: a new IDENTIFY through /gateway/bot
	must(t, f, "gateway/bot")
	must(t, f, "identify")
	waitState(t, h, channels.StateConnected)
}

func TestOtherCloseCodesResume(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{}
	run(t, testAdapter(t, f, h, nil))
	connected(t, f, h)
	f.CloseAll(4000)
	must(t, f, "resume 2")
	f.CloseAll(4009) // session timed out: identify
	must(t, f, "identify")
}

func TestFatal(t *testing.T) {
	cases := []struct {
		name string
		opt  fakediscord.Options
		code int // closed by the test after READY (0: none)
		want string
	}{
		{"bad token at /gateway/bot", fakediscord.Options{Token: "other"}, 0, "token"},
		{"4004", fakediscord.Options{}, 4004, "4004"},
		{"4014 disallowed intent", fakediscord.Options{AllowedIntents: IntentGuildMessages | IntentDirectMessages}, 0, "4014"},
		{"4013", fakediscord.Options{}, 4013, "4013"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFake(t, c.opt)
			h := &channeltest.Host{}
			a := testAdapter(t, f, h, nil)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			if c.code != 0 {
				must(t, f, "identify")
				waitState(t, h, channels.StateConnected)
				f.CloseAll(c.code)
			}
			err := <-done
			if !channels.IsFatal(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run: %v, want a Fatal error naming %s", err, c.want)
			}
			if h.State() != channels.StateFatal || h.Err == nil {
				t.Errorf("state %s (err %v), want fatal", h.State(), h.Err)
			}
		})
	}
}

// The session is kept in the Host: a second adapter (the node the ring
// moves the channel to) resumes it and gets what was sent in between.
func TestSessionMovesToAnotherNode(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{Accepted: make(chan channels.Message, 8)}
	a := testAdapter(t, f, h, nil)
	a.persistEvery = 0
	stop := run(t, a)
	must(t, f, "identify")
	waitState(t, h, channels.StateConnected)
	// The fake numbers its GUILD_CREATE (2) on its own goroutine after
	// READY: wait for it, or "one" may take 2 and the GUILD_CREATE 3.
	deadline := time.Now().Add(wait)
	for f.Seq() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	f.MessageCreate(fakediscord.Message{Channel: fakediscord.DMID, Content: "one"})
	accepted(t, h)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	logged(t, f, "client closed 4900") // not 1000: the session stays resumable
	var s session
	v, _ := h.Get(stateKey)
	if json.Unmarshal(v, &s); s.ID == "" || s.Seq != 3 || !strings.HasSuffix(s.ResumeURL, "/resume") {
		t.Fatalf("saved session %s", v)
	}
	f.MessageCreate(fakediscord.Message{Channel: fakediscord.DMID, Content: "two"}) // while nobody listens
	b := testAdapter(t, f, h, nil)
	run(t, b)
	must(t, f, "resume 3")
	if m := accepted(t, h); m.Text != "two" {
		t.Errorf("after the move: %+v", m)
	}
	for _, e := range f.Log() {
		if strings.HasPrefix(e, "identify") && e != "identify intents=37376" {
			t.Error(e)
		}
	}
	if n := strings.Count(strings.Join(f.Log(), "\n"), "identify"); n != 1 {
		t.Errorf("%d identifies, want 1 (the second node resumes)", n)
	}
}

func TestSendWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &conn{now: func() time.Time { return now }}
	for i := range sendLimit {
		if d := c.reserve(); d != 0 {
			t.Fatalf("send %d waits %v", i, d)
		}
	}
	if d := c.reserve(); d != sendWindow {
		t.Fatalf("send %d waits %v, want %v", sendLimit+1, d, sendWindow)
	}
	now = now.Add(sendWindow)
	if d := c.reserve(); d != time.Nanosecond*0 && d >= sendWindow {
		t.Fatalf("after the window: %v", d)
	}
}

func TestGatewayURL(t *testing.T) {
	for in, want := range map[string]string{
		"wss://gateway.discord.gg":                "wss://gateway.discord.gg/?v=10&encoding=json",
		"wss://gateway.discord.gg/?compress=zlib": "wss://gateway.discord.gg/?v=10&encoding=json",
		"ws://127.0.0.1:1/resume":                 "ws://127.0.0.1:1/resume?v=10&encoding=json",
	} {
		if got, err := gatewayURL(in); err != nil || got != want {
			t.Errorf("gatewayURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"https://x", "", "wss://", "::"} {
		if _, err := gatewayURL(bad); err == nil {
			t.Errorf("gatewayURL(%q) took it", bad)
		}
	}
}

var _ = errors.New

// A node killed before it saved its last sequence number: the next one
// resumes from an older save, Discord replays what was handled already,
// and the Host's ErrDuplicate keeps it to one turn each.
func TestResumeReplayIsDeduplicated(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{Accepted: make(chan channels.Message, 8)}
	stop := run(t, testAdapter(t, f, h, nil))
	connected(t, f, h)
	f.MessageCreate(fakediscord.Message{ID: "1300000000000000001", Channel: fakediscord.DMID, Content: "one"})
	accepted(t, h)
	stop()
	// What a kill right after READY leaves: the session at sequence 1.
	v, _ := h.Get(stateKey)
	var s session
	json.Unmarshal(v, &s)
	s.Seq = 1
	v, _ = json.Marshal(s)
	h.Put(stateKey, v)
	f.MessageCreate(fakediscord.Message{ID: "1300000000000000002", Channel: fakediscord.DMID, Content: "two"})
	ch := &countingHost{Host: h}
	run(t, testAdapter(t, f, ch, nil))
	must(t, f, "resume 1")
	if m := accepted(t, h); m.Text != "two" {
		t.Fatalf("after the replay: %+v (one was accepted again?)", m)
	}
	if n, calls := len(h.Messages()), ch.calls.Load(); n != 2 || calls != 2 {
		t.Errorf("%d accepted, %d Accept calls after the resume; want 2 and 2 (one replayed, a duplicate; two)", n, calls)
	}
}

// countingHost counts Accept calls, duplicates included.
type countingHost struct {
	*channeltest.Host
	calls atomic.Int32
}

func (c *countingHost) Accept(ctx context.Context, m channels.Message) error {
	c.calls.Add(1)
	return c.Host.Accept(ctx, m)
}
