package main

import (
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/discord"
	"github.com/moltbot/moltbot/channels/feishu"
	"github.com/moltbot/moltbot/channels/slack"
	"github.com/moltbot/moltbot/channels/telegram"
	"github.com/moltbot/moltbot/channels/webhook"
)

// channelTypes are the channel types a config's channels: may name, one
// line a type (each adapter's package adds its own).
var channelTypes = []channels.Type{
	webhook.Type(),
	slack.Type(),
	discord.Type(),
	telegram.Type(),
	feishu.Type(),
}
