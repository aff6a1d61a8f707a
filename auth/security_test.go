package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
)

// Issue #10, finding 3: a token from /oauth/token lives no longer than its
// key, whatever ends the key: rotation's grace, expiry, revocation, the
// tenant's deletion. Issuing caps exp at the key's expiry.
func TestTokenEndsWithItsKey(t *testing.T) {
	s, c := newService(t, Config{Tenants: []Tenant{{ID: "svc"}}, TokenTTL: 15 * time.Minute})
	key, info, _ := s.CreateKey("svc", "ops", ScopeAdmin, 0)
	tok, err := s.ClientCredentials("client_credentials", info.ID, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if p, e := s.Authenticate(req(tok.AccessToken)); e != nil || !p.Admin() {
		t.Fatalf("fresh token: %+v %v", p, e) // and now it is cached
	}
	// The key is rotated with a 1 s grace: 2 s later neither the key nor
	// its 15-minute token opens anything.
	if _, _, err := s.RotateKey("svc", info.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, e := s.Authenticate(req(tok.AccessToken)); e != nil {
		t.Fatalf("token during its key's grace: %v", e)
	}
	c.advance(2 * time.Second)
	if _, e := s.Authenticate(req(key)); e == nil {
		t.Fatal("the key outlived its grace")
	}
	if p, e := s.Authenticate(req(tok.AccessToken)); e == nil || e.Reason != "expired" {
		t.Fatalf("a token outlived its key's grace: %+v %v", p, e)
	}
	// A key with a policy expiry: the token's exp is capped at it, and the
	// token dies with the key even if exp were later.
	short, sinfo, _ := s.CreateKey("svc", "short", ScopeChat, time.Minute)
	tok2, err := s.ClientCredentials("client_credentials", sinfo.ID, short, "")
	if err != nil || tok2.ExpiresIn != 60 {
		t.Fatalf("token of a key expiring in 60 s: %+v %v", tok2, err)
	}
	c.advance(59 * time.Second)
	if _, e := s.Authenticate(req(tok2.AccessToken)); e != nil {
		t.Fatal(e)
	}
	c.advance(time.Second)
	if _, e := s.Authenticate(req(tok2.AccessToken)); e == nil {
		t.Fatal("a token outlived its key's expiry")
	}
}

// Issue #10, finding 8: grace 0 means now; a key has at most one successor;
// a key in its grace cannot rotate itself again.
func TestRotationGraceAndOneSuccessor(t *testing.T) {
	s, _ := newService(t, Config{Tenants: []Tenant{{ID: "a"}}})
	k, info, _ := s.CreateKey("a", "zero", ScopeChat, 0)
	next, ninfo, err := s.RotateKey("a", info.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, e := s.Authenticate(req(k)); e == nil || e.Reason != "expired" {
		t.Fatalf("grace 0: the old key still works: %v", e)
	}
	if _, e := s.Authenticate(req(next)); e != nil {
		t.Fatal(e)
	}
	// A second rotation of the same key is a conflict naming the successor.
	_, _, err = s.RotateKey("a", info.ID, time.Hour)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), ninfo.ID) {
		t.Fatalf("second rotation: %v (want a conflict naming %s)", err, ninfo.ID)
	}
	// Self-rotation: once, then the key in its grace cannot mint more.
	self, _, _ := s.CreateKey("a", "self", ScopeChat, 0)
	p, _ := s.Authenticate(req(self))
	succ, sinfo, err := s.RotateSelf(p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, e := s.Authenticate(req(self))
	if e != nil {
		t.Fatalf("in grace: %v", e)
	}
	if _, _, err := s.RotateSelf(p, time.Hour); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), sinfo.ID) {
		t.Fatalf("a key in its grace rotated itself again: %v", err)
	}
	// The successor rotates normally.
	p, _ = s.Authenticate(req(succ))
	if _, _, err := s.RotateSelf(p, time.Hour); err != nil {
		t.Fatalf("the successor cannot rotate: %v", err)
	}
	if _, _, err := s.RotateKey("a", ninfo.ID, -time.Second); err == nil {
		t.Fatal("a negative grace was accepted")
	}
}

// Issue #10, finding 4 (keys): a config tenant removed from the file and
// made again through the API is a new tenant: the old one's keys and their
// tokens do not work for it.
func TestRecreatedTenantFencesOldKeys(t *testing.T) {
	s, _ := newService(t, Config{Tenants: []Tenant{{ID: "acme"}}})
	old, info, _ := s.CreateKey("acme", "", ScopeAdmin, 0)
	tok, _ := s.ClientCredentials("client_credentials", info.ID, old, "")
	if _, e := s.Authenticate(req(tok.AccessToken)); e != nil {
		t.Fatal(e)
	}
	if err := s.SetConfigTenants(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTenant(Tenant{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	if p, e := s.Authenticate(req(old)); e == nil {
		t.Fatalf("the removed config tenant's key works for the new tenant: %+v", p)
	}
	if p, e := s.Authenticate(req(tok.AccessToken)); e == nil {
		t.Fatalf("the removed config tenant's token works for the new tenant: %+v", p)
	}
	if keys, _ := s.ListKeys("acme"); len(keys) != 0 {
		t.Fatalf("the new tenant lists the old one's keys: %+v", keys)
	}
	// Its own keys work.
	k, _, _ := s.CreateKey("acme", "", ScopeChat, 0)
	if _, e := s.Authenticate(req(k)); e != nil {
		t.Fatal(e)
	}
	// Deleted and made again through the API: the same.
	if err := s.DeleteTenant("acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTenant(Tenant{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, e := s.Authenticate(req(k)); e == nil {
		t.Fatal("a deleted tenant's key works for its successor")
	}
}

// Issue #10, finding 13: versions are bounded. A record from the far future
// (MaxInt64 made nextVer overflow, so revocations lost everywhere) is
// refused and does not move the clock; a revocation after it wins on every
// node.
func TestMergeRefusesFutureVersions(t *testing.T) {
	p := newPeers(t, 2, Config{Tenants: []Tenant{{ID: "a"}}})
	a, b := p.s[0], p.s[1]
	key, info, _ := a.CreateKey("a", "", ScopeAdmin, 0)
	raw, _, _ := a.kv.keys.Get(info.ID)
	now := p.c.now()
	for _, tc := range []struct {
		name string
		ver  int64
		ok   bool
	}{
		{"MaxInt64", math.MaxInt64, false},
		{"MinInt64", math.MinInt64, false},
		{"negative", -1, false},
		{"now+61s", now.Add(61 * time.Second).UnixNano(), false},
		{"now+59s", now.Add(59 * time.Second).UnixNano(), true},
	} {
		rec := strings.Replace(string(raw), fmt.Sprintf(`"ver":%d`, mustVer(t, raw)), fmt.Sprintf(`"ver":%d`, tc.ver), 1)
		msg := fmt.Sprintf(`[{"k":%q,"v":%s}]`, wireKey+info.ID, rec)
		n, err := b.Merge([]byte(msg))
		if tc.ok != (err == nil && n == 1) {
			t.Errorf("%s: merged %d, %v (want accepted %v)", tc.name, n, err, tc.ok)
		}
		if v := b.nextVer(); v > now.Add(time.Minute).UnixNano() || v < 0 {
			t.Fatalf("%s: the clock went to %d", tc.name, v)
		}
	}
	// Revoked on B after all that: A hears it and the key is dead on both.
	if _, err := b.RevokeKey("a", info.ID); err != nil {
		t.Fatal(err)
	}
	for i, s := range p.s {
		if _, e := s.Authenticate(req(key)); e == nil || e.Reason != "revoked" {
			t.Fatalf("node %d: the key survived its revocation: %v", i, e)
		}
	}
	// A version well in the future makes later local versions follow it
	// (a hybrid clock), without overflow, even at the edge.
	b.verMu.Lock()
	b.lastVer = math.MaxInt64 - 1
	b.verMu.Unlock()
	if v1, v2 := b.nextVer(), b.nextVer(); v1 <= 0 || v2 < v1 {
		t.Fatalf("versions at the edge: %d then %d", v1, v2)
	}
}

func mustVer(t *testing.T, raw []byte) int64 {
	var v versioned
	if err := json.Unmarshal(raw, &v); err != nil || v.Ver == 0 {
		t.Fatalf("no version in %s", raw)
	}
	return v.Ver
}

// Issue #10, finding 13: Merge checks the values of records, not only their
// shape: a member cannot plant keys with unknown scopes, huge names, times
// far away, or tenants with absurd fields.
func TestMergeRefusesInsaneValues(t *testing.T) {
	s, c := newService(t, Config{Tenants: []Tenant{{ID: "a"}}})
	now := c.now()
	ver := now.UnixNano()
	hash := `"hash":"` + strings.Repeat("A", 43) + `="`
	key := func(fields string) string {
		return fmt.Sprintf(`[{"k":"keys/abcdefgh","v":{"id":"abcdefgh","tenant":"a",%s,"created":%d,"ver":%d%s}}]`, hash, now.Unix(), ver, fields)
	}
	tenant := func(fields string) string {
		return fmt.Sprintf(`[{"k":"tenants/t1","v":{"id":"t1","created":%d,"ver":%d%s}}]`, now.Unix(), ver, fields)
	}
	// Sane records are taken.
	for _, good := range []string{key(`,"scope":"chat"`), tenant(`,"limits":{"requests_per_minute":5}`)} {
		if n, err := s.Merge([]byte(good)); err != nil || n != 1 {
			t.Fatalf("a sane record was refused: %v\n%s", err, good)
		}
	}
	ver++
	for name, bad := range map[string]string{
		"unknown scope":       key(`,"scope":"root"`),
		"no scope":            key(``),
		"huge name":           key(`,"scope":"chat","name":"` + strings.Repeat("x", 10000) + `"`),
		"control in name":     key(`,"scope":"chat","name":"a\u0000b"`),
		"created in future":   strings.Replace(key(`,"scope":"chat"`), fmt.Sprintf(`"created":%d`, now.Unix()), fmt.Sprintf(`"created":%d`, now.Add(48*time.Hour).Unix()), 1),
		"expires before 1970": key(`,"scope":"chat","expires":-5`),
		"bad successor":       key(`,"scope":"chat","successor":"../../x"`),
		"bad tenant":          strings.Replace(key(`,"scope":"chat"`), `"tenant":"a"`, `"tenant":"a/b"`, 1),
		"negative limits":     tenant(`,"limits":{"requests_per_minute":-1}`),
		"huge limits":         tenant(`,"limits":{"tokens_per_minute":99999999999999}`),
		"many models":         tenant(`,"models":[` + strings.Repeat(`"x/y",`, 500) + `"x/y"]`),
		"bad model":           tenant(`,"models":["not a model"]`),
		"from config":         tenant(`,"from_config":true`),
		"negative rotation":   tenant(`,"rotate_every":-1`),
		"deleted in future":   tenant(fmt.Sprintf(`,"deleted":%d`, now.Add(48*time.Hour).Unix())),
	} {
		if n, err := s.Merge([]byte(bad)); err == nil || n != 0 {
			t.Errorf("%s: accepted (%d, %v)", name, n, err)
		}
	}
}

// The store a service keeps survives a restart; storage.Memory stands in.
var _ storage.Namespaces = (*storage.Memory)(nil)

// Issue #10, finding 4 (data): every node sweeps the conversations of a
// dead tenant life from its own store — on the node that deleted the
// tenant and on a node that hears of it by replication — and keeps those
// of live tenants, of unknown spaces, and of the new tenant with the id.
func TestSweepDeadTenantConversations(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	var nodes []*Service
	var stores []*storage.Memory
	for i := 0; i < 2; i++ {
		mem := storage.NewMemory()
		s, err := New(Config{Enabled: true, Now: c.now, Tenants: []Tenant{{ID: "cfg"}}, Conversations: mem}, mem)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		nodes, stores = append(nodes, s), append(stores, mem)
	}
	a, b := nodes[0], nodes[1]
	a.SetPublisher(func(m []byte) {
		if _, err := b.Merge(m); err != nil {
			t.Error(err)
		}
	})
	acme, err := a.CreateTenant(Tenant{ID: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if acme.Space() == "acme" || !strings.HasPrefix(acme.Space(), "acme:") || !storage.ValidID(acme.Space()) {
		t.Fatalf("space %q", acme.Space())
	}
	spaces := []string{acme.Space(), "acme", "cfg", "default", "acme2", "other:abcdefghijklmnop"}
	for _, mem := range stores {
		for _, sp := range spaces {
			mem.Put(&moltbot.Conversation{Tenant: sp, ID: "c1"}, true)
		}
	}
	has := func(mem *storage.Memory, sp string) bool {
		_, err := mem.Get(sp, "c1")
		return err == nil
	}
	// The new tenant is a new life of "acme": what "acme" held before (the
	// config file's, or a tenant from before incarnations) is dead now.
	for _, s := range nodes {
		if _, err := s.SweepConversations(); err != nil {
			t.Fatal(err)
		}
	}
	for i, mem := range stores {
		if has(mem, "acme") || !has(mem, acme.Space()) {
			t.Fatalf("node %d after creation: legacy %v, live %v", i, has(mem, "acme"), has(mem, acme.Space()))
		}
	}
	if err := a.DeleteTenant("acme"); err != nil {
		t.Fatal(err)
	}
	again, err := a.CreateTenant(Tenant{ID: "acme"})
	if err != nil || again.Space() == acme.Space() {
		t.Fatalf("recreated: %+v %v", again, err)
	}
	for _, mem := range stores {
		mem.Put(&moltbot.Conversation{Tenant: again.Space(), ID: "c1"}, true)
	}
	// Each node's sweeper runs by itself after a tenant change.
	for i, mem := range stores {
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("node %d sweeps", i), func() bool { return !has(mem, acme.Space()) })
		for _, sp := range []string{"cfg", "default", "acme2", "other:abcdefghijklmnop", again.Space()} {
			if !has(mem, sp) {
				t.Errorf("node %d swept the live or unknown space %q", i, sp)
			}
		}
	}
	for _, sp := range []string{acme.Space(), "acme", again.Space(), "cfg", "default", "nope", "acme:zzzzzzzzzzzzzzzz"} {
		want := sp == acme.Space() || sp == "acme"
		if a.DeadSpace(sp) != want || b.DeadSpace(sp) != want {
			t.Errorf("DeadSpace(%q): %v on A, %v on B; want %v", sp, a.DeadSpace(sp), b.DeadSpace(sp), want)
		}
	}
}

// Issue #10, finding 7: an issuer needs an audience; "any" must be said.
// With one, a token without it, or for another service, is refused.
func TestIssuerAudienceRequired(t *testing.T) {
	j := newJWKS(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	j.add("k1", &ec.PublicKey)
	if _, err := New(Config{Issuers: []Issuer{{Issuer: "https://idp.example", JWKSURL: j.srv.URL}}}, storage.NewMemory()); err == nil ||
		!strings.Contains(err.Error(), "audience") {
		t.Fatalf("an issuer without audience: %v", err)
	}
	for _, tc := range []struct {
		audience string
		aud      any // the token's; nil: none
		ok       bool
	}{
		{"moltbot-api", "moltbot-api", true},
		{"moltbot-api", []string{"other", "moltbot-api"}, true},
		{"moltbot-api", "billing-api", false},
		{"moltbot-api", nil, false},
		{AudienceAny, "billing-api", true},
		{AudienceAny, nil, true},
	} {
		s, c := newService(t, Config{Tenants: []Tenant{{ID: "acme"}},
			Issuers: []Issuer{{Issuer: "https://idp.example", JWKSURL: j.srv.URL, Audience: tc.audience}}})
		claims := jwt.MapClaims{"iss": "https://idp.example", "tenant": "acme", "exp": c.now().Add(time.Hour).Unix()}
		if tc.aud != nil {
			claims["aud"] = tc.aud
		}
		_, e := s.Authenticate(req(sign(t, jwt.SigningMethodES256, ec, "k1", claims)))
		if (e == nil) != tc.ok {
			t.Errorf("audience %q, token aud %v: %v (want accepted %v)", tc.audience, tc.aud, e, tc.ok)
		}
	}
}

// Data from before incarnations stays: a tenant record without one keeps
// its space (the bare id) and its keys; the default tenant's space is
// "default". A config tenant that shadowed an API tenant gives it back,
// incarnation and all, when it leaves the file.
func TestLegacyTenantsKeepTheirData(t *testing.T) {
	mem := storage.NewMemory()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mem.Namespace(storage.AuthTenants).Put("old", []byte(fmt.Sprintf(`{"id":"old","created":%d,"ver":%d}`, now.Unix()-3600, now.UnixNano()-1e12)))
	mem.Namespace(storage.AuthKeys).Put("abcdefgh", []byte(fmt.Sprintf(`{"id":"abcdefgh","tenant":"old","scope":"chat","hash":%q,"created":%d}`,
		base64Std(hashSecret("s3cr3ts3cr3ts3cr3t")), now.Unix()-60)))
	s, err := New(Config{Enabled: true, Now: func() time.Time { return now }, Conversations: mem}, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, e := s.Authenticate(req("mb_abcdefgh_s3cr3ts3cr3ts3cr3t"))
	if e != nil || p.Space != "old" || p.Tenant != "old" {
		t.Fatalf("a key from before incarnations: %+v %v", p, e)
	}
	if s.DeadSpace("old") || s.DeadSpace("default") {
		t.Fatal("a live legacy space is dead")
	}
	if p, _ := s.Authenticate(req(mustKey(t, s, "default"))); p.Space != "default" {
		t.Fatalf("default's space %q", p.Space)
	}
	api, _ := s.CreateTenant(Tenant{ID: "x"})
	s.SetConfigTenants([]Tenant{{ID: "x"}})
	if cur, _ := s.Tenant("x"); !cur.FromConfig || cur.Space() != "x" {
		t.Fatalf("the file's x: %+v", cur)
	}
	s.SetConfigTenants(nil)
	if cur, ok := s.Tenant("x"); !ok || cur.Incarnation != api.Incarnation {
		t.Fatalf("the API's x did not come back: %+v %v", cur, ok)
	}
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mustKey(t *testing.T, s *Service, tenant string) string {
	k, _, err := s.CreateKey(tenant, "", ScopeChat, 0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
