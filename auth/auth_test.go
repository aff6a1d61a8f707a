package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/moltbot/moltbot/storage"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newService(t *testing.T, cfg Config) (*Service, *clock) {
	t.Helper()
	return newServiceIn(t, cfg, storage.NewMemory())
}

// newServiceIn is newService over db.
func newServiceIn(t *testing.T, cfg Config, db storage.Namespaces) (*Service, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg.Now = c.now
	cfg.Enabled = true
	s, err := New(cfg, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, c
}

func req(cred string) *http.Request {
	r := httptest.NewRequest("GET", "/v1/models", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	return r
}

func TestKeyLifecycle(t *testing.T) {
	s, c := newService(t, Config{Tenants: []Tenant{{ID: "acme"}, {ID: "rot", RotateEvery: 30 * 24 * time.Hour}}})
	key, info, err := s.CreateKey("acme", "ci", ScopeChat, 0)
	if err != nil || !strings.HasPrefix(key, "mb_"+info.ID+"_") || info.Expires != 0 {
		t.Fatalf("create: %q %+v %v", key, info, err)
	}
	p, aerr := s.Authenticate(req(key))
	if aerr != nil || p.Tenant != "acme" || p.Scope != ScopeChat || p.KeyID != info.ID || p.Admin() {
		t.Fatalf("authenticate: %+v %v", p, aerr)
	}
	// The listing has no secret or hash.
	keys, _ := s.ListKeys("acme")
	b, _ := json.Marshal(keys)
	if len(keys) != 1 || strings.Contains(string(b), key[12:]) || strings.Contains(string(b), "hash") {
		t.Fatalf("listing: %s", b)
	}
	// Wrong secret, unknown id, garbage: 401 with a clear reason.
	for cred, reason := range map[string]string{key[:len(key)-2] + "xx": "wrong_secret", "mb_zzzzzzzz_" + strings.Repeat("a", 32): "unknown_key",
		"mb_short": "malformed", "not.a.jwt.at.all": "malformed"} {
		if _, e := s.Authenticate(req(cred)); e == nil || e.Status != 401 || e.Reason != reason || !strings.Contains(e.WWWAuthenticate(), "invalid_token") {
			t.Errorf("%q: %+v, want %s", cred, e, reason)
		}
	}
	// Rotate with a grace: both work, the old one says it is ending.
	next, ninfo, err := s.RotateKey("acme", info.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p, e := s.Authenticate(req(key)); e != nil || !p.ExpiresSoon {
		t.Fatalf("old key in grace: %+v %v", p, e)
	}
	if p, e := s.Authenticate(req(next)); e != nil || p.ExpiresSoon || p.KeyID != ninfo.ID {
		t.Fatalf("successor: %+v %v", p, e)
	}
	c.advance(time.Hour)
	if _, e := s.Authenticate(req(key)); e == nil || e.Reason != "expired" {
		t.Fatalf("old key after grace: %v", e)
	}
	if _, e := s.Authenticate(req(next)); e != nil {
		t.Fatal(e)
	}
	// Revoke.
	s.RevokeKey("acme", ninfo.ID)
	if _, e := s.Authenticate(req(next)); e == nil || e.Reason != "revoked" {
		t.Fatalf("revoked: %v", e)
	}
	// A tenant policy makes keys expire; near the end they say so.
	rk, rinfo, _ := s.CreateKey("rot", "", ScopeAdmin, 0)
	if rinfo.Expires != c.now().Add(30*24*time.Hour).Unix() {
		t.Fatalf("rotate_every not applied: %+v", rinfo)
	}
	if p, _ := s.Authenticate(req(rk)); p.ExpiresSoon || !p.Admin() || p.Operator() {
		t.Fatalf("fresh policy key: %+v", p)
	}
	c.advance(25 * 24 * time.Hour)
	if p, _ := s.Authenticate(req(rk)); !p.ExpiresSoon {
		t.Fatal("a key 5 days from its end does not say so")
	}
	c.advance(6 * 24 * time.Hour)
	if _, e := s.Authenticate(req(rk)); e == nil || e.Reason != "expired" {
		t.Fatalf("policy expiry: %v", e)
	}
	// Self rotation.
	sk, _, _ := s.CreateKey("acme", "self", ScopeChat, 0)
	p, _ = s.Authenticate(req(sk))
	nk, _, err := s.RotateSelf(p, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, e := s.Authenticate(req(nk)); e != nil {
		t.Fatal(e)
	}
}

func TestTenantIsolationOfKeys(t *testing.T) {
	s, _ := newService(t, Config{Tenants: []Tenant{{ID: "a"}, {ID: "b"}}})
	_, ka, _ := s.CreateKey("a", "", ScopeAdmin, 0)
	_, kb, _ := s.CreateKey("b", "", ScopeAdmin, 0)
	if _, err := s.RevokeKey("a", kb.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a revoked b's key: %v", err)
	}
	if _, _, err := s.RotateKey("a", kb.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a rotated b's key: %v", err)
	}
	la, _ := s.ListKeys("a")
	if len(la) != 1 || la[0].ID != ka.ID {
		t.Fatalf("a sees %+v", la)
	}
	all, _ := s.ListKeys("")
	if len(all) != 2 {
		t.Fatalf("operator sees %d", len(all))
	}
	if _, _, err := s.CreateKey("nope", "", ScopeChat, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("key for a missing tenant: %v", err)
	}
}

func TestTenants(t *testing.T) {
	s, _ := newService(t, Config{Tenants: []Tenant{{ID: "cfg", Models: []string{"local/llama3.2", "sim/*"}}}})
	if _, err := s.CreateTenant(Tenant{ID: "cfg"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := s.CreateTenant(Tenant{ID: "bad/id"}); err == nil {
		t.Fatal("bad id accepted")
	}
	if _, err := s.CreateTenant(Tenant{ID: "api", Limits: Limits{RequestsPerMinute: 5}}); err != nil {
		t.Fatal(err)
	}
	key, _, _ := s.CreateKey("api", "", ScopeChat, 0)
	ids := []string{}
	for _, tn := range s.Tenants() {
		ids = append(ids, tn.ID)
	}
	if strings.Join(ids, ",") != "api,cfg,default" {
		t.Fatalf("tenants %v", ids)
	}
	if err := s.DeleteTenant("cfg"); err == nil || !strings.Contains(err.Error(), "config") {
		t.Fatalf("deleted a config tenant: %v", err)
	}
	if err := s.DeleteTenant("api"); err != nil {
		t.Fatal(err)
	}
	if _, e := s.Authenticate(req(key)); e == nil {
		t.Fatal("a deleted tenant's key still works")
	}
	for model, ok := range map[string]bool{"local/llama3.2": true, "sim/anything": true, "cloud/gpt": false, "": false, "moltbot": false} {
		if s.ModelAllowed("cfg", model) != ok {
			t.Errorf("cfg may use %q: %v", model, !ok)
		}
	}
	if !s.ModelAllowed("default", "whatever") {
		t.Error("an unrestricted tenant is restricted")
	}
}

func TestLimits(t *testing.T) {
	s, c := newService(t, Config{Tenants: []Tenant{{ID: "t", Limits: Limits{RequestsPerMinute: 3, TokensPerMinute: 100}}}})
	k1, _, _ := s.CreateKey("t", "", ScopeChat, 0)
	p, _ := s.Authenticate(req(k1))
	for i := 0; i < 3; i++ {
		if _, ok := s.Allow(p); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	w, ok := s.Allow(p)
	if ok || w < 15*time.Second || w > 25*time.Second {
		t.Fatalf("4th request: %v %v (want a wait of about 20s)", w, ok)
	}
	c.advance(20 * time.Second)
	if _, ok := s.Allow(p); !ok {
		t.Fatal("not refilled after 20s")
	}
	// Tokens: a big reply puts the tenant in debt; requests wait for it.
	c.advance(time.Minute)
	s.Charge(p, 160)
	if w, ok := s.Allow(p); ok || w < 30*time.Second {
		t.Fatalf("in token debt: %v %v", w, ok)
	}
	c.advance(40 * time.Second)
	if _, ok := s.Allow(p); !ok {
		t.Fatal("debt not repaid")
	}
}

// Only failures are throttled: an address over its failure budget gets 429
// for every failing credential (whatever the reason, described alike), but
// a valid credential from it is always accepted, and the token endpoint's
// failures spend the same budget.
func TestFailedAuthThrottled(t *testing.T) {
	s, c := newService(t, Config{FailureLimit: 5})
	var reasons []string
	s.OnFailure(func(r string) { reasons = append(reasons, r) })
	bad := "mb_zzzzzzzz_" + strings.Repeat("b", 32)
	for i := 0; i < 5; i++ {
		if _, e := s.Authenticate(req(bad)); e == nil || e.Status != 401 {
			t.Fatalf("attempt %d: %+v", i, e)
		}
	}
	key, _, _ := s.CreateKey("default", "", ScopeAdmin, 0)
	if p, e := s.Authenticate(req(key)); e != nil || !p.Operator() {
		t.Fatalf("after 5 failures the operator's own key from that address: %+v", e)
	}
	for _, cred := range []string{bad, key + "x", "", "not.a.jwt"} {
		e1 := func() *Error { _, e := s.Authenticate(req(cred)); return e }()
		if e1 == nil || e1.Status != 429 || e1.Retry <= 0 || e1.Code != "" || e1.Reason != "throttled" {
			t.Fatalf("failure %q over budget: %+v", cred, e1)
		}
	}
	// One bad request every few seconds must not keep a valid key out.
	for i := 0; i < 10; i++ {
		c.advance(3 * time.Second)
		s.Authenticate(req(bad))
		if _, e := s.Authenticate(req(key)); e != nil {
			t.Fatalf("round %d: the valid key was refused: %+v", i, e)
		}
	}
	other := req(bad)
	other.RemoteAddr = "192.0.2.9:1"
	if _, e := s.Authenticate(other); e == nil || e.Status != 401 {
		t.Fatalf("another address is throttled too: %v", e)
	}
	// An address over budget is not charged further: once it stops, its
	// budget refills.
	c.advance(time.Minute)
	if _, e := s.Authenticate(req(bad)); e == nil || e.Status != 401 {
		t.Fatalf("still throttled after a minute: %v", e)
	}
	if reasons[0] != "unknown_key" || !slices.Contains(reasons, "throttled") {
		t.Fatalf("failures counted: %v", reasons)
	}
	if _, e := s.Authenticate(httptest.NewRequest("GET", "/", nil)); e == nil || e.Reason != "missing" || !strings.HasPrefix(e.WWWAuthenticate(), "Bearer") {
		t.Fatalf("missing: %+v", e)
	}

	// The token endpoint: its failures count, and over budget a good
	// client still gets its token.
	s2, _ := newService(t, Config{FailureLimit: 3})
	k2, i2, _ := s2.CreateKey("default", "", ScopeChat, 0)
	for i := 0; i < 3; i++ {
		var oe *OAuthError
		if _, err := s2.ClientCredentialsFrom("192.0.2.1", "client_credentials", i2.ID, k2+"x", ""); !errors.As(err, &oe) || oe.Status != 401 {
			t.Fatalf("bad secret %d: %v", i, err)
		}
	}
	var oe *OAuthError
	if _, err := s2.ClientCredentialsFrom("192.0.2.1", "client_credentials", i2.ID, "", ""); !errors.As(err, &oe) || oe.Status != 429 || oe.Retry <= 0 {
		t.Fatalf("over budget at the token endpoint: %v", err)
	}
	if _, e := s2.AuthenticateFrom(req(bad), "192.0.2.1"); e == nil || e.Status != 429 {
		t.Fatalf("the token endpoint's failures do not count for Authenticate: %+v", e)
	}
	if tok, err := s2.ClientCredentialsFrom("192.0.2.1", "client_credentials", i2.ID, k2, ""); err != nil || tok.AccessToken == "" {
		t.Fatalf("a good client over budget: %v", err)
	}
}

// jwksServer serves the public halves of keys, changeable at run time.
type jwksServer struct {
	mu   sync.Mutex
	keys map[string]any // kid -> *rsa.PublicKey or *ecdsa.PublicKey
	hits int
	srv  *httptest.Server
}

func newJWKS(t *testing.T) *jwksServer {
	j := &jwksServer{keys: map[string]any{}}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.hits++
		enc := base64.RawURLEncoding
		var keys []map[string]string
		for kid, k := range j.keys {
			switch k := k.(type) {
			case *rsa.PublicKey:
				keys = append(keys, map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
					"n": enc.EncodeToString(k.N.Bytes()), "e": enc.EncodeToString(big.NewInt(int64(k.E)).Bytes())})
			case *ecdsa.PublicKey:
				x, y := make([]byte, 32), make([]byte, 32)
				k.X.FillBytes(x)
				k.Y.FillBytes(y)
				keys = append(keys, map[string]string{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
					"x": enc.EncodeToString(x), "y": enc.EncodeToString(y)})
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) add(kid string, pub any) {
	j.mu.Lock()
	j.keys[kid] = pub
	j.mu.Unlock()
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestExternalIssuer(t *testing.T) {
	j := newJWKS(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	j.add("k1", &rsaKey.PublicKey)
	s, c := newService(t, Config{Tenants: []Tenant{{ID: "acme"}}, Issuers: []Issuer{{Issuer: "https://idp.example", JWKSURL: j.srv.URL, Audience: "moltbot-api", TenantClaim: "org"}}})
	now := c.now()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "https://idp.example", "aud": "moltbot-api", "sub": "user-1", "org": "acme", "scope": "read admin",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	good := sign(t, jwt.SigningMethodRS256, rsaKey, "k1", base())
	p, e := s.Authenticate(req(good))
	if e != nil || p.Tenant != "acme" || p.Subject != "user-1" || !p.Admin() || p.Method != "jwt" {
		t.Fatalf("good token: %+v %v", p, e)
	}
	mutate := func(f func(jwt.MapClaims)) string {
		cl := base()
		f(cl)
		return sign(t, jwt.SigningMethodRS256, rsaKey, "k1", cl)
	}
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	cases := map[string]struct {
		tok, reason string
	}{
		"expired":         {mutate(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), "expired"},
		"not yet valid":   {mutate(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), "not_yet_valid"},
		"wrong audience":  {mutate(func(c jwt.MapClaims) { c["aud"] = "someone-else" }), "wrong_audience"},
		"no exp":          {mutate(func(c jwt.MapClaims) { delete(c, "exp") }), "invalid_jwt"},
		"unknown tenant":  {mutate(func(c jwt.MapClaims) { c["org"] = "globex" }), "unknown_tenant"},
		"no tenant":       {mutate(func(c jwt.MapClaims) { delete(c, "org") }), "no_tenant"},
		"unknown issuer":  {mutate(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), "unknown_issuer"},
		"wrong signature": {sign(t, jwt.SigningMethodRS256, otherRSA, "k1", base()), "bad_signature"},
		"alg none":        {sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1", base()), "bad_algorithm"},
		// The classic confusion: HS256 keyed with the issuer's public key.
		"hs256 with public key": {sign(t, jwt.SigningMethodHS256, der, "k1", base()), "bad_algorithm"},
		"garbage":               {"a.b.c", "malformed"},
	}
	for name, tc := range cases {
		_, e := s.Authenticate(req(tc.tok))
		if e == nil || e.Status != 401 || e.Reason != tc.reason || !strings.Contains(e.WWWAuthenticate(), `error="invalid_token"`) {
			t.Errorf("%s: %+v, want 401 %s", name, e, tc.reason)
		}
	}
	// The issuer rotates: a token with a new kid makes moltbot refresh.
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	j.add("k2", &ecKey.PublicKey)
	rotated := sign(t, jwt.SigningMethodES256, ecKey, "k2", base())
	if _, e := s.Authenticate(req(rotated)); e != nil {
		t.Fatalf("token signed with the rotated key: %v", e)
	}
}

func TestClientCredentialsAndOwnKeys(t *testing.T) {
	mem := storage.NewMemory()
	s, c := newServiceIn(t, Config{Tenants: []Tenant{{ID: "svc"}}, TokenTTL: 10 * time.Minute, SigningRotate: time.Hour}, mem)
	key, info, _ := s.CreateKey("svc", "worker", ScopeAdmin, 0)
	tok, err := s.ClientCredentials("client_credentials", info.ID, key, "chat")
	if err != nil || tok.TokenType != "Bearer" || tok.ExpiresIn != 600 || tok.Scope != "chat" {
		t.Fatalf("grant: %+v %v", tok, err)
	}
	p, e := s.Authenticate(req(tok.AccessToken))
	if e != nil || p.Tenant != "svc" || p.Admin() || p.Subject != info.ID {
		t.Fatalf("own token: %+v %v", p, e)
	}
	for _, bad := range []struct{ grant, id, secret, scope, code string }{
		{"password", info.ID, key, "", "unsupported_grant_type"},
		{"client_credentials", info.ID, key + "x", "", "invalid_client"},
		{"client_credentials", "otherid1", key, "", "invalid_client"},
		{"client_credentials", "", "", "", "invalid_client"},
		{"client_credentials", info.ID, key, "root", "invalid_scope"},
	} {
		_, err := s.ClientCredentials(bad.grant, bad.id, bad.secret, bad.scope)
		var oe *OAuthError
		if !errors.As(err, &oe) || oe.Code != bad.code {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	var jwks struct {
		Keys []struct{ Kid, Alg, Kty string } `json:"keys"`
	}
	json.Unmarshal(s.JWKS(), &jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0].Alg != "ES256" {
		t.Fatalf("jwks %+v", jwks)
	}
	first := jwks.Keys[0].Kid
	// Rotation: after an hour a new key signs; the old stays published (and
	// its tokens valid) until they have expired.
	c.advance(time.Hour)
	tok2, _ := s.ClientCredentials("client_credentials", info.ID, key, "")
	json.Unmarshal(s.JWKS(), &jwks)
	if len(jwks.Keys) != 2 || jwks.Keys[0].Kid == first {
		t.Fatalf("after rotation: %+v", jwks)
	}
	if _, e := s.Authenticate(req(tok2.AccessToken)); e != nil {
		t.Fatal(e)
	}
	c.advance(11 * time.Minute)
	json.Unmarshal(s.JWKS(), &jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kid == first {
		t.Fatalf("the retired key is still published after its tokens expired: %+v", jwks)
	}
	if _, e := s.Authenticate(req(tok.AccessToken)); e == nil {
		t.Fatal("an expired token of the retired key works")
	}
	// Keys survive a restart of the service (same store).
	tok3, _ := s.ClientCredentials("client_credentials", info.ID, key, "")
	s2, err := New(Config{Enabled: true, Now: c.now, Tenants: []Tenant{{ID: "svc"}}}, mem)
	if err != nil {
		t.Fatal(err)
	}
	if _, e := s2.Authenticate(req(tok3.AccessToken)); e != nil {
		t.Fatalf("token after restart: %v", e)
	}
	// Revoking the client key ends its unexpired tokens at once.
	if _, err := s2.RevokeKey("svc", info.ID); err != nil {
		t.Fatal(err)
	}
	if _, e := s2.Authenticate(req(tok3.AccessToken)); e == nil || e.Reason != "revoked" {
		t.Fatalf("token of a revoked key: %v", e)
	}
}

func TestDisabled(t *testing.T) {
	s, err := New(Config{}, storage.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	p, e := s.Authenticate(httptest.NewRequest("GET", "/", nil))
	if e != nil || p.Tenant != DefaultTenant || !p.Operator() {
		t.Fatalf("%+v %v", p, e)
	}
}

// A reload replaces the file's tenants and keeps the API's.
func TestSetConfigTenants(t *testing.T) {
	s, _ := newService(t, Config{Tenants: []Tenant{{ID: "a", Limits: Limits{RequestsPerMinute: 1}}, {ID: "gone"}}})
	if _, err := s.CreateTenant(Tenant{ID: "api"}); err != nil {
		t.Fatal(err)
	}
	key, _, _ := s.CreateKey("gone", "", ScopeChat, 0)
	if _, e := s.Authenticate(req(key)); e != nil {
		t.Fatal(e)
	}
	if err := s.SetConfigTenants([]Tenant{{ID: "a", Models: []string{"sim/*"}}, {ID: "new"}}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tn := range s.Tenants() {
		ids = append(ids, tn.ID)
	}
	if strings.Join(ids, ",") != "a,api,default,new" {
		t.Fatalf("tenants after reload: %v", ids)
	}
	if a, _ := s.Tenant("a"); a.Limits.RequestsPerMinute != 0 || !s.ModelAllowed("a", "sim/x") || s.ModelAllowed("a", "local/x") {
		t.Fatalf("a was not updated: %+v", a)
	}
	if _, e := s.Authenticate(req(key)); e == nil || e.Reason != "unknown_tenant" {
		t.Fatalf("a key of a removed tenant: %v", e)
	}
	if err := s.SetConfigTenants([]Tenant{{ID: "bad id"}}); err == nil {
		t.Fatal("an invalid id was accepted")
	}
	if _, ok := s.Tenant("new"); !ok {
		t.Fatal("a failed reload changed the tenants")
	}
}

// The verified-token cache: bounded, keyed by the whole token (a token
// differing in its signature is verified, and refused), and it never
// outlives the token.
func TestTokenCache(t *testing.T) {
	s, c := newService(t, Config{Tenants: []Tenant{{ID: "svc"}}, TokenTTL: 5 * time.Minute})
	key, info, _ := s.CreateKey("svc", "", ScopeChat, 0)
	tok, _ := s.ClientCredentials("client_credentials", info.ID, key, "")
	if _, e := s.Authenticate(req(tok.AccessToken)); e != nil {
		t.Fatal(e)
	}
	if _, ok := s.tokens.get(tok.AccessToken, c.now()); !ok {
		t.Fatal("a verified token is not cached")
	}
	forged := tok.AccessToken[:len(tok.AccessToken)-4] + "AAAA"
	if _, e := s.Authenticate(req(forged)); e == nil || e.Reason != "bad_signature" {
		t.Fatalf("a token with another signature: %v", e)
	}
	c.advance(5*time.Minute + leeway)
	if _, e := s.Authenticate(req(tok.AccessToken)); e == nil || e.Reason != "expired" {
		t.Fatalf("an expired cached token: %v", e)
	}
	var tc tokenCache
	now := c.now()
	for i := 0; i < 3*tokenCacheSize; i++ {
		tc.put(fmt.Sprint("t", i), cachedToken{until: now.Add(time.Minute)}, now)
	}
	if len(tc.m) > tokenCacheSize {
		t.Fatalf("cache holds %d", len(tc.m))
	}
}

// A zero Config takes DefaultConfig's values.
func TestDefaultConfig(t *testing.T) {
	s, err := New(Config{}, storage.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, c := DefaultConfig(), s.cfg
	if c.TokenTTL != d.TokenTTL || c.SigningRotate != d.SigningRotate || c.Issuer != d.Issuer || c.FailureLimit != d.FailureLimit || c.SweepEvery != d.SweepEvery {
		t.Errorf("zero resolves to %+v, DefaultConfig is %+v", c, d)
	}
}

// Decoded key records are kept by their bytes: a revocation, here or
// replicated from another node, is seen by the very next request.
func TestKeyCacheSeesChanges(t *testing.T) {
	s, _ := newService(t, Config{Tenants: []Tenant{{ID: "a"}}})
	key, info, err := s.CreateKey("a", "k", ScopeChat, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second is served from the cache
		if _, e := s.Authenticate(req(key)); e != nil {
			t.Fatal(e)
		}
	}
	if _, err := s.RevokeKey("a", info.ID); err != nil {
		t.Fatal(err)
	}
	if _, e := s.Authenticate(req(key)); e == nil || e.Reason != "revoked" {
		t.Fatalf("after revocation: %v", e)
	}
	// A record changed behind the service's back (a replicated merge
	// writes the store directly) is decoded again.
	key2, info2, _ := s.CreateKey("a", "k2", ScopeChat, 0)
	if _, e := s.Authenticate(req(key2)); e != nil {
		t.Fatal(e)
	}
	k, _ := s.getKey(info2.ID)
	k.Revoked = 1
	b, _ := json.Marshal(k)
	if err := s.kv.keys.Put(info2.ID, b); err != nil {
		t.Fatal(err)
	}
	if _, e := s.Authenticate(req(key2)); e == nil || e.Reason != "revoked" {
		t.Fatalf("after a direct write: %v", e)
	}
}
