package actors

import (
	"context"
	"testing"

	"github.com/moltbot/moltbot"
)

// modelStage answers with what the model it names (model) says: a skill's
// callModel with an alias a models: map resolved.
type modelStage struct{ model string }

func (s modelStage) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	return t.Model(ctx, []moltbot.Message{{Role: moltbot.RoleUser, Content: "y"}}, moltbot.ChatOptions{Model: s.model}, nil)
}

// A stage's own model call is held to the tenant's allow-list, as the
// turn's request is: a skill cannot reach a model its tenant may not use.
func TestStageModelCallAllowList(t *testing.T) {
	allowed := func(tenant, model string) bool { return tenant != "acme" || model == "a/m" }
	for _, tc := range []struct {
		tenant, model string
		code          string // "" ok
	}{
		{"acme", "a/m", ""},
		{"acme", "", ""},                      // the turn's chain
		{"acme", "b/m", moltbot.EForbidden},   // not on acme's list
		{"acme", "nosuch", moltbot.ENotFound}, // unknown: the skill falls back to the chain
		{"other", "b/m", ""},
	} {
		e := start(t, []string{"a/m", "b/m"}, []ProviderSpec{spec("a", &fake{chat: echo}), spec("b", &fake{chat: echo})}, func(c *Config) {
			c.Before = []BeforeModel{modelStage{tc.model}}
			c.ModelAllowed = allowed
		})
		ctx := moltbot.WithPrincipal(ctx(t), &moltbot.Principal{Tenant: tc.tenant, Space: tc.tenant})
		_, err := e.rt.Complete(ctx, oneMsg, moltbot.ChatOptions{}, nil)
		if moltbot.ErrorCode(err) != tc.code && !(tc.code == "" && err == nil) {
			t.Errorf("tenant %s, model %q: %v, want %q", tc.tenant, tc.model, err, tc.code)
		}
	}
}

// In a bot's turn, "moltbot" is the bot's chain: allowed when the bot's
// models are, whatever the node's chain.
func TestStageModelCallBotChain(t *testing.T) {
	allowed := func(tenant, model string) bool { return model == "b/m" }
	e := start(t, []string{"a/m", "b/m"}, []ProviderSpec{spec("a", &fake{chat: echo}), spec("b", &fake{chat: echo})}, func(c *Config) {
		c.Before = []BeforeModel{modelStage{moltbot.ChainModel}}
		c.ModelAllowed = allowed
	})
	bot := &moltbot.Bot{Name: "b", Chain: []moltbot.ModelRef{{Provider: "b", Model: "m"}}}
	tn := &moltbot.Turn{Tenant: "acme", Bot: bot, Chain: bot.Chain, Messages: oneMsg}
	if _, err := e.rt.pipe.Chat(ctx(t), tn, nil); err != nil {
		t.Fatalf("the bot's chain: %v", err)
	}
}
