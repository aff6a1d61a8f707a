package main

import (
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/discord"
)

// channelTypes are the channel types a config's channels: may name, one
// line a type (each adapter's package adds its own).
var channelTypes = []channels.Type{
	discord.Type(),
}
