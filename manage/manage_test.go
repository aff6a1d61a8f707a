package manage

import (
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/storage"
)

// Who may manage what: the operator everything, a tenant's admin its own
// keys, a chat credential nothing; another tenant's keys do not exist.
func TestWhoMayManage(t *testing.T) {
	as, err := auth.New(auth.Config{Enabled: true, Tenants: []auth.Tenant{{ID: "a"}, {ID: "b"}}}, storage.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	m := New(Config{Auth: as})
	op := &moltbot.Principal{Tenant: moltbot.DefaultTenant, Space: moltbot.DefaultTenant, Scope: moltbot.ScopeAdmin}
	adminA := &moltbot.Principal{Tenant: "a", Space: "a", Scope: moltbot.ScopeAdmin}
	chatA := &moltbot.Principal{Tenant: "a", Space: "a", Scope: moltbot.ScopeChat}

	if _, _, err := m.CreateKey(chatA, NewKey{Scope: moltbot.ScopeChat}); moltbot.ErrorCode(err) != moltbot.EForbidden {
		t.Errorf("chat credential creates a key: %v", err)
	}
	_, kb, err := m.CreateKey(op, NewKey{Tenant: "b", Scope: moltbot.ScopeChat})
	if err != nil {
		t.Fatalf("operator creates b's key: %v", err)
	}
	if _, _, err := m.CreateKey(adminA, NewKey{Tenant: "b", Scope: moltbot.ScopeChat}); moltbot.ErrorCode(err) != moltbot.ENotFound {
		t.Errorf("a's admin creates b's key: %v", err)
	}
	if list, err := m.Keys(adminA, "b"); err != nil || len(list) != 0 {
		t.Errorf("a's admin lists b's keys: %v %v", list, err)
	}
	if _, err := m.RevokeKey(adminA, kb.ID); moltbot.ErrorCode(err) != moltbot.ENotFound {
		t.Errorf("a's admin revokes b's key: %v", err)
	}
	if _, err := m.Tenants(adminA); moltbot.ErrorCode(err) != moltbot.EForbidden {
		t.Errorf("a's admin lists tenants: %v", err)
	}
	if err := m.DeleteTenant(adminA, "b"); moltbot.ErrorCode(err) != moltbot.EForbidden {
		t.Errorf("a's admin deletes b: %v", err)
	}
	if _, err := m.Reload(op); moltbot.ErrorCode(err) != moltbot.EInvalid {
		t.Errorf("reload without a config file: %v", err)
	}
	if _, err := m.Token("192.0.2.1", "client_credentials", kb.ID, "wrong", ""); moltbot.ErrorCode(err) != moltbot.EUnauthorized {
		t.Errorf("a bad client secret: %v", err)
	}
}
