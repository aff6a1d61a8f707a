package manage

import (
	"github.com/moltbot/moltbot"
)

// Bots is the config's bots as the management service reads them
// (*skills.Bots).
type Bots interface {
	moltbot.Bots
	// List returns tenant's bots ("": every tenant's), by tenant then name.
	List(tenant string) []*moltbot.Bot
}

// BotInfo is a bot as the management API shows it.
type BotInfo struct {
	Name           string   `json:"name"`
	Tenant         string   `json:"tenant"`
	System         string   `json:"system,omitempty"`
	Chain          []string `json:"chain,omitempty"` // empty: the node's chain
	Skills         []string `json:"skills"`
	KnowledgeBases []string `json:"knowledge_bases,omitempty"`
	Guards         []string `json:"guards,omitempty"`
	Intents        []string `json:"intents,omitempty"` // empty: every intent of skills/intents.yaml
}

func botInfo(b *moltbot.Bot) BotInfo {
	i := BotInfo{Name: b.Name, Tenant: b.Tenant, System: b.System, Skills: append([]string{}, b.Skills...),
		KnowledgeBases: b.KnowledgeBases, Guards: b.Guards, Intents: b.Intents}
	for _, r := range b.Chain {
		i.Chain = append(i.Chain, r.String())
	}
	return i
}

// Bots lists the bots of tenant ("": p's, or every tenant's for the
// operator); an admin sees its tenant's only, and a bot-bound credential
// none but its own.
func (s *Service) Bots(p *moltbot.Principal, tenant string) ([]BotInfo, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	out := []BotInfo{}
	t, ok := scopeTenant(p, tenant)
	if !ok || s.cfg.Bots == nil {
		return out, nil
	}
	for _, b := range s.cfg.Bots.List(t) {
		out = append(out, botInfo(b))
	}
	return out, nil
}

// Bot returns one bot of p's tenant (any tenant's for the operator).
func (s *Service) Bot(p *moltbot.Principal, name string) (*BotInfo, error) {
	list, err := s.Bots(p, "")
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i], nil
		}
	}
	return nil, moltbot.Errorf(moltbot.ENotFound, "bot %q not found", name)
}

// checkBot refuses to bind a key of tenant to bot unless the bot is
// configured for that tenant: a key cannot speak as another tenant's bot.
func (s *Service) checkBot(tenant, bot string) error {
	var b *moltbot.Bot
	if s.cfg.Bots != nil {
		b = s.cfg.Bots.Bot(tenant, bot)
	}
	if b == nil {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "bot", Message: "bot " + quote(bot) + " is not configured for tenant " + quote(tenant) + " (bots: in the config file; moltbot bots list)"}
	}
	return nil
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + s + `"`
}
