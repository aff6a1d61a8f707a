//go:build unix

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

// A tenant made through the admin API with quotas and a retention policy:
// creates past max_conversations and turns past max_stored_bytes are 429
// insufficient_quota naming the key, and change nothing; a delete frees a
// slot; `moltbot retention sweep` trims and archives (privately).
func TestQuotasAndRetentionEndToEnd(t *testing.T) {
	a := startAuthNode(t, filepath.Join(t.TempDir(), "ws"))
	u := a.URL()
	code, body := authedDo(t, "POST", u+"/v1/admin/tenants", a.op,
		`{"id":"acme","limits":{"max_conversations":2},"retention":{"messages":2,"archive":true}}`)
	if code != 201 || !strings.Contains(body, `"retention":{"messages":2,"archive":true}`) || !strings.Contains(body, `"max_conversations":2`) {
		t.Fatalf("%d %s", code, body)
	}
	if code, body := authedDo(t, "POST", u+"/v1/admin/tenants", a.op, `{"id":"tiny","limits":{"max_stored_bytes":300}}`); code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	if code, out, _ := a.cli(t, "tenants", "list"); code != 0 || !strings.Contains(out, "days=0 messages=2 archive=true") {
		t.Fatalf("tenants list: %s", out)
	}
	key := func(tenant string) string {
		code, k, e := a.cli(t, "keys", "create", "--tenant", tenant)
		if code != 0 {
			t.Fatal(e)
		}
		return strings.TrimSpace(k)
	}
	acme, tiny := key("acme"), key("tiny")

	var ids []string
	for i := 0; i < 2; i++ {
		code, body := authedDo(t, "POST", u+"/v1/conversations", acme, `{"system":"be brief"}`)
		var c struct{ ID string }
		if code != 201 || json.Unmarshal([]byte(body), &c) != nil {
			t.Fatalf("%d %s", code, body)
		}
		ids = append(ids, c.ID)
	}
	req, _ := http.NewRequest("POST", u+"/v1/conversations", strings.NewReader(`{"id":"third"}`))
	req.Header.Set("Authorization", "Bearer "+acme)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "" || e.Error.Type != "insufficient_quota" || e.Error.Code != "quota_exceeded" ||
		!strings.Contains(e.Error.Message, `tenant "acme" has 2 conversations and may keep 2 (limits.max_conversations)`) {
		t.Fatalf("the third create: %d %+v", resp.StatusCode, e)
	}
	if code, _ := authedDo(t, "GET", u+"/v1/conversations/third", acme, ""); code != 404 {
		t.Fatalf("a refused create made a conversation: %d", code)
	}

	// Turns, then a sweep by hand: trimmed to the newest 2, archived first.
	for _, m := range []string{"one", "two"} {
		if code, body := authedDo(t, "POST", u+"/v1/conversations/"+ids[0]+"/messages", acme, `{"content":"`+m+`"}`); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	code, out, errOut := a.cli(t, "retention", "sweep")
	if code != 0 || !strings.Contains(out, "1 trimmed, 1 archived") {
		t.Fatalf("sweep: %d %s %s", code, out, errOut)
	}
	_, body = authedDo(t, "GET", u+"/v1/conversations/"+ids[0], acme, "")
	var got convBody
	json.Unmarshal([]byte(body), &got)
	if len(got.Messages) != 3 || got.Messages[0].Role != "system" || got.Messages[1].Content != "two" {
		t.Fatalf("after the sweep: %s", body)
	}
	arch := filepath.Join(a.ws, "archive", "acme", time.Now().UTC().Format("2006-01-02")+".jsonl")
	b, err := os.ReadFile(arch)
	if err != nil || !strings.Contains(string(b), `"reason":"trimmed"`) || !strings.Contains(string(b), `"content":"one"`) || strings.Contains(string(b), `"content":"two"`) {
		t.Fatalf("archive %s: %v", b, err)
	}
	if n := testutil.CheckPrivate(t, filepath.Join(a.ws, "archive")); n != 1 {
		t.Fatalf("%d archive files", n)
	}

	// A delete frees a slot.
	if code, _ := authedDo(t, "DELETE", u+"/v1/conversations/"+ids[1], acme, ""); code != 200 {
		t.Fatal(code)
	}
	if code, body := authedDo(t, "POST", u+"/v1/conversations", acme, `{}`); code != 201 {
		t.Fatalf("after a delete: %d %s", code, body)
	}

	// tiny talks until its conversations hold 300 bytes; the turn past it
	// is refused and stores nothing.
	code, body = authedDo(t, "POST", u+"/v1/conversations", tiny, `{"id":"c"}`)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	refused := false
	for i := 0; i < 20 && !refused; i++ {
		code, body = authedDo(t, "POST", u+"/v1/conversations/c/messages", tiny, `{"content":"a message of some length"}`)
		switch {
		case code == 429:
			refused = strings.Contains(body, "limits.max_stored_bytes") && strings.Contains(body, "insufficient_quota")
			if !refused {
				t.Fatal(body)
			}
		case code != 200:
			t.Fatalf("%d %s", code, body)
		}
	}
	if !refused {
		t.Fatal("tiny was never refused")
	}
	_, before := authedDo(t, "GET", u+"/v1/conversations/c", tiny, "")
	authedDo(t, "POST", u+"/v1/conversations/c/messages", tiny, `{"content":"more"}`)
	if _, after := authedDo(t, "GET", u+"/v1/conversations/c", tiny, ""); after != before {
		t.Fatal("a refused turn changed the conversation")
	}
	if code, body := authedDo(t, "POST", u+"/v1/conversations", tiny, `{}`); code != 429 {
		t.Fatalf("a create past the byte quota: %d %s", code, body)
	}
	if code, body := authedDo(t, "GET", u+"/metrics", a.op, ""); code != 200 || !strings.Contains(body, `moltbot_quota_refused_total{limit="max_conversations"} 1`) ||
		!strings.Contains(body, "moltbot_retention_trimmed_total 1") || !strings.Contains(body, "moltbot_retention_archived_total 1") {
		t.Fatalf("metrics: %d", code)
	}
}

// A single-user node (no auth: every caller is default) with default
// listed in the file: its quota and retention apply.
func TestDefaultTenantRetention(t *testing.T) {
	cfg, err := configs.Parse("m.yaml", []byte(`server: {port: 0}
providers: [{name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}]
models: {primary: sim/sim}
tenants: [{id: default, limits: {max_conversations: 1}, retention: {messages: 2}}]
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: t.TempDir()}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	waitReady(t, n.URL())
	code, body := post(t, n.URL()+"/v1/conversations", `{"id":"c"}`)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	if code, body := post(t, n.URL()+"/v1/conversations", `{}`); code != 429 || !strings.Contains(string(body), "limits.max_conversations") {
		t.Fatalf("%d %s", code, body)
	}
	for i := 0; i < 2; i++ {
		if code, body := post(t, n.URL()+"/v1/conversations/c/messages", `{"content":"hi"}`); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	if code, body := post(t, n.URL()+"/v1/admin/retention/sweep", `{}`); code != 200 || !strings.Contains(string(body), `"trimmed":1`) {
		t.Fatalf("%d %s", code, body)
	}
	if got := getConv(t, n.URL(), "c"); len(got.Messages) != 2 || got.Messages[0].Role != "user" {
		t.Fatalf("after the sweep: %+v", got.Messages)
	}
}
