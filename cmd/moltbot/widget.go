package main

import (
	"fmt"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels/widget"
)

// widgetCore is what a widget channel needs of the node, at each request:
// the chat service (nil until Start made it) and the tenants' spaces.
func (n *Node) widgetCore() widget.Core {
	return widget.Core{Chat: n.chatSvc.Load(), Space: n.widgetSpace}
}

// widgetSpace is where tenant's conversations live (auth's record: the
// id, with its incarnation for a tenant made through the API); an error
// for a tenant that does not exist or was deleted. The default tenant is
// "default" when auth keeps no record of it.
func (n *Node) widgetSpace(tenant string) (string, error) {
	if n.auth == nil {
		return "", fmt.Errorf("the node is starting")
	}
	t, ok := n.auth.Tenant(tenant)
	switch {
	case !ok && tenant == moltbot.DefaultTenant:
		return tenant, nil
	case !ok || t.Deleted != 0:
		return "", fmt.Errorf("no tenant %q", tenant)
	}
	return t.Space(), nil
}
