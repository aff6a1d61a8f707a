package configs

import (
	"fmt"
	"slices"

	"github.com/moltbot/moltbot"
)

// BotConfig is a bot of the file (bots:): a tenant's persona, model chain
// and what it may use. API keys (`moltbot keys create --bot NAME`), and
// later channels and the console, bind to a bot by its name, unique in the
// file; a key of another tenant cannot bind to it.
type BotConfig struct {
	Name string `yaml:"name"`
	// Tenant owns the bot (default: default).
	Tenant string `yaml:"tenant"`
	// System is the persona: the system prompt of the bot's conversations.
	System string `yaml:"system"`
	// Models is the bot's chain, written as models: is (primary, then
	// fallback); bare names resolve as they do there. No primary: the
	// node's chain.
	Models BotModels `yaml:"models"`
	// Skills names what the bot may run (JS skills by their name, presets
	// and flows as they come); none: no skills.
	Skills []string `yaml:"skills"`
	// KnowledgeBases and Guards name the knowledge bases and guard presets
	// of the bot (kept for the features that use them).
	KnowledgeBases []string `yaml:"knowledge_bases"`
	Guards         []string `yaml:"guards"`
	// Intents names the intents of skills/intents.yaml the bot's turns
	// are recognized among; none: all of them.
	Intents []string `yaml:"intents"`
}

// BotModels is a bot's model chain.
type BotModels struct {
	Primary  string   `yaml:"primary"`
	Fallback []string `yaml:"fallback"`
}

// BotProfiles returns the file's bots, chains resolved (ResolveModel); call it
// on a validated config.
func (c *Config) BotProfiles() []*moltbot.Bot {
	out := make([]*moltbot.Bot, 0, len(c.Bots))
	for _, b := range c.Bots {
		bot := &moltbot.Bot{Name: b.Name, Tenant: b.Tenant, System: b.System, Skills: slices.Clone(b.Skills),
			KnowledgeBases: slices.Clone(b.KnowledgeBases), Guards: slices.Clone(b.Guards),
			Intents: slices.Clone(b.Intents)}
		if bot.Tenant == "" {
			bot.Tenant = moltbot.DefaultTenant
		}
		if b.Models.Primary != "" {
			for _, s := range append([]string{b.Models.Primary}, b.Models.Fallback...) {
				if r, err := c.ResolveModel(s); err == nil {
					bot.Chain = append(bot.Chain, r)
				}
			}
		}
		out = append(out, bot)
	}
	return out
}

// validateBots checks bots: (checkRef checks a model of a chain).
func (c *Config) validateBots(checkRef func(path, s string), add func(path, format string, args ...any)) {
	names := map[string]bool{}
	for i, b := range c.Bots {
		at := func(k string) string { return fmt.Sprintf("bots[%d].%s", i, k) }
		switch {
		case b.Name == "":
			add(at("name"), "is required")
		case !moltbot.ValidBotName(b.Name):
			add(at("name"), moltbot.BotNameRule+", got %q", b.Name)
		case names[b.Name]:
			add(at("name"), "bot %q is defined twice (a bot's name is unique in the file, whatever its tenant)", b.Name)
		}
		names[b.Name] = true
		tenant := b.Tenant
		if tenant == "" {
			tenant = moltbot.DefaultTenant
		} else if !moltbot.ValidTenantID(tenant) {
			add(at("tenant"), moltbot.TenantIDRule+", got %q", tenant)
		}
		if max := int(c.Conversations.MaxMessageBytes); max > 0 && len(b.System) > max {
			add(at("system"), "is %d bytes; at most conversations.max_message_bytes (%s)", len(b.System), c.Conversations.MaxMessageBytes)
		}
		if b.Models.Primary == "" && len(b.Models.Fallback) > 0 {
			add(at("models.primary"), "is required with models.fallback (no primary: the node's chain)")
		}
		var allowed []string // the tenant's allow-list, when the file defines the tenant
		for _, t := range c.Tenants {
			if t.ID == tenant {
				allowed = t.Models
			}
		}
		seen := map[string]bool{}
		chain := []string{}
		if b.Models.Primary != "" {
			chain = append(chain, b.Models.Primary)
		}
		chain = append(chain, b.Models.Fallback...)
		for j, s := range chain {
			path := at("models.primary")
			if j > 0 {
				path = at(fmt.Sprintf("models.fallback[%d]", j-1))
			}
			checkRef(path, s)
			r, err := c.ResolveModel(s)
			if err != nil {
				continue
			}
			if seen[r.String()] {
				add(path, "%q is already in the bot's chain", s)
			}
			seen[r.String()] = true
			if len(allowed) > 0 && !modelListed(allowed, r.String()) {
				add(path, "tenant %q may not use %s (its models: %v); a bot only narrows what its tenant may do", tenant, r, allowed)
			}
		}
		for _, list := range []struct {
			key   string
			names []string
		}{{"skills", b.Skills}, {"knowledge_bases", b.KnowledgeBases}, {"guards", b.Guards}, {"intents", b.Intents}} {
			dup := map[string]bool{}
			for j, n := range list.names {
				path := at(fmt.Sprintf("%s[%d]", list.key, j))
				switch {
				case n == "" || len(n) > 64:
					add(path, "want a name of 1 to 64 bytes, got %q", n)
				case dup[n]:
					add(path, "%q is listed twice", n)
				}
				dup[n] = true
			}
		}
	}
}

// modelListed reports whether an allow-list holds model (as auth's
// ModelAllowed reads it: a name, or provider/* for all of a provider's).
func modelListed(list []string, model string) bool {
	for _, m := range list {
		if m == model || len(m) > 2 && m[len(m)-2:] == "/*" && len(model) > len(m)-1 && model[:len(m)-1] == m[:len(m)-1] {
			return true
		}
	}
	return false
}
