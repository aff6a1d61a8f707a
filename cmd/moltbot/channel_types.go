package main

import (
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/widget"
)

// channelTypes are the channel types this node knows, one line a type.
func (n *Node) channelTypes() []channels.Type {
	return []channels.Type{
		widget.Type(n.widgetCore),
	}
}
