package main

import (
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/feishu"
	"github.com/moltbot/moltbot/channels/telegram"
)

// channelTypes are the channel types a config's channels: may name, one
// line a type (each adapter's package adds its own).
var channelTypes = []channels.Type{
	telegram.Type(),
	feishu.Type(),
}
