//go:build unix

package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// startCacheNode starts a node with auth and an output cache of type typ
// on workspace ws (made by moltbot init when new).
func startCacheNode(t *testing.T, ws, typ string) *authNode {
	t.Helper()
	if _, err := os.Stat(filepath.Join(ws, adminKeyFile)); err != nil {
		if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
			t.Fatalf("init: %d %s %s", code, out, e)
		}
	}
	text := `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: true}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 5}}
models: {primary: sim/sim}
cache: {type: ` + typ + `, ttl: 3600}
`
	n, logs := startNodeIn(t, ws, text, slog.LevelInfo)
	b, err := os.ReadFile(filepath.Join(ws, adminKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return &authNode{Node: n, ws: ws, op: strings.TrimSpace(string(b)), logs: logs}
}

// cached sends a deterministic completion and returns its status and
// X-Moltbot-Cache.
func cached(t *testing.T, url, key, text string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions",
		strings.NewReader(`{"model":"moltbot","temperature":0,"messages":[{"role":"user","content":"`+text+`"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Moltbot-Cache")
}

// The cache through a whole node with auth: tenants never share an entry,
// `moltbot cache stats` shows the tiers, `moltbot cache purge --tenant`
// empties one tenant's (its own for a tenant admin), and the pebble tier
// outlives a restart.
func TestCacheEndToEnd(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	a := startCacheNode(t, ws, "pebble")
	u := a.URL()
	for _, id := range []string{"acme", "bob"} {
		if code, body := authedDo(t, "POST", u+"/v1/admin/tenants", a.op, `{"id":"`+id+`"}`); code != 201 {
			t.Fatalf("%d %s", code, body)
		}
	}
	key := func(tenant, scope string) string {
		code, k, e := a.cli(t, "keys", "create", "--tenant", tenant, "--scope", scope)
		if code != 0 {
			t.Fatal(e)
		}
		return strings.TrimSpace(k)
	}
	acme, bob, acmeAdmin := key("acme", "chat"), key("bob", "chat"), key("acme", "admin")
	for i, tc := range []struct{ key, want string }{{acme, "miss"}, {acme, "hit"}, {bob, "miss"}, {bob, "hit"}} {
		if code, got := cached(t, u, tc.key, "same question"); code != 200 || got != tc.want {
			t.Fatalf("%d: %d %q, want %q", i, code, got, tc.want)
		}
	}
	code, out, e := a.cli(t, "cache", "stats")
	if code != 0 || !strings.Contains(out, "type pebble, ttl 3600s") || !strings.Contains(out, "memory") || !strings.Contains(out, "pebble") {
		t.Fatalf("stats: %d %s %s", code, out, e)
	}
	if code, _, e := runCLI(t, "", "cache", "purge", "--tenant", "bob", "--url", u, "--workspace", t.TempDir()); code == 0 {
		t.Fatal("a purge without a credential")
	} else if !strings.Contains(e, "401") && !strings.Contains(e, "admin key") {
		t.Errorf("%s", e)
	}
	if code, body := authedDo(t, "POST", u+"/v1/admin/cache/purge", acmeAdmin, `{"tenant":"bob"}`); code != 403 {
		t.Errorf("acme's admin purges bob's cache: %d %s", code, body)
	}
	if code, body := authedDo(t, "POST", u+"/v1/admin/cache/purge", acme, `{}`); code != 403 {
		t.Errorf("a chat key purges: %d %s", code, body)
	}
	if code, body := authedDo(t, "GET", u+"/v1/admin/cache", acmeAdmin, ""); code != 403 {
		t.Errorf("acme's admin reads every tenant's figures: %d %s", code, body)
	}
	if code, out, e := a.cli(t, "cache", "purge", "--tenant", "acme"); code != 0 || !strings.Contains(out, "purged tenant acme's cached replies: 1 from memory, 1 from pebble") {
		t.Fatalf("purge: %d %s %s", code, out, e)
	}
	if _, got := cached(t, u, acme, "same question"); got != "miss" {
		t.Errorf("acme after its purge: %q", got)
	}
	if _, got := cached(t, u, bob, "same question"); got != "hit" {
		t.Errorf("bob after acme's purge: %q", got)
	}
	if code, body := authedDo(t, "POST", u+"/v1/admin/cache/purge", acmeAdmin, `{}`); code != 200 || !strings.Contains(body, `"tenant":"acme"`) {
		t.Errorf("acme's admin purges its own: %d %s", code, body)
	}

	// Restarted, the node finds bob's reply in pebble.
	a.Shutdown(context.Background())
	a = startCacheNode(t, ws, "pebble")
	if _, got := cached(t, a.URL(), bob, "same question"); got != "hit" {
		t.Errorf("after a restart: %q", got)
	}
	if strings.Contains(a.logs.String(), `"output cache"`) == false {
		t.Errorf("the start does not log the cache:\n%s", a.logs.String())
	}
}
