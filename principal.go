package moltbot

import (
	"context"
	"time"
)

// Scope is what a credential may do.
type Scope string

// Scopes. Admin includes chat. An admin of the default tenant is the
// operator: it manages tenants and every tenant's keys.
const (
	ScopeChat  Scope = "chat"
	ScopeAdmin Scope = "admin"
	// ScopeAgent is a human agent's (hand-off, issue 14): it may list,
	// claim, answer and release its tenant's handed-off conversations
	// (/v1/admin/handoff) and nothing else: no chat, no other admin call.
	ScopeAgent Scope = "agent"
)

// Principal is who a call is from, whatever edge it came through: the
// tenant and credential that authenticated it, and the end user it speaks
// for. Every call of the chat service carries one.
type Principal struct {
	Tenant string
	// Space is where the tenant's conversations live: the tenant id, and
	// for a tenant made through the API its incarnation ("acme:<inc>"), so
	// a tenant deleted and made again never sees the old one's
	// conversations. Conversations are looked up by Space, never Tenant.
	Space string
	Scope Scope
	// KeyID names the API key (or, for moltbot's own tokens, the client
	// key the token was issued to); not secret.
	KeyID string
	// Subject is a JWT's "sub".
	Subject string
	// Method is how the caller authenticated: "key", "jwt", "none" (auth
	// disabled), "channel" (a channel adapter speaking for its users).
	Method string
	// User is the end user the call is for: an OAuth token's sub, a
	// channel's user id, a web visitor; empty when the credential is a
	// service acting for any user. Conversations record the user that
	// created them.
	User string
	// UserBound limits the caller to User's own conversations: a user-level
	// credential (an outside issuer's token without the admin scope, a
	// channel's user). Tenant admins and service keys see all.
	UserBound bool
	// Channel names the edge the call came through ("http", "slack:<name>", ...).
	Channel string
	// Bot, when set, is the bot the credential speaks as (a key bound with
	// `keys create --bot`, a token issued to such a key, later a channel's
	// bot): its persona, chain and skills, and only its conversations. It
	// narrows what the credential may do, never widens it.
	Bot string
	// Expires is when the credential stops working (zero: never).
	Expires time.Time
	// ExpiresSoon is set when the credential is near its end: HTTP
	// responses carry X-Moltbot-Key-Expires.
	ExpiresSoon bool
}

// Admin reports whether p may use admin endpoints.
func (p *Principal) Admin() bool { return p.Scope == ScopeAdmin }

// Agent reports whether p is a human agent's credential (ScopeAgent).
func (p *Principal) Agent() bool { return p.Scope == ScopeAgent }

// Operator reports whether p may manage tenants and any tenant's keys.
func (p *Principal) Operator() bool { return p.Scope == ScopeAdmin && p.Tenant == DefaultTenant }

// Sees reports whether p may see a conversation that user created.
func (p *Principal) Sees(user string) bool { return !p.UserBound || p.User == user }

// SeesBot reports whether p may see a conversation of bot ("": none): a
// bot-bound credential sees only its bot's conversations, any other sees
// all of its tenant's.
func (p *Principal) SeesBot(bot string) bool { return p.Bot == "" || p.Bot == bot }

// Anonymous is the principal of every call when auth is off: the default
// tenant's operator.
func Anonymous() *Principal {
	return &Principal{Tenant: DefaultTenant, Space: DefaultTenant, Scope: ScopeAdmin, Method: "none"}
}

type principalKey struct{}

// WithPrincipal returns ctx carrying who a call is for: the chat service
// says so to the runtime for a stateless completion, whose turn then names
// the tenant's space (Turn.Tenant). A pointer: no copy, one allocation.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalOf is the principal ctx carries (WithPrincipal), or nil.
func PrincipalOf(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying a request's id: every log line written
// with ctx names it (internal/logging), and it travels with a turn to the
// node that serves it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// MaxRequestIDLen bounds a request id taken from a client.
const MaxRequestIDLen = 64

// ValidRequestID reports whether a client's request id may be kept: 1 to
// MaxRequestIDLen of the characters of ids (ValidID), a leading '.' too.
func ValidRequestID(s string) bool {
	return len(s) > 0 && len(s) <= MaxRequestIDLen && ValidID("x"+s)
}
