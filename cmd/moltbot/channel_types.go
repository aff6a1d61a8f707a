package main

import (
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/discord"
	"github.com/moltbot/moltbot/channels/feishu"
	"github.com/moltbot/moltbot/channels/slack"
	"github.com/moltbot/moltbot/channels/telegram"
	"github.com/moltbot/moltbot/channels/webhook"
	"github.com/moltbot/moltbot/channels/widget"
)

// channelTypes are the channel types a config's channels: may name, one
// line a type (each adapter's package adds its own). n feeds the types
// that serve through the node itself (the widget streams turns through its
// chat service); a config check without a running node passes a zero Node,
// which they read only when a request comes.
func (n *Node) channelTypes() []channels.Type {
	return append([]channels.Type{
		webhook.Type(),
		slack.Type(),
		discord.Type(),
		telegram.Type(),
		feishu.Type(),
		widget.Type(n.widgetCore),
	}, testChannelTypes...)
}

// testChannelTypes are types tests add (a toy outbound channel).
var testChannelTypes []channels.Type
