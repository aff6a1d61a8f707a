package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/moltbot/moltbot/storage"
	"golang.org/x/time/rate"
)

// Issuer is a trusted OAuth 2.0 issuer of JWT access tokens.
type Issuer struct {
	Issuer  string `yaml:"issuer"`
	JWKSURL string `yaml:"jwks_url"`
	// Audience is the "aud" every token must carry; required. AudienceAny
	// accepts any (and no) audience, when the issuer makes tokens for
	// moltbot alone.
	Audience string `yaml:"audience"`
	// TenantClaim names the claim holding the tenant id (default "tenant").
	TenantClaim string `yaml:"tenant_claim"`
}

// asymmetric are the only algorithms accepted: "none" and HMAC (which an
// attacker could sign with a public key) never are.
var asymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// AudienceAny as an Issuer's Audience turns the audience check off.
const AudienceAny = "any"

// leeway tolerates clock skew on exp and nbf.
const leeway = 30 * time.Second

type issuer struct {
	cfg    Issuer
	kf     keyfunc.Keyfunc
	cancel context.CancelFunc
}

func newIssuer(c Issuer, hc *http.Client, log *slog.Logger) (*issuer, error) {
	if c.Issuer == "" || c.JWKSURL == "" {
		return nil, errors.New("auth: an issuer needs issuer and jwks_url")
	}
	if strings.TrimSpace(c.Audience) == "" {
		// Without one, a token the issuer made for any other service would do.
		return nil, fmt.Errorf("auth: issuer %s needs an audience (%q accepts any)", c.Issuer, AudienceAny)
	}
	if c.TenantClaim == "" {
		c.TenantClaim = "tenant"
	}
	ctx, cancel := context.WithCancel(context.Background())
	no := true
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.JWKSURL}, keyfunc.Override{
		Client:                    hc,
		HTTPTimeout:               10 * time.Second,
		RefreshInterval:           time.Hour,
		RateLimitWaitMax:          time.Second,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(10*time.Second), 1),
		NoErrorReturnFirstHTTPReq: &no, // an issuer down at start does not stop the node
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn("cannot refresh an issuer's JWKS", "issuer", c.Issuer, "url", u, "err", err)
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: issuer %s: %w", c.Issuer, err)
	}
	return &issuer{cfg: c, kf: kf, cancel: cancel}, nil
}

func (i *issuer) close() { i.cancel() }

// ---- moltbot's own signing keys ----

type signingKey struct {
	kid     string
	priv    *ecdsa.PrivateKey
	created time.Time
	// until is the end of the key as published to other nodes: it signs no
	// token that would outlive it.
	until time.Time
}

type storedKey struct {
	KID     string `json:"kid"`
	PKCS8   []byte `json:"pkcs8"`
	Created int64  `json:"created"`
}

// signer issues JWTs with an ES256 key that changes every rotate; a retired
// key stays published until the tokens it signed have expired.
type signer struct {
	// signing holds the private keys (they never leave the node), jwks
	// the public halves of every node's keys.
	signing, jwks storage.KV
	now           func() time.Time
	rotate, ttl   time.Duration
	publish       func(key string, val []byte)
	mu            sync.Mutex
	keys          []*signingKey // newest first
	// remote are other nodes' public keys (replicate.go), by kid.
	remote map[string]*pubKey
}

func newSigner(signing, jwks storage.KV, now func() time.Time, rotate, ttl time.Duration, publish func(string, []byte)) (*signer, error) {
	s := &signer{signing: signing, jwks: jwks, now: now, rotate: rotate, ttl: ttl, publish: publish, remote: map[string]*pubKey{}}
	err := signing.Scan(func(_ string, v []byte) bool {
		var sk storedKey
		if json.Unmarshal(v, &sk) != nil {
			return true
		}
		k, err := x509.ParsePKCS8PrivateKey(sk.PKCS8)
		if ec, ok := k.(*ecdsa.PrivateKey); err == nil && ok {
			s.keys = append(s.keys, &signingKey{kid: sk.KID, priv: ec, created: time.Unix(sk.Created, 0)})
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(s.keys, func(i, j int) bool { return s.keys[i].created.After(s.keys[j].created) })
	var expired []string
	err = jwks.Scan(func(k string, v []byte) bool {
		var p pubKey
		switch {
		case json.Unmarshal(v, &p) != nil || p.parse() != nil:
		case !now().Before(time.Unix(p.Until, 0)):
			expired = append(expired, k)
		case s.ownLocked(p.KID) == nil:
			s.remote[p.KID] = &p
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, k := range expired {
		_ = jwks.Delete(k)
	}
	// An own key's end is what its public record says (made under the
	// settings of its day); keys made before publication existed get one.
	for _, k := range s.keys {
		var p pubKey
		if v, found, _ := jwks.Get(k.kid); found && json.Unmarshal(v, &p) == nil {
			k.until = time.Unix(p.Until, 0)
			continue
		}
		k.until = k.created.Add(s.rotate + s.ttl + leeway)
		b, _ := json.Marshal(s.pubOf(k))
		_ = jwks.Put(k.kid, b)
	}
	return s, nil
}

// pubOf is the public record of an own key.
func (s *signer) pubOf(k *signingKey) *pubKey {
	return newPubKey(k.kid, &k.priv.PublicKey, k.until)
}

func (s *signer) ownLocked(kid string) *signingKey {
	for _, k := range s.keys {
		if k.kid == kid {
			return k
		}
	}
	return nil
}

// current returns the signing key, rotating when it is due, and drops keys
// whose tokens have all expired.
func (s *signer) current() (*signingKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	// Rotate on schedule, and whenever a token signed now would outlive the
	// key's published end (the settings changed since it was made).
	if len(s.keys) == 0 || now.Sub(s.keys[0].created) >= s.rotate || now.Add(s.ttl+leeway).After(s.keys[0].until) {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		k := &signingKey{kid: randomString(8), priv: priv, created: now, until: now.Add(s.rotate + s.ttl + leeway)}
		der, _ := x509.MarshalPKCS8PrivateKey(priv)
		b, _ := json.Marshal(storedKey{KID: k.kid, PKCS8: der, Created: now.Unix()})
		if err := s.signing.Put(k.kid, b); err != nil {
			return nil, err
		}
		// The public half first, for the other nodes: they must know it
		// before a token it signs reaches them.
		pb, _ := json.Marshal(s.pubOf(k))
		if err := s.jwks.Put(k.kid, pb); err != nil {
			return nil, err
		}
		s.publish(wirePub+k.kid, pb)
		s.keys = append([]*signingKey{k}, s.keys...)
	}
	// A key retired at r (when its successor was made) signed tokens until r;
	// they expire by r + ttl.
	keep := s.keys[:1]
	for i := 1; i < len(s.keys); i++ {
		retired := s.keys[i-1].created
		if now.Sub(retired) < s.ttl+leeway {
			keep = append(keep, s.keys[i])
		} else {
			_ = s.signing.Delete(s.keys[i].kid)
			_ = s.jwks.Delete(s.keys[i].kid)
		}
	}
	s.keys = keep
	for kid, p := range s.remote {
		if !now.Before(time.Unix(p.Until, 0)) {
			delete(s.remote, kid)
			_ = s.jwks.Delete(kid)
		}
	}
	return s.keys[0], nil
}

// lookup finds the verification key of kid: this node's, or another's.
func (s *signer) lookup(kid string) *ecdsa.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.ownLocked(kid); k != nil {
		return &k.priv.PublicKey
	}
	if p := s.remote[kid]; p != nil && s.now().Before(time.Unix(p.Until, 0)) {
		return p.key
	}
	return nil
}

// JWKS returns the published public keys (RFC 7517).
func (s *Service) JWKS() []byte {
	if _, err := s.signer.current(); err != nil {
		s.log.Error("signing key", "err", err)
	}
	s.signer.mu.Lock()
	defer s.signer.mu.Unlock()
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Y   string `json:"y"`
		Kid string `json:"kid"`
		Use string `json:"use"`
		Alg string `json:"alg"`
	}
	out := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	var pubs []*pubKey
	for _, k := range s.signer.keys {
		pubs = append(pubs, s.signer.pubOf(k))
	}
	// Then the other nodes' keys (a cluster is one issuer), in a stable order.
	var remote []*pubKey
	for _, p := range s.signer.remote {
		remote = append(remote, p)
	}
	sort.Slice(remote, func(i, j int) bool { return remote[i].KID < remote[j].KID })
	for _, p := range append(pubs, remote...) {
		out.Keys = append(out.Keys, jwk{Kty: "EC", Crv: "P-256", X: p.X, Y: p.Y, Kid: p.KID, Use: "sig", Alg: "ES256"})
	}
	b, _ := json.Marshal(out)
	return b
}

// Token is an issued access token.
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// OAuthError is an RFC 6749 token endpoint error.
type OAuthError struct {
	Status int
	Code   string // invalid_request, invalid_client, unsupported_grant_type, invalid_scope
	Desc   string
	// Retry is set on 429: the client's address failed too often.
	Retry time.Duration
}

func (e *OAuthError) Error() string { return e.Code + ": " + e.Desc }

// Unwrap gives the failure as a domain error whose Reason is the RFC 6749
// error code.
func (e *OAuthError) Unwrap() error { return domainError(e.Status, e.Code, e.Desc, e.Retry) }

// ClientCredentials is ClientCredentialsFrom with failures counted against
// no particular address (tests, tools).
func (s *Service) ClientCredentials(grant, clientID, clientSecret, scope string) (*Token, error) {
	return s.ClientCredentialsFrom("", grant, clientID, clientSecret, scope)
}

// ClientCredentialsFrom runs the client credentials grant: the client is an
// API key (client_id its id, client_secret the key itself); the token
// carries its tenant and scope (or a narrower one asked for). A failed
// client authentication counts against client like a failed Authenticate
// (the same budget): past it, 429 invalid_client with Retry.
func (s *Service) ClientCredentialsFrom(client, grant, clientID, clientSecret, scope string) (*Token, error) {
	if grant != "client_credentials" {
		return nil, &OAuthError{Status: 400, Code: "unsupported_grant_type", Desc: fmt.Sprintf("grant_type %q is not supported; use client_credentials", grant)}
	}
	fail := func(desc string) error {
		if w, over := s.failed(client, "invalid_client"); over {
			return &OAuthError{Status: http.StatusTooManyRequests, Code: "invalid_client", Retry: w,
				Desc: "too many failed authentications from this address; wait before retrying"}
		}
		return &OAuthError{Status: 401, Code: "invalid_client", Desc: desc}
	}
	if clientID == "" || clientSecret == "" {
		return nil, fail("client authentication is required (HTTP Basic or client_id and client_secret)")
	}
	p, aerr := s.checkKey(clientSecret)
	if aerr != nil || p.KeyID != clientID {
		return nil, fail("unknown client or wrong secret")
	}
	granted := p.Scope
	switch scope {
	case "", string(p.Scope):
	case string(ScopeChat):
		granted = ScopeChat
	default:
		return nil, &OAuthError{Status: 400, Code: "invalid_scope", Desc: fmt.Sprintf("scope %q is not granted to this client", scope)}
	}
	k, err := s.signer.current()
	if err != nil {
		return nil, err
	}
	now := s.now()
	exp := now.Add(s.cfg.TokenTTL)
	if !p.Expires.IsZero() && p.Expires.Before(exp) {
		exp = p.Expires
	}
	claims := jwt.MapClaims{"iss": s.cfg.Issuer, "sub": p.KeyID, "aud": s.cfg.Issuer, "tenant": p.Tenant, "scope": string(granted),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(), "jti": randomString(10)}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = k.kid
	signed, err := tok.SignedString(k.priv)
	if err != nil {
		return nil, err
	}
	return &Token{AccessToken: signed, TokenType: "Bearer", ExpiresIn: int(exp.Sub(now).Seconds()), Scope: string(granted)}, nil
}

// MaxSubjectLen bounds an outside token's sub, which conversations record
// as their user.
const MaxSubjectLen = 255

// checkJWT verifies a JWT from moltbot itself or a configured issuer.
func (s *Service) checkJWT(raw string) (*Principal, *Error) {
	c, ok := s.tokens.get(raw, s.now())
	if !ok {
		var e *Error
		if c, e = s.verifyJWT(raw); e != nil {
			return nil, e
		}
		s.tokens.put(raw, c, s.now())
	}
	// What can change while a token lives is checked on every request.
	t := s.tenant(c.p.Tenant)
	if t == nil {
		return nil, unauthorized("unknown_tenant", "invalid_token", "unknown tenant %q", c.p.Tenant)
	}
	p := c.p
	p.Space = t.Space()
	if !c.own {
		// An outside issuer's token with a sub speaks for that end user:
		// without the admin scope it sees only the user's conversations.
		// One without a sub is a service's (RFC 9068 asks for a sub; an
		// issuer that leaves it out issues service tokens).
		if len(p.Subject) > MaxSubjectLen {
			return nil, unauthorized("bad_claims", "invalid_token", "the token's sub claim is %d bytes; at most %d are allowed", len(p.Subject), MaxSubjectLen)
		}
		p.User, p.UserBound = p.Subject, p.Subject != "" && !p.Admin()
	}
	if c.own {
		// A token of ours lives no longer than the key it was issued to,
		// whatever ends the key: revocation, expiry, the end of its grace
		// after a rotation, its tenant's deletion or re-creation.
		k, err := s.keyRecord(c.p.Subject)
		if err != nil || k.Tenant != c.p.Tenant {
			return nil, unauthorized("revoked", "invalid_token", "the token's client key was revoked")
		}
		if _, aerr := s.keyValid(k, s.now()); aerr != nil {
			aerr.Msg = "the token's client key is no longer valid: " + aerr.Msg
			return nil, aerr
		}
		if k.Expires != 0 && time.Unix(k.Expires, 0).Before(p.Expires) {
			p.Expires = time.Unix(k.Expires, 0)
		}
		// A token of ours speaks as its key's bot (read from the key on
		// every use, as its validity is). An outside issuer's token names
		// no bot: there is no claim for one.
		p.Bot = k.Bot
	}
	return &p, nil
}

// verifyJWT checks a token's signature and claims (the expensive part).
func (s *Service) verifyJWT(raw string) (cachedToken, *Error) {
	var none cachedToken
	if strings.Count(raw, ".") != 2 {
		return none, unauthorized("malformed", "invalid_token", "malformed token: neither an API key (mb_...) nor a JWT")
	}
	var peek jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &peek); err != nil {
		return none, unauthorized("malformed", "invalid_token", "malformed JWT: %v", err)
	}
	iss, _ := peek["iss"].(string)
	var keyf jwt.Keyfunc
	audience, tenantClaim := "", "tenant"
	switch {
	case iss == s.cfg.Issuer:
		audience = s.cfg.Issuer
		keyf = func(t *jwt.Token) (any, error) {
			kid, _ := t.Header["kid"].(string)
			if k := s.signer.lookup(kid); k != nil {
				return k, nil
			}
			return nil, fmt.Errorf("unknown signing key %q", kid)
		}
	default:
		for _, is := range s.issuers {
			if is.cfg.Issuer == iss {
				keyf, audience, tenantClaim = is.kf.Keyfunc, is.cfg.Audience, is.cfg.TenantClaim
			}
		}
	}
	if keyf == nil {
		return none, unauthorized("unknown_issuer", "invalid_token", "token issuer %q is not trusted", iss)
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(asymmetric), jwt.WithIssuer(iss), jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway), jwt.WithTimeFunc(s.now), jwt.WithIssuedAt()}
	if audience != AudienceAny {
		opts = append(opts, jwt.WithAudience(audience))
	}
	var claims jwt.MapClaims
	if _, err := jwt.ParseWithClaims(raw, &claims, keyf, opts...); err != nil {
		reason := "invalid_jwt"
		switch {
		case strings.Contains(err.Error(), "signing method"):
			reason = "bad_algorithm"
		case errors.Is(err, jwt.ErrTokenExpired):
			reason = "expired"
		case errors.Is(err, jwt.ErrTokenNotValidYet):
			reason = "not_yet_valid"
		case errors.Is(err, jwt.ErrTokenInvalidAudience):
			reason = "wrong_audience"
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			reason = "bad_signature"
		}
		return none, unauthorized(reason, "invalid_token", "invalid token: %v", err)
	}
	tenant, _ := claims[tenantClaim].(string)
	if tenant == "" {
		return none, unauthorized("no_tenant", "invalid_token", "the token has no %q claim", tenantClaim)
	}
	c := cachedToken{own: iss == s.cfg.Issuer, p: Principal{Tenant: tenant, Scope: ScopeChat, Method: "jwt"}}
	c.p.Subject, _ = claims["sub"].(string)
	if sc, _ := claims["scope"].(string); strings.Contains(" "+sc+" ", " admin ") {
		c.p.Scope = ScopeAdmin
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return none, unauthorized("invalid_jwt", "invalid_token", "the token has no exp")
	}
	c.p.Expires = exp.Time
	c.until = exp.Time.Add(leeway) // as long as the parser would accept it
	return c, nil
}

// tokenCache remembers verified JWTs until they expire: a service calling
// with one token pays the signature check (about 90 µs for ES256) once,
// not on every request. Failures are never cached.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedToken
}

type cachedToken struct {
	p     Principal
	own   bool // issued by this cluster: its key is checked on every use
	until time.Time
}

// tokenCacheSize bounds the cache (tokens are about 500 bytes).
const tokenCacheSize = 1024

func (c *tokenCache) get(raw string, now time.Time) (cachedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[raw]
	if !ok {
		return e, false
	}
	if !now.Before(e.until) {
		delete(c.m, raw)
		return e, false
	}
	return e, true
}

func (c *tokenCache) put(raw string, e cachedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedToken{}
	}
	if len(c.m) >= tokenCacheSize {
		// Full: drop the expired, else any one (map order is random).
		for k, v := range c.m {
			if !now.Before(v.until) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < tokenCacheSize {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[raw] = e
}
