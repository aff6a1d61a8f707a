package main

import "github.com/moltbot/moltbot/channels/widget"

// widgetCore is what a widget channel needs of the node, at each request:
// the chat service (nil until Start made it) and the tenants' spaces.
func (n *Node) widgetCore() widget.Core {
	return widget.Core{Chat: n.chat.Load(), Space: n.tenantSpace}
}

// tenantSpace is where tenant's conversations live (auth's record: the
// id, with its incarnation for a tenant made through the API); false for
// a tenant that does not exist or was deleted.
func (n *Node) tenantSpace(tenant string) (string, bool) {
	if n.auth == nil {
		return "", false
	}
	t, ok := n.auth.Tenant(tenant)
	if !ok || t.Deleted != 0 {
		return "", false
	}
	return t.Space(), true
}
