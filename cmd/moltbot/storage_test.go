package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moltbot/moltbot/audit"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/storage"
)

// testdata/db-before-namespaces was written by the build before storage's
// namespaces (auth and audit wrote whole keys: keys/, tenants/, signing/,
// jwks/, audit/) on 2026-03-01 12:00 UTC: tenant acme with a chat key, an
// operator key, a token signed by the node's key, a conversation of acme's
// space and two audit events. A node of this build reads all of it.
func TestDatabaseBeforeNamespaces(t *testing.T) {
	const (
		chatKey = "mb_ndp3cqot_lr6f6bq7byduxhbb3nwi3anewv462k2e"
		opKey   = "mb_gu2mctfw_wngreyxljgjrvqm2oq2hx6qhgcwne32d"
		token   = "eyJhbGciOiJFUzI1NiIsImtpZCI6InlyY2N4YWx3eTIzY2siLCJ0eXAiOiJKV1QifQ.eyJhdWQiOiJtb2x0Ym90IiwiZXhwIjoxNzcyMzY3MzAwLCJpYXQiOjE3NzIzNjY0MDAsImlzcyI6Im1vbHRib3QiLCJqdGkiOiJmNWFrZGxyZmU2d3R4ajdhIiwibmJmIjoxNzcyMzY2NDAwLCJzY29wZSI6ImFkbWluIiwic3ViIjoiZ3UybWN0ZnciLCJ0ZW5hbnQiOiJkZWZhdWx0In0.aXTrhSdhZCkELfHH8gWbj_vyU28PwljqOJYwEidB2lV9MvKF9yqyuf66FqJSvx2X1gTCR_ol3QHk0gl7SkkjMw"
		space   = "acme:mg34ytnfmsmw54af"
	)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS("testdata/db-before-namespaces")); err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := func() time.Time { return time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC) }
	as, err := auth.New(auth.Config{Enabled: true, Now: now}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	if tn, ok := as.Tenant("acme"); !ok || tn.Space() != space {
		t.Fatalf("tenant acme: %+v %v", tn, ok)
	}
	for cred, want := range map[string]string{chatKey: "acme", opKey: auth.DefaultTenant, token: auth.DefaultTenant} {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		r.Header.Set("Authorization", "Bearer "+cred)
		if p, e := as.Authenticate(r); e != nil || p.Tenant != want {
			t.Errorf("%.12s...: %+v %v", cred, p, e)
		}
	}
	if c, err := st.Get(space, "c1"); err != nil || c.Messages[0].Content != "hello" {
		t.Errorf("conversation: %v", err)
	}
	al, err := audit.New(st, audit.Config{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if page, err := al.Query(audit.Query{}); err != nil || len(page.Events) != 2 || page.Events[0].Node != "fixture" {
		t.Errorf("audit log: %+v %v", page, err)
	}
}
