package auth

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A key's record is kept between requests (keyRecord), and whatever ends
// the key ends it on the very next request: a revocation here or on
// another node, the end of a rotated key's grace, its expiry, its
// tenant's deletion and re-creation. Every check is made after the key
// was used once, so that its record is the kept one.
func TestKeyRecordCacheEndsAtOnce(t *testing.T) {
	p := newPeers(t, 2, Config{})
	a, b := p.s[0], p.s[1]
	c := p.c
	for _, id := range []string{"t1", "t2", "t3"} {
		if _, err := a.CreateTenant(Tenant{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	warm := func(s *Service, key string) {
		t.Helper()
		for range 2 {
			if _, e := s.Authenticate(req(key)); e != nil {
				t.Fatalf("a live key refused: %v", e)
			}
		}
	}
	refused := func(s *Service, key, reason string) {
		t.Helper()
		if _, e := s.Authenticate(req(key)); e == nil || e.Reason != reason {
			t.Fatalf("want %s, got %v", reason, e)
		}
	}

	// Revoked here, and on the node that only merged the revocation.
	key, info, _ := a.CreateKey("t1", "revoked", ScopeChat, 0)
	warm(a, key)
	warm(b, key)
	if _, err := a.RevokeKey("t1", info.ID); err != nil {
		t.Fatal(err)
	}
	refused(a, key, "revoked")
	refused(b, key, "revoked")

	// Revoked on the other node (B writes, A merges).
	key, info, _ = a.CreateKey("t1", "revoked-on-b", ScopeChat, 0)
	warm(a, key)
	if _, err := b.RevokeKey("t1", info.ID); err != nil {
		t.Fatal(err)
	}
	refused(a, key, "revoked")

	// Rotated with a grace: works through it, not after.
	key, info, _ = a.CreateKey("t1", "rotated", ScopeChat, 0)
	warm(a, key)
	next, _, err := a.RotateKey("t1", info.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	warm(a, key)
	warm(a, next)
	c.advance(time.Hour)
	refused(a, key, "expired")
	warm(a, next)

	// Expired by its TTL.
	key, _, _ = a.CreateKey("t1", "ttl", ScopeChat, 2*time.Hour)
	warm(a, key)
	c.advance(2 * time.Hour)
	refused(a, key, "expired")

	// The tenant deleted (here, and replicated), then made again: the key
	// was the old tenant's.
	key, _, _ = a.CreateKey("t2", "orphan", ScopeChat, 0)
	warm(a, key)
	warm(b, key)
	if err := a.DeleteTenant("t2"); err != nil {
		t.Fatal(err)
	}
	refused(a, key, "unknown_tenant")
	refused(b, key, "unknown_tenant")
	if _, err := a.CreateTenant(Tenant{ID: "t2"}); err != nil {
		t.Fatal(err)
	}
	refused(a, key, "unknown_tenant")
	refused(b, key, "unknown_tenant")

	// Another key of the same tenant is untouched by all this.
	key, _, _ = a.CreateKey("t3", "live", ScopeChat, 0)
	warm(a, key)
	warm(b, key)
}

// A revocation that returned is seen by every request that starts after
// it, while other requests keep reading (and keeping) the record.
func TestKeyRecordCacheRevokeUnderLoad(t *testing.T) {
	s, _ := newService(t, Config{Tenants: []Tenant{{ID: "a"}}, FailureLimit: 1 << 30})
	other, _, _ := s.CreateKey("a", "other", ScopeChat, 0)
	for i := range 20 {
		key, info, err := s.CreateKey("a", "k", ScopeChat, 0)
		if err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cred := key
				if g%2 == 1 {
					cred = other // writes of other keys' records race with the revocation too
				}
				for !stop.Load() {
					s.Authenticate(req(cred))
				}
			}()
		}
		if _, err := s.RevokeKey("a", info.ID); err != nil {
			t.Fatal(err)
		}
		if _, e := s.Authenticate(req(key)); e == nil || e.Reason != "revoked" {
			t.Fatalf("round %d: a revoked key after RevokeKey returned: %v", i, e)
		}
		stop.Store(true)
		wg.Wait()
		if _, e := s.Authenticate(req(key)); e == nil || e.Reason != "revoked" {
			t.Fatalf("round %d: a revoked key: %v", i, e)
		}
	}
}
