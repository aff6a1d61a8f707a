package gateway

import (
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/manage"
)

// newServer wires a gateway the way cmd/moltbot does: the chat service
// over rt with as as its policy (nil: no auth), the management service
// over both.
func newServer(rt *actors.Runtime, as *auth.Service, maxMessage int, cfg Config) *Server {
	var pol chat.Policy
	if as != nil {
		pol = as
	}
	c := chat.New(rt, pol, chat.Config{MaxMessageBytes: maxMessage, Metrics: cfg.Metrics, Logger: cfg.Logger})
	m := manage.New(manage.Config{Auth: as, Runtime: rt})
	return New(c, m, cfg)
}
