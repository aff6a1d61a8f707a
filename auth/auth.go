// Package auth is moltbot's auth gateway, without HTTP routing: tenants,
// API keys (hashed at rest, rotated with a grace period, expiring by tenant
// policy), OAuth 2.0 as a resource server (JWTs from configured issuers,
// verified against their cached JWKS) and as an authorization server for
// service accounts (client credentials -> short-lived JWTs signed with
// moltbot's own rotating keys), token-bucket limits per tenant and per key,
// and the slowing of repeated failed authentications.
//
// Records persist in the node's Pebble, in the storage namespaces
// storage.AuthKeys, AuthTenants, AuthSigning and AuthJWKS. The clock is injectable so
// that expiry and rotation are tested without waiting.
package auth

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/storage"
)

// records are the namespaces auth keeps its records in.
type records struct {
	keys    *countedKV
	tenants storage.KV
}

func openRecords(db storage.Namespaces) records {
	return records{keys: &countedKV{KV: db.Namespace(storage.AuthKeys)}, tenants: db.Namespace(storage.AuthTenants)}
}

// countedKV is a namespace that counts the writes made through it: a
// record read while the count was g is the stored one for as long as the
// count is still g (keyCache). Every write to the keys' namespace goes
// through it: this service's own (putKey), replicated ones (Merge) and
// tests' direct ones. The count moves after the write, never before, so
// that a reader that saw the new count reads the new record.
type countedKV struct {
	storage.KV
	gen atomic.Uint64
}

func (c *countedKV) Put(key string, val []byte) error {
	defer c.gen.Add(1)
	return c.KV.Put(key, val)
}

func (c *countedKV) Delete(key string) error {
	defer c.gen.Add(1)
	return c.KV.Delete(key)
}

// Scope is what a credential may do (moltbot.Scope).
type Scope = moltbot.Scope

// Scopes. Admin includes chat. An admin of the default tenant is the
// operator: it manages tenants and every tenant's keys.
const (
	ScopeChat  = moltbot.ScopeChat
	ScopeAdmin = moltbot.ScopeAdmin
	ScopeAgent = moltbot.ScopeAgent
)

// DefaultTenant is the tenant of a single-user node.
const DefaultTenant = moltbot.DefaultTenant

// Principal is who a request is from (moltbot.Principal).
type Principal = moltbot.Principal

// Error is an authentication or authorization failure, with what to tell
// the client in WWW-Authenticate.
type Error struct {
	Status int    // 401, 403 or 429
	Code   string // RFC 6750: invalid_request, invalid_token, insufficient_scope
	Reason string // for metrics: missing, malformed, unknown_key, expired, revoked, ...
	Msg    string
	Retry  time.Duration
}

func (e *Error) Error() string { return e.Msg }

// Unwrap gives the failure as a domain error (EUnauthorized, ERateLimited
// or EForbidden, Reason the RFC 6750 code): edges decide status and
// challenge from it.
func (e *Error) Unwrap() error { return domainError(e.Status, e.Code, e.Msg, e.Retry) }

func domainError(status int, reason, msg string, retry time.Duration) *moltbot.Error {
	code := moltbot.EUnauthorized
	switch status {
	case http.StatusTooManyRequests:
		code = moltbot.ERateLimited
	case http.StatusForbidden:
		code = moltbot.EForbidden
	case http.StatusBadRequest:
		code = moltbot.EInvalid
	}
	return &moltbot.Error{Code: code, Reason: reason, Message: msg, RetryAfter: retry}
}

// WWWAuthenticate is the header value for a 401.
func (e *Error) WWWAuthenticate() string {
	if e.Code == "" {
		return `Bearer realm="moltbot"`
	}
	return fmt.Sprintf(`Bearer realm="moltbot", error=%q, error_description=%q`, e.Code, strings.ReplaceAll(e.Msg, `"`, "'"))
}

func unauthorized(reason, code, format string, args ...any) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: code, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// ErrNotFound is returned for keys and tenants that do not exist, or that
// belong to another tenant: a caller cannot tell them apart.
var ErrNotFound = errors.New("auth: not found")

// ErrConflict is returned for a tenant that already exists.
var ErrConflict = errors.New("auth: already exists")

// Config configures the service. Zero fields take DefaultConfig's values.
type Config struct {
	// Enabled requires a credential on every API call.
	Enabled bool
	Tenants []Tenant
	// Issuers are trusted OAuth 2.0 issuers of JWT access tokens.
	Issuers []Issuer
	// TokenTTL is the lifetime of the JWTs /oauth/token issues.
	TokenTTL time.Duration
	// SigningRotate is how often moltbot's own signing key changes.
	SigningRotate time.Duration
	// Issuer is the "iss" of the tokens moltbot issues.
	Issuer string
	// FailureLimit failed authentications per minute from one address are
	// allowed; past it the address gets 429.
	FailureLimit int
	// Conversations, when set, is swept of the conversations of deleted
	// tenants (sweep.go) after each tenant change and every SweepEvery.
	Conversations Conversations
	SweepEvery    time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
	// HTTPClient fetches issuers' JWKS (tests point it at local servers).
	HTTPClient *http.Client
}

// DefaultConfig is every default of Config: tokens for 15 minutes from
// a signing key that changes daily, issued as "moltbot"; 20 failed
// authentications a minute from an address; the sweep hourly.
func DefaultConfig() Config {
	return Config{TokenTTL: 15 * time.Minute, SigningRotate: 24 * time.Hour, Issuer: "moltbot", FailureLimit: 20,
		SweepEvery: DefaultSweepEvery}
}

// Service is the auth gateway's state. Safe for concurrent use.
type Service struct {
	cfg Config
	kv  records
	log *slog.Logger
	now func() time.Time

	mu      sync.RWMutex
	tenants map[string]*Tenant

	limits   *limiter
	failures *limiter
	issuers  []*issuer
	signer   *signer
	tokens   tokenCache
	decoded  keyCache // key records as last read, by the keys' write count (keys.go)
	onFail   func(reason string)

	// Replication (replicate.go): recMu orders read-modify-writes of key and
	// tenant records against merges from other nodes.
	recMu     sync.Mutex
	verMu     sync.Mutex
	lastVer   int64
	pubMu     sync.Mutex
	publisher func([]byte)
	onRefused func(reason string)

	sweepKick chan struct{}
	sweepStop chan struct{}
	sweepWG   sync.WaitGroup
	closeOnce sync.Once
}

// New loads the service's records from db (storage.Pebble, or
// storage.Memory in tests) and starts what it needs. Close stops it.
func New(cfg Config, db storage.Namespaces) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := DefaultConfig()
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = d.TokenTTL
	}
	if cfg.SigningRotate <= 0 {
		cfg.SigningRotate = d.SigningRotate
	}
	if cfg.Issuer == "" {
		cfg.Issuer = d.Issuer
	}
	if cfg.FailureLimit <= 0 {
		cfg.FailureLimit = d.FailureLimit
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = d.SweepEvery
	}
	if life := cfg.SigningRotate + cfg.TokenTTL + leeway; life > maxPubLife {
		return nil, fmt.Errorf("auth: signing_rotate + token_ttl is %s; at most %s", life-leeway, maxPubLife-leeway)
	}
	s := &Service{cfg: cfg, kv: openRecords(db), log: cfg.Logger, now: cfg.Now, tenants: map[string]*Tenant{},
		limits: newLimiter(cfg.Now), failures: newLimiter(cfg.Now),
		sweepKick: make(chan struct{}, 1), sweepStop: make(chan struct{})}
	if err := s.loadTenants(); err != nil {
		return nil, err
	}
	if err := s.loadVersions(); err != nil {
		return nil, err
	}
	for _, ic := range cfg.Issuers {
		is, err := newIssuer(ic, cfg.HTTPClient, s.log)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.issuers = append(s.issuers, is)
	}
	sg, err := newSigner(db.Namespace(storage.AuthSigning), db.Namespace(storage.AuthJWKS), cfg.Now, cfg.SigningRotate, cfg.TokenTTL, s.publish)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.signer = sg
	if cfg.Conversations != nil {
		s.sweepWG.Add(1)
		go s.sweepLoop()
	}
	return s, nil
}

// Enabled reports whether credentials are required.
func (s *Service) Enabled() bool { return s.cfg.Enabled }

// OnFailure sets a callback counting failed authentications by reason.
func (s *Service) OnFailure(fn func(reason string)) { s.onFail = fn }

// Close stops JWKS refreshing and the sweeper, and waits for the sweeper.
// It is idempotent.
func (s *Service) Close() {
	s.closeOnce.Do(func() {
		for _, is := range s.issuers {
			is.close()
		}
		close(s.sweepStop)
		s.sweepWG.Wait()
	})
}
