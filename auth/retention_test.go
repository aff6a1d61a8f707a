package auth

import (
	"strings"
	"testing"
)

// A tenant's quotas and retention policy are kept, listed and replicated
// with it; values out of bounds are refused with the key named, here and
// from another node.
func TestTenantQuotasAndRetention(t *testing.T) {
	p := newPeers(t, 2, Config{})
	a, b := p.s[0], p.s[1]
	in := Tenant{ID: "acme", Limits: Limits{MaxConversations: 100, MaxStoredBytes: 1 << 30}, Retention: &Retention{Days: 30, Messages: 50, Archive: true}}
	if _, err := a.CreateTenant(in); err != nil {
		t.Fatal(err)
	}
	for i, s := range p.s {
		tn, ok := s.Tenant("acme")
		if !ok || tn.Limits.MaxConversations != 100 || tn.Limits.MaxStoredBytes != 1<<30 || tn.Retention == nil || *tn.Retention != *in.Retention {
			t.Fatalf("node %d: %+v %v", i, tn, ok)
		}
	}
	for _, bad := range []struct {
		t    Tenant
		want string
	}{
		{Tenant{ID: "x", Limits: Limits{MaxConversations: -1}}, "limits.max_conversations"},
		{Tenant{ID: "x", Limits: Limits{MaxStoredBytes: MaxStoredBytes + 1}}, "limits.max_stored_bytes"},
		{Tenant{ID: "x", Retention: &Retention{Days: -1}}, "retention.days"},
		{Tenant{ID: "x", Retention: &Retention{Messages: MaxLimit + 1}}, "retention.messages"},
	} {
		if _, err := b.CreateTenant(bad.t); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v", bad.t, err)
		}
	}
}

// The default tenant may be listed in the config file for its quotas and
// retention (a node without auth serves everyone as default).
func TestDefaultTenantFromTheFile(t *testing.T) {
	s, _ := newService(t, Config{Tenants: []Tenant{{ID: DefaultTenant, Retention: &Retention{Days: 7}, Limits: Limits{MaxConversations: 9}}}})
	d, ok := s.Tenant(DefaultTenant)
	if !ok || d.Name != "default" || !d.FromConfig || d.Retention == nil || d.Retention.Days != 7 || d.Limits.MaxConversations != 9 {
		t.Fatalf("%+v %v", d, ok)
	}
	if err := s.SetConfigTenants(nil); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Tenant(DefaultTenant); d.Retention != nil || d.Limits.MaxConversations != 0 {
		t.Fatalf("after a reload without it: %+v", d)
	}
}
