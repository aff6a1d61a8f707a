package main

import (
	"fmt"

	"github.com/moltbot/moltbot/channels/widget"
)

// widgetCore is what a widget channel needs of the node, at each request:
// the chat service (nil until Start made it) and the tenants' spaces.
func (n *Node) widgetCore() widget.Core {
	return widget.Core{Chat: n.chatSvc.Load(), Space: n.widgetSpace}
}

// widgetSpace is where tenant's conversations live: tenantSpace, once the
// node has its tenants (auth).
func (n *Node) widgetSpace(tenant string) (string, error) {
	if n.auth == nil {
		return "", fmt.Errorf("the node is starting")
	}
	return tenantSpace(n.auth)(tenant)
}
