package chat

import (
	"fmt"

	"github.com/moltbot/moltbot"
)

// Bots: a principal bound to a bot (Principal.Bot: a key made with
// --bot, a token of such a key, a channel's bot) speaks as it. The
// binding only narrows what the credential may do:
//
//   - the bot must be configured for the principal's tenant (a reload that
//     removes it, or a key bound to another tenant's bot, is refused);
//   - a request's model must be one of the bot's chain ("" and "moltbot"
//     are the bot's chain); another is 403 naming it, and the tenant's
//     allow-list still applies, to the model asked or to every model of
//     the bot's chain;
//   - a conversation it creates is the bot's (Conversation.Bot) and has
//     the bot's persona as its system prompt (a request's own system is
//     refused: the persona is the bot's to say);
//   - it sees only its bot's conversations: another bot's, or one of no
//     bot, is "not found", for get, turn, follow and delete alike.
//
// An unbound principal of the tenant (a service key, a tenant admin) sees
// every conversation; a turn it runs in a bot's conversation runs as the
// conversation's bot (its chain and skills: the runtime reads them from
// the conversation).

// bot is p's bot, or an error when it is not configured for p's tenant.
func (s *Service) bot(p *moltbot.Principal) (*moltbot.Bot, error) {
	var b *moltbot.Bot
	if s.cfg.Bots != nil {
		b = s.cfg.Bots.Bot(p.Tenant, p.Bot)
	}
	if b == nil || b.Tenant != p.Tenant {
		return nil, moltbot.Errorf(moltbot.EForbidden, "the credential is bound to bot %q, which is not configured for tenant %q (bots:)", p.Bot, p.Tenant)
	}
	return b, nil
}

// admitBot checks a call of p's bot that asks for model: the bot exists,
// the model is of its chain, the tenant may use it (or, for the bot's
// chain, each of its models), then, with limits, spends one call of p's
// rate limits.
func (s *Service) admitBot(p *moltbot.Principal, model string, limits bool) (*moltbot.Bot, error) {
	b, err := s.bot(p)
	if err != nil {
		return nil, err
	}
	if !b.Allows(model) {
		return nil, &moltbot.Error{Code: moltbot.EForbidden, Param: "model", Message: fmt.Sprintf(
			"model %q is not in the chain of bot %q (%s); leave model out, or ask for one of those", clip(model), b.Name, b.ChainString())}
	}
	if err := s.rt.ResolveModel(model); err != nil {
		return nil, err
	}
	if err := s.chainAllowed(p, b, model); err != nil {
		return nil, err
	}
	if limits {
		return b, s.allow(p)
	}
	return b, nil
}

// chainAllowed checks the tenant's allow-list for a call of bot b that
// asks for model: the model itself, or ("" and the chain) every model of
// the bot's chain; a bot without a chain of its own is the node's chain.
func (s *Service) chainAllowed(p *moltbot.Principal, b *moltbot.Bot, model string) error {
	if s.pol == nil {
		return nil
	}
	if model != "" && model != moltbot.ChainModel || len(b.Chain) == 0 {
		if !s.pol.ModelAllowed(p.Tenant, model) {
			return notAllowed(p, model, "")
		}
		return nil
	}
	if !s.pol.RestrictsModels(p.Tenant) {
		return nil
	}
	for _, r := range b.Chain {
		if m := r.String(); !s.pol.ModelAllowed(p.Tenant, m) {
			return notAllowed(p, m, fmt.Sprintf("bot %q's chain names ", b.Name))
		}
	}
	return nil
}

// withPersona is msgs after the bot's persona (its system prompt) as the
// first message; msgs itself when the bot has none.
func withPersona(b *moltbot.Bot, msgs []moltbot.Message) []moltbot.Message {
	if b.System == "" {
		return msgs
	}
	out := make([]moltbot.Message, 0, len(msgs)+1)
	out = append(out, moltbot.Message{Role: moltbot.RoleSystem, Content: b.System})
	return append(out, msgs...)
}
