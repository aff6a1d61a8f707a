package feishu

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/feishu/fakefeishu"
)

const (
	appID     = "cli_a1b2c3"
	appSecret = "APPsecretNEVERlogged42"
	vtok      = "VerificationTok3n"
	ekey      = "EncryptKeyForTests"
	user1     = "ou_user000000000000000000000000001"
)

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
	srv  *httptest.Server
	log  *logBuf
}

func newAdapter(t *testing.T, api string, opts map[string]string) fixture {
	t.Helper()
	lb := &logBuf{}
	h := &channeltest.Host{Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	o := map[string]string{"app_id": appID, "app_secret": appSecret, "api_url": api}
	for k, v := range opts {
		if v == "" {
			delete(o, k)
		} else {
			o[k] = v
		}
	}
	ad, err := New(channels.Config{Name: "fs", Type: "feishu", Options: o}, h)
	if err != nil {
		t.Fatal(err)
	}
	a := ad.(*Adapter)
	a.backoffBase = 10 * time.Millisecond
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		srv.Close()
		if strings.Contains(lb.String(), appSecret) {
			t.Errorf("the app secret is in the log:\n%s", lb.String())
		}
	})
	return fixture{a: a, host: h, srv: srv, log: lb}
}

func post(t *testing.T, url string, body []byte, h http.Header) (int, string) {
	t.Helper()
	code, b, err := fakefeishu.Post(context.Background(), url, body, h)
	if err != nil {
		t.Fatal(err)
	}
	return code, string(b)
}

func TestChallengePlain(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"verification_token": vtok})
	code, body := post(t, f.srv.URL, fakefeishu.Challenge(vtok, "ch-123"), nil)
	if code != 200 || !strings.Contains(body, `"challenge":"ch-123"`) {
		t.Errorf("challenge: %d %s", code, body)
	}
	if code, _ := post(t, f.srv.URL, fakefeishu.Challenge("wrong", "ch-123"), nil); code != 401 {
		t.Errorf("challenge with a wrong token: %d, want 401", code)
	}
}

func TestChallengeEncrypted(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"verification_token": vtok, "encrypt_key": ekey})
	// Feishu does not sign the challenge; it encrypts it.
	code, body := post(t, f.srv.URL, fakefeishu.Encrypt(ekey, fakefeishu.Challenge(vtok, "ch-enc")), nil)
	if code != 200 || !strings.Contains(body, `"challenge":"ch-enc"`) {
		t.Errorf("encrypted challenge: %d %s", code, body)
	}
	// Encrypted under another key, or in clear, or an event unsigned: the
	// same 401 (no oracle).
	for name, b := range map[string][]byte{
		"another key":    fakefeishu.Encrypt("other", fakefeishu.Challenge(vtok, "x")),
		"clear":          fakefeishu.Challenge(vtok, "x"),
		"unsigned event": fakefeishu.Encrypt(ekey, fakefeishu.Event(vtok, "ev1", "om_1", "oc_1", "p2p", "user", user1, "hi")),
		"garbage":        []byte(`{"encrypt":"!!!"}`),
	} {
		if code, body := post(t, f.srv.URL, b, nil); code != 401 || !strings.Contains(body, "not signed or tokened") {
			t.Errorf("%s: %d %s, want the one 401", name, code, body)
		}
	}
	if n := len(f.host.Messages()); n != 0 {
		t.Errorf("%d messages accepted", n)
	}
}

func TestSignedEncryptedEvent(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"verification_token": vtok, "encrypt_key": ekey})
	body := fakefeishu.Encrypt(ekey, fakefeishu.Event(vtok, "ev1", "om_1", "oc_1", "p2p", "user", user1, "hello\n  there"))
	code, resp := post(t, f.srv.URL, body, fakefeishu.Sign(ekey, time.Now(), body))
	if code != 200 {
		t.Fatalf("signed event: %d %s", code, resp)
	}
	ms := f.host.Messages()
	if len(ms) != 1 {
		t.Fatalf("%d messages accepted, want 1", len(ms))
	}
	m := ms[0]
	if m.ID != "om_1" || m.Chat != "oc_1" || m.User != user1 || m.Text != "hello\n  there" || m.Reply != "oc_1/om_1" || m.FromBot {
		t.Errorf("message %+v", m)
	}

	// Refused before parsing: a wrong signature (on garbage too: 401, not
	// 400), a stale or future timestamp, a missing one.
	bad := fakefeishu.Sign(ekey, time.Now(), body)
	bad.Set("X-Lark-Signature", strings.Repeat("0", 64))
	garbage := []byte("{{{ not json")
	cases := map[string]struct {
		body []byte
		h    http.Header
	}{
		"wrong signature":     {body, bad},
		"garbage, wrong sig":  {garbage, bad},
		"signed by other key": {body, fakefeishu.Sign("other", time.Now(), body)},
		"stale":               {body, fakefeishu.Sign(ekey, time.Now().Add(-6*time.Minute), body)},
		"future":              {body, fakefeishu.Sign(ekey, time.Now().Add(6*time.Minute), body)},
	}
	noTS := fakefeishu.Sign(ekey, time.Now(), body)
	noTS.Del("X-Lark-Request-Timestamp")
	cases["no timestamp"] = struct {
		body []byte
		h    http.Header
	}{body, noTS}
	for name, c := range cases {
		if code, resp := post(t, f.srv.URL, c.body, c.h); code != 401 {
			t.Errorf("%s: %d %s, want 401", name, code, resp)
		}
	}
	if n := len(f.host.Messages()); n != 1 {
		t.Errorf("%d messages accepted after the refusals, want 1", n)
	}
}

func TestBadPaddingIs400(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"encrypt_key": ekey})
	good := fakefeishu.Encrypt(ekey, []byte(`{"schema":"2.0"}`))
	var e struct{ Encrypt string }
	json.Unmarshal(good, &e)
	raw, _ := base64.StdEncoding.DecodeString(e.Encrypt)
	tampered := append([]byte(nil), raw...)
	tampered[len(tampered)-17] ^= 0xff // the last block's padding goes wrong
	for name, blob := range map[string][]byte{
		"tampered":   tampered,
		"random":     bytes.Repeat([]byte{7}, 48),
		"not whole":  raw[:len(raw)-3],
		"only an IV": raw[:16],
		"empty":      nil,
	} {
		body, _ := json.Marshal(map[string]string{"encrypt": base64.StdEncoding.EncodeToString(blob)})
		code, resp := post(t, f.srv.URL, body, fakefeishu.Sign(ekey, time.Now(), body))
		if code != 400 {
			t.Errorf("%s: %d %s, want 400", name, code, resp)
		}
	}
}

// encryptRaw encrypts whole blocks as they are (the padding chosen by
// the test) and returns Feishu's base64 of IV and ciphertext.
func encryptRaw(key [32]byte, plain []byte) string {
	block, _ := aes.NewCipher(key[:])
	out := make([]byte, 16+len(plain))
	copy(out, "0123456789abcdef")
	cipher.NewCBCEncrypter(block, out[:16]).CryptBlocks(out[16:], plain)
	return base64.StdEncoding.EncodeToString(out)
}

func TestDecryptPadding(t *testing.T) {
	key := sha256.Sum256([]byte(ekey))
	text := []byte("0123456789")
	for _, c := range []struct {
		name string
		last []byte // the last 6 bytes of the one block
		ok   bool
	}{
		{"valid 6", []byte{6, 6, 6, 6, 6, 6}, true},
		{"valid 1", []byte{'a', 'b', 'c', 'd', 'e', 1}, true},
		{"zero", []byte{0, 0, 0, 0, 0, 0}, false},
		{"over a block", []byte{17, 17, 17, 17, 17, 17}, false},
		{"mixed", []byte{6, 6, 6, 5, 6, 6}, false},
	} {
		got, err := Decrypt(key, encryptRaw(key, append(append([]byte(nil), text...), c.last...)))
		if (err == nil) != c.ok {
			t.Errorf("%s: %q %v", c.name, got, err)
		}
	}
	// A whole block of padding.
	if got, err := Decrypt(key, encryptRaw(key, append(bytes.Repeat([]byte("x"), 16), bytes.Repeat([]byte{16}, 16)...))); err != nil || string(got) != strings.Repeat("x", 16) {
		t.Errorf("a full pad block: %q %v", got, err)
	}
}

func TestPlainEventToken(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"verification_token": vtok})
	if code, _ := post(t, f.srv.URL, fakefeishu.Event("forged", "ev1", "om_1", "oc_1", "p2p", "user", user1, "hi"), nil); code != 401 {
		t.Errorf("a wrong token: %d, want 401", code)
	}
	if code, _ := post(t, f.srv.URL, []byte("{nope"), nil); code != 400 {
		t.Errorf("garbage: %d, want 400", code)
	}
	if code, _ := post(t, f.srv.URL, fakefeishu.Event(vtok, "ev1", "om_1", "oc_1", "p2p", "user", user1, "hi"), nil); code != 200 {
		t.Errorf("the right token: %d", code)
	}
	if n := len(f.host.Messages()); n != 1 {
		t.Errorf("%d accepted, want 1", n)
	}
}

func TestDedupByMessageID(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"verification_token": vtok})
	// The same message redelivered under a new event id, and an event
	// delivered twice.
	for _, ev := range []string{"ev1", "ev2", "ev2"} {
		if code, _ := post(t, f.srv.URL, fakefeishu.Event(vtok, ev, "om_same", "oc_1", "p2p", "user", user1, "once"), nil); code != 200 {
			t.Errorf("%s: %d", ev, code)
		}
	}
	if ms := f.host.Messages(); len(ms) != 1 || ms[0].ID != "om_same" {
		t.Errorf("accepted %+v, want om_same once", ms)
	}
	if !f.a.events.has("ev1") || !f.a.events.has("ev2") {
		t.Error("event ids not remembered")
	}
}

func TestGroupRulesAndSenders(t *testing.T) {
	fake := fakefeishu.New(appID, appSecret)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), map[string]string{"verification_token": vtok})
	bot := fakefeishu.Mention{Key: "@_user_1", OpenID: fake.BotOpenID, Name: "moltbot"}
	alice := fakefeishu.Mention{Key: "@_user_2", OpenID: "ou_alice", Name: "Alice"}
	bob := fakefeishu.Mention{Key: "@_user_10", OpenID: "ou_bob", Name: "Bob"}
	cases := []struct {
		name string
		ev   []byte
		want string // "" not taken
	}{
		{"group, no mention", fakefeishu.Event(vtok, "e1", "om_1", "oc_g", "group", "user", user1, "hello all"), ""},
		{"group, someone else", fakefeishu.Event(vtok, "e2", "om_2", "oc_g", "group", "user", user1, "@_user_2 hi", alice), ""},
		{"group, the bot", fakefeishu.Event(vtok, "e3", "om_3", "oc_g", "group", "user", user1, "@_user_1 ask @_user_2 and @_user_10", bot, alice, bob), "ask @Alice and @Bob"},
		{"app sender", fakefeishu.Event(vtok, "e4", "om_4", "oc_p", "p2p", "app", user1, "beep"), ""},
		{"p2p", fakefeishu.Event(vtok, "e5", "om_5", "oc_p", "p2p", "user", user1, "direct"), "direct"},
		{"empty after the mention", fakefeishu.Event(vtok, "e6", "om_6", "oc_g", "group", "user", user1, "@_user_1", bot), ""},
	}
	for _, c := range cases {
		before := len(f.host.Messages())
		if code, body := post(t, f.srv.URL, c.ev, nil); code != 200 {
			t.Fatalf("%s: %d %s", c.name, code, body)
		}
		ms := f.host.Messages()
		switch {
		case c.want == "" && len(ms) != before:
			t.Errorf("%s: taken as %+v", c.name, ms[len(ms)-1])
		case c.want != "" && (len(ms) != before+1 || ms[len(ms)-1].Text != c.want):
			t.Errorf("%s: accepted %+v, want text %q", c.name, ms[before:], c.want)
		}
	}
}

func TestSendRepliesWithACachedToken(t *testing.T) {
	fake := fakefeishu.New(appID, appSecret)
	defer fake.Close()
	fake.TokenTTL = 600
	f := newAdapter(t, fake.URL(), map[string]string{"verification_token": vtok})
	now := time.Now()
	f.a.now = func() time.Time { return now }
	ctx := context.Background()
	send := func(addr, text string) {
		t.Helper()
		if err := f.a.Send(ctx, addr, moltbot.Message{Role: moltbot.RoleAssistant, Content: text}); err != nil {
			t.Fatal(err)
		}
	}
	send("oc_1/om_1", "first")
	send("oc_1", "to the chat")
	if got := fake.TokenCalls(); got != 1 {
		t.Errorf("%d token fetches for two sends, want 1 (cached)", got)
	}
	sent := fake.Sent()
	if len(sent) != 2 || sent[0].ReplyTo != "om_1" || sent[0].Text != "first" || sent[1].ChatID != "oc_1" || sent[1].ReplyTo != "" {
		t.Fatalf("sent %+v", sent)
	}
	// Shortly before the expiry it is fetched again.
	now = now.Add(8 * time.Minute)
	send("oc_1/om_1", "later")
	if got := fake.TokenCalls(); got != 2 {
		t.Errorf("%d token fetches after 8 of its 10 minutes, want 2", got)
	}
	// Invalidated by Feishu: 99991663, fetched again once, sent.
	fake.Expire()
	send("oc_1/om_1", "after expiry")
	if got := fake.TokenCalls(); got != 3 {
		t.Errorf("%d token fetches after the expiry, want 3", got)
	}
	if s := fake.Sent(); len(s) != 4 || s[3].Text != "after expiry" {
		t.Errorf("sent %+v", s)
	}
}

func TestSendSplitsAndNeutralizesMentions(t *testing.T) {
	fake := fakefeishu.New(appID, appSecret)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), map[string]string{"verification_token": vtok})
	f.a.perChat.Rate = 0
	text := `<at user_id="all">everyone</at> ` + strings.Repeat("飞书 ", 4500)
	if err := f.a.Send(context.Background(), "oc_1/om_1", moltbot.Message{Role: moltbot.RoleAssistant, Content: text}); err != nil {
		t.Fatal(err)
	}
	sent := fake.Sent()
	if len(sent) != 4 {
		t.Fatalf("%d parts, want 4 (13,500 runes in parts of 4000)", len(sent))
	}
	for i, s := range sent {
		if n := utf8.RuneCountInString(s.Text); n > MaxText {
			t.Errorf("part %d is %d runes", i, n)
		}
	}
	if strings.Contains(sent[0].Text, "<at") || !strings.Contains(sent[0].Text, "everyone") {
		t.Errorf("the mention is live: %.60q", sent[0].Text)
	}
}

func TestSendWaitsOutRateLimits(t *testing.T) {
	fake := fakefeishu.New(appID, appSecret)
	defer fake.Close()
	fake.RateLimit(1)
	f := newAdapter(t, fake.URL(), map[string]string{"verification_token": vtok})
	if err := f.a.Send(context.Background(), "oc_1/om_1", moltbot.Message{Role: moltbot.RoleAssistant, Content: "patient"}); err != nil {
		t.Fatal(err)
	}
	if s := fake.Sent(); len(s) != 1 || s[0].Text != "patient" {
		t.Errorf("sent %+v", s)
	}
}

func TestSecretNeverInErrors(t *testing.T) {
	fake := fakefeishu.New(appID, "another secret")
	defer fake.Close()
	f := newAdapter(t, fake.URL(), map[string]string{"verification_token": vtok})
	err := f.a.Send(context.Background(), "oc_1/om_1", moltbot.Message{Role: moltbot.RoleAssistant, Content: "x"})
	if err == nil || !strings.Contains(err.Error(), "10014") || strings.Contains(err.Error(), appSecret) {
		t.Errorf("a refused secret: %v", err)
	}
	if err := f.a.Send(context.Background(), "", moltbot.Message{Content: "x"}); moltbot.ErrorCode(err) != moltbot.EInvalid {
		t.Errorf("an empty address: %v", err)
	}
}

func TestRunAndTypingDoNothing(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"verification_token": vtok})
	if err := f.a.Run(context.Background()); err != nil || f.host.State() != channels.StateListening {
		t.Errorf("Run: %v, state %q", err, f.host.State())
	}
	if err := f.a.Typing(context.Background(), "oc_1/om_1"); err != nil {
		t.Error(err)
	}
	rec := httptest.NewRecorder()
	f.a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != 405 {
		t.Errorf("GET: %d", rec.Code)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		opts map[string]string
		key  string
	}{
		{map[string]string{"app_id": "a", "app_secret": "s", "verification_token": "v"}, ""},
		{map[string]string{"app_id": "a", "app_secret": "s", "encrypt_key": "k"}, ""},
		{map[string]string{"app_secret": "s", "verification_token": "v"}, "app_id"},
		{map[string]string{"app_id": "a", "verification_token": "v"}, "app_secret"},
		{map[string]string{"app_id": "a", "app_secret": "s"}, "verification_token"},
		{map[string]string{"app_id": "a", "app_secret": "s", "verification_token": "v", "api_url": "open.feishu.cn"}, "api_url"},
	} {
		err := check(channels.Config{Options: c.opts})
		if (c.key == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.key+":")) {
			t.Errorf("%v: %v, want key %q", c.opts, err, c.key)
		}
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(fakefeishu.Encrypt(ekey, fakefeishu.Event(vtok, "e", "om", "oc", "group", "user", "ou", "@_user_1 x", fakefeishu.Mention{Key: "@_user_1", OpenID: "ou_bot", Name: "b"})), true)
	f.Add(fakefeishu.Encrypt(ekey, fakefeishu.Challenge(vtok, "c")), false)
	f.Add(fakefeishu.Event(vtok, "e", "om", "oc", "p2p", "user", "ou", "hi"), false)
	f.Add([]byte(`{"encrypt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`), true)
	f.Add(fakefeishu.EventContent(vtok, "e", "om", "oc", "p2p", "user", "ou", "post", `{"title":"T","content":[[{"tag":"at","user_id":"@_user_1"},{"tag":"text","text":"x"}],[{"tag":"img","image_key":"img_1"}]]}`), false)
	f.Add(fakefeishu.EventContent(vtok, "e", "om", "oc", "p2p", "user", "ou", "image", `{"image_key":"img_v2_abc"}`), false)
	plain := &Adapter{vtoken: []byte(vtok), events: recent{}}
	enc := &Adapter{vtoken: []byte(vtok), encryptKey: ekey, aesKey: aesKey(ekey)}
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		for _, a := range []*Adapter{plain, enc} {
			h := http.Header{}
			if sign && a.encryptKey != "" {
				h = fakefeishu.Sign(ekey, time.Now(), body)
			}
			env, status, err := a.open(h, body)
			if err != nil {
				if status < 400 || status > 499 {
					t.Fatalf("an error with status %d", status)
				}
				continue
			}
			if env.Schema == "2.0" {
				var ev messageEvent
				if json.Unmarshal(env.Event, &ev) == nil {
					if m, imgs, ok := toMessage(&ev, "ou_bot"); ok && (m.ID == "" || (m.Text == "" && len(imgs) == 0) || !strings.HasPrefix(m.Reply, m.Chat+"/") || len(imgs) > maxImages) {
						t.Fatalf("a bad message %+v", m)
					}
				}
			}
		}
	})
}

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
		return &moltbot.Error{Code: moltbot.EBusy, Message: "channels: busy", RetryAfter: 2 * time.Second}
	}
	b.mu.Unlock()
	return b.Host.Accept(ctx, m)
}

func TestBusyCoreIsNotAcknowledged(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"verification_token": vtok})
	f.a.host = &busyHost{Host: f.host, busy: 1}
	ev := fakefeishu.Event(vtok, "ev-busy", "om_busy", "oc_1", "p2p", "user", user1, "later")
	code, b, err := fakefeishu.Post(context.Background(), f.srv.URL, ev, nil)
	if err != nil || code != 503 {
		t.Fatalf("busy: %d %s %v, want 503", code, b, err)
	}
	// The same event again (Feishu's retry, same event_id): taken.
	if code, _ := post(t, f.srv.URL, ev, nil); code != 200 {
		t.Fatalf("the retry: %d", code)
	}
	if ms := f.host.Messages(); len(ms) != 1 || ms[0].ID != "om_busy" {
		t.Errorf("accepted %+v", ms)
	}
	// A refusal for good (not a *moltbot.Error) is acknowledged.
	f.host.Refuse = errors.New("channels: refused: a loop")
	if code, _ := post(t, f.srv.URL, fakefeishu.Event(vtok, "ev-r", "om_r", "oc_1", "p2p", "user", user1, "x"), nil); code != 200 {
		t.Errorf("a refused message: %d, want 200", code)
	}
}

var png1x1 = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")

func TestImageAndPostMessages(t *testing.T) {
	fake := fakefeishu.New(appID, appSecret)
	defer fake.Close()
	f := newAdapter(t, fake.URL(), map[string]string{"verification_token": vtok})
	fake.AddImage("om_img", "img_v2_one", png1x1)
	fake.AddImage("om_post", "img_v2_two", png1x1)
	bot := fakefeishu.Mention{Key: "@_user_1", OpenID: fake.BotOpenID, Name: "moltbot"}
	alice := fakefeishu.Mention{Key: "@_user_2", OpenID: "ou_alice", Name: "Alice"}
	post := `{"title":"Broken build","content":[[{"tag":"at","user_id":"@_user_1","user_name":"moltbot"},{"tag":"text","text":" see "},{"tag":"a","text":"the log","href":"https://ci.example/1"}],[{"tag":"text","text":"cc "},{"tag":"at","user_id":"@_user_2"}],[{"tag":"img","image_key":"img_v2_two"}]]}`
	for _, ev := range [][]byte{
		fakefeishu.EventContent(vtok, "e1", "om_img", "oc_p", "p2p", "user", user1, "image", `{"image_key":"img_v2_one"}`),
		fakefeishu.EventContent(vtok, "e2", "om_post", "oc_g", "group", "user", user1, "post", post, bot, alice),
	} {
		if code, body := post2(t, f.srv.URL, ev); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	ms := f.host.Messages()
	if len(ms) != 2 {
		t.Fatalf("%d accepted, want 2", len(ms))
	}
	if ms[0].Text != "" || len(ms[0].Images) != 1 || ms[0].Images[0].MIME != "image/png" || !bytes.Equal(ms[0].Images[0].Data, png1x1) {
		t.Errorf("the image message: %q, %d images", ms[0].Text, len(ms[0].Images))
	}
	if want := "Broken build\nsee the log (https://ci.example/1)\ncc @Alice"; ms[1].Text != want || len(ms[1].Images) != 1 {
		t.Errorf("the post: %q with %d images, want %q with 1", ms[1].Text, len(ms[1].Images), want)
	}
	// An image-only message whose image cannot be fetched now: 503, and
	// Feishu delivers it again.
	if code, _ := post2(t, f.srv.URL, fakefeishu.EventContent(vtok, "e3", "om_gone", "oc_p", "p2p", "user", user1, "image", `{"image_key":"img_v2_none"}`)); code != 503 {
		t.Errorf("an image that cannot be fetched: %d, want 503", code)
	}
	// A key that is not one (a path in it): not taken, acknowledged.
	if code, _ := post2(t, f.srv.URL, fakefeishu.EventContent(vtok, "e4", "om_bad", "oc_p", "p2p", "user", user1, "image", `{"image_key":"../../bot/v3/info"}`)); code != 200 || len(f.host.Messages()) != 2 {
		t.Errorf("a bad key: %d, %d accepted", code, len(f.host.Messages()))
	}
}

func post2(t *testing.T, url string, body []byte) (int, string) { return post(t, url, body, nil) }

func TestEventLimits(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"encrypt_key": ekey})
	big := fakefeishu.Encrypt(ekey, []byte(`{"x":"`+strings.Repeat("y", channels.MaxBody)+`"}`))
	code, _ := post(t, f.srv.URL, big, fakefeishu.Sign(ekey, time.Now(), big))
	if code != 413 {
		t.Errorf("over 1 MiB: %d, want 413", code)
	}
	// A signed event of another type: acknowledged, nothing taken.
	other := fakefeishu.Encrypt(ekey, []byte(`{"schema":"2.0","header":{"event_id":"x","event_type":"im.chat.member.bot.added_v1"},"event":{}}`))
	if code, _ := post(t, f.srv.URL, other, fakefeishu.Sign(ekey, time.Now(), other)); code != 200 || len(f.host.Messages()) != 0 {
		t.Errorf("another event type: %d", code)
	}
}

func TestEventForAnotherAppIgnored(t *testing.T) {
	f := newAdapter(t, "http://127.0.0.1:1", map[string]string{"verification_token": vtok})
	ev := fakefeishu.Event(vtok, "ev-app", "om_app", "oc_1", "p2p", "user", user1, "hi")
	if code, _ := post(t, f.srv.URL, fakefeishu.WithAppID(ev, "cli_other"), nil); code != 200 || len(f.host.Messages()) != 0 {
		t.Fatalf("another app's event: %d, %d accepted", code, len(f.host.Messages()))
	}
	if code, _ := post(t, f.srv.URL, fakefeishu.WithAppID(ev, appID), nil); code != 200 || len(f.host.Messages()) != 1 {
		t.Fatalf("this app's event: %d, %d accepted", code, len(f.host.Messages()))
	}
}
