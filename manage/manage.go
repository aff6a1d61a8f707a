// Package manage is the management service: tenants, keys and tokens,
// provider and cluster state, configuration reloads. It decides who may do
// what (the operator, a tenant's admin) and speaks in domain errors, so
// that the HTTP gateway (and the console and the CLI after it) import
// neither auth nor actors: they translate requests and answers, nothing
// more. Later, the hand-off queue joins it.
package manage

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/cache"
	"github.com/moltbot/moltbot/retention"
)

// The records the service hands out (auth's and actors' own types).
type (
	KeyInfo        = auth.KeyInfo
	Tenant         = auth.Tenant
	Limits         = auth.Limits
	Retention      = auth.Retention
	SweepResult    = retention.Result
	Token          = auth.Token
	ProviderStatus = actors.ProviderStatus
	BreakerStatus  = actors.BreakerStatus
	ClusterStatus  = actors.ClusterStatus
	RuntimeStatus  = actors.Status
	CacheStats     = cache.Stats
	CachePurge     = cache.PurgeResult
)

// DefaultGrace is how long a rotated key keeps working when no grace is asked.
const DefaultGrace = auth.DefaultGrace

// Runtime is what the service reads of the actor runtime (*actors.Runtime).
type Runtime interface {
	Status() actors.Status
	Cluster() *actors.ClusterStatus
	Ready() error
}

// Config configures the service.
type Config struct {
	// Auth holds tenants and keys; nil: a node without auth (every call is
	// the operator's, and there are no keys to manage).
	Auth    *auth.Service
	Runtime Runtime
	// StorageHealth reports whether storage is usable (readiness).
	StorageHealth func() error
	// Reload re-reads provider credentials; it returns how many providers
	// were updated. Nil: the node has no config file.
	Reload func() (int, error)
	// Retention runs a retention sweep of this node now (the retention
	// Sweeper's Sweep); nil: none.
	Retention func(ctx context.Context) (retention.Result, error)
	// Cache is the node's output cache (cache.go); nil: none.
	Cache Cache
	// Bots is the config's bots (bots.go); nil: none.
	Bots Bots
	// KB is the node's knowledge bases (kb.go); nil: none.
	KB *KB
	// Handoff is the hand-off queue (handoff.go); nil: none.
	Handoff Handoff
	// Channels is the node's channels (channels.go); nil: none.
	Channels Channels
	// SkillFiles are tenants' pushed skills (skillfiles.go); nil: none.
	SkillFiles SkillFiles
}

// Service is the management service.
type Service struct {
	auth *auth.Service
	cfg  Config
}

// New returns the service.
func New(cfg Config) *Service { return &Service{auth: cfg.Auth, cfg: cfg} }

// AuthEnabled reports whether calls need a credential.
func (s *Service) AuthEnabled() bool { return s.auth != nil && s.auth.Enabled() }

// KeysEnabled reports whether there are keys and tenants to manage.
func (s *Service) KeysEnabled() bool { return s.auth != nil }

// OnAuthFailure calls fn with the reason of every failed authentication.
func (s *Service) OnAuthFailure(fn func(reason string)) {
	if s.auth != nil {
		s.auth.OnFailure(fn)
	}
}

// Authenticate finds the principal of an HTTP request from its
// Authorization header; failures count against client. The error is a
// domain error: EUnauthorized (Reason: RFC 6750's code) or ERateLimited.
func (s *Service) Authenticate(r *http.Request, client string) (*moltbot.Principal, error) {
	if s.auth == nil {
		return moltbot.Anonymous(), nil
	}
	p, err := s.auth.AuthenticateFrom(r, client)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Policy is the tenants' admission policy for the chat service (nil when
// there is no auth).
func (s *Service) Policy() *auth.Service { return s.auth }

func requireAdmin(p *moltbot.Principal) error {
	if !p.Admin() {
		return moltbot.Errorf(moltbot.EForbidden, "this needs a credential with the admin scope")
	}
	return nil
}

func requireOperator(p *moltbot.Principal) error {
	if !p.Operator() {
		return moltbot.Errorf(moltbot.EForbidden, "this needs an admin credential of the default tenant (the operator)")
	}
	return nil
}

// RequireOperator answers EForbidden unless p is the operator.
func RequireOperator(p *moltbot.Principal) error { return requireOperator(p) }

func (s *Service) needKeys() error {
	if s.auth == nil {
		return moltbot.Errorf(moltbot.ENotFound, "this node has no key store")
	}
	return nil
}

// domain turns auth's errors into domain errors.
func domain(err error) error {
	if err == nil {
		return nil
	}
	var re *auth.RotatedError
	var me *moltbot.Error
	switch {
	case errors.As(err, &re):
		return moltbot.Errorf(moltbot.EConflict, "key %s was already rotated; its successor is %s (a key is rotated once)", re.ID, re.Successor)
	case errors.Is(err, auth.ErrNotFound):
		return moltbot.Errorf(moltbot.ENotFound, "not found")
	case errors.Is(err, auth.ErrConflict):
		return moltbot.Errorf(moltbot.EConflict, "it already exists")
	case errors.As(err, &me):
		return err
	}
	return &moltbot.Error{Code: moltbot.EInvalid, Message: strings.TrimPrefix(err.Error(), "auth: ")}
}

// scopeTenant is the tenant whose keys p may touch: its own, or any for
// the operator ("" = all).
func scopeTenant(p *moltbot.Principal, asked string) (string, bool) {
	if p.Operator() {
		return asked, true
	}
	if asked != "" && asked != p.Tenant {
		return "", false
	}
	return p.Tenant, true
}

// Keys lists the keys of tenant ("": p's, or every tenant's for the
// operator). Another tenant's keys are an empty list.
func (s *Service) Keys(p *moltbot.Principal, tenant string) ([]KeyInfo, error) {
	if err := s.needKeys(); err != nil {
		return nil, err
	}
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	t, ok := scopeTenant(p, tenant)
	if !ok {
		return []KeyInfo{}, nil
	}
	list, err := s.auth.ListKeys(t)
	return list, domain(err)
}

// NewKey is a key to create.
type NewKey struct {
	Tenant string // "": p's
	Name   string
	Scope  moltbot.Scope
	TTL    time.Duration
	// OllamaKey, when set, registers an Ollama public key (the line of
	// ~/.ollama/id_ed25519.pub) instead of making an API key: requests the
	// ollama CLI signs with it (OLLAMA_AUTH=1) are the tenant's, with the
	// chat scope. There is no secret to return.
	OllamaKey string
	// OllamaProof is the key's SSH signature of the tenant's name
	// (auth.OllamaProofCommand): whoever registers a public key shows
	// that its holder meant it for this tenant.
	OllamaProof string
	// Bot binds the key to a bot of its tenant (its calls speak as the
	// bot; chat scope only); "": none.
	Bot string
}

// CreateKey makes a key; the secret is returned once (none for an Ollama key).
func (s *Service) CreateKey(p *moltbot.Principal, k NewKey) (string, *KeyInfo, error) {
	if err := s.needKeys(); err != nil {
		return "", nil, err
	}
	if err := requireAdmin(p); err != nil {
		return "", nil, err
	}
	if k.Tenant == "" {
		k.Tenant = p.Tenant
	}
	t, ok := scopeTenant(p, k.Tenant)
	if !ok {
		return "", nil, moltbot.Errorf(moltbot.ENotFound, "tenant %q not found", k.Tenant)
	}
	if k.Bot != "" {
		if k.OllamaKey != "" {
			return "", nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "bot", Message: "an Ollama key cannot be bound to a bot; make an API key with bot"}
		}
		if err := s.checkBot(t, k.Bot); err != nil {
			return "", nil, err
		}
	}
	if k.OllamaKey != "" {
		info, err := s.auth.CreateOllamaKey(t, k.Name, k.Scope, k.OllamaKey, k.OllamaProof, k.TTL)
		return "", info, domain(err)
	}
	secret, info, err := s.auth.CreateBotKey(t, k.Name, k.Scope, k.TTL, k.Bot)
	return secret, info, domain(err)
}

// RevokeKey ends a key of p's tenant (any tenant's for the operator).
func (s *Service) RevokeKey(p *moltbot.Principal, id string) (*KeyInfo, error) {
	if err := s.needKeys(); err != nil {
		return nil, err
	}
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	t, _ := scopeTenant(p, "")
	info, err := s.auth.RevokeKey(t, id)
	return info, domain(err)
}

// RotateKey replaces a key; the old one works for grace more.
func (s *Service) RotateKey(p *moltbot.Principal, id string, grace time.Duration) (string, *KeyInfo, error) {
	if err := s.needKeys(); err != nil {
		return "", nil, err
	}
	if err := requireAdmin(p); err != nil {
		return "", nil, err
	}
	t, _ := scopeTenant(p, "")
	secret, info, err := s.auth.RotateKey(t, id, grace)
	return secret, info, domain(err)
}

// RotateSelf replaces the key p calls with.
func (s *Service) RotateSelf(p *moltbot.Principal, grace time.Duration) (string, *KeyInfo, error) {
	if err := s.needKeys(); err != nil {
		return "", nil, err
	}
	secret, info, err := s.auth.RotateSelf(p, grace)
	return secret, info, domain(err)
}

// Tenants lists the tenants (the operator's).
func (s *Service) Tenants(p *moltbot.Principal) ([]Tenant, error) {
	if err := s.needKeys(); err != nil {
		return nil, err
	}
	if err := requireOperator(p); err != nil {
		return nil, err
	}
	return s.auth.Tenants(), nil
}

// CreateTenant makes a tenant (the operator's).
func (s *Service) CreateTenant(p *moltbot.Principal, t Tenant) (*Tenant, error) {
	if err := s.needKeys(); err != nil {
		return nil, err
	}
	if err := requireOperator(p); err != nil {
		return nil, err
	}
	nt, err := s.auth.CreateTenant(t)
	return nt, domain(err)
}

// DeleteTenant deletes a tenant, its keys, and (by the sweep) its conversations.
func (s *Service) DeleteTenant(p *moltbot.Principal, id string) error {
	if err := s.needKeys(); err != nil {
		return err
	}
	if err := requireOperator(p); err != nil {
		return err
	}
	return domain(s.auth.DeleteTenant(id))
}

// Token is the OAuth 2.0 client credentials grant; failures count against
// client. Errors are domain errors whose Reason is RFC 6749's code.
func (s *Service) Token(client, grant, clientID, secret, scope string) (*Token, error) {
	if err := s.needKeys(); err != nil {
		return nil, err
	}
	tok, err := s.auth.ClientCredentialsFrom(client, grant, clientID, secret, scope)
	if err != nil {
		return nil, err
	}
	return tok, nil
}

// JWKS is the public keys of moltbot's own tokens.
func (s *Service) JWKS() []byte {
	if s.auth == nil {
		return []byte(`{"keys":[]}`)
	}
	return s.auth.JWKS()
}

// Reload re-reads provider credentials (the operator's).
func (s *Service) Reload(p *moltbot.Principal) (int, error) {
	if err := requireOperator(p); err != nil {
		return 0, err
	}
	if s.cfg.Reload == nil {
		return 0, moltbot.Errorf(moltbot.EInvalid, "this node has no config file to reload")
	}
	n, err := s.cfg.Reload()
	if err != nil {
		return 0, &moltbot.Error{Code: moltbot.EInvalid, Message: err.Error()}
	}
	return n, nil
}

// SweepRetention runs a retention sweep of this node's conversations now
// and says what it did (the operator's). Every node sweeps only what it
// owns: in a cluster, ask each node.
func (s *Service) SweepRetention(ctx context.Context, p *moltbot.Principal) (*SweepResult, error) {
	if err := requireOperator(p); err != nil {
		return nil, err
	}
	if s.cfg.Retention == nil {
		return nil, moltbot.Errorf(moltbot.ENotFound, "this node runs no retention sweep")
	}
	r, err := s.cfg.Retention(ctx)
	if err != nil {
		return &r, &moltbot.Error{Code: moltbot.EUnavailable, Message: "the retention sweep failed: " + err.Error(), Err: err}
	}
	return &r, nil
}

// Ready reports whether the node can serve: storage, then the runtime.
func (s *Service) Ready() error {
	if s.cfg.StorageHealth != nil {
		if err := s.cfg.StorageHealth(); err != nil {
			return err
		}
	}
	return s.cfg.Runtime.Ready()
}

// Status is the runtime's state (the operator's).
func (s *Service) Status(p *moltbot.Principal) (RuntimeStatus, error) {
	if err := requireOperator(p); err != nil {
		return RuntimeStatus{}, err
	}
	return s.cfg.Runtime.Status(), nil
}

// Cluster is this node's view of the cluster, nil when it runs alone (the
// operator's).
func (s *Service) Cluster(p *moltbot.Principal) (*ClusterStatus, error) {
	if err := requireOperator(p); err != nil {
		return nil, err
	}
	return s.cfg.Runtime.Cluster(), nil
}
