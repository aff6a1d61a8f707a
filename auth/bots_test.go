package auth

import (
	"strings"
	"testing"
	"time"
)

// A key bound to a bot: its principal speaks as the bot, so do the tokens
// issued to it (read from the key on every use) and its successor after a
// rotation; a bot's key has the chat scope; a replicated record that
// breaks those rules is refused.
func TestBotKeys(t *testing.T) {
	s, c := newService(t, Config{Tenants: []Tenant{{ID: "acme"}}, TokenTTL: 10 * time.Minute, SigningRotate: time.Hour})
	key, info, err := s.CreateBotKey("acme", "widget", ScopeChat, 0, "support")
	if err != nil || info.Bot != "support" || info.Kind != KindBot {
		t.Fatalf("create: %+v %v", info, err)
	}
	p, e := s.Authenticate(req(key))
	if e != nil || p.Bot != "support" || p.Tenant != "acme" || p.Admin() {
		t.Fatalf("the key's principal: %+v %v", p, e)
	}
	tok, err := s.ClientCredentials("client_credentials", info.ID, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if p, e := s.Authenticate(req(tok.AccessToken)); e != nil || p.Bot != "support" {
		t.Fatalf("a token of the bot's key: %+v %v", p, e)
	}
	if _, err := s.ClientCredentials("client_credentials", info.ID, key, "admin"); err == nil {
		t.Error("a bot's key got an admin token")
	}
	plain, pinfo, _ := s.CreateKey("acme", "svc", ScopeChat, 0)
	if p, _ := s.Authenticate(req(plain)); p.Bot != "" || pinfo.Bot != "" {
		t.Errorf("a key of no bot: %+v", p)
	}
	next, ninfo, err := s.RotateKey("acme", info.ID, 0)
	if err != nil || ninfo.Bot != "support" {
		t.Fatalf("rotate: %+v %v", ninfo, err)
	}
	if p, e := s.Authenticate(req(next)); e != nil || p.Bot != "support" {
		t.Fatalf("the successor: %+v %v", p, e)
	}
	for _, bad := range []struct {
		scope Scope
		bot   string
		want  string
	}{
		{ScopeAdmin, "support", "chat scope"},
		{ScopeChat, "a/b", `bot "a/b"`},
		{ScopeChat, strings.Repeat("b", 65), "a bot's name"},
	} {
		if _, _, err := s.CreateBotKey("acme", "", bad.scope, 0, bad.bot); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s %q: %v", bad.scope, bad.bot, err)
		}
	}
	k, _ := s.getKey(info.ID)
	for _, tc := range []struct {
		name   string
		change func(k *Key)
	}{
		{"admin", func(k *Key) { k.Scope = ScopeAdmin }},
		{"bad name", func(k *Key) { k.Bot = "a b" }},
		{"ollama", func(k *Key) { k.Kind = KindOllama }},
		{"an API key's kind", func(k *Key) { k.Kind = "" }},
		{"no bot", func(k *Key) { k.Bot = "" }},
	} {
		bad := *k
		tc.change(&bad)
		if err := bad.check(c.now()); err == nil || !strings.Contains(err.Error(), "bot") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if err := k.check(c.now()); err != nil {
		t.Errorf("the bot's key itself: %v", err)
	}
}
