package auth

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
	"golang.org/x/crypto/ssh"
)

// The bounds of sane records. A record made here is checked with the same
// rules as one from another node (Merge), so a node never publishes what
// its peers would refuse.
const (
	// MaxClockSkew is how far in the future a replicated version or time
	// may be. Versions are unix nanoseconds; one further ahead would hold
	// the record against every later change (and once overflowed the
	// clock), so it is refused and never moves the local clock.
	MaxClockSkew = time.Minute
	// MaxKeyLife bounds a key's ttl, a rotation's grace and a tenant's
	// rotate_every.
	MaxKeyLife = 10 * 365 * 24 * time.Hour
	// maxPubLife bounds the life of a published token verification key
	// (signing_rotate + token_ttl + leeway).
	maxPubLife = 400 * 24 * time.Hour
	// MaxLimit bounds requests and tokens per minute, max_conversations
	// and retention.messages.
	MaxLimit = 1_000_000_000
	// MaxStoredBytes bounds limits.max_stored_bytes (1 PiB).
	MaxStoredBytes = 1 << 50
	// MaxRetentionDays bounds retention.days (100 years).
	MaxRetentionDays = 36500
	// maxNameLen bounds key and tenant names (bytes).
	maxNameLen = 128
	// maxModels bounds a tenant's model list; maxModelLen one entry.
	maxModels, maxModelLen = 64, 200
	// maxDead bounds the earlier incarnations a tenant record remembers.
	maxDead = 32
	// incLen is the length of an incarnation id.
	incLen = 16
)

// minTime is the earliest sane timestamp of a record (unix seconds,
// 2020-01-01): nothing moltbot made is older.
const minTime = 1577836800

// checkName accepts short printable UTF-8.
func checkName(what, s string) error {
	if len(s) > maxNameLen {
		return fmt.Errorf("auth: %s is %d bytes; at most %d", what, len(s), maxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("auth: %s is not UTF-8", what)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("auth: %s holds a control character", what)
		}
	}
	return nil
}

// base32ID reports whether s is n characters of the key alphabet.
func base32ID(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// validIncarnation: "" (the default tenant, the file's, and tenants from
// before incarnations) or a random id.
func validIncarnation(s string) bool { return s == "" || base32ID(s, incLen) }

// timeIn checks a unix-seconds field: 0 (unset) when optional, else within
// [minTime, max].
func timeIn(what string, v, max int64, optional bool) error {
	if v == 0 && optional {
		return nil
	}
	if v < minTime || v > max {
		return fmt.Errorf("auth: %s %d is outside [%d, %d]", what, v, minTime, max)
	}
	return nil
}

// checkVer: a version is unix nanoseconds, never negative, never beyond
// now + MaxClockSkew (0: a record from before versions existed).
func checkVer(v int64, now time.Time) error {
	if v < 0 || v > now.Add(MaxClockSkew).UnixNano() {
		return fmt.Errorf("auth: version %d is outside [0, now + %s]", v, MaxClockSkew)
	}
	return nil
}

// check reports whether k is a sane key record at now.
func (k *Key) check(now time.Time) error {
	latest := now.Add(MaxClockSkew).Unix()
	switch {
	case !base32ID(k.ID, 8):
		return fmt.Errorf("auth: key id %q", k.ID)
	case !ValidTenantID(k.Tenant):
		return fmt.Errorf("auth: key %s: tenant %q", k.ID, k.Tenant)
	case k.Scope != ScopeChat && k.Scope != ScopeAdmin && k.Scope != ScopeAgent:
		return fmt.Errorf("auth: key %s: scope %q is not chat, admin or agent", k.ID, k.Scope)
	case len(k.Hash) != 32:
		return fmt.Errorf("auth: key %s: the hash is %d bytes", k.ID, len(k.Hash))
	case k.Successor != "" && (!base32ID(k.Successor, 8) || k.Successor == k.ID):
		return fmt.Errorf("auth: key %s: successor %q", k.ID, k.Successor)
	case !validIncarnation(k.Incarnation):
		return fmt.Errorf("auth: key %s: incarnation %q", k.ID, k.Incarnation)
	case k.Kind != KindOllama && k.PublicKey != nil:
		return fmt.Errorf("auth: key %s: an API key with a public key", k.ID)
	case k.Kind != "" && k.Kind != KindOllama && k.Kind != KindBot:
		return fmt.Errorf("auth: key %s: kind %q", k.ID, k.Kind)
	case (k.Bot != "") != (k.Kind == KindBot) || k.Bot != "" && (!moltbot.ValidBotName(k.Bot) || k.Scope != ScopeChat):
		return fmt.Errorf("auth: key %s: bot %q (a bot's key is an API key of kind bot and scope chat)", k.ID, k.Bot)
	case k.Kind == KindOllama && (k.Scope != ScopeChat || k.Successor != "" || !validOllamaWire(k.PublicKey) || ollamaKeyID(k.PublicKey) != k.ID):
		return fmt.Errorf("auth: key %s: not a sane Ollama key (chat scope, no successor, an ed25519 key whose hash is the id)", k.ID)
	}
	if err := checkName("key name", k.Name); err != nil {
		return err
	}
	if err := timeIn("created", k.Created, latest, false); err != nil {
		return err
	}
	if err := timeIn("expires", k.Expires, now.Add(MaxKeyLife+MaxClockSkew).Unix(), true); err != nil {
		return err
	}
	if err := timeIn("revoked", k.Revoked, latest, true); err != nil {
		return err
	}
	return checkVer(k.Ver, now)
}

// checkModels checks a tenant's allowed models: "moltbot", provider/model
// or provider/*.
func checkModels(models []string) error {
	if len(models) > maxModels {
		return fmt.Errorf("auth: %d models; at most %d", len(models), maxModels)
	}
	for _, m := range models {
		p, rest, ok := strings.Cut(m, "/")
		if m == "moltbot" {
			continue
		}
		if !ok || p == "" || rest == "" || len(m) > maxModelLen || strings.ContainsAny(m, " \t\r\n") || !utf8.ValidString(m) {
			return fmt.Errorf("auth: model %q: want provider/model, provider/* or moltbot", m)
		}
	}
	return nil
}

// checkSettings checks what an operator sets on a tenant.
func (t *Tenant) checkSettings() error {
	if err := checkTenantID(t.ID); err != nil {
		return err
	}
	if err := checkName("tenant name", t.Name); err != nil {
		return err
	}
	if t.Limits.RequestsPerMinute < 0 || t.Limits.TokensPerMinute < 0 || t.RotateEvery < 0 {
		return fmt.Errorf("auth: limits and rotate_every must not be negative")
	}
	if t.Limits.RequestsPerMinute > MaxLimit || t.Limits.TokensPerMinute > MaxLimit {
		return fmt.Errorf("auth: limits above %d a minute", MaxLimit)
	}
	if t.RotateEvery > MaxKeyLife {
		return fmt.Errorf("auth: rotate_every above %s", MaxKeyLife)
	}
	if err := t.Limits.checkQuotas(); err != nil {
		return err
	}
	if err := t.Retention.check(); err != nil {
		return err
	}
	return checkModels(t.Models)
}

// checkQuotas checks the quotas of l.
func (l *Limits) checkQuotas() error {
	switch {
	case l.MaxConversations < 0 || l.MaxConversations > MaxLimit:
		return fmt.Errorf("auth: limits.max_conversations must be between 0 and %d, got %d", MaxLimit, l.MaxConversations)
	case l.MaxStoredBytes < 0 || l.MaxStoredBytes > MaxStoredBytes:
		return fmt.Errorf("auth: limits.max_stored_bytes must be between 0 and %d, got %d", int64(MaxStoredBytes), l.MaxStoredBytes)
	}
	return nil
}

// check checks a retention policy (nil: none).
func (r *Retention) check() error {
	switch {
	case r == nil:
	case r.Days < 0 || r.Days > MaxRetentionDays:
		return fmt.Errorf("auth: retention.days must be between 0 and %d, got %d", MaxRetentionDays, r.Days)
	case r.Messages < 0 || r.Messages > MaxLimit:
		return fmt.Errorf("auth: retention.messages must be between 0 and %d, got %d", MaxLimit, r.Messages)
	}
	return nil
}

// check reports whether t is a sane replicated tenant record at now.
func (t *Tenant) check(now time.Time) error {
	if t.ID == DefaultTenant {
		return fmt.Errorf("auth: the default tenant is not replicated")
	}
	if err := t.checkSettings(); err != nil {
		return err
	}
	latest := now.Add(MaxClockSkew).Unix()
	if t.FromConfig {
		return fmt.Errorf("auth: tenant %s: a replicated tenant is never the config file's", t.ID)
	}
	if !validIncarnation(t.Incarnation) {
		return fmt.Errorf("auth: tenant %s: incarnation %q", t.ID, t.Incarnation)
	}
	if len(t.Dead) > maxDead {
		return fmt.Errorf("auth: tenant %s: %d dead incarnations; at most %d", t.ID, len(t.Dead), maxDead)
	}
	for _, d := range t.Dead {
		if !validIncarnation(d) {
			return fmt.Errorf("auth: tenant %s: dead incarnation %q", t.ID, d)
		}
	}
	if err := timeIn("created", t.Created, latest, true); err != nil {
		return err
	}
	if err := timeIn("deleted", t.Deleted, latest, true); err != nil {
		return err
	}
	return checkVer(t.Ver, now)
}

// check reports whether p is a sane published verification key at now.
func (p *pubKey) check(now time.Time) error {
	if p.KID == "" || len(p.KID) > 64 || !base32ID(p.KID, len(p.KID)) {
		return fmt.Errorf("auth: public key id %q", p.KID)
	}
	if p.Until > now.Add(maxPubLife).Unix() {
		return fmt.Errorf("auth: public key %s: valid until %d, beyond %s from now", p.KID, p.Until, maxPubLife)
	}
	return p.parse()
}

// validOllamaWire reports whether b is an ssh-ed25519 public key in wire form.
func validOllamaWire(b []byte) bool {
	pub, err := ssh.ParsePublicKey(b)
	return err == nil && pub.Type() == ssh.KeyAlgoED25519
}
