package manage

import (
	"context"
	"testing"

	"github.com/moltbot/moltbot"
)

type fakeCache struct{ purged []string }

func (f *fakeCache) Stats(context.Context) CacheStats { return CacheStats{Type: "memory"} }

func (f *fakeCache) Purge(_ context.Context, tenant string) (*CachePurge, error) {
	f.purged = append(f.purged, tenant)
	return &CachePurge{Tenant: tenant}, nil
}

// The operator sees the cache's figures and purges any tenant's entries
// (or all); a tenant's admin purges its own only; a chat credential
// neither.
func TestWhoMayPurgeTheCache(t *testing.T) {
	ctx := context.Background()
	op := &moltbot.Principal{Tenant: moltbot.DefaultTenant, Space: moltbot.DefaultTenant, Scope: moltbot.ScopeAdmin}
	adminA := &moltbot.Principal{Tenant: "a", Space: "a:1", Scope: moltbot.ScopeAdmin}
	chatA := &moltbot.Principal{Tenant: "a", Space: "a:1", Scope: moltbot.ScopeChat}
	if _, err := New(Config{}).CacheStats(ctx, op); moltbot.ErrorCode(err) != moltbot.ENotFound {
		t.Errorf("stats without a cache: %v", err)
	}
	fc := &fakeCache{}
	m := New(Config{Cache: fc})
	if !m.CacheEnabled() {
		t.Fatal("no cache")
	}
	if st, err := m.CacheStats(ctx, op); err != nil || st.Type != "memory" {
		t.Errorf("stats: %+v %v", st, err)
	}
	if _, err := m.CacheStats(ctx, adminA); moltbot.ErrorCode(err) != moltbot.EForbidden {
		t.Errorf("a tenant's admin reads every tenant's figures: %v", err)
	}
	for _, tc := range []struct {
		p      *moltbot.Principal
		tenant string
		code   string
	}{
		{op, "", ""}, {op, "b", ""}, {adminA, "", ""}, {adminA, "a", ""},
		{adminA, "b", moltbot.EForbidden}, {chatA, "a", moltbot.EForbidden},
	} {
		_, err := m.PurgeCache(ctx, tc.p, tc.tenant)
		if code := moltbot.ErrorCode(err); err != nil && code != tc.code || err == nil && tc.code != "" {
			t.Errorf("%s/%s purges %q: %v", tc.p.Tenant, tc.p.Scope, tc.tenant, err)
		}
	}
	if want := []string{"", "b", "a", "a"}; len(fc.purged) != 4 || fc.purged[0] != want[0] || fc.purged[1] != want[1] || fc.purged[2] != want[2] || fc.purged[3] != want[3] {
		t.Errorf("purged %q, want %q", fc.purged, want)
	}
}
