package moltbot

import (
	"slices"
	"strings"
)

// Bot is a profile a credential or a channel speaks as: a tenant's persona
// (its system prompt), its model chain, and what it may use (skills,
// knowledge bases, guards). Bots come from the config file (bots:) and
// are the same on every node of a cluster. A binding only narrows what a
// credential may do: the tenant's allow-lists still apply.
type Bot struct {
	Name   string
	Tenant string
	// System is the persona: the system prompt of every conversation the
	// bot starts (recorded with the conversation, so a later change of the
	// persona applies to new conversations only) and the first system
	// message of its stateless completions.
	System string
	// Chain is the bot's model chain, primary first (nil: the node's
	// configured chain). A request may name one of its models, no other.
	Chain []ModelRef
	// Skills names what the bot may run (JS skills, and presets and flows
	// as they come); empty: none. A turn without a bot runs every skill.
	Skills []string
	// KnowledgeBases and Guards name the knowledge bases the bot searches
	// and the guard presets that watch its turns.
	KnowledgeBases []string
	Guards         []string
	// Intents names the intents (skills/intents.yaml) the bot's turns are
	// recognized among; empty: all of them.
	Intents []string
}

// HasSkill reports whether b may run the skill named name. A nil bot (a
// turn of no bot) may run every skill.
func (b *Bot) HasSkill(name string) bool {
	return b == nil || slices.Contains(b.Skills, name)
}

// Allows reports whether a request of b's may name model: "" and
// ChainModel (the bot's chain) always; otherwise a model of its chain,
// written as provider/model (a bare name is refused: the router could
// resolve it to another provider's model). A bot without a chain of its
// own allows what the node allows (the caller checks the tenant's
// allow-list either way).
func (b *Bot) Allows(model string) bool {
	if model == "" || model == ChainModel || len(b.Chain) == 0 {
		return true
	}
	for _, r := range b.Chain {
		if r.String() == model {
			return true
		}
	}
	return false
}

// ChainString is the bot's chain as "a, b" (for messages), or ChainModel.
func (b *Bot) ChainString() string {
	if len(b.Chain) == 0 {
		return ChainModel
	}
	s := make([]string, len(b.Chain))
	for i, r := range b.Chain {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

// Bots finds a tenant's bots (the config's, swapped whole on a reload).
type Bots interface {
	// Bot returns the bot named name of tenant (a tenant id, not a
	// space), or nil.
	Bot(tenant, name string) *Bot
}

// BotNameRule describes ValidBotName, for error messages.
const BotNameRule = TenantIDRule

// ValidBotName reports whether s may name a bot: what a tenant id may be.
func ValidBotName(s string) bool { return ValidTenantID(s) }

// TenantOfSpace is the tenant id of a space: the space without its
// incarnation ("acme:<inc>" -> "acme").
func TenantOfSpace(space string) string {
	if i := strings.IndexByte(space, ':'); i >= 0 {
		return space[:i]
	}
	return space
}
