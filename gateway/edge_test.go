package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/slots"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
)

type edgeEnv struct {
	url  string
	srv  *Server
	auth *auth.Service
	op   string // an operator key
}

// edgeServer starts a gateway over the simulator (4 tokens at once, or as
// so) with cfg and an auth service (enabled or not, as a node always has one).
func edgeServer(t *testing.T, cfg Config, acfg auth.Config, so ...sim.Options) *edgeEnv {
	t.Helper()
	simOpts := sim.Options{Tokens: 4, Seed: 1}
	if len(so) > 0 {
		simOpts = so[0]
	}
	store := storage.NewMemory()
	as, err := auth.New(acfg, store)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", simOpts),
		MaxInFlight: 16, Timeout: 5 * time.Second}}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: store,
		Metrics: metrics.New("test"), HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Version = "test"
	gw := newServer(rt, as, 0, cfg)
	hs := httptest.NewServer(gw)
	t.Cleanup(func() {
		hs.Close()
		rt.Shutdown(context.Background())
		as.Close()
	})
	op, _, err := as.CreateKey("default", "op", auth.ScopeAdmin, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &edgeEnv{url: hs.URL, srv: gw, auth: as, op: op}
}

// req sends one request; hdr holds headers as "Key: value" ("Host: x" sets the Host).
func (e *edgeEnv) req(t *testing.T, method, path, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	r, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		if k == "Host" {
			r.Host = v
		} else {
			r.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// slowRequest writes the headers of a request whose body is declared 100
// bytes long and sends the first few (an unfinished JSON object or form);
// the connection stays open.
func slowRequest(t *testing.T, base, method, path, ctype, key string) net.Conn {
	t.Helper()
	u, _ := url.Parse(base)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	auth := ""
	if key != "" {
		auth = "Authorization: Bearer " + key + "\r\n"
	}
	part := `{"messages": [`
	if strings.Contains(ctype, "form") {
		part = "grant_type=client_cred"
	}
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n%sContent-Length: 100\r\n\r\n%s", method, path, u.Host, ctype, auth, part)
	return c
}

// response reads the answer on c; the test fails if none comes within a
// generous bound (the node under test must cut the body off long before).
func response(t *testing.T, c net.Conn) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Finding 1: a body that does not arrive within server.read_body_timeout is
// answered 408 and its connection closed, on every path that reads a body:
// JSON endpoints (with auth off and on) and the form-encoded token endpoint.
func TestSlowBodyCutOff(t *testing.T) {
	off := edgeServer(t, Config{BodyReadTimeout: 200 * time.Millisecond}, auth.Config{})
	on := edgeServer(t, Config{BodyReadTimeout: 200 * time.Millisecond}, auth.Config{Enabled: true})
	cases := []struct {
		name, base, path, ctype, key string
		oauth                        bool
	}{
		{"chat, auth off", off.url, "/v1/chat/completions", "application/json", "", false},
		{"conversation, auth off", off.url, "/v1/conversations", "application/json", "", false},
		{"chat, auth on", on.url, "/v1/chat/completions", "application/json", on.op, false},
		{"token endpoint", on.url, "/oauth/token", "application/x-www-form-urlencoded", "", true},
		{"keys, auth on", on.url, "/v1/admin/keys", "application/json", on.op, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := slowRequest(t, tc.base, "POST", tc.path, tc.ctype, tc.key)
			resp, body := response(t, c)
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "server.read_body_timeout") || !resp.Close {
				t.Fatalf("%d close=%v %s", resp.StatusCode, resp.Close, body)
			}
			if tc.oauth != strings.Contains(body, `"error":"invalid_request"`) {
				t.Errorf("error body %s", body)
			}
			// The server closed the connection.
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("the connection stays open (%d bytes more)", n)
			}
		})
	}
	// A stream that lasts longer than the body deadline is not cut: once
	// its body was read the deadline is gone (a deadline left on the
	// connection would fail the server's read that watches for the client
	// leaving, which cancels the turn).
	slow := edgeServer(t, Config{BodyReadTimeout: 100 * time.Millisecond}, auth.Config{}, sim.Options{Tokens: 6, ITL: 60 * time.Millisecond, Seed: 1})
	for path, body := range map[string]string{"/v1/chat/completions": `{"stream":true,"messages":[{"role":"user","content":"x"}]}`,
		"/v1/conversations/c1/messages": `{"stream":true,"content":"x"}`} {
		if path != "/v1/chat/completions" {
			if code, body, _ := slow.req(t, "POST", "/v1/conversations", `{"id":"c1"}`, "Content-Type: application/json"); code != 201 {
				t.Fatalf("%d %s", code, body)
			}
		}
		resp, err := http.Post(slow.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		frames := sseFrames(t, resp.Body)
		resp.Body.Close()
		if len(frames) < 7 || frames[len(frames)-1] != "[DONE]" || strings.Contains(strings.Join(frames, ""), `"error"`) {
			t.Fatalf("%s: stream %q", path, frames)
		}
	}
}

// Finding 1: with auth on, requests without a credential (slow bodies to
// /oauth/token, probes) are bounded per client address; past the bound the
// next is refused at once with 429, while requests with a credential from
// the same address go on.
func TestAnonymousRequestsBounded(t *testing.T) {
	e := edgeServer(t, Config{MaxAnonymous: 2, BodyReadTimeout: time.Minute}, auth.Config{Enabled: true})
	c1 := slowRequest(t, e.url, "POST", "/oauth/token", "application/x-www-form-urlencoded", "")
	slowRequest(t, e.url, "POST", "/oauth/token", "application/x-www-form-urlencoded", "")
	testutil.Eventually(t, 10*time.Second, "two slow bodies in flight", func() bool { return e.srv.anon.HeldBy("127.0.0.1") == 2 })
	for _, path := range []string{"/oauth/token", "/healthz"} {
		code, body, h := e.req(t, "POST", path, "grant_type=client_credentials", "Content-Type: application/x-www-form-urlencoded")
		if path == "/healthz" {
			code, body, h = e.req(t, "GET", path, "")
		}
		if code != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, "server.max_anonymous_requests") || !json.Valid([]byte(body)) {
			t.Fatalf("%s, a third anonymous request: %d %s", path, code, body)
		}
	}
	if code, body, _ := e.req(t, "GET", "/v1/models", "", "Authorization: Bearer "+e.op); code != 200 {
		t.Fatalf("a request with a credential from the same address: %d %s", code, body)
	}
	// A slow client that leaves frees its slot.
	c1.Close()
	testutil.Eventually(t, 10*time.Second, "the slot freed", func() bool { return e.srv.anon.HeldBy("127.0.0.1") == 1 })
	if code, _, _ := e.req(t, "GET", "/healthz", ""); code != 200 {
		t.Fatalf("after a slot freed: %d", code)
	}
}

// Finding 5: a node without auth answers only to IP addresses, localhost and
// server.allowed_hosts (DNS rebinding), refuses cross-site origins, and
// takes only JSON bodies: a web page can no longer POST /v1/admin/keys as
// text/plain and read a new operator key.
func TestHostOriginAndContentType(t *testing.T) {
	e := edgeServer(t, Config{AllowedHosts: []string{"moltbot.lan", ".example.com"}}, auth.Config{})
	// The reproduction: DNS rebinding (Host is the attacker's name) and a
	// cross-site simple request (text/plain, from another origin).
	key := `{"scope":"admin"}`
	for _, hdr := range [][]string{
		{"Host: rebind.attacker.test:3000", "Content-Type: text/plain"},
		{"Host: rebind.attacker.test:3000", "Content-Type: application/json"},
		{"Origin: https://attacker.test", "Content-Type: text/plain"},
		{"Origin: https://attacker.test", "Content-Type: application/json"},
		{"Origin: null", "Content-Type: application/json"},
		{"Content-Type: text/plain;charset=UTF-8"},
		{"Content-Type: application/x-www-form-urlencoded"},
		{"Content-Type: multipart/form-data; boundary=x"},
		{},
	} {
		code, body, _ := e.req(t, "POST", "/v1/admin/keys", key, hdr...)
		if code != 403 && code != 415 || strings.Contains(body, `"key"`) || !json.Valid([]byte(body)) {
			t.Errorf("%v: %d %s", hdr, code, body)
		}
		if code == 415 && !strings.Contains(body, "Content-Type must be application/json") {
			t.Errorf("%v: the 415 does not name the type: %s", hdr, body)
		}
	}
	if code, body, _ := e.req(t, "POST", "/v1/admin/keys", key, "Content-Type: application/json"); code != 201 {
		t.Fatalf("a local JSON call: %d %s", code, body)
	}
	// Each API is refused in its own shape: a client of the Ollama or the
	// Anthropic API reads its own error, and is told how to send the type.
	for path, shape := range map[string]string{
		"/api/chat":            `{"error":"Content-Type must be application/json, got \"application/x-www-form-urlencoded\"`,
		"/v1/messages":         `{"type":"error","error":{"type":"invalid_request_error","message":"Content-Type must be application/json`,
		"/v1/chat/completions": `{"error":{"message":"Content-Type must be application/json`,
	} {
		code, body, _ := e.req(t, "POST", path, `{}`, "Content-Type: application/x-www-form-urlencoded")
		if code != 415 || !strings.HasPrefix(body, shape) || !strings.Contains(body, "-H 'Content-Type: application/json'") {
			t.Errorf("%s: %d %s", path, code, body)
		}
		code, body, _ = e.req(t, "POST", path, `{}`, "Content-Type: application/json", "Origin: https://attacker.test")
		if code != 403 || !strings.HasPrefix(body, shape[:10]) {
			t.Errorf("%s, another origin: %d %s", path, code, body)
		}
	}
	hosts := map[string]int{
		"localhost:3000": 200, "LOCALHOST": 200, "127.0.0.1:3000": 200, "[::1]:3000": 200, "app.localhost": 200,
		"10.1.2.3:3000": 200, "[2001:db8::1]": 200, "moltbot.lan": 200, "moltbot.lan.:3000": 200, "a.example.com": 200, "example.com": 200,
		"evil.test": 403, "moltbot.lan.evil.test": 403, "notexample.com": 403, "localhost.evil.test": 403,
	}
	for h, want := range hosts {
		code, body, _ := e.req(t, "GET", "/v1/models", "", "Host: "+h)
		if code != want {
			t.Errorf("Host %s: %d, want %d (%s)", h, code, want, body)
		}
		if code == 403 && !strings.Contains(body, "server.allowed_hosts") {
			t.Errorf("Host %s: %s", h, body)
		}
	}
	origins := map[string]int{
		"http://localhost:5173": 200, "http://127.0.0.1:8080": 200, "http://[::1]": 200, "https://moltbot.lan": 200,
		"http://app.example.com": 200, "http://10.0.0.5": 403, "https://attacker.test": 403, "null": 403, "file://": 403,
	}
	for o, want := range origins {
		if code, body, _ := e.req(t, "POST", "/v1/conversations", "{}", "Content-Type: application/json", "Origin: "+o); code != want && !(want == 200 && code == 201) {
			t.Errorf("Origin %s: %d, want %d (%s)", o, code, want, body)
		}
	}
	// The node's own origin, whatever its address.
	if code, _, _ := e.req(t, "POST", "/v1/conversations", "{}", "Content-Type: application/json", "Host: 10.0.0.5:3000", "Origin: http://10.0.0.5:3000"); code != 201 {
		t.Errorf("same origin: %d", code)
	}
	// Content types: parameters and case do not matter; no body needs none.
	for ct, want := range map[string]int{"application/json; charset=utf-8": 201, "Application/JSON": 201, "text/json": 415, "": 415} {
		if code, body, _ := e.req(t, "POST", "/v1/conversations", "{}", "Content-Type: "+ct); code != want {
			t.Errorf("Content-Type %q: %d, want %d %s", ct, code, want, body)
		}
	}
	if code, _, _ := e.req(t, "POST", "/v1/conversations", ""); code != 201 {
		t.Errorf("no body, no type: %d", code)
	}
	code, body, _ := e.req(t, "DELETE", "/v1/conversations/x", "{}", "Content-Type: text/plain")
	if code != 415 {
		t.Errorf("DELETE with a text body: %d %s", code, body)
	}
}

// With auth on the JSON rule holds everywhere, the token endpoint takes form
// encoding only, and Host and Origin are not checked (a browser never sends
// a bearer credential by itself).
func TestContentTypeWithAuth(t *testing.T) {
	e := edgeServer(t, Config{}, auth.Config{Enabled: true})
	bearer := "Authorization: Bearer " + e.op
	if code, body, _ := e.req(t, "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, bearer, "Content-Type: text/plain"); code != 415 ||
		!strings.Contains(body, `"code":"unsupported_media_type"`) {
		t.Errorf("text/plain with a key: %d %s", code, body)
	}
	if code, body, _ := e.req(t, "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, bearer,
		"Content-Type: application/json", "Host: moltbot.example.org", "Origin: https://console.example.org"); code != 200 {
		t.Errorf("behind a proxy, from a console: %d %s", code, body)
	}
	id := strings.Split(e.op, "_")[1]
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {e.op}}.Encode()
	code, body, _ := e.req(t, "POST", "/oauth/token", form, "Content-Type: application/json")
	if code != 415 || !strings.Contains(body, "application/x-www-form-urlencoded") || !strings.Contains(body, `"error":"invalid_request"`) {
		t.Errorf("token as JSON: %d %s", code, body)
	}
	if code, body, _ := e.req(t, "POST", "/oauth/token", form, "Content-Type: application/x-www-form-urlencoded; charset=utf-8"); code != 200 {
		t.Errorf("token as a form: %d %s", code, body)
	}
}

// Finding 2: behind trusted proxies each client has its own failure budget
// (the right-most X-Forwarded-For address not in server.trusted_proxies);
// /oauth/token failures spend it; a valid key is never refused; without
// the setting X-Forwarded-For is ignored.
func TestFailureBudgetPerClient(t *testing.T) {
	lo := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	e := edgeServer(t, Config{TrustedProxies: lo}, auth.Config{Enabled: true, FailureLimit: 3})
	bad := "Authorization: Bearer mb_zzzzzzzz_" + strings.Repeat("a", 26)
	xffA := "X-Forwarded-For: 198.51.100.1, 203.0.113.7, 10.0.0.2"
	id := strings.Split(e.op, "_")[1]
	badForm := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {e.op + "x"}}.Encode()
	for i := 0; i < 3; i++ {
		if code, body, _ := e.req(t, "POST", "/oauth/token", badForm, "Content-Type: application/x-www-form-urlencoded", xffA); code != 401 {
			t.Fatalf("token failure %d: %d %s", i, code, body)
		}
	}
	code, body, h := e.req(t, "GET", "/v1/models", "", bad, xffA)
	if code != 429 || h.Get("Retry-After") == "" || !json.Valid([]byte(body)) {
		t.Fatalf("client A over budget: %d %s", code, body)
	}
	code, body, h = e.req(t, "POST", "/oauth/token", badForm, "Content-Type: application/x-www-form-urlencoded", xffA)
	if code != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, "invalid_client") {
		t.Fatalf("token endpoint over budget: %d %s", code, body)
	}
	// The operator's own key from the same client, every time.
	for i := 0; i < 3; i++ {
		if code, body, _ := e.req(t, "GET", "/v1/admin/status", "", "Authorization: Bearer "+e.op, xffA); code != 200 {
			t.Fatalf("a valid key from a throttled client: %d %s", code, body)
		}
	}
	// Another client behind the same proxy, and a spoofed left-most entry.
	if code, _, _ := e.req(t, "GET", "/v1/models", "", bad, "X-Forwarded-For: 203.0.113.7, 203.0.113.8"); code != 401 {
		t.Fatalf("another client is throttled: %d", code)
	}
	// Without trusted proxies X-Forwarded-For is ignored: every client is
	// the peer.
	n := edgeServer(t, Config{}, auth.Config{Enabled: true, FailureLimit: 3})
	for i := 0; i < 3; i++ {
		n.req(t, "GET", "/v1/models", "", bad, fmt.Sprintf("X-Forwarded-For: 203.0.113.%d", i))
	}
	if code, _, _ := n.req(t, "GET", "/v1/models", "", bad, "X-Forwarded-For: 203.0.113.99"); code != 429 {
		t.Fatalf("X-Forwarded-For believed from an untrusted peer: %d", code)
	}
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	peer := netip.MustParseAddr("10.0.0.1")
	cases := []struct {
		peer string
		xff  []string
		want string
	}{
		{"192.0.2.1", []string{"203.0.113.7"}, "192.0.2.1"},                     // untrusted peer: header ignored
		{"10.0.0.1", nil, "10.0.0.1"},                                           // trusted peer, no header
		{"10.0.0.1", []string{"203.0.113.7"}, "203.0.113.7"},                    // one proxy
		{"10.0.0.1", []string{"1.1.1.1, 203.0.113.7, 10.9.9.9"}, "203.0.113.7"}, // spoofed left part
		{"10.0.0.1", []string{"1.1.1.1", "203.0.113.7 , 10.9.9.9"}, "203.0.113.7"},
		{"10.0.0.1", []string{"10.1.1.1, 10.2.2.2"}, "10.1.1.1"}, // all trusted: the left-most
		{"10.0.0.1", []string{"garbage, 10.2.2.2"}, "10.2.2.2"},  // not an address: stop at the last good one
		{"10.0.0.1", []string{"[2001:db9::1]:443"}, "2001:db9::1"},
		{"10.0.0.1", []string{"203.0.113.7:5555"}, "203.0.113.7"},
		{"10.0.0.1", []string{"::ffff:203.0.113.7"}, "203.0.113.7"},
		{"10.0.0.1", []string{",,  ,"}, "10.0.0.1"},
		{"10.0.0.1", []string{"fe80::1%eth0"}, "10.0.0.1"},
	}
	for _, tc := range cases {
		if got := clientAddr(netip.MustParseAddr(tc.peer), tc.xff, trusted); got.String() != tc.want {
			t.Errorf("%s %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
	if got := clientAddr(peer, []string{strings.Repeat("10.0.0.2,", 1000) + "10.0.0.3"}, trusted); !got.IsValid() {
		t.Error("a long chain")
	}
	if slots.Key(netip.MustParseAddr("2001:db8:1:2:3:4:5:6")) != slots.Key(netip.MustParseAddr("2001:db8:1:2::9")) {
		t.Error("IPv6 clients are not keyed by their /64")
	}
	s := &Server{}
	for peer, want := range map[string]string{"192.0.2.1:5000": "192.0.2.1", "[::ffff:192.0.2.1]:5000": "192.0.2.1",
		"[2001:db8:1:2::7]:443": "2001:db8:1:2::/64", "pipe": "pipe"} {
		if got := s.clientKey(&http.Request{RemoteAddr: peer}); got != want {
			t.Errorf("clientKey(%s) = %s, want %s", peer, got, want)
		}
	}
}

// FuzzClientAddr: any X-Forwarded-For gives a valid address that is the
// peer or one of the header's entries, never a trusted one unless every
// entry read was trusted, and the peer's own when the peer is not trusted.
func FuzzClientAddr(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "1.1.1.1, 203.0.113.7, 10.9.9.9", "garbage", "[2001:db8::1]:80", "10.1.1.1,10.2.2.2", ",,,", "::ffff:1.2.3.4", "fe80::1%eth0"} {
		f.Add("10.0.0.1", s)
		f.Add("192.0.2.1", s)
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	f.Fuzz(func(t *testing.T, peerS, xff string) {
		peer, err := netip.ParseAddr(peerS)
		if err != nil {
			return
		}
		peer = peer.Unmap()
		got := clientAddr(peer, []string{xff}, trusted)
		if !got.IsValid() {
			t.Fatalf("%q %q: invalid result", peerS, xff)
		}
		if !isTrusted(peer, trusted) {
			if got != peer {
				t.Fatalf("untrusted peer %s: got %s", peer, got)
			}
			return
		}
		if got == peer {
			return
		}
		found := false
		for _, tok := range strings.Split(xff, ",") {
			if a, ok := parseHop(strings.TrimSpace(tok)); ok && a == got {
				found = true
			}
		}
		if !found {
			t.Fatalf("%q: %s is not an entry of the header", xff, got)
		}
	})
}

// FuzzEdgeHeaders feeds arbitrary Host, Origin and Content-Type values to
// the edge's parsers: they never panic; an accepted Host names an IP
// address, localhost or an allowed host; an accepted Origin is the Host
// itself or names a loopback address, localhost or an allowed host; and the
// Content-Type check agrees with mime.ParseMediaType wherever that parses.
func FuzzEdgeHeaders(f *testing.F) {
	for _, s := range [][3]string{
		{"localhost:3000", "http://localhost:5173", "application/json"},
		{"[::1]:3000", "null", "application/json; charset=utf-8"},
		{"evil.test", "https://evil.test", "text/plain"},
		{"moltbot.lan.", "http://a.example.com:8080", "Application/JSON ;x=y"},
		{"127.0.0.1", "http://[::1", "application/json\x00"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	s := &Server{cfg: Config{AllowedHosts: []string{"moltbot.lan", ".example.com"}}}
	f.Fuzz(func(t *testing.T, host, origin, ctype string) {
		if s.hostAllowed(host) && host != "" {
			name := strings.TrimSuffix(strings.ToLower(hostname(host)), ".")
			_, ipErr := netip.ParseAddr(hostname(host))
			if ipErr != nil && name != "localhost" && !strings.HasSuffix(name, ".localhost") && name != "moltbot.lan" &&
				name != "example.com" && !strings.HasSuffix(name, ".example.com") {
				t.Fatalf("host %q accepted", host)
			}
		}
		if s.originAllowed(origin, host) {
			u, err := url.Parse(origin)
			if err != nil {
				t.Fatalf("origin %q accepted without parsing", origin)
			}
			if !strings.EqualFold(u.Host, host) {
				name := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
				a, ipErr := netip.ParseAddr(hostname(u.Host))
				if ipErr == nil && !a.Unmap().IsLoopback() || ipErr != nil && name != "localhost" && !strings.HasSuffix(name, ".localhost") &&
					name != "moltbot.lan" && name != "example.com" && !strings.HasSuffix(name, ".example.com") {
					t.Fatalf("origin %q accepted for host %q", origin, host)
				}
			}
		}
		if mt, _, err := mime.ParseMediaType(ctype); err == nil && (mt == "application/json") != mediaTypeIs(ctype, "application/json") {
			t.Fatalf("Content-Type %q: mime says %q, the edge %v", ctype, mt, mediaTypeIs(ctype, "application/json"))
		}
	})
}
