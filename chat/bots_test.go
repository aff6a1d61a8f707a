package chat

import (
	"context"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

// botMap is a fixed set of bots, by tenant then name.
type botMap map[string]map[string]*moltbot.Bot

func (m botMap) Bot(tenant, name string) *moltbot.Bot { return m[tenant][name] }

func testBots() botMap {
	return botMap{"a": {
		"support": {Name: "support", Tenant: "a", System: "be kind", Chain: []moltbot.ModelRef{{Provider: "p", Model: "m"}}},
		"sales":   {Name: "sales", Tenant: "a"},
	}, "b": {"rival": {Name: "rival", Tenant: "b"}}}
}

func asBot(bot string) *moltbot.Principal {
	p := tenantA()
	p.Bot = bot
	return p
}

// A bot's caller: its persona first, its chain only, the tenant's
// allow-list still, its own conversations only.
func TestBotAdmission(t *testing.T) {
	rt, pol := newFake(), &fakePolicy{calls: -1, models: map[string][]string{}}
	s := New(rt, pol, Config{Bots: testBots()})
	ctx := context.Background()
	hello := []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}
	complete := func(p *moltbot.Principal, model string) error {
		st, err := s.Complete(ctx, p, CompletionRequest{Messages: hello, Options: moltbot.ChatOptions{Model: model}})
		if err == nil {
			_, err = st.Wait()
		}
		return err
	}
	if err := complete(asBot("support"), ""); err != nil {
		t.Fatal(err)
	}
	if m := rt.completed; len(m) != 2 || m[0].Role != moltbot.RoleSystem || m[0].Content != "be kind" || m[1].Content != "hi" {
		t.Fatalf("the persona first: %+v", m)
	}
	if err := complete(asBot("sales"), ""); err != nil || len(rt.completed) != 1 {
		t.Fatalf("a bot without a persona: %v %+v", err, rt.completed)
	}
	for _, tc := range []struct {
		bot, model, code, msg string
	}{
		{"support", "p/big", moltbot.EForbidden, `model "p/big" is not in the chain of bot "support" (p/m)`},
		{"support", "m", moltbot.EForbidden, `model "m" is not in the chain of bot "support"`},
		{"rival", "", moltbot.EForbidden, `bot "rival", which is not configured for tenant "a"`},
		{"nope", "", moltbot.EForbidden, `bot "nope"`},
	} {
		if err := complete(asBot(tc.bot), tc.model); code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("bot %s, model %q: %v", tc.bot, tc.model, err)
		}
	}
	if err := complete(asBot("support"), "p/m"); err != nil {
		t.Errorf("the bot's own model: %v", err)
	}
	// The tenant's allow-list: a bot narrows it, never widens it.
	pol.models["a"] = []string{"p/big"}
	if err := complete(asBot("support"), ""); code(err) != moltbot.EForbidden || !strings.Contains(err.Error(), `bot "support"'s chain names model "p/m"`) {
		t.Errorf("a bot's chain outside the allow-list: %v", err)
	}
	pol.models["a"] = []string{"p/m"}
	if err := complete(asBot("support"), ""); err != nil {
		t.Errorf("a bot's chain inside the allow-list (which lacks moltbot): %v", err)
	}
	pol.models["a"] = nil

	// Conversations: the bot's, with its persona; never the caller's bot.
	if _, err := s.Create(ctx, asBot("support"), moltbot.NewConversation{ID: "c1", System: "x"}); code(err) != moltbot.EInvalid || !strings.Contains(err.Error(), "persona") {
		t.Errorf("a system of its own: %v", err)
	}
	c, err := s.Create(ctx, asBot("support"), moltbot.NewConversation{ID: "c1"})
	if err != nil || c.Bot != "support" || c.System != "be kind" {
		t.Fatalf("create: %+v %v", c, err)
	}
	if c, err := s.Create(ctx, tenantA(), moltbot.NewConversation{ID: "c2", Bot: "support"}); err != nil || c.Bot != "" {
		t.Fatalf("an unbound caller names a bot: %+v %v", c, err)
	}
	turn := func(p *moltbot.Principal, id string) error {
		st, err := s.Turn(ctx, p, TurnRequest{Conversation: id, Input: moltbot.TurnInput{Content: "hi"}})
		if err == nil {
			_, err = st.Wait()
		}
		return err
	}
	if err := turn(asBot("support"), "c1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} { // another bot's, and one of no bot
		if err := turn(asBot("sales"), id); code(err) != moltbot.ENotFound {
			t.Errorf("sales turns %s: %v", id, err)
		}
		if _, err := s.Get(ctx, asBot("sales"), id); code(err) != moltbot.ENotFound {
			t.Errorf("sales reads %s: %v", id, err)
		}
		if err := s.Delete(ctx, asBot("sales"), id); code(err) != moltbot.ENotFound {
			t.Errorf("sales deletes %s: %v", id, err)
		}
	}
	if err := turn(tenantA(), "c1"); err != nil {
		t.Errorf("the tenant's unbound key in the bot's conversation: %v", err)
	}
	// A user-bound caller of a bot (a channel's user) still sees its own only.
	u := asBot("support")
	u.User, u.UserBound = "u1", true
	if err := turn(u, "c1"); code(err) != moltbot.ENotFound {
		t.Errorf("a user of the bot in a conversation of no user: %v", err)
	}
	// /v1/models: the bot's chain.
	var ids []string
	for _, m := range s.Models(asBot("support")) {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "moltbot,p/m" {
		t.Errorf("the bot's models: %v", ids)
	}
	if m := s.Models(asBot("nope")); len(m) != 0 {
		t.Errorf("the models of a bot not configured: %v", m)
	}
}
