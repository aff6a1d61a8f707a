package manage

import (
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/skills/kb"
	"github.com/moltbot/moltbot/storage"
)

// A tenant's admin manages its own tenant's knowledge bases, the operator
// any tenant's (by its space: a tenant deleted and made again starts with
// none), a chat credential none.
func TestKBWhoMay(t *testing.T) {
	db := storage.NewMemory()
	as, err := auth.New(auth.Config{Enabled: true}, db)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kb.Open(kb.Config{KV: db.Namespace(storage.KB)})
	if err != nil {
		t.Fatal(err)
	}
	m := New(Config{Auth: as, KB: &KB{Store: st}})
	op := &moltbot.Principal{Tenant: moltbot.DefaultTenant, Space: moltbot.DefaultTenant, Scope: moltbot.ScopeAdmin}
	made, err := m.CreateTenant(op, Tenant{ID: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	adminA := &moltbot.Principal{Tenant: "acme", Space: made.Space(), Scope: moltbot.ScopeAdmin}
	chatA := &moltbot.Principal{Tenant: "acme", Space: made.Space(), Scope: moltbot.ScopeChat}
	doc := []KBDoc{{Name: "a.md", Text: "# Refunds\n\nRefunds take five days."}}
	if err := m.KBAdd(adminA, "", "help", doc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p      *moltbot.Principal
		tenant string
		code   string
		n      int
	}{
		{adminA, "", "", 1}, {adminA, "acme", "", 1}, {op, "acme", "", 1}, {op, "", "", 0},
		{adminA, "default", moltbot.EForbidden, 0}, {chatA, "", moltbot.EForbidden, 0}, {op, "nobody", moltbot.ENotFound, 0},
	} {
		l, err := m.KBList(tc.p, tc.tenant, "")
		code := ""
		if err != nil {
			code = moltbot.ErrorCode(err)
		}
		if code != tc.code || len(l) != tc.n {
			t.Errorf("%s/%s lists %q: %d bases, %v", tc.p.Tenant, tc.p.Scope, tc.tenant, len(l), err)
		}
	}
	if r, err := m.KBSearch(op, "acme", "help", "how long do refunds take", 0); err != nil || !r.Hit || len(r.Results) != 1 {
		t.Fatalf("the operator's search of acme's base: %+v %v", r, err)
	}
	if err := m.KBAdd(chatA, "", "help", doc); moltbot.ErrorCode(err) != moltbot.EForbidden {
		t.Fatalf("a chat credential adds: %v", err)
	}
	// The tenant deleted and made again: a new space, no documents.
	if err := m.DeleteTenant(op, "acme"); err != nil {
		t.Fatal(err)
	}
	again, err := m.CreateTenant(op, Tenant{ID: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := m.KBList(op, "acme", ""); err != nil || len(l) != 0 {
		t.Fatalf("the new acme sees the old one's bases: %+v %v", l, err)
	}
	adminA2 := &moltbot.Principal{Tenant: "acme", Space: again.Space(), Scope: moltbot.ScopeAdmin}
	if l, _ := m.KBList(adminA2, "", ""); len(l) != 0 {
		t.Fatalf("the new acme's admin sees the old one's bases: %+v", l)
	}
}
