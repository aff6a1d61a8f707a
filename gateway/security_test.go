package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/auth"
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
