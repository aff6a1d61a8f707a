package manage

import (
	"context"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// Channels is the node's channels as the management service reads them
// (*channels.Core).
type Channels interface {
	Status() []channels.Status
	StatusOf(name string) (channels.Status, bool)
	Test(ctx context.Context, name, address, text string) error
}

// Channels lists the channels an admin may see: its tenant's (the
// operator: every tenant's, or ?tenant=ID's), as this node has them; a
// bot-bound admin sees its bot's only.
func (s *Service) Channels(p *moltbot.Principal, tenant string) ([]channels.Status, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	out := []channels.Status{}
	t, ok := scopeTenant(p, tenant)
	if !ok || s.cfg.Channels == nil {
		return out, nil
	}
	for _, st := range s.cfg.Channels.Status() {
		if (t == "" || st.Tenant == t) && p.SeesBot(st.Bot) {
			out = append(out, st)
		}
	}
	return out, nil
}

// Channel is one channel's status; another tenant's is not found.
func (s *Service) Channel(p *moltbot.Principal, name string) (*channels.Status, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	if s.cfg.Channels != nil {
		if st, ok := s.cfg.Channels.StatusOf(name); ok && (p.Operator() || st.Tenant == p.Tenant) && p.SeesBot(st.Bot) {
			return &st, nil
		}
	}
	return nil, moltbot.Errorf(moltbot.ENotFound, "channel %q not found", name)
}

// TestChannel sends text through a channel's adapter to address.
func (s *Service) TestChannel(ctx context.Context, p *moltbot.Principal, name, address, text string) error {
	if _, err := s.Channel(p, name); err != nil {
		return err
	}
	return s.cfg.Channels.Test(ctx, name, address, text)
}
