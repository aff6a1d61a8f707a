package discord

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/discord/fakediscord"
)

func serve(a *Adapter, r *http.Request) (int, string) {
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, strings.TrimSpace(string(b))
}

const ping = `{"type":1,"id":"1","application_id":"` + fakediscord.AppID + `","token":"x","version":1}`

func command(id, token, text string) []byte {
	return []byte(fmt.Sprintf(`{"type":2,"id":%q,"application_id":%q,"token":%q,"channel_id":%q,"guild_id":%q,
		"member":{"user":{"id":%q,"username":"ann","global_name":"Ann"}},
		"data":{"id":"5","name":"ask","type":1,"options":[{"name":"text","type":3,"value":%q}]},"version":1}`,
		id, fakediscord.AppID, token, fakediscord.ChannelID, fakediscord.GuildID, fakediscord.UserID, text))
}

func TestInteractionSignature(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{}
	a := testAdapter(t, f, h, nil)
	now := time.Now()
	good := func(body string) *http.Request { return f.SignedRequest("/", []byte(body), now) }

	if code, body := serve(a, good(ping)); code != 200 || body != `{"type":1}` {
		t.Fatalf("signed PING: %d %s", code, body)
	}
	bad := []struct {
		name string
		req  func() *http.Request
	}{
		{"no headers", func() *http.Request { return httptest.NewRequest("POST", "/", strings.NewReader(ping)) }},
		{"body changed", func() *http.Request {
			r := good(ping)
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(ping, `"x"`, `"y"`, 1)))
			return r
		}},
		{"timestamp changed", func() *http.Request {
			r := good(ping)
			r.Header.Set("X-Signature-Timestamp", fmt.Sprint(now.Unix()+1))
			return r
		}},
		{"signature flipped", func() *http.Request {
			r := good(ping)
			s := []byte(r.Header.Get("X-Signature-Ed25519"))
			s[0] ^= 1
			if s[0] > 'f' || (s[0] > '9' && s[0] < 'a') {
				s[0] = '0'
			}
			r.Header.Set("X-Signature-Ed25519", string(s))
			return r
		}},
		{"signature not hex", func() *http.Request {
			r := good(ping)
			r.Header.Set("X-Signature-Ed25519", strings.Repeat("z", 128))
			return r
		}},
		{"another key", func() *http.Request {
			other := fakediscord.New(fakediscord.Options{})
			defer other.Close()
			return other.SignedRequest("/", []byte(ping), now)
		}},
		{"stale", func() *http.Request { return f.SignedRequest("/", []byte(ping), now.Add(-10*time.Minute)) }},
		{"future", func() *http.Request { return f.SignedRequest("/", []byte(ping), now.Add(10*time.Minute)) }},
	}
	for _, c := range bad {
		if code, body := serve(a, c.req()); code != 401 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s, want 401 with a JSON error", c.name, code, body)
		}
	}
	// Not parsed before the check: a bad body with a bad signature is 401, not 400.
	r := httptest.NewRequest("POST", "/", strings.NewReader("{not json"))
	if code, _ := serve(a, r); code != 401 {
		t.Errorf("unsigned junk: %d", code)
	}
	if code, _ := serve(a, good("{not json")); code != 400 {
		t.Errorf("signed junk: %d, want 400", code)
	}
	big := strings.Repeat(" ", maxInteraction+1) + ping
	if code, _ := serve(a, good(big)); code != 413 {
		t.Errorf("a body over the cap: %d, want 413", code)
	}
	if code, _ := serve(a, httptest.NewRequest("GET", "/", nil)); code != 405 {
		t.Errorf("GET: %d", code)
	}
	off := testAdapter(t, f, h, map[string]string{"public_key": ""})
	if code, _ := serve(off, good(ping)); code != 404 {
		t.Errorf("no public_key: %d, want 404", code)
	}
	if len(h.Messages()) != 0 {
		t.Error("a message accepted")
	}
}

// A slash command: accepted at once with a deferred response; the reply
// goes through the interaction's webhook, and to the channel once the
// token is stale.
func TestInteractionDeferredThenFollowUp(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{Accepted: make(chan channels.Message, 4)}
	a := testAdapter(t, f, h, nil)
	now := time.Now()
	id, token := f.Interaction(time.Hour)
	code, body := serve(a, f.SignedRequest("/", command(id, token, "  what is moltbot? "), now))
	if code != 200 || body != `{"type":5}` {
		t.Fatalf("command: %d %s, want a deferred response", code, body)
	}
	m := accepted(t, h)
	if m.ID != id || m.Text != "what is moltbot?" || m.User != fakediscord.UserID || m.UserName != "Ann" || m.Chat != fakediscord.ChannelID {
		t.Errorf("accepted %+v", m)
	}
	if strings.Contains(m.Reply, token) || len(m.Reply) > 1024 {
		t.Fatalf("the Reply address carries the interaction token in clear (or is over 1024 bytes): %q", m.Reply)
	}
	// The same interaction again (another node, a retry): one turn, still deferred.
	if code, body := serve(a, f.SignedRequest("/", command(id, token, "what is moltbot?"), now)); code != 200 || body != `{"type":5}` {
		t.Errorf("duplicate: %d %s", code, body)
	}
	if n := len(h.Messages()); n != 1 {
		t.Errorf("%d accepted", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	long := strings.Repeat("word ", 500) // 2500 characters: two parts
	if err := a.Send(ctx, m.Reply, reply("r1", long)); err != nil {
		t.Fatal(err)
	}
	got := f.Created()
	if len(got) != 2 || !got[0].Webhook || !got[1].Webhook || string(got[0].AllowedMentions) != `{"parse":[]}` {
		t.Fatalf("follow-ups %+v", got)
	}
	if a.Typing(ctx, m.Reply) != nil || len(f.Typing()) != 0 {
		t.Error("typing on an interaction: the deferred response shows it already")
	}

	// The token went stale (the model took over 15 minutes): the channel.
	f.Expire(token)
	if err := a.Send(ctx, m.Reply, reply("r2", "late answer")); err != nil {
		t.Fatal(err)
	}
	got = f.Created()
	if last := got[len(got)-1]; last.Webhook || last.Channel != fakediscord.ChannelID || last.Content != "late answer" {
		t.Errorf("after the token expired: %+v", last)
	}
	// An old interaction: the webhook is not even tried.
	old := "1" + strings.Repeat("0", 17) // a snowflake of 2015
	addr := "i/" + fakediscord.AppID + "/" + fakediscord.ChannelID + "/" + old + "/" + a.seal(old, token)
	before := f.Invalids()
	if err := a.Send(ctx, addr, reply("r3", "older")); err != nil {
		t.Fatal(err)
	}
	if f.Invalids() != before {
		t.Error("an interaction token past its 15 minutes was tried")
	}
	// A token sealed for another interaction does not open.
	other := "i/" + fakediscord.AppID + "/" + fakediscord.ChannelID + "/" + id + "/" + a.seal("1234", token)
	if ad, err := a.parseAddress(other); err != nil || ad.token != "" {
		t.Errorf("a sealed token moved to another interaction opened: %+v %v", ad, err)
	}
}

func TestInteractionRefused(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{Refuse: moltbot.Errorf(moltbot.ERateLimited, "budget")}
	a := testAdapter(t, f, h, nil)
	id, token := f.Interaction(time.Hour)
	code, body := serve(a, f.SignedRequest("/", command(id, token, "hi"), time.Now()))
	var resp struct {
		Type int `json:"type"`
		Data struct {
			Flags int `json:"flags"`
		} `json:"data"`
	}
	json.Unmarshal([]byte(body), &resp)
	if code != 200 || resp.Type != callbackMessage || resp.Data.Flags != flagEphemeral {
		t.Errorf("refused: %d %s, want an ephemeral message", code, body)
	}
	// Empty text: told how to ask, nothing accepted.
	h.Refuse = nil
	code, body = serve(a, f.SignedRequest("/", command(id, token, "   "), time.Now()))
	if json.Unmarshal([]byte(body), &resp); code != 200 || resp.Type != callbackMessage || len(h.Messages()) != 0 {
		t.Errorf("empty: %d %s", code, body)
	}
	// Another application's interaction (signed with our key: a mix-up).
	otherApp := strings.Replace(string(command(id, token, "hi")), fakediscord.AppID, "1100000000000000099", 1)
	if code, body := serve(a, f.SignedRequest("/", []byte(otherApp), time.Now())); code != 400 || !strings.Contains(body, "application_id") {
		t.Errorf("another application's interaction: %d %s", code, body)
	}
	// A token a URL path cannot carry.
	code, _ = serve(a, f.SignedRequest("/", command(id, "../../channels/1", "hi"), time.Now()))
	if code != 400 {
		t.Errorf("a token with a slash: %d, want 400", code)
	}
}

// FuzzInteraction: any body, signed or not, through the endpoint: an
// unsigned one is always 401; a signed one is answered 200, 400 or 413,
// never accepted without a user, a channel and text.
func FuzzInteraction(f *testing.F) {
	f.Add([]byte(ping), true)
	f.Add(command("1300000000000000001", "tok", "hello"), true)
	f.Add(command("1300000000000000001", "tok", "hello"), false)
	f.Add([]byte(`{"type":2,"id":"1","application_id":"2","token":"a/b"}`), true)
	f.Add([]byte(`{"type":3}`), true)
	fake := fakediscord.New(fakediscord.Options{})
	defer fake.Close()
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		h := &channeltest.Host{}
		a := testAdapter(t, fake, h, nil)
		var r *http.Request
		if sign {
			r = fake.SignedRequest("/", body, time.Now())
		} else {
			r = httptest.NewRequest("POST", "/", strings.NewReader(string(body)))
			r.Header.Set("X-Signature-Timestamp", fmt.Sprint(time.Now().Unix()))
			r.Header.Set("X-Signature-Ed25519", strings.Repeat("ab", 64))
		}
		code, _ := serve(a, r)
		switch {
		case !sign && code != 401:
			t.Fatalf("unsigned: %d", code)
		case sign && code != 200 && code != 400 && code != 413:
			t.Fatalf("signed: %d", code)
		}
		for _, m := range h.Messages() {
			if !snowflake(m.User) || !snowflake(m.Chat) || strings.TrimSpace(m.Text) == "" || !strings.HasPrefix(m.Reply, "i/") {
				t.Fatalf("accepted %+v", m)
			}
			if _, err := a.parseAddress(m.Reply); err != nil {
				t.Fatalf("its Reply does not parse: %v", err)
			}
		}
	})
}

// Without an endpoint URL Discord sends interactions over the Gateway:
// the adapter answers with the callback (deferred) and the follow-up
// goes through the webhook as over HTTP.
func TestInteractionOverTheGateway(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{Accepted: make(chan channels.Message, 4)}
	a := testAdapter(t, f, h, map[string]string{"public_key": ""})
	run(t, a)
	connected(t, f, h)
	id, token := f.InteractionCreate("hello over the gateway", time.Hour)
	if e := must(t, f, "callback"); e != "callback "+id+" 5" {
		t.Fatalf("%s: want a deferred callback (type 5) for %s", e, id)
	}
	m := accepted(t, h)
	if m.ID != id || m.Text != "hello over the gateway" || strings.Contains(m.Reply, token) {
		t.Fatalf("accepted %+v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.Send(ctx, m.Reply, reply("g1", "answer")); err != nil {
		t.Fatal(err)
	}
	if got := f.Created(); len(got) != 1 || !got[0].Webhook || got[0].Content != "answer" {
		t.Errorf("created %+v", got)
	}
}

// Option command registers the slash command at READY, once: a node
// that identifies later with the same state (a restart, another node)
// does not register it again; a changed definition would.
func TestCommandRegistered(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{}
	stop := run(t, testAdapter(t, f, h, map[string]string{"command": "ask", "application_id": ""}))
	connected(t, f, h)
	logged(t, f, "command ask") // the application id from READY
	stop()
	saved, ok := h.Get("command")
	if !ok {
		t.Fatal("nothing remembered")
	}
	h2 := &channeltest.Host{} // no session: this one identifies
	h2.Put("command", saved)
	stop = run(t, testAdapter(t, f, h2, map[string]string{"command": "ask"}))
	connected(t, f, h2)
	stop() // waits for the registration, had there been one
	if n := strings.Count(strings.Join(f.Log(), "\n"), "command ask"); n != 1 {
		t.Errorf("registered %d times, want once", n)
	}
}
