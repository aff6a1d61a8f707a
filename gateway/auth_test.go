package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/inference/openai"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/logging"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

type authEnv struct {
	url  string
	auth *auth.Service
	logs *bytes.Buffer
	// keys by name: opA (operator), chatA, adminA (tenant a), chatB, adminB
	keys map[string]string
}

func setupAuth(t testing.TB, tenants []auth.Tenant) *authEnv {
	t.Helper()
	store := storage.NewMemory()
	met := metrics.New("test")
	logs := &bytes.Buffer{}
	log, _ := logging.New(logs, "debug", "json")
	as, err := auth.New(auth.Config{Enabled: true, Tenants: tenants, Logger: log}, store)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 4, Seed: 1}),
		MaxInFlight: 16, Timeout: 5 * time.Second}}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: store, Metrics: met,
		Logger: log, HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newServer(rt, as, 0, Config{Metrics: met, Logger: log, Version: "test"}))
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
		as.Close()
	})
	e := &authEnv{url: srv.URL, auth: as, logs: logs, keys: map[string]string{}}
	mk := func(name, tenant string, scope auth.Scope) {
		k, _, err := as.CreateKey(tenant, name, scope, 0)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[name] = k
	}
	mk("op", "default", auth.ScopeAdmin)
	mk("chatA", "a", auth.ScopeChat)
	mk("adminA", "a", auth.ScopeAdmin)
	mk("chatB", "b", auth.ScopeChat)
	mk("adminB", "b", auth.ScopeAdmin)
	return e
}

func (e *authEnv) do(t testing.TB, key, method, path, body string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+e.keys[key])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestAuthRequired(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	for _, path := range []string{"/v1/models", "/v1/chat/completions", "/v1/conversations", "/v1/admin/status", "/metrics"} {
		code, body, h := e.do(t, "", "GET", path, "")
		if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(body, "authentication required") {
			t.Errorf("%s without a key: %d %s", path, code, body)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/.well-known/jwks.json"} {
		if code, _, _ := e.do(t, "", "GET", path, ""); code == 401 {
			t.Errorf("%s needs a key", path)
		}
	}
	req, _ := http.NewRequest("GET", e.url+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer mb_zzzzzzzz_"+strings.Repeat("x", 32))
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("bad key: %d %v", resp.StatusCode, resp.Header)
	}
	// The failures are counted by reason.
	_, metricsText, _ := e.do(t, "op", "GET", "/metrics", "")
	for _, want := range []string{`moltbot_auth_failures_total{reason="missing"} 5`, `moltbot_auth_failures_total{reason="unknown_key"} 1`} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// No secret in any log line.
	for name, k := range e.keys {
		if strings.Contains(e.logs.String(), k) || strings.Contains(e.logs.String(), k[12:]) {
			t.Errorf("key %s leaked into the logs", name)
		}
	}
}

// Every endpoint, called by tenant B on tenant A's things, answers exactly
// as for something that does not exist.
func TestTenantIsolation(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	code, body, _ := e.do(t, "chatA", "POST", "/v1/conversations", `{"id":"secret-plans","system":"A only"}`)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	if code, body, _ := e.do(t, "chatA", "POST", "/v1/conversations/secret-plans/messages", `{"content":"hi"}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	_, body, _ = e.do(t, "adminA", "GET", "/v1/admin/keys", "")
	var keys struct {
		Keys []auth.KeyInfo `json:"keys"`
	}
	json.Unmarshal([]byte(body), &keys)
	keyA := keys.Keys[0].ID
	missing := func(method, path, body string) (int, string) {
		c, b, _ := e.do(t, "adminA", method, strings.ReplaceAll(strings.ReplaceAll(path, "secret-plans", "no-such-thing"), keyA, "zzzzzzzz"), body)
		return c, b
	}
	cases := []struct{ method, path, body string }{
		{"GET", "/v1/conversations/secret-plans", ""},
		{"POST", "/v1/conversations/secret-plans/messages", `{"content":"steal"}`},
		{"DELETE", "/v1/conversations/secret-plans", ""},
		{"DELETE", "/v1/admin/keys/" + keyA, ""},
		{"POST", "/v1/admin/keys/" + keyA + "/rotate", `{}`},
	}
	for _, tc := range cases {
		for _, who := range []string{"chatB", "adminB"} {
			code, body, _ := e.do(t, who, tc.method, tc.path, tc.body)
			wantCode, _ := missing(tc.method, tc.path, tc.body)
			if strings.HasPrefix(tc.path, "/v1/admin") && who == "chatB" {
				wantCode = 403 // admin endpoints need the admin scope at all
			}
			t.Logf("%s %s by %s -> %d (missing: %d)", tc.method, tc.path, who, code, wantCode)
			if code != wantCode || strings.Contains(body, "A only") {
				t.Errorf("%s %s %s by %s: %d %s (a missing one gives %d)", tc.method, tc.path, tc.body, who, code, body, wantCode)
			}
		}
	}
	// B's listing does not show A's keys; B cannot create keys for A.
	_, body, _ = e.do(t, "adminB", "GET", "/v1/admin/keys?tenant=a", "")
	if strings.Contains(body, keyA) {
		t.Errorf("B lists A's keys: %s", body)
	}
	if code, _, _ := e.do(t, "adminB", "POST", "/v1/admin/keys", `{"tenant":"a"}`); code != 404 {
		t.Errorf("B created a key for A: %d", code)
	}
	// B can reuse the id for its own conversation: ids are per tenant.
	if code, _, _ := e.do(t, "chatB", "POST", "/v1/conversations", `{"id":"secret-plans"}`); code != 201 {
		t.Errorf("B cannot use the same id: %d", code)
	}
	_, body, _ = e.do(t, "chatA", "GET", "/v1/conversations/secret-plans", "")
	if !strings.Contains(body, "A only") {
		t.Errorf("A's conversation changed: %s", body)
	}
	// Tenants are the operator's.
	for _, who := range []string{"adminA", "chatA"} {
		if code, _, _ := e.do(t, who, "GET", "/v1/admin/tenants", ""); code != 403 {
			t.Errorf("%s listed tenants: %d", who, code)
		}
	}
	if code, body, _ := e.do(t, "op", "GET", "/v1/admin/tenants", ""); code != 200 || !strings.Contains(body, `"id":"a"`) {
		t.Errorf("operator: %d %s", code, body)
	}
	// Node-wide pages and closed metrics carry every tenant's numbers: the
	// operator's only.
	for _, path := range []string{"/v1/admin/status", "/v1/admin/providers", "/v1/admin/cluster", "/metrics"} {
		for _, who := range []string{"adminA", "chatA"} {
			if code, _, _ := e.do(t, who, "GET", path, ""); code != 403 {
				t.Errorf("%s read %s: %d", who, path, code)
			}
		}
		if code, body, _ := e.do(t, "op", "GET", path, ""); code != 200 {
			t.Errorf("operator %s: %d %s", path, code, body)
		}
	}
	// The operator sees every tenant's keys.
	_, body, _ = e.do(t, "op", "GET", "/v1/admin/keys", "")
	if !strings.Contains(body, keyA) {
		t.Error("operator does not see A's keys")
	}
}

func TestKeysAPIAndRotation(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	code, body, _ := e.do(t, "adminA", "POST", "/v1/admin/keys", `{"name":"ci","scope":"chat","ttl":"720h"}`)
	var created struct {
		Key     string `json:"key"`
		ID      string `json:"id"`
		Tenant  string `json:"tenant"`
		Expires int64  `json:"expires"`
	}
	json.Unmarshal([]byte(body), &created)
	if code != 201 || !strings.HasPrefix(created.Key, "mb_") || created.Tenant != "a" || created.Expires == 0 {
		t.Fatalf("%d %s", code, body)
	}
	e.keys["ci"] = created.Key
	if code, _, _ := e.do(t, "ci", "GET", "/v1/models", ""); code != 200 {
		t.Fatal("new key refused")
	}
	// The client rotates itself; the old key is in grace and says so.
	code, body, _ = e.do(t, "ci", "POST", "/v1/auth/rotate", `{"grace":"1h"}`)
	var rotated struct{ Key string }
	json.Unmarshal([]byte(body), &rotated)
	if code != 201 || rotated.Key == "" || rotated.Key == created.Key {
		t.Fatalf("rotate: %d %s", code, body)
	}
	_, _, h := e.do(t, "ci", "GET", "/v1/models", "")
	if h.Get("X-Moltbot-Key-Expires") == "" {
		t.Error("a key in grace does not announce its end")
	}
	e.keys["ci2"] = rotated.Key
	if code, _, _ := e.do(t, "ci2", "GET", "/v1/models", ""); code != 200 {
		t.Fatal("successor refused")
	}
	// Revoke through the API.
	if code, _, _ := e.do(t, "adminA", "DELETE", "/v1/admin/keys/"+created.ID, ""); code != 200 {
		t.Fatal("revoke")
	}
	if code, _, _ := e.do(t, "ci", "GET", "/v1/models", ""); code != 401 {
		t.Fatal("revoked key still works")
	}
	for _, m := range []struct{ method, path, allow string }{
		{"PUT", "/v1/admin/keys", "GET, POST"}, {"GET", "/v1/admin/keys/" + created.ID, "DELETE"},
		{"PUT", "/v1/admin/tenants", "GET, POST"}, {"POST", "/v1/admin/tenants/a", "DELETE"},
	} {
		if code, body, h := e.do(t, "op", m.method, m.path, ""); code != 405 || h.Get("Allow") != m.allow || !strings.Contains(body, "not allowed") {
			t.Errorf("%s %s: %d %s (Allow %q)", m.method, m.path, code, body, h.Get("Allow"))
		}
	}
	for _, bad := range []string{`{"scope":"root"}`, `{"ttl":"soon"}`, `{"tenant":"nope"}`} {
		if code, body, _ := e.do(t, "op", "POST", "/v1/admin/keys", bad); code != 400 && code != 404 {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}
}

func TestClientCredentialsGrant(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	id := strings.Split(e.keys["chatA"], "_")[1]
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", e.url+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, e.keys["chatA"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok auth.Token
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.AccessToken == "" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %+v", resp.StatusCode, tok)
	}
	// The token works like the key, for the same tenant.
	req, _ = http.NewRequest("POST", e.url+"/v1/conversations", strings.NewReader(`{"id":"via-jwt"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("with the token: %d", resp.StatusCode)
	}
	if code, _, _ := e.do(t, "chatA", "GET", "/v1/conversations/via-jwt", ""); code != 200 {
		t.Fatal("the token's conversation is not tenant a's")
	}
	// Wrong secret: RFC 6749 error body.
	form.Set("client_id", id)
	form.Set("client_secret", e.keys["chatA"]+"x")
	resp, _ = http.Post(e.url+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), `"error":"invalid_client"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	// The published JWKS verifies the token.
	_, body, _ := e.do(t, "", "GET", "/.well-known/jwks.json", "")
	if !strings.Contains(body, `"alg":"ES256"`) {
		t.Fatalf("jwks %s", body)
	}
}

func TestLimitsAndModels(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a", Models: []string{"sim/sim"}, Limits: auth.Limits{RequestsPerMinute: 2}}, {ID: "b"}})
	ok := `{"model":"sim/sim","messages":[{"role":"user","content":"x"}]}`
	for i := 0; i < 2; i++ {
		if code, body, _ := e.do(t, "chatA", "POST", "/v1/chat/completions", ok); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	code, body, h := e.do(t, "chatA", "POST", "/v1/chat/completions", ok)
	if code != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, "over its limits") {
		t.Fatalf("3rd request: %d %s %v", code, body, h)
	}
	// Tenant b is not limited by a's use.
	if code, _, _ := e.do(t, "chatB", "POST", "/v1/chat/completions", ok); code != 200 {
		t.Fatal("b limited by a")
	}
	// Models outside a's list are forbidden, and not listed.
	if code, body, _ := e.do(t, "chatB", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`); code != 200 {
		t.Fatalf("b, chain: %d %s", code, body)
	}
	e2 := setupAuth(t, []auth.Tenant{{ID: "a", Models: []string{"sim/sim"}}, {ID: "b"}})
	if code, body, _ := e2.do(t, "chatA", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`); code != 403 || !strings.Contains(body, "not allowed") {
		t.Fatalf("a, chain: %d %s", code, body)
	}
	if code, _, _ := e2.do(t, "chatA", "POST", "/v1/conversations", `{}`); code != 403 {
		t.Fatal("a created a conversation on the chain")
	}
	if code, body, _ := e2.do(t, "chatA", "POST", "/v1/conversations", `{"model":"sim/sim","id":"ok"}`); code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	if code, body, _ := e2.do(t, "chatA", "POST", "/v1/conversations/ok/messages", `{"content":"hi"}`); code != 200 {
		t.Fatalf("turn on an allowed conversation: %d %s", code, body)
	}
	_, body, _ = e2.do(t, "chatA", "GET", "/v1/models", "")
	if strings.Contains(body, `"moltbot"`) || !strings.Contains(body, "sim/sim") {
		t.Fatalf("a's models: %s", body)
	}
}

// GET /v1/models over loopback with an API key (compare BenchmarkAuthenticateKey
// in auth for the share of authentication).
func BenchmarkAuthenticatedModels(b *testing.B) {
	e := setupAuth(b, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	req, _ := http.NewRequest("GET", e.url+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+e.keys["chatA"])
	b.ReportAllocs()
	for b.Loop() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkFloorPath is the floor's request in one process (BENCHMARKS.md,
// "Against the floor"): auth on with an API key, metrics, the chain a/sim
// -> b/sim of two openai providers on a zero-delay simulator over loopback
// (16 tokens), the bench package's request; the simulator's and the
// client's work are counted too. For profiles of the node's path:
//
//	go test -run '^$' -bench FloorPath -cpuprofile cpu.out -memprofile mem.out ./gateway/
func BenchmarkFloorPath(b *testing.B) {
	simSrv := httptest.NewServer(sim.NewServer(sim.Options{Tokens: 16, Seed: 1, Models: []string{"sim"}}))
	defer simSrv.Close()
	store := storage.NewMemory()
	met := metrics.New("bench")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	as, err := auth.New(auth.Config{Enabled: true, Logger: log}, store)
	if err != nil {
		b.Fatal(err)
	}
	defer as.Close()
	var specs []actors.ProviderSpec
	for _, name := range []string{"a", "b"} {
		specs = append(specs, actors.ProviderSpec{Name: name, Type: "openai", Provider: openai.New(openai.Config{Name: name, BaseURL: simSrv.URL + "/v1"}),
			MaxInFlight: 256, MaxQueue: 1024, Timeout: 5 * time.Second})
	}
	rt, err := actors.New(actors.Config{Providers: specs, Chain: []moltbot.ModelRef{{Provider: "a", Model: "sim"}, {Provider: "b", Model: "sim"}},
		Store: store, Metrics: met, Logger: log, HealthInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	srv := httptest.NewServer(newServer(rt, as, 0, Config{Metrics: met, Logger: log, Version: "bench"}))
	defer srv.Close()
	key, _, err := as.CreateKey("default", "bench", auth.ScopeChat, 0)
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	for _, stream := range []bool{false, true} {
		body, _ := json.Marshal(map[string]any{"model": "moltbot", "stream": stream,
			"messages": []map[string]string{{"role": "user", "content": strings.Repeat("lorem ipsum ", 21)}}})
		b.Run(map[bool]string{false: "plain", true: "stream"}[stream], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
