package auth

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot/storage"
)

// peers are services on one clock whose changes reach each other at once,
// unless cut.
type peers struct {
	c   *clock
	s   []*Service
	mu  sync.Mutex
	cut map[int]bool
}

func newPeers(t *testing.T, n int, cfg Config) *peers {
	p := &peers{c: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, cut: map[int]bool{}}
	for i := 0; i < n; i++ {
		c := cfg
		c.Now, c.Enabled = p.c.now, true
		s, err := New(c, storage.NewMemory())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		p.s = append(p.s, s)
	}
	for i, s := range p.s {
		s.SetPublisher(func(b []byte) {
			p.mu.Lock()
			cut := p.cut[i]
			p.mu.Unlock()
			if cut {
				return
			}
			for j, o := range p.s {
				if j != i && !p.isCut(j) {
					if _, err := o.Merge(b); err != nil {
						t.Errorf("merge into %d: %v", j, err)
					}
				}
			}
		})
	}
	return p
}

func (p *peers) isCut(i int) bool { p.mu.Lock(); defer p.mu.Unlock(); return p.cut[i] }

// sync runs a full state exchange between every pair (memberlist push/pull).
func (p *peers) sync(t *testing.T) {
	for i, a := range p.s {
		for j, b := range p.s {
			if i != j {
				if _, err := b.Merge(a.State()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func TestReplicatedKeys(t *testing.T) {
	p := newPeers(t, 2, Config{Tenants: []Tenant{{ID: "a"}}})
	a, b := p.s[0], p.s[1]
	key, info, err := a.CreateKey("a", "ci", ScopeChat, 0)
	if err != nil {
		t.Fatal(err)
	}
	if pr, e := b.Authenticate(req(key)); e != nil || pr.Tenant != "a" {
		t.Fatalf("a key made on A does not work on B: %v", e)
	}
	// Rotation on B: A sees the successor and the old key in grace.
	next, ninfo, err := b.RotateKey("a", info.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, e := a.Authenticate(req(next)); e != nil {
		t.Fatalf("successor on A: %v", e)
	}
	if pr, e := a.Authenticate(req(key)); e != nil || !pr.ExpiresSoon {
		t.Fatalf("old key on A during the grace: %+v %v", pr, e)
	}
	// Revocation on A ends the successor on B at once.
	if _, err := a.RevokeKey("a", ninfo.ID); err != nil {
		t.Fatal(err)
	}
	if _, e := b.Authenticate(req(next)); e == nil || e.Reason != "revoked" {
		t.Fatalf("revoked on A, still works on B: %v", e)
	}
}

func TestReplicatedTenantsAndTombstones(t *testing.T) {
	p := newPeers(t, 3, Config{})
	a, b, c := p.s[0], p.s[1], p.s[2]
	if _, err := a.CreateTenant(Tenant{ID: "acme", Limits: Limits{RequestsPerMinute: 9}}); err != nil {
		t.Fatal(err)
	}
	for i, s := range p.s {
		if tn, ok := s.Tenant("acme"); !ok || tn.Limits.RequestsPerMinute != 9 {
			t.Fatalf("node %d: %+v %v", i, tn, ok)
		}
	}
	key, _, _ := c.CreateKey("acme", "", ScopeChat, 0)
	// C misses the deletion (partitioned), then the full exchange catches
	// it up, and C's stale copy brings nothing back.
	p.mu.Lock()
	p.cut[2] = true
	p.mu.Unlock()
	if err := b.DeleteTenant("acme"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Tenant("acme"); ok {
		t.Fatal("A still has the deleted tenant")
	}
	if _, ok := c.Tenant("acme"); !ok {
		t.Fatal("the cut node heard the deletion")
	}
	p.mu.Lock()
	p.cut[2] = false
	p.mu.Unlock()
	p.sync(t)
	for i, s := range p.s {
		if _, ok := s.Tenant("acme"); ok {
			t.Fatalf("node %d: the deleted tenant came back", i)
		}
		if _, e := s.Authenticate(req(key)); e == nil {
			t.Fatalf("node %d: a key of the deleted tenant works", i)
		}
	}
	// Every node holds the same records.
	if a.State() == nil || string(a.State()) != string(b.State()) || string(b.State()) != string(c.State()) {
		t.Fatalf("states differ:\n%s\n%s\n%s", a.State(), b.State(), c.State())
	}
	// The id can be used again; the new tenant wins over the tombstone.
	if _, err := c.CreateTenant(Tenant{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	if _, ok := a.Tenant("acme"); !ok {
		t.Fatal("a recreated tenant did not replicate")
	}
}

// Concurrent changes to one key on two nodes converge to the same record.
func TestReplicationConverges(t *testing.T) {
	p := newPeers(t, 2, Config{Tenants: []Tenant{{ID: "a"}}})
	a, b := p.s[0], p.s[1]
	_, info, _ := a.CreateKey("a", "", ScopeChat, 0)
	p.mu.Lock()
	p.cut[0], p.cut[1] = true, true
	p.mu.Unlock()
	if _, err := a.RevokeKey("a", info.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.RotateKey("a", info.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	if string(a.State()) != string(b.State()) {
		t.Fatalf("diverged:\n%s\n%s", a.State(), b.State())
	}
}

// A token issued by one node verifies on every other, during and after the
// issuer's signing key rotation, and each node's JWKS publishes them all.
func TestReplicatedSigningKeys(t *testing.T) {
	p := newPeers(t, 2, Config{Tenants: []Tenant{{ID: "svc"}}, TokenTTL: 10 * time.Minute, SigningRotate: time.Hour})
	a, b := p.s[0], p.s[1]
	key, info, _ := a.CreateKey("svc", "", ScopeChat, 0)
	tok, err := a.ClientCredentials("client_credentials", info.ID, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if pr, e := b.Authenticate(req(tok.AccessToken)); e != nil || pr.Tenant != "svc" {
		t.Fatalf("A's token on B: %v", e)
	}
	kids := func(s *Service) string {
		var j struct{ Keys []struct{ Kid string } }
		json.Unmarshal(s.JWKS(), &j)
		var out []string
		for _, k := range j.Keys {
			out = append(out, k.Kid)
		}
		return strings.Join(out, ",")
	}
	aKid := kids(a) // A's only key so far
	kids(b)         // B makes its signing key when it first needs it
	if ka, kb := kids(a), kids(b); len(strings.Split(ka, ",")) != 2 || len(strings.Split(kb, ",")) != 2 {
		t.Fatalf("JWKS: A %s, B %s (want both nodes' keys on each)", ka, kb)
	}
	// A new node learns the keys from a full exchange.
	p.c.advance(59 * time.Minute)
	late, _ := New(Config{Enabled: true, Now: p.c.now, Tenants: []Tenant{{ID: "svc"}}}, storage.NewMemory())
	defer late.Close()
	late.Merge(a.State())
	if _, e := late.Authenticate(req(tok.AccessToken)); e == nil || e.Reason != "expired" {
		t.Fatalf("an expired token on a new node: %v", e)
	}
	tok2, _ := a.ClientCredentials("client_credentials", info.ID, key, "")
	late.Merge(a.State())
	if _, e := late.Authenticate(req(tok2.AccessToken)); e != nil {
		t.Fatalf("A's token on a node that joined later: %v", e)
	}
	// A rotates; B verifies tokens of the old key until they expire, and
	// then drops the key.
	p.c.advance(2 * time.Minute)
	tok3, _ := a.ClientCredentials("client_credentials", info.ID, key, "")
	for _, tk := range []string{tok2.AccessToken, tok3.AccessToken} {
		if _, e := b.Authenticate(req(tk)); e != nil {
			t.Fatalf("after A rotated: %v", e)
		}
	}
	p.c.advance(time.Hour + 15*time.Minute)
	if _, e := b.Authenticate(req(tok2.AccessToken)); e == nil {
		t.Fatal("an old token still works")
	}
	if got := kids(b); strings.Contains(got, aKid) {
		t.Fatalf("B still publishes A's expired key %s: %s", aKid, got)
	}
}

// Merge takes only auth records it can read, whatever a peer sends.
func TestMergeRejects(t *testing.T) {
	mem := storage.NewMemory()
	s, _ := newServiceIn(t, Config{Tenants: []Tenant{{ID: "a"}}}, mem)
	for _, bad := range []string{
		`not json`,
		`[{"k":"conv/default/x","v":{"id":"x"}}]`,
		`[{"k":"keys/abcdefgh","v":{"id":"other123","tenant":"a","hash":"AAAA"}}]`,
		`[{"k":"tenants/default","v":{"id":"default","limits":{"requests_per_minute":1}}}]`,
		`[{"k":"tenants/../x","v":{"id":"../x"}}]`,
		`[{"k":"jwks/k1","v":{"kid":"k1","x":"AAAA","y":"AAAA","until":99999999999}}]`,
	} {
		if _, err := s.Merge([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	if tn, _ := s.Tenant(DefaultTenant); tn.Limits.RequestsPerMinute != 0 {
		t.Fatal("a peer changed the default tenant")
	}
	if _, err := mem.Get("default", "x"); err == nil || authRecords(mem) != mem.Len() {
		t.Fatal("a peer wrote outside the auth records")
	}
}

// FuzzMerge: whatever a peer sends, Merge does not panic, writes only auth
// records, stores only sane ones, and the version clock stays bounded: a
// change made here after the merge is newer than every stored record.
func FuzzMerge(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	src, _ := New(Config{Enabled: true, Now: func() time.Time { return now }, Tenants: []Tenant{{ID: "a"}}}, storage.NewMemory())
	defer src.Close()
	src.CreateKey("a", "k", ScopeAdmin, 0)
	src.CreateTenant(Tenant{ID: "t1"})
	src.DeleteTenant("t1")
	src.CreateTenant(Tenant{ID: "t1", Models: []string{"sim/*"}})
	src.JWKS()
	f.Add(src.State())
	f.Add([]byte(`[{"k":"tenants/x","v":{"id":"x","deleted":1,"ver":5}}]`))
	f.Add([]byte(`[]`))
	key := func(ver string) []byte {
		return []byte(fmt.Sprintf(`[{"k":"keys/abcdefgh","v":{"id":"abcdefgh","tenant":"a","scope":"admin","hash":"%s","created":%d,"ver":%s}}]`,
			strings.Repeat("A", 43)+"=", now.Unix(), ver))
	}
	for _, v := range []int64{math.MaxInt64, math.MinInt64, -1, 0, now.Add(59 * time.Second).UnixNano(), now.Add(61 * time.Second).UnixNano()} {
		f.Add(key(fmt.Sprint(v)))
	}
	f.Add(key("1e300"))
	f.Add([]byte(fmt.Sprintf(`[{"k":"tenants/t2","v":{"id":"t2","incarnation":"abcdefghijklmnop","dead":[""],"created":%d,"ver":%d}}]`, now.Unix(), now.UnixNano())))
	f.Fuzz(func(t *testing.T, b []byte) {
		mem := storage.NewMemory()
		s, err := New(Config{Enabled: true, Now: func() time.Time { return now }, Tenants: []Tenant{{ID: "a"}}}, mem)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Merge(b)
		top := int64(0)
		if n := authRecords(mem); n != mem.Len() {
			t.Fatalf("%d records outside auth's namespaces", mem.Len()-n)
		}
		check := func(v []byte, rec interface{ check(time.Time) error }, ver *int64) {
			err := json.Unmarshal(v, rec)
			if err == nil {
				err = rec.check(now)
				top = max(top, *ver)
			}
			if err != nil {
				t.Fatalf("stored an insane record %s: %v", v, err)
			}
		}
		mem.Namespace(storage.AuthKeys).Scan(func(_ string, v []byte) bool {
			var rec Key
			check(v, &rec, &rec.Ver)
			return true
		})
		mem.Namespace(storage.AuthTenants).Scan(func(_ string, v []byte) bool {
			var rec Tenant
			check(v, &rec, &rec.Ver)
			return true
		})
		if _, ok := s.Tenant(DefaultTenant); !ok {
			t.Fatal("the default tenant is gone")
		}
		if v := s.nextVer(); v <= top || v > now.Add(MaxClockSkew).UnixNano()+1 {
			t.Fatalf("next version %d after stored %d (bound %d)", v, top, now.Add(MaxClockSkew).UnixNano())
		}
		_ = s.State()
		_ = s.JWKS()
	})
}

// authRecords counts the records in auth's namespaces of mem.
func authRecords(mem *storage.Memory) int {
	n := 0
	for _, ns := range []storage.Namespace{storage.AuthKeys, storage.AuthTenants, storage.AuthSigning, storage.AuthJWKS} {
		mem.Namespace(ns).Scan(func(string, []byte) bool { n++; return true })
	}
	return n
}
