package gateway

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/audit"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// newKey makes a key through the admin API as who and names it name.
func (e *authEnv) newKey(t *testing.T, who, name, body string) string {
	t.Helper()
	code, b, _ := e.do(t, who, "POST", "/v1/admin/keys", body)
	var k struct{ Key string }
	json.Unmarshal([]byte(b), &k)
	if code != 201 || k.Key == "" {
		t.Fatalf("key %s: %d %s", name, code, b)
	}
	e.keys[name] = k.Key
	return k.Key
}

// Issue #10, finding 4: a tenant deleted and made again with the same id
// starts empty: the old one's conversations answer exactly as missing ones,
// its keys are dead.
func TestRecreatedTenantStartsEmpty(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	if code, b, _ := e.do(t, "op", "POST", "/v1/admin/tenants", `{"id":"acme"}`); code != 201 {
		t.Fatalf("%d %s", code, b)
	}
	e.newKey(t, "op", "acme1", `{"tenant":"acme","scope":"admin"}`)
	if code, b, _ := e.do(t, "acme1", "POST", "/v1/conversations", `{"id":"plans","system":"old acme only"}`); code != 201 {
		t.Fatalf("%d %s", code, b)
	}
	if code, b, _ := e.do(t, "op", "DELETE", "/v1/admin/tenants/acme", ""); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	if code, b, _ := e.do(t, "op", "POST", "/v1/admin/tenants", `{"id":"acme"}`); code != 201 {
		t.Fatalf("%d %s", code, b)
	}
	e.newKey(t, "op", "acme2", `{"tenant":"acme","scope":"admin"}`)
	if code, _, _ := e.do(t, "acme1", "GET", "/v1/models", ""); code != 401 {
		t.Fatalf("the old tenant's key: %d", code)
	}
	// The same bytes as for an id that never existed (the id is in the
	// message, so both ask for the same id: first the old one's, then one
	// deleted for good).
	code, got, _ := e.do(t, "acme2", "GET", "/v1/conversations/plans", "")
	if code != 404 || strings.Contains(got, "old acme") {
		t.Fatalf("the new tenant reads the old one's conversation: %d %s", code, got)
	}
	if code, b, _ := e.do(t, "acme2", "POST", "/v1/conversations/plans/messages", `{"content":"hi"}`); code != 404 {
		t.Fatalf("the new tenant talks in the old one's conversation: %d %s", code, b)
	}
	code2, want, _ := e.do(t, "chatB", "GET", "/v1/conversations/plans", "")
	if code2 != 404 || got != want {
		t.Fatalf("not the bytes of a missing conversation:\n%s\n%s", got, want)
	}
	// The new tenant can use the id for its own conversation.
	if code, b, _ := e.do(t, "acme2", "POST", "/v1/conversations", `{"id":"plans"}`); code != 201 || strings.Contains(b, "old acme") {
		t.Fatalf("%d %s", code, b)
	}
}

// Issue #10, findings 3 and 8 end to end: "grace":"0s" stops the old key at
// once (it meant 24 h), and so every token the key got; a second rotation
// is 409 naming the successor; a key in its grace cannot rotate itself.
func TestRotateGraceZeroOverHTTP(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	k := e.newKey(t, "adminA", "ops", `{"scope":"admin"}`)
	id := strings.Split(k, "_")[1]
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {k}}
	resp, err := http.Post(e.url+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	var tok auth.Token
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	e.keys["tok"] = tok.AccessToken
	if code, _, _ := e.do(t, "tok", "GET", "/v1/admin/keys", ""); code != 200 {
		t.Fatal("the token cannot list keys")
	}
	code, b, _ := e.do(t, "adminA", "POST", "/v1/admin/keys/"+id+"/rotate", `{"grace":"0s"}`)
	var next struct{ ID, Key string }
	json.Unmarshal([]byte(b), &next)
	if code != 201 || next.Key == "" {
		t.Fatalf("rotate: %d %s", code, b)
	}
	for _, who := range []string{"ops", "tok"} {
		if code, b, _ := e.do(t, who, "POST", "/v1/admin/keys", `{"scope":"admin"}`); code != 401 {
			t.Errorf("%s after a rotation with grace 0s: %d %s", who, code, b)
		}
	}
	code, b, _ = e.do(t, "adminA", "POST", "/v1/admin/keys/"+id+"/rotate", `{}`)
	if code != 409 || !strings.Contains(b, next.ID) {
		t.Fatalf("second rotation: %d %s (want 409 naming %s)", code, b, next.ID)
	}
	// Self-rotation, then again from the key in grace.
	e.keys["next"] = next.Key
	code, b, _ = e.do(t, "next", "POST", "/v1/auth/rotate", `{}`)
	var third struct{ ID string }
	json.Unmarshal([]byte(b), &third)
	if code != 201 {
		t.Fatalf("self rotation: %d %s", code, b)
	}
	if code, b, _ := e.do(t, "next", "POST", "/v1/auth/rotate", `{}`); code != 409 || !strings.Contains(b, third.ID) {
		t.Fatalf("a key in its grace rotated itself again: %d %s", code, b)
	}
	if code, b, _ := e.do(t, "adminA", "POST", "/v1/admin/keys/"+third.ID+"/rotate", `{"grace":"-1s"}`); code != 400 {
		t.Fatalf("negative grace: %d %s", code, b)
	}
}

// setupAudited is setupAuth with an audit log on the same store.
func setupAudited(t *testing.T) (*authEnv, *storage.Memory) {
	t.Helper()
	store := storage.NewMemory()
	met := metrics.New("test")
	as, err := auth.New(auth.Config{Enabled: true, Tenants: []auth.Tenant{{ID: "a"}, {ID: "b"}}}, store)
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.New(store, audit.Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 4, Seed: 1}),
		MaxInFlight: 16, Timeout: 5 * time.Second}}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: store, Metrics: met,
		HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newServer(rt, as, 0, Config{Metrics: met, Version: "test", Audit: al}))
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
		as.Close()
	})
	e := &authEnv{url: srv.URL, auth: as, keys: map[string]string{}}
	for name, k := range map[string][2]string{"op": {"default", "admin"}, "chatA": {"a", "chat"}, "adminA": {"a", "admin"}} {
		key, _, err := as.CreateKey(k[0], name, auth.Scope(k[1]), 0)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[name] = key
	}
	return e, store
}

// Issue #10, finding 12: admin actions leave a trace: who (tenant, key id,
// method), what (action, target), when, from where, how it ended; refused
// attempts too; never a secret; the operator reads it, nobody else.
func TestAuditLog(t *testing.T) {
	e, store := setupAudited(t)
	opID := strings.Split(e.keys["op"], "_")[1]
	adminA := strings.Split(e.keys["adminA"], "_")[1]
	steps := []struct {
		who, method, path, body string
		code                    int
	}{
		{"op", "POST", "/v1/admin/tenants", `{"id":"acme"}`, 201},
		{"adminA", "POST", "/v1/admin/tenants", `{"id":"evil"}`, 403},
		{"chatA", "POST", "/v1/admin/keys", `{"scope":"admin"}`, 403},
		{"op", "POST", "/v1/admin/tenants", `{"id":"acme"}`, 409},
	}
	for _, s := range steps {
		if code, b, _ := e.do(t, s.who, s.method, s.path, s.body); code != s.code {
			t.Fatalf("%s %s %s: %d %s", s.who, s.method, s.path, code, b)
		}
	}
	made := e.newKey(t, "adminA", "ci", `{"name":"ci","scope":"chat"}`)
	madeID := strings.Split(made, "_")[1]
	code, b, _ := e.do(t, "adminA", "POST", "/v1/admin/keys/"+madeID+"/rotate", `{"grace":"1m"}`)
	var next struct{ ID, Key string }
	json.Unmarshal([]byte(b), &next)
	if code != 201 {
		t.Fatalf("%d %s", code, b)
	}
	e.keys["next"] = next.Key
	for _, s := range []struct{ who, method, path string }{
		{"op", "DELETE", "/v1/admin/keys/" + next.ID}, {"op", "DELETE", "/v1/admin/tenants/acme"}, {"op", "POST", "/v1/admin/keys/reload"},
	} {
		e.do(t, s.who, s.method, s.path, "")
	}
	code, body, _ := e.do(t, "op", "GET", "/v1/admin/audit?limit=1000", "")
	var page struct {
		Events []audit.Event `json:"events"`
		More   bool          `json:"more"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
		t.Fatalf("audit: %d %s", code, body)
	}
	type row struct{ actor, action, target, outcome string }
	var got []row
	for _, ev := range page.Events {
		got = append(got, row{ev.Actor.KeyID, ev.Action, ev.Target, ev.Outcome})
		if ev.Remote != "127.0.0.1" || ev.Time.IsZero() || ev.Actor.Method != "key" || ev.Node != "n1" {
			t.Errorf("event %+v", ev)
		}
	}
	want := []row{
		{opID, "tenant.create", "tenant:acme", "ok"},
		{adminA, "tenant.create", "", "denied"},
		{strings.Split(e.keys["chatA"], "_")[1], "key.create", "", "denied"},
		{opID, "tenant.create", "tenant:acme", "conflict"},
		{adminA, "key.create", "key:" + madeID, "ok"},
		{adminA, "key.rotate", "key:" + madeID, "ok"},
		{opID, "key.revoke", "key:" + next.ID, "ok"},
		{opID, "tenant.delete", "tenant:acme", "ok"},
		{opID, "config.reload", "config", "invalid"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("audit log:\n got %v\nwant %v", got, want)
	}
	if !strings.Contains(page.Events[5].Detail, "successor="+next.ID) || page.Events[0].Tenant != "acme" {
		t.Errorf("details: %+v", page.Events)
	}
	// No secret anywhere in the log: keys, or their hashes.
	var stored strings.Builder
	store.ScanRaw("audit/", func(_ string, v []byte) bool { stored.Write(v); return true })
	for name, k := range e.keys {
		secret := k[12:]
		if strings.Contains(body, secret) || strings.Contains(stored.String(), secret) {
			t.Errorf("the secret of %s is in the audit log", name)
		}
	}
	for _, k := range []string{"keys/" + madeID, "keys/" + opID} {
		raw, _, _ := store.GetRaw(k)
		var rec struct{ Hash []byte }
		json.Unmarshal(raw, &rec)
		if len(rec.Hash) == 0 || strings.Contains(stored.String(), base64.StdEncoding.EncodeToString(rec.Hash)) ||
			strings.Contains(stored.String(), hex.EncodeToString(rec.Hash)) {
			t.Errorf("a key hash is in the audit log (%s)", k)
		}
	}
	// The operator's only; since and limit.
	for _, who := range []string{"adminA", "chatA"} {
		if code, _, _ := e.do(t, who, "GET", "/v1/admin/audit", ""); code != 403 {
			t.Errorf("%s read the audit log: %d", who, code)
		}
	}
	since := page.Events[7].Time.Format(time.RFC3339Nano)
	code, body, _ = e.do(t, "op", "GET", "/v1/admin/audit?limit=1&since="+url.QueryEscape(since), "")
	if code != 200 || !strings.Contains(body, `"tenant.delete"`) || !strings.Contains(body, `"more":true`) || !strings.Contains(body, `"next"`) {
		t.Fatalf("since: %d %s", code, body)
	}
	for _, bad := range []string{"since=yesterday", "limit=0", "limit=5000", "limit=x"} {
		if code, _, _ := e.do(t, "op", "GET", "/v1/admin/audit?"+bad, ""); code != 400 {
			t.Errorf("%s: %d", bad, code)
		}
	}
}

// FuzzAuditQuery: the audit query parser takes any query string without
// panicking and yields a bounded limit.
func FuzzAuditQuery(f *testing.F) {
	for _, s := range []string{"", "since=2026-03-01T12:00:00Z&limit=10", "limit=-1", "since=%zz", "limit=1000", "limit=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseAuditQuery(v)
		if err == nil && (q.Limit < 0 || q.Limit > audit.MaxLimit) {
			t.Fatalf("%q: limit %d", raw, q.Limit)
		}
	})
}
