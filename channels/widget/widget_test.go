package widget

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

const (
	testKey    = "pk_live_0123456789abcdefghijklmn"
	testSecret = "0123456789abcdef0123456789abcdef-secret"
	shop       = "https://shop.example"
)

type botList map[string]*moltbot.Bot

func (b botList) Bot(tenant, name string) *moltbot.Bot { return b[tenant+"/"+name] }

// fixture is a widget channel over a real runtime (the simulator as its
// model) and chat service, served at /channels/support/ as the core
// mounts it (the prefix stripped).
type fixture struct {
	t    testing.TB
	rt   *actors.Runtime
	chat *chat.Service
	w    *Widget
	host *channeltest.Host
	srv  *httptest.Server
}

func testOptions() map[string]string {
	return map[string]string{optKey: testKey, optOrigins: shop + ", https://www.shop.example", optSecret: testSecret,
		optTitle: "Shop <help>", optGreeting: "Hi! How can we help?"}
}

func newFixture(t testing.TB, opts map[string]string) *fixture {
	return newFixtureSim(t, opts, sim.Options{Tokens: 6, Seed: 1}, 10*time.Second)
}

// newFixtureSim is newFixture with the simulator's options and the
// provider's timeout.
func newFixtureSim(t testing.TB, opts map[string]string, so sim.Options, timeout time.Duration) *fixture {
	t.Helper()
	met := metrics.New("test")
	bots := botList{"default/support": {Name: "support", Tenant: "default", System: "You are the shop's helper."}}
	rt, err := actors.New(actors.Config{Bots: bots,
		Providers: []actors.ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", so), MaxInFlight: 8, MaxQueue: 64, Timeout: timeout}},
		Chain:     []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store:     storage.NewMemory(), Metrics: met, HealthInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	svc := chat.New(rt, nil, chat.Config{Metrics: met, Bots: bots})
	host := &channeltest.Host{}
	cfg := channels.Config{Name: "support", Type: "widget", Bot: "support", Tenant: "default", Conversations: channels.PerUser, Options: opts}
	typ := Type(func() Core {
		return Core{Chat: svc, Space: func(tenant string) (string, error) {
			if tenant != "default" {
				return "", errors.New("no such tenant")
			}
			return tenant, nil
		}}
	})
	if err := typ.Check(cfg); err != nil {
		t.Fatal(err)
	}
	a, err := typ.New(cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	w := a.(*Widget)
	srv := httptest.NewServer(http.StripPrefix("/channels/support", http.MaxBytesHandler(w, channels.MaxBody)))
	t.Cleanup(srv.Close)
	return &fixture{t: t, rt: rt, chat: svc, w: w, host: host, srv: srv}
}

// do sends a request to /channels/support/path with headers (pairs).
func (f *fixture) do(method, path, body string, headers ...string) (*http.Response, string) {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+"/channels/support/"+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

type session struct {
	Token, Visitor, Title, Greeting string
	Expires                         int64
	New                             bool
}

// session asks for a visitor token from the shop (with tok: renews it).
func (f *fixture) session(tok string) session {
	f.t.Helper()
	h := []string{"Origin", shop, keyHeader, testKey}
	if tok != "" {
		h = append(h, "Authorization", "Bearer "+tok)
	}
	res, body := f.do("POST", "api/session", "{}", h...)
	if res.StatusCode != 200 {
		f.t.Fatalf("session: %d %s", res.StatusCode, body)
	}
	var s session
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

type event struct{ kind, data string }

// readEvents parses a server-sent event stream to its end.
func readEvents(r io.Reader, out chan<- event) {
	sc := bufio.NewScanner(r)
	var ev event
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.kind = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[6:]
		case line == "":
			if ev.kind != "" {
				out <- ev
			}
			ev = event{}
		}
	}
	close(out)
}

// say posts a message as tok's visitor and returns the stream's events.
func (f *fixture) say(tok, text, id string) (*http.Response, []event) {
	f.t.Helper()
	body, _ := json.Marshal(map[string]string{"content": text, "id": id})
	if id == "" {
		body, _ = json.Marshal(map[string]string{"content": text})
	}
	req, _ := http.NewRequest("POST", f.srv.URL+"/channels/support/api/messages", strings.NewReader(string(body)))
	req.Header.Set("Origin", shop)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		f.t.Fatalf("messages: %d %s", res.StatusCode, b)
	}
	ch := make(chan event, 256)
	go readEvents(res.Body, ch)
	var evs []event
	for ev := range ch {
		evs = append(evs, ev)
	}
	return res, evs
}

func (f *fixture) history(tok string) historyJSON {
	f.t.Helper()
	res, body := f.do("GET", "api/history", "", "Origin", shop, "Authorization", "Bearer "+tok)
	if res.StatusCode != 200 {
		f.t.Fatalf("history: %d %s", res.StatusCode, body)
	}
	var h historyJSON
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		f.t.Fatal(err)
	}
	return h
}

// errorCode is the code of a JSON error body ("" when it is not one).
func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message, Param string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" {
		t.Fatalf("not a JSON error: %q", body)
	}
	return e.Error.Code
}

// The script, its style sheet and the page are files of the node with
// ETags (a 304 on If-None-Match) and caching; the page has a strict CSP
// (scripts from the node only, framed only by the channel's origins) and
// no inline script; the script is valid JavaScript (node --check).
func TestAssetsServed(t *testing.T) {
	f := newFixture(t, testOptions())
	for _, c := range []struct{ path, ctype string }{{"widget.js", "text/javascript"}, {"widget.css", "text/css"}, {"", "text/html"}} {
		res, body := f.do("GET", c.path, "")
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) || body == "" {
			t.Fatalf("GET /%s: %d %s", c.path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		etag := res.Header.Get("ETag")
		if !regexp.MustCompile(`^"[0-9a-f]{24}"$`).MatchString(etag) || res.Header.Get("Cache-Control") == "" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET /%s headers: %v", c.path, res.Header)
		}
		res, body = f.do("GET", c.path, "", "If-None-Match", etag)
		if res.StatusCode != http.StatusNotModified || body != "" {
			t.Fatalf("GET /%s with its ETag: %d %q", c.path, res.StatusCode, body)
		}
		res, _ = f.do("GET", c.path, "", "If-None-Match", `"stale"`)
		if res.StatusCode != 200 {
			t.Fatalf("GET /%s with another ETag: %d", c.path, res.StatusCode)
		}
	}
	res, page := f.do("GET", "", "")
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'self' " + shop + " https://www.shop.example"} {
		if !strings.Contains(csp, want) {
			t.Errorf("the page's CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("the page's CSP allows inline code: %q", csp)
	}
	scripts := regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1)
	if len(scripts) != 1 || !strings.Contains(scripts[0], `src="widget.js"`) || !strings.Contains(scripts[0], `data-key="`+testKey+`"`) {
		t.Errorf("the page's scripts: %q", scripts)
	}
	if strings.Contains(page, "<help>") || !strings.Contains(page, "<title>Shop &lt;help&gt;</title>") {
		t.Errorf("the page's title is not escaped: %s", page)
	}
	if strings.Contains(page, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(page) {
		t.Errorf("the page has an inline handler: %s", page)
	}
	// /channels/support without its slash: to the page's URL.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if res, err := noFollow.Get(f.srv.URL + "/channels/support"); err != nil || res.StatusCode != 301 || res.Header.Get("Location") != "support/" {
		t.Errorf("GET /channels/support: %v %v", err, res)
	} else if loc, _ := res.Request.URL.Parse(res.Header.Get("Location")); loc.Path != "/channels/support/" {
		t.Errorf("the redirect resolves to %s", loc)
	}
	if res, body := f.do("GET", "", ""); res.StatusCode != 200 || !strings.Contains(body, "<title>") {
		t.Errorf("GET /channels/support/: %d", res.StatusCode)
	}
	if res, _ := f.do("POST", "widget.js", ""); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST widget.js: %d", res.StatusCode)
	}
	if res, body := f.do("GET", "nothing.js", ""); res.StatusCode != 404 || errorCode(t, body) != moltbot.ENotFound {
		t.Errorf("GET nothing.js: %d %s", res.StatusCode, body)
	}

	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the script's syntax is not checked")
	}
	_, js := f.do("GET", "widget.js", "")
	path := filepath.Join(t.TempDir(), "widget.js")
	if err := os.WriteFile(path, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, "--check", path).CombinedOutput(); err != nil {
		t.Fatalf("node --check widget.js: %v\n%s", err, out)
	}
}

// The API answers only the channel's origins: another origin (or none) is
// 403 with a JSON error and no CORS header, its preflight too; a listed
// origin's preflight is allowed with the headers the script sends; the
// channel's own page (same-origin, which sends no Origin on a GET) is
// told by Sec-Fetch-Site.
func TestOrigins(t *testing.T) {
	f := newFixture(t, testOptions())
	tok := f.session("").Token
	for _, h := range [][]string{
		{"Origin", "https://evil.example"},
		{"Origin", "https://shop.example.evil.example"},
		{"Origin", "http://shop.example"}, // another scheme is another origin
		{"Origin", "null"},
		{}, // none
	} {
		hs := append(append([]string{}, h...), "Authorization", "Bearer "+tok)
		res, body := f.do("GET", "api/history", "", hs...)
		if res.StatusCode != 403 || errorCode(t, body) != moltbot.EForbidden || res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("history from %v: %d %s %v", h, res.StatusCode, body, res.Header)
		}
		res, body = f.do("OPTIONS", "api/messages", "", append(append([]string{}, h...), "Access-Control-Request-Method", "POST")...)
		if res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "" || res.Header.Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("preflight from %v: %d %s %v", h, res.StatusCode, body, res.Header)
		}
	}
	res, body := f.do("POST", "api/session", "{}", "Origin", "https://evil.example", keyHeader, testKey)
	if res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a session from another origin: %d %s", res.StatusCode, body)
	}

	res, _ = f.do("OPTIONS", "api/messages", "", "Origin", shop, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != shop ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), keyHeader) ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Authorization") || res.Header.Get("Vary") != "Origin" {
		t.Errorf("preflight from the shop: %d %v", res.StatusCode, res.Header)
	}
	res, _ = f.do("OPTIONS", "api/messages", "", "Origin", shop, "Access-Control-Request-Method", "DELETE")
	if res.StatusCode != 400 {
		t.Errorf("preflight for DELETE: %d", res.StatusCode)
	}
	res, _ = f.do("GET", "api/history", "", "Origin", "https://www.shop.example", "Authorization", "Bearer "+tok)
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "https://www.shop.example" {
		t.Errorf("history from the second origin: %d %v", res.StatusCode, res.Header)
	}
	res, _ = f.do("GET", "api/history", "", "Sec-Fetch-Site", "same-origin", "Authorization", "Bearer "+tok)
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("history from the channel's page: %d %v", res.StatusCode, res.Header)
	}
	res, _ = f.do("GET", "api/history", "", "Sec-Fetch-Site", "cross-site", "Authorization", "Bearer "+tok)
	if res.StatusCode != 403 {
		t.Errorf("history cross-site without an Origin: %d", res.StatusCode)
	}
	res, _ = f.do("GET", "api/nothing", "", "Origin", shop)
	if res.StatusCode != 404 {
		t.Errorf("api/nothing: %d", res.StatusCode)
	}
	res, _ = f.do("GET", "api/messages", "", "Origin", shop)
	if res.StatusCode != 405 || res.Header.Get("Allow") != "POST" {
		t.Errorf("GET api/messages: %d %v", res.StatusCode, res.Header)
	}
}

// allow_any_origin admits any origin a browser names, never a request
// that names none; "*" without it is a config error.
func TestAnyOrigin(t *testing.T) {
	o := testOptions()
	o[optOrigins] = "*"
	if _, err := parseOptions(o); err == nil || !strings.Contains(err.Error(), "origins") {
		t.Fatalf("origins: * without allow_any_origin: %v", err)
	}
	o[optAnyOrigin] = "true"
	f := newFixture(t, o)
	res, body := f.do("POST", "api/session", "{}", "Origin", "https://anyone.example", keyHeader, testKey)
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "https://anyone.example" {
		t.Fatalf("session from anyone: %d %s", res.StatusCode, body)
	}
	res, _ = f.do("POST", "api/session", "{}", keyHeader, testKey)
	if res.StatusCode != 403 {
		t.Fatalf("session naming no origin: %d", res.StatusCode)
	}
	if res, _ := f.do("GET", "", ""); !strings.Contains(res.Header.Get("Content-Security-Policy"), "frame-ancestors *") {
		t.Fatalf("the page's CSP: %q", res.Header.Get("Content-Security-Policy"))
	}
}

// A session needs the channel's publishable key (401 without it or with
// another); a valid token keeps its visitor (a new expiry), an expired or
// forged one gets a new visitor.
func TestSession(t *testing.T) {
	f := newFixture(t, testOptions())
	for _, k := range []string{"", "pk_live_0123456789abcdefghijklmX", "pk_live_0123456789abcdefghijklm", testKey + "x"} {
		h := []string{"Origin", shop}
		if k != "" {
			h = append(h, keyHeader, k)
		}
		res, body := f.do("POST", "api/session", "{}", h...)
		if res.StatusCode != 401 || errorCode(t, body) != moltbot.EUnauthorized || res.Header.Get("Access-Control-Allow-Origin") != shop {
			t.Errorf("key %q: %d %s", k, res.StatusCode, body)
		}
	}
	s := f.session("")
	if !s.New || len(s.Visitor) != visitorIDLen || s.Title != "Shop <help>" || s.Greeting != "Hi! How can we help?" {
		t.Fatalf("a new session: %+v", s)
	}
	if d := time.Until(time.Unix(s.Expires, 0)); d < defaultTTL-time.Minute || d > defaultTTL {
		t.Errorf("expires in %s", d)
	}
	again := f.session(s.Token)
	if again.New || again.Visitor != s.Visitor {
		t.Fatalf("a renewed session: %+v, was %+v", again, s)
	}
	forged := s.Token[:len(s.Token)-2] + "AA"
	if forged == s.Token {
		forged = s.Token[:len(s.Token)-2] + "BB"
	}
	if n := f.session(forged); !n.New || n.Visitor == s.Visitor {
		t.Fatalf("a session with a forged token: %+v", n)
	}
	f.w.now = func() time.Time { return time.Now().Add(defaultTTL + time.Hour) }
	if n := f.session(s.Token); !n.New || n.Visitor == s.Visitor {
		t.Fatalf("a session with an expired token: %+v", n)
	}
}

// A forged, expired, malformed, other channel's or other secret's token
// is 401 on every call.
func TestTokenRefused(t *testing.T) {
	f := newFixture(t, testOptions())
	s := f.session("")
	v, exp, err := f.w.sign.verify(s.Token, time.Now())
	if err != nil || v != s.Visitor || exp.Unix() != s.Expires {
		t.Fatalf("verify: %v %v %v", v, exp, err)
	}
	other := signer{channel: "other", secret: []byte(testSecret)}
	otherSecret := signer{channel: "support", secret: []byte(testSecret + "!")}
	body := s.Token[:strings.LastIndexByte(s.Token, '.')]
	later := strings.Replace(body, strconv.FormatInt(s.Expires, 10), strconv.FormatInt(s.Expires+1e6, 10), 1)
	cases := map[string]string{
		"forged signature": body + "." + strings.Repeat("A", signatureLen),
		"expiry moved on":  later + s.Token[len(body):],
		"other visitor":    strings.Replace(s.Token, s.Visitor, newVisitorID(), 1),
		"other channel":    other.sign(s.Visitor, time.Unix(s.Expires, 0)),
		"other secret":     otherSecret.sign(s.Visitor, time.Unix(s.Expires, 0)),
		"expired":          f.w.sign.sign(s.Visitor, time.Now().Add(-time.Second)),
		"malformed":        "v1." + s.Visitor,
		"garbage":          "mb_abc_def",
	}
	for name, tok := range cases {
		for _, path := range []string{"api/history", "api/events"} {
			res, body := f.do("GET", path, "", "Origin", shop, "Authorization", "Bearer "+tok)
			if res.StatusCode != 401 || errorCode(t, body) != moltbot.EUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s on %s: %d %s", name, path, res.StatusCode, body)
			}
		}
		res, _ := f.do("POST", "api/messages", `{"content":"hi"}`, "Origin", shop, "Content-Type", "application/json", "Authorization", "Bearer "+tok)
		if res.StatusCode != 401 {
			t.Errorf("%s on messages: %d", name, res.StatusCode)
		}
	}
	if res, _ := f.do("GET", "api/history", "", "Origin", shop); res.StatusCode != 401 {
		t.Errorf("no token: %d", res.StatusCode)
	}
	// A token is good until its expiry, on any node with the secret.
	f.w.now = func() time.Time { return time.Unix(s.Expires, 0) }
	if res, _ := f.do("GET", "api/history", "", "Origin", shop, "Authorization", "Bearer "+s.Token); res.StatusCode != 401 {
		t.Errorf("at its expiry: %d", res.StatusCode)
	}
}

// A turn streams its reply as token events, then done with the stored
// message; the history has both messages after; the conversation is the
// channel bot's and the visitor's.
func TestStreamedReply(t *testing.T) {
	f := newFixture(t, testOptions())
	s := f.session("")
	if h := f.history(s.Token); len(h.Data) != 0 || h.Handoff != "" {
		t.Fatalf("history before the first message: %+v", h)
	}
	res, evs := f.say(s.Token, "hello there", "m1")
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" || res.Header.Get("Access-Control-Allow-Origin") != shop {
		t.Fatalf("headers: %v", res.Header)
	}
	var text strings.Builder
	tokens := 0
	var done doneJSON
	for i, ev := range evs {
		switch ev.kind {
		case "token":
			var d struct{ Content string }
			if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
				t.Fatal(err)
			}
			text.WriteString(d.Content)
			tokens++
		case "done":
			if i != len(evs)-1 {
				t.Fatalf("done is not last: %+v", evs)
			}
			if err := json.Unmarshal([]byte(ev.data), &done); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("event %+v", ev)
		}
	}
	if tokens < 2 || done.Message == nil || done.Message.Content != text.String() || done.FinishReason != "stop" || done.Message.Role != "assistant" {
		t.Fatalf("tokens %d %q, done %+v", tokens, text.String(), done)
	}
	h := f.history(s.Token)
	if len(h.Data) != 2 || h.Data[0].Role != "user" || h.Data[0].Content != "hello there" || h.Data[1].Content != text.String() || h.Data[1].ID != done.Message.ID {
		t.Fatalf("history: %+v", h)
	}
	p := f.w.principal("default", s.Visitor)
	c, err := f.chat.Get(context.Background(), p, "widget:support:"+s.Visitor)
	if err != nil || c.Bot != "support" || c.User != "visitor:"+s.Visitor || c.System != "You are the shop's helper." {
		t.Fatalf("the conversation: %+v %v", c, err)
	}
	if len(c.Outbox) != 0 {
		t.Errorf("a widget turn left an outbox entry: %+v", c.Outbox)
	}
	// The same message again (a retry after a dropped connection) is
	// answered from the conversation, not run again.
	_, evs = f.say(s.Token, "hello there", "m1")
	var again doneJSON
	json.Unmarshal([]byte(evs[len(evs)-1].data), &again)
	if evs[len(evs)-1].kind != "done" || !again.Replayed || again.Message == nil || again.Message.Content != text.String() {
		t.Fatalf("the retry: %+v", evs)
	}
	if h := f.history(s.Token); len(h.Data) != 2 {
		t.Fatalf("history after the retry: %+v", h)
	}
}

// Two visitors each have their own conversation: neither's history shows
// the other's messages, and the chat service refuses one the other's.
func TestVisitorsApart(t *testing.T) {
	f := newFixture(t, testOptions())
	a, b := f.session(""), f.session("")
	if a.Visitor == b.Visitor {
		t.Fatal("two sessions, one visitor")
	}
	f.say(a.Token, "I am Ann, order 1234", "")
	f.say(b.Token, "I am Bob", "")
	for _, c := range []struct {
		tok, mine, theirs string
	}{{a.Token, "I am Ann, order 1234", "I am Bob"}, {b.Token, "I am Bob", "I am Ann"}} {
		h := f.history(c.tok)
		all := ""
		for _, m := range h.Data {
			all += m.Content + "\n"
		}
		if len(h.Data) != 2 || !strings.Contains(all, c.mine) || strings.Contains(all, c.theirs) {
			t.Errorf("history: %q", all)
		}
	}
	_, err := f.chat.Get(context.Background(), f.w.principal("default", b.Visitor), "widget:support:"+a.Visitor)
	if moltbot.ErrorCode(err) != moltbot.ENotFound {
		t.Fatalf("bob reads ann's conversation: %v", err)
	}
}

// Many visitors at once (run with -race): each gets its own conversation
// with exactly its two messages and two replies.
func TestManyVisitorsAtOnce(t *testing.T) {
	o := testOptions()
	o[optNewVisitors] = "100/min"
	f := newFixture(t, o)
	const n = 12
	var visitors []session
	for i := 0; i < n; i++ {
		visitors = append(visitors, f.session(""))
	}
	// say, without t.Fatal (these run off the test's goroutine).
	say := func(tok, text string) error {
		req, _ := http.NewRequest("POST", f.srv.URL+"/channels/support/api/messages", strings.NewReader(`{"content":"`+text+`"}`))
		req.Header.Set("Origin", shop)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || !strings.Contains(string(b), "event: done") {
			return fmt.Errorf("%q: %d %s", text, res.StatusCode, b)
		}
		return nil
	}
	errs := make(chan error, n)
	for _, s := range visitors {
		go func() {
			err := say(s.Token, "message 0 of "+s.Visitor)
			if err == nil {
				err = say(s.Token, "message 1 of "+s.Visitor)
			}
			errs <- err
		}()
	}
	for range visitors {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, s := range visitors {
		h := f.history(s.Token)
		if len(h.Data) != 4 || h.Data[0].Content != "message 0 of "+s.Visitor || h.Data[2].Content != "message 1 of "+s.Visitor {
			t.Errorf("visitor %s's history: %+v", s.Visitor, h)
		}
	}
}

// Past the per-visitor rate, a call is 429 with Retry-After; another
// visitor is not held back; new visitors are capped per address.
func TestRateLimits(t *testing.T) {
	o := testOptions()
	o[optRate] = "3/min"
	o[optNewVisitors] = "2/h"
	f := newFixture(t, o)
	now := time.Now()
	f.w.visitors.now = func() time.Time { return now }
	f.w.fresh.now = func() time.Time { return now }
	a := f.session("")
	for i := 0; i < 3; i++ {
		f.history(a.Token)
	}
	res, body := f.do("GET", "api/history", "", "Origin", shop, "Authorization", "Bearer "+a.Token)
	if res.StatusCode != 429 || errorCode(t, body) != moltbot.ERateLimited || res.Header.Get("Retry-After") != "20" {
		t.Fatalf("the fourth call: %d %s %v", res.StatusCode, body, res.Header)
	}
	res, _ = f.do("POST", "api/messages", `{"content":"hi"}`, "Origin", shop, "Content-Type", "application/json", "Authorization", "Bearer "+a.Token)
	if res.StatusCode != 429 {
		t.Fatalf("a message over the rate: %d", res.StatusCode)
	}
	b := f.session("")
	f.history(b.Token)
	// The address has had its two new visitors this hour.
	res, body = f.do("POST", "api/session", "{}", "Origin", shop, keyHeader, testKey)
	if res.StatusCode != 429 || errorCode(t, body) != moltbot.ERateLimited || res.Header.Get("Retry-After") == "" {
		t.Fatalf("a third new visitor: %d %s", res.StatusCode, body)
	}
	// A visitor with a token renews it without spending a new visitor.
	if s := f.session(b.Token); s.New || s.Visitor != b.Visitor {
		t.Fatalf("renewal: %+v", s)
	}
	now = now.Add(20 * time.Second)
	f.history(a.Token) // one call back after a third of a minute
}

// Bodies and messages are capped and checked before any turn runs.
func TestMessageChecks(t *testing.T) {
	o := testOptions()
	o[optMaxMessage] = "100"
	o[optRate] = "100/min"
	f := newFixture(t, o)
	tok := f.session("").Token
	post := func(body, ctype string) (int, string) {
		h := []string{"Origin", shop, "Authorization", "Bearer " + tok}
		if ctype != "" {
			h = append(h, "Content-Type", ctype)
		}
		res, b := f.do("POST", "api/messages", body, h...)
		return res.StatusCode, b
	}
	for _, c := range []struct {
		body, ctype string
		code        int
		param       string
	}{
		{`{"content":"` + strings.Repeat("x", 101) + `"}`, "application/json", 413, "content"},
		{`{"content":"   "}`, "application/json", 400, "content"},
		{`{}`, "application/json", 400, "content"},
		{`{"content":"hi","model":"x"}`, "application/json", 400, ""},
		{`{"content":"hi"} {"content":"again"}`, "application/json", 400, ""},
		{`{"content":"hi","id":"a b"}`, "application/json", 400, "id"},
		{`{"content":"hi","id":"` + strings.Repeat("a", 65) + `"}`, "application/json", 400, "id"},
		{`["hi"]`, "application/json", 400, ""},
		{`{"content":"hi"}`, "text/plain", 415, ""},
		{`{"content":"hi"}`, "", 415, ""},
		{`{"content":"` + strings.Repeat("x", channels.MaxBody) + `"}`, "application/json", 413, ""},
	} {
		code, body := post(c.body, c.ctype)
		if code != c.code {
			t.Errorf("%.60s: %d %s", c.body, code, body)
			continue
		}
		errorCode(t, body)
		if c.param != "" && !strings.Contains(body, `"param":"`+c.param+`"`) {
			t.Errorf("%.60s: %s names no %s", c.body, body, c.param)
		}
	}
	// Nothing of it reached a conversation.
	if h := f.history(tok); len(h.Data) != 0 {
		t.Fatalf("history: %+v", h)
	}
}

// The events stream follows the visitor's conversation: what is stored
// in it later (here a turn from the visitor's other tab) arrives as
// message events; a third stream of one visitor is refused.
func TestEventsStream(t *testing.T) {
	f := newFixture(t, testOptions())
	s := f.session("")
	res, body := f.do("GET", "api/events", "", "Origin", shop, "Authorization", "Bearer "+s.Token)
	if res.StatusCode != 404 {
		t.Fatalf("events before the first message: %d %s", res.StatusCode, body)
	}
	f.say(s.Token, "first", "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := func() (*http.Response, chan event) {
		req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/channels/support/api/events", nil)
		req.Header.Set("Origin", shop)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("events: %v %v", err, res)
		}
		ch := make(chan event, 64)
		go readEvents(res.Body, ch)
		return res, ch
	}
	r1, ch := open()
	defer r1.Body.Close()
	if ev := <-ch; ev.kind != "subscribed" {
		t.Fatalf("first event: %+v", ev)
	}
	r2, _ := open()
	defer r2.Body.Close()
	res, body = f.do("GET", "api/events", "", "Origin", shop, "Authorization", "Bearer "+s.Token)
	if res.StatusCode != 429 {
		t.Fatalf("a third stream: %d %s", res.StatusCode, body)
	}
	_, evs := f.say(s.Token, "second", "")
	var done doneJSON
	json.Unmarshal([]byte(evs[len(evs)-1].data), &done)
	var got []messageJSON
	for len(got) < 2 {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended; got %+v", got)
			}
			if ev.kind != "message" {
				t.Fatalf("event %+v", ev)
			}
			var m messageJSON
			json.Unmarshal([]byte(ev.data), &m)
			got = append(got, m)
		case <-ctx.Done():
			t.Fatalf("the stream's messages: %+v", got)
		}
	}
	if got[0].Role != "user" || got[0].Content != "second" || got[1].ID != done.Message.ID || got[1].Content != done.Message.Content {
		t.Fatalf("followed: %+v, done %+v", got, done)
	}
}

// A visitor who leaves while the reply streams ends the turn (the model
// call canceled, not left to its ten-minute timeout): the reply is stored
// as far as it came, marked incomplete.
func TestVisitorLeavesMidReply(t *testing.T) {
	f := newFixtureSim(t, testOptions(), sim.Options{Tokens: 6, Seed: 1, StallAfter: 2}, 10*time.Minute)
	s := f.session("")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rctx, leave := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(rctx, "POST", f.srv.URL+"/channels/support/api/messages", strings.NewReader(`{"content":"tell me a long story"}`))
	req.Header.Set("Origin", shop)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("messages: %v %v", err, res)
	}
	ch := make(chan event, 64)
	go readEvents(res.Body, ch)
	if ev := <-ch; ev.kind != "token" {
		t.Fatalf("first event: %+v", ev)
	}
	leave() // the visitor closes the tab; the model holds its stream open
	res.Body.Close()
	p := f.w.principal("default", s.Visitor)
	for {
		c, err := f.chat.Get(ctx, p, f.w.conversation(s.Visitor))
		if err == nil && len(c.Messages) == 2 {
			if m := c.Messages[1]; !m.Incomplete || m.Content == "" {
				t.Fatalf("the reply as stored: %+v", m)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the turn was not canceled when the visitor left: %+v %v", c, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// One address holds at most eight events streams on a node, whatever
// number of visitors it made.
func TestEventsPerAddress(t *testing.T) {
	o := testOptions()
	o[optRate] = "1000/min" // the retries below are not what is limited here
	f := newFixture(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(tok string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/channels/support/api/events", nil)
		req.Header.Set("Origin", shop)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	var held []*http.Response
	defer func() {
		for _, r := range held {
			r.Body.Close()
		}
	}()
	for i := 0; i < 5; i++ {
		s := f.session("")
		f.say(s.Token, "hi", "")
		for j := 0; j < 2; j++ {
			res := open(s.Token)
			if len(held) < maxStreamsClient {
				if res.StatusCode != 200 {
					t.Fatalf("stream %d: %d", len(held), res.StatusCode)
				}
				held = append(held, res)
				continue
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 429 || !strings.Contains(string(b), "this address follows") {
				t.Fatalf("stream %d of the address: %d %s", len(held)+1, res.StatusCode, b)
			}
		}
	}
	held[0].Body.Close()
	held = held[1:]
	// Its place is given back once the handler sees the stream closed.
	s := f.session("")
	f.say(s.Token, "hi", "")
	for {
		res := open(s.Token)
		if res.StatusCode == 200 {
			held = append(held, res)
			break
		}
		res.Body.Close()
		select {
		case <-ctx.Done():
			t.Fatal("a closed stream's place was not given back")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// An events stream ends with an error event once its token has expired
// (checked at each keep-alive).
func TestEventsEndWithTheToken(t *testing.T) {
	f := newFixture(t, testOptions())
	s := f.session("")
	f.say(s.Token, "first", "")
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	f.w.now = func() time.Time { return time.Unix(0, clock.Load()) }
	f.w.keepAlive = 5 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/channels/support/api/events", nil)
	req.Header.Set("Origin", shop)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, res)
	}
	defer res.Body.Close()
	ch := make(chan event, 64)
	go readEvents(res.Body, ch)
	if ev := <-ch; ev.kind != "subscribed" {
		t.Fatalf("first event: %+v", ev)
	}
	clock.Store(time.Unix(s.Expires, 0).UnixNano())
	var last event
	for ev := range ch {
		last = ev
	}
	if last.kind != "error" || !strings.Contains(last.data, `"code":"unauthorized"`) || !strings.Contains(last.data, "expired") {
		t.Fatalf("the stream ended with %+v", last)
	}
}

// Send and Typing accept and do nothing (the conversation holds the
// message; an open page gets it by its events stream); Run reports the
// channel listening and returns.
func TestAdapterContract(t *testing.T) {
	f := newFixture(t, testOptions())
	if err := f.w.Send(context.Background(), "anything", moltbot.Message{Role: moltbot.RoleAssistant, Content: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Typing(context.Background(), "anything"); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Run(context.Background()); err != nil || f.host.State() != channels.StateListening {
		t.Fatalf("Run: %v, state %q", err, f.host.State())
	}
}

// Every bad option is refused naming its key.
func TestOptions(t *testing.T) {
	for _, c := range []struct {
		key, value, want string
	}{
		{optKey, "", optKey},
		{optKey, "pk_short", optKey},
		{optKey, "sk_0123456789abcdefghijklmnop", optKey},
		{optKey, "pk_0123456789abcdefghijklmn op", optKey},
		{optSecret, "short", optSecret},
		{optSecret, testKey, optSecret},
		{optOrigins, "", optOrigins},
		{optOrigins, "shop.example", optOrigins},
		{optOrigins, "http://shop.example", optOrigins},
		{optOrigins, "https://shop.example/path", optOrigins},
		{optOrigins, "https://*.shop.example", optOrigins},
		{optOrigins, "https://Shop.example", optOrigins},
		{optAnyOrigin, "yes", optAnyOrigin},
		{optRate, "10", optRate},
		{optRate, "0/min", optRate},
		{optRate, "10/day", optRate},
		{optNewVisitors, "x/h", optNewVisitors},
		{optTTL, "5m", optTTL},
		{optTTL, "1000d", optTTL},
		{optMaxMessage, "0", optMaxMessage},
		{optMaxMessage, "100000", optMaxMessage},
		{optMaxImage, "-1", optMaxImage},
		{optMaxImage, "1000000", optMaxImage},
		{optTitle, strings.Repeat("t", 81), optTitle},
		{optGreeting, strings.Repeat("g", 1001), optGreeting},
		{optProxies, "10.0.0.0/33", optProxies},
		{"colour", "blue", "colour"},
	} {
		o := testOptions()
		o[c.key] = c.value
		if c.value == "" {
			delete(o, c.key)
		}
		_, err := parseOptions(o)
		if err == nil || !strings.HasPrefix(err.Error(), c.want+":") {
			t.Errorf("%s=%q: %v", c.key, c.value, err)
		}
	}
	o := testOptions()
	o[optOrigins] = "https://shop.example, http://localhost:5173, https://[::1]:8443"
	o[optRate] = "5/s"
	o[optTTL] = "7d"
	o[optProxies] = "10.0.0.0/8, 192.168.1.1"
	p, err := parseOptions(o)
	if err != nil || len(p.origins) != 3 || p.rate != (rateSpec{5, time.Second}) || p.ttl != 7*24*time.Hour || len(p.proxies) != 2 {
		t.Fatalf("%+v %v", p, err)
	}
	typ := Type(func() Core { return Core{} })
	if err := typ.Check(channels.Config{Name: "bad name", Options: testOptions()}); err == nil || !strings.HasPrefix(err.Error(), "name:") {
		t.Fatalf("a bad name: %v", err)
	}
}

// The client address behind trusted proxies is the last hop that is not
// one; a peer that is not trusted is the client whatever it says.
func TestClientAddr(t *testing.T) {
	o := testOptions()
	o[optProxies] = "10.0.0.0/8"
	p, _ := parseOptions(o)
	for _, c := range []struct {
		peer, xff, want string
	}{
		{"203.0.113.5:1234", "198.51.100.1", "203.0.113.5"},
		{"10.0.0.2:1234", "198.51.100.1", "198.51.100.1"},
		{"10.0.0.2:1234", "1.2.3.4, 198.51.100.1, 10.0.0.9", "198.51.100.1"},
		{"10.0.0.2:1234", "", "10.0.0.2"},
		{"10.0.0.2:1234", "junk", "10.0.0.2"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := clientAddr(r, p.proxies); got != c.want {
			t.Errorf("%s %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
	w := &Widget{o: p}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "[2001:db8:1:2:3:4:5:6]:443"
	r2 := httptest.NewRequest("GET", "/", nil)
	r2.RemoteAddr = "[2001:db8:1:2:ffff::1]:443"
	if w.clientKey(r) != w.clientKey(r2) || w.clientKey(r) != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 keys: %s %s", w.clientKey(r), w.clientKey(r2))
	}
}

// The bucket table stays bounded under a flood of keys and forgets only
// buckets that are full again.
func TestBucketsBounded(t *testing.T) {
	now := time.Now()
	b := newBuckets(rateSpec{N: 2, Per: time.Minute}, 4)
	b.now = func() time.Time { return now }
	for i := 0; i < 4; i++ {
		if _, ok := b.take(strconv.Itoa(i)); !ok {
			t.Fatal(i)
		}
	}
	if _, ok := b.take("new"); ok {
		t.Fatal("a fifth key in a full table of busy buckets")
	}
	now = now.Add(2 * time.Minute) // all full again
	if _, ok := b.take("new"); !ok || len(b.m) != 1 {
		t.Fatalf("after a sweep: %d keys", len(b.m))
	}
}

// Tokens: whatever the parser accepts re-signs to the same bytes, and
// nothing it is given panics.
func FuzzToken(f *testing.F) {
	s := signer{channel: "support", secret: []byte(testSecret)}
	good := s.sign(newVisitorID(), time.Now().Add(time.Hour))
	for _, seed := range []string{good, "", "v1", "v1...", "v1." + strings.Repeat("A", 22) + ".1." + strings.Repeat("A", 43),
		good[:len(good)-1], good + "=", "v2" + good[2:], strings.Replace(good, ".", "..", 1)} {
		f.Add(seed)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, tok string) {
		v, exp, err := s.verify(tok, now)
		if err != nil {
			return
		}
		if s.sign(v, exp) != tok {
			t.Fatalf("accepted %q, which is not what sign makes (%q)", tok, s.sign(v, exp))
		}
		if v2, _, _, ok := parseToken(tok); !ok || v2 != v {
			t.Fatalf("parse and verify disagree on %q", tok)
		}
	})
}

// tinyPNG is a 1x1 PNG as a data URL.
const tinyPNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

// A visitor may attach images (data URLs): they reach the conversation as
// image parts of the user's message; the history counts them. Bad,
// mislabelled, linked, too many or too large images are refused naming
// images[i], and none with max_image_bytes: 0.
func TestImages(t *testing.T) {
	o := testOptions()
	o[optRate] = "100/min"
	o[optMaxImage] = "1000"
	f := newFixture(t, o)
	s := f.session("")
	post := func(body string) (int, string) {
		res, b := f.do("POST", "api/messages", body, "Origin", shop, "Content-Type", "application/json", "Authorization", "Bearer "+s.Token)
		return res.StatusCode, b
	}
	if code, body := post(`{"content":"what is this?","images":["` + tinyPNG + `"]}`); code != 200 || !strings.Contains(body, "event: done") {
		t.Fatalf("a message with an image: %d %s", code, body)
	}
	if code, body := post(`{"images":["` + tinyPNG + `"]}`); code != 200 || !strings.Contains(body, "event: done") {
		t.Fatalf("an image alone: %d %s", code, body)
	}
	c, err := f.chat.Get(context.Background(), f.w.principal("default", s.Visitor), f.w.conversation(s.Visitor))
	if err != nil || len(c.Messages) != 4 {
		t.Fatalf("the conversation: %+v %v", c, err)
	}
	m := c.Messages[0]
	if m.Content != "what is this?" || len(m.Parts) != 2 || m.Parts[1].Type != moltbot.PartImage || m.Parts[1].MIME != "image/png" {
		t.Fatalf("the user's message: %+v", m)
	}
	h := f.history(s.Token)
	if len(h.Data) != 4 || h.Data[0].Images != 1 || h.Data[0].Content != "what is this?" || h.Data[2].Images != 1 || h.Data[2].Content != "" {
		t.Fatalf("history: %+v", h)
	}
	big := "data:image/png;base64," + base64.StdEncoding.EncodeToString(append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 1200)...))
	for _, c := range []struct {
		images string
		code   int
		param  string
	}{
		{`["` + tinyPNG + `","` + tinyPNG + `","` + tinyPNG + `"]`, 400, "images"},
		{`["data:image/png;base64,!!!"]`, 400, "images[0]"},
		{`["data:image/gif;base64,iVBORw0KGgo="]`, 400, "images[0]"},
		{`["https://example.com/cat.png"]`, 400, "images[0]"},
		{`["data:text/html;base64,PGI+"]`, 400, "images[0]"},
		{`["` + tinyPNG + `","` + big + `"]`, 413, "images[1]"},
	} {
		code, body := post(`{"content":"x","images":` + c.images + `}`)
		if code != c.code || !strings.Contains(body, `"param":"`+c.param+`"`) {
			t.Errorf("%.80s: %d %s", c.images, code, body)
		}
	}
	o[optMaxImage] = "0"
	g := newFixture(t, o)
	gs := g.session("")
	res, body := g.do("POST", "api/messages", `{"content":"x","images":["`+tinyPNG+`"]}`, "Origin", shop, "Content-Type", "application/json", "Authorization", "Bearer "+gs.Token)
	if res.StatusCode != 400 || !strings.Contains(body, "max_image_bytes: 0") {
		t.Fatalf("an image to a widget without images: %d %s", res.StatusCode, body)
	}
}

// Message bodies: no input panics; what is accepted is within the caps,
// its images decoded, typed and within max_image_bytes.
func FuzzMessageBody(f *testing.F) {
	for _, seed := range []string{`{"content":"hi"}`, `{"content":"hi","id":"abc"}`, `{}`, `{"content":""}`, `[`, `{"content":"\ud800"}`,
		`{"content":"hi"}{}`, `{"content":"hi","x":1}`, `null`, `{"content":null}`, "{\"content\":\"\xff\"}",
		`{"content":"look","images":["` + tinyPNG + `"]}`, `{"images":["` + tinyPNG + `","` + tinyPNG + `"]}`,
		`{"images":["data:image/png;base64,AAAA"]}`, `{"images":["https://example.com/a.png"]}`, `{"images":[""]}`, `{"images":null}`} {
		f.Add([]byte(seed))
	}
	o := &options{maxMsg: 100, maxImage: 200}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseMessage(strings.NewReader(string(body)), o)
		if err != nil {
			if moltbot.ErrorCode(err) != moltbot.EInvalid && moltbot.ErrorCode(err) != moltbot.ETooLarge {
				t.Fatalf("%q: %v", body, err)
			}
			return
		}
		if strings.TrimSpace(req.Content) == "" && len(req.Images) == 0 || len(req.Content) > 100 || req.ID != "" && !moltbot.ValidRequestID(req.ID) {
			t.Fatalf("accepted %q: %+v", body, req)
		}
		images := 0
		for _, p := range req.parts {
			if p.Type == moltbot.PartImage {
				images++
				if len(p.Data) == 0 || len(p.Data) > 200 || !strings.HasPrefix(p.MIME, "image/") {
					t.Fatalf("accepted %q: image %+v", body, p)
				}
			}
		}
		if images != len(req.Images) || images > maxImages || images > 0 && moltbot.TextOf(req.parts) != req.Content {
			t.Fatalf("accepted %q: %d images, parts %+v", body, len(req.Images), req.parts)
		}
	})
}

// X-Forwarded-For: no input panics, and the answer is the peer or an
// address the header named.
func FuzzClientAddr(f *testing.F) {
	for _, seed := range []string{"198.51.100.1", "1.2.3.4, 10.0.0.9", "junk", "", ",,,", "::ffff:10.0.0.1, 2001:db8::1", "10.0.0.1 , 10.0.0.2"} {
		f.Add("10.0.0.2:1234", seed)
		f.Add("203.0.113.5:80", seed)
	}
	proxies, _ := parseOptions(map[string]string{optKey: testKey, optOrigins: shop, optSecret: testSecret, optProxies: "10.0.0.0/8, ::ffff:10.0.0.0/104"})
	f.Fuzz(func(t *testing.T, peer, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Forwarded-For", xff)
		got := clientAddr(r, proxies.proxies)
		ap, err := netip.ParseAddrPort(peer)
		if err != nil {
			return // net/http's RemoteAddr is always an address and port
		}
		a, err := netip.ParseAddr(got)
		if err != nil {
			t.Fatalf("%q %q: %q is no address", peer, xff, got)
		}
		hop := false
		for _, h := range strings.Split(xff, ",") {
			if ha, err := netip.ParseAddr(strings.TrimSpace(h)); err == nil && ha.Unmap() == a {
				hop = true
			}
		}
		if a != ap.Addr().Unmap() && !hop {
			t.Fatalf("%q %q: %q is neither the peer nor a hop", peer, xff, got)
		}
		if a != ap.Addr().Unmap() && !trusted(ap.Addr().Unmap(), proxies.proxies) {
			t.Fatalf("%q %q: an untrusted peer's header believed (%q)", peer, xff, got)
		}
	})
}

// Any request to the widget, with any headers, answers without a panic;
// an API call from an origin that is not the channel's gets no CORS
// header and a JSON error.
func FuzzRequest(f *testing.F) {
	typ := Type(func() Core { return Core{} }) // no chat service: calls that pass the checks get 502
	a, err := typ.New(channels.Config{Name: "support", Type: "widget", Bot: "b", Options: testOptions()}, &channeltest.Host{})
	if err != nil {
		f.Fatal(err)
	}
	w := a.(*Widget)
	good := w.sign.sign(newVisitorID(), time.Now().Add(time.Hour))
	for _, seed := range [][6]string{
		{"POST", "/api/session", shop, "", testKey, "{}"},
		{"POST", "/api/messages", shop, "Bearer " + good, "", `{"content":"hi"}`},
		{"GET", "/api/history", "https://evil.example", "Bearer " + good, "", ""},
		{"OPTIONS", "/api/messages", shop, "", "", ""},
		{"GET", "/", "", "", "", ""},
		{"GET", "/widget.js", "", "", "", ""},
		{"GET", "/api/events", "null", "bearer x", "", ""},
		{"PUT", "/api/../widget.js", shop, "", "", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4], seed[5])
	}
	f.Fuzz(func(t *testing.T, method, path, origin, auth, key, body string) {
		r, err := http.NewRequest(method, "http://node"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		r.Header.Set("Origin", origin)
		r.Header.Set("Authorization", auth)
		r.Header.Set(keyHeader, key)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Access-Control-Request-Method", "POST")
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, r)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if strings.HasPrefix(r.URL.Path, "/api/") && !w.o.origins[origin] {
			if rec.Header().Get("Access-Control-Allow-Origin") != "" || rec.Code != 403 || !strings.HasPrefix(rec.Body.String(), `{"error":`) {
				t.Fatalf("%s %s from %q: %d %v %s", method, path, origin, rec.Code, rec.Header(), rec.Body)
			}
		}
	})
}
