package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"golang.org/x/crypto/ssh"
)

// Key is an API key's record. The secret is never stored: only its SHA-256
// (the secret is 160 random bits, so a plain hash cannot be guessed back).
type Key struct {
	ID      string `json:"id"`
	Tenant  string `json:"tenant"`
	Name    string `json:"name,omitempty"`
	Scope   Scope  `json:"scope"`
	Hash    []byte `json:"hash"`
	Created int64  `json:"created"` // unix seconds
	Expires int64  `json:"expires,omitempty"`
	Revoked int64  `json:"revoked,omitempty"`
	// Successor is the key that replaced this one by rotation: a key has
	// at most one.
	Successor string `json:"successor,omitempty"`
	// Incarnation is the tenant's incarnation the key was issued under: a
	// tenant deleted and made again with the same id is another tenant,
	// and this key is not one of its keys.
	Incarnation string `json:"incarnation,omitempty"`
	// Ver orders changes across a cluster (replicate.go).
	Ver int64 `json:"ver,omitempty"`
	// Kind is "" for an API key, KindOllama for an Ollama public key
	// (ollama.go): PublicKey holds it in SSH wire form, ID is derived from
	// it, and Hash matches no secret.
	Kind      string `json:"kind,omitempty"`
	PublicKey []byte `json:"public_key,omitempty"`
	// Bot is the bot the key speaks as (Principal.Bot; empty: none). A
	// bot's key has the chat scope and Kind KindBot; its successor keeps
	// the bot.
	Bot string `json:"bot,omitempty"`
}

// KindBot marks the record of an API key bound to a bot. A build before
// bots refuses a record of a kind it does not know (and never takes one
// for an API key), so in a cluster mid-upgrade a bot's key fails closed
// on an older node instead of working there unbound.
const KindBot = "bot"

// KeyInfo is what a listing shows: no hash.
type KeyInfo struct {
	ID        string `json:"id"`
	Tenant    string `json:"tenant"`
	Name      string `json:"name,omitempty"`
	Scope     Scope  `json:"scope"`
	Created   int64  `json:"created"`
	Expires   int64  `json:"expires,omitempty"`
	Revoked   int64  `json:"revoked,omitempty"`
	Successor string `json:"successor,omitempty"`
	// State is active, expiring (rotated, in its grace), expired, revoked,
	// or orphaned (its tenant was deleted, or made again since).
	State string `json:"state"`
	// Kind is "ollama" for an Ollama public key, "bot" for an API key
	// bound to a bot, empty for an API key.
	Kind string `json:"kind,omitempty"`
	// OllamaKey is an Ollama key's public key line (ssh-ed25519 AAAA...)
	// and Fingerprint its SHA-256 fingerprint, as ssh-keygen -l shows it.
	OllamaKey   string `json:"ollama_key,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// Bot is the bot the key is bound to (empty: none).
	Bot string `json:"bot,omitempty"`
}

var keyEnc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return keyEnc.EncodeToString(b)
}

// API keys look like mb_<id>_<secret>: the id (8 characters) finds the
// record, the secret proves possession.
func splitKey(k string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(k, "mb_")
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 8 || len(secret) < 16 {
		return "", "", false
	}
	return id, secret, true
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// zeroHash is what an unknown key's secret is compared with.
var zeroHash [sha256.Size]byte

func (s *Service) getKey(id string) (*Key, error) {
	v, ok, err := s.kv.keys.Get(id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	var k Key
	if err := json.Unmarshal(v, &k); err != nil {
		return nil, fmt.Errorf("auth: key %s: %w", id, err)
	}
	return &k, nil
}

// keyRecord is key id's record for a credential check: shared and read
// only (getKey gives a copy to change). It is the stored record: one
// read at the keys' current write count is kept, and read again once
// anything wrote to the keys' namespace since (a revocation, a rotation,
// a record replicated from another node), so a change takes effect on
// the next request, as when every request read the store. What a record
// alone cannot say (expiry, the tenant's deletion) is checked on every
// use (keyValid). An unknown id is never kept: it reads the store each
// time. Reading the store (Pebble) and copying the record was most of a
// keyed request's authentication.
func (s *Service) keyRecord(id string) (*Key, error) {
	gen := s.kv.keys.gen.Load() // before the read: a write after it moves the count
	if k := s.decoded.get(id, gen); k != nil {
		return k, nil
	}
	k, err := s.getKey(id)
	if err != nil {
		return nil, err
	}
	s.decoded.put(id, gen, k)
	return k, nil
}

// keyCache keeps key records as read at a write count of the keys'
// namespace (keyRecord). Its records are shared: nobody changes one.
type keyCache struct {
	mu sync.Mutex
	m  map[string]cachedKey
}

type cachedKey struct {
	gen uint64
	k   *Key
}

// maxCachedKeys bounds the cache; past it, it starts again.
const maxCachedKeys = 4096

// get returns id's record as read at write count gen, or nil.
func (c *keyCache) get(id string, gen uint64) *Key {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if !ok || e.gen != gen {
		return nil
	}
	return e.k
}

func (c *keyCache) put(id string, gen uint64, k *Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedKeys {
		c.m = make(map[string]cachedKey)
	}
	c.m[id] = cachedKey{gen: gen, k: k}
}

// putKey writes k with a new version and publishes it. Callers that read
// k first hold recMu.
func (s *Service) putKey(k *Key) error {
	k.Ver = s.nextVer()
	b, _ := json.Marshal(k)
	if err := s.kv.keys.Put(k.ID, b); err != nil {
		return err
	}
	s.publish(wireKey+k.ID, b)
	return nil
}

// DefaultGrace is how long a rotated key keeps working when the caller
// gives no grace. A grace of 0 ends the old key at once.
const DefaultGrace = 24 * time.Hour

// CreateKey issues a key for tenant. ttl 0 takes the tenant's rotate_every
// (no expiry if it has none). The secret is returned once and never again.
func (s *Service) CreateKey(tenant, name string, scope Scope, ttl time.Duration) (string, *KeyInfo, error) {
	return s.CreateBotKey(tenant, name, scope, ttl, "")
}

// CreateBotKey issues a key as CreateKey does, bound to bot ("": none):
// its calls speak as the bot (Principal.Bot). A bot's key has the chat
// scope. Whether the bot exists, for tenant, is the caller's to check
// (auth does not hold the bots: they are the config's).
func (s *Service) CreateBotKey(tenant, name string, scope Scope, ttl time.Duration, bot string) (string, *KeyInfo, error) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	secret, k, err := s.createKeyLocked(tenant, name, scope, ttl, bot)
	if err != nil {
		return "", nil, err
	}
	s.log.Info("api key created", "key_id", k.ID, "tenant", tenant, "scope", scope, "name", name, "bot", bot)
	return secret, s.info(k), nil
}

// createKeyLocked makes and stores a key; the caller holds recMu.
func (s *Service) createKeyLocked(tenant, name string, scope Scope, ttl time.Duration, bot string) (string, *Key, error) {
	t, ok := s.Tenant(tenant)
	if !ok {
		return "", nil, ErrNotFound
	}
	if scope == "" {
		scope = ScopeChat
	}
	if scope != ScopeChat && scope != ScopeAdmin && scope != ScopeAgent {
		return "", nil, fmt.Errorf("auth: scope must be chat, admin or agent, got %q", scope)
	}
	if ttl < 0 || ttl > MaxKeyLife {
		return "", nil, fmt.Errorf("auth: ttl must be between 0 and %s", MaxKeyLife)
	}
	if err := checkName("name", name); err != nil {
		return "", nil, err
	}
	if bot != "" && !moltbot.ValidBotName(bot) {
		return "", nil, fmt.Errorf("auth: bot %q: a bot's name: %s", bot, moltbot.BotNameRule)
	}
	if bot != "" && scope != ScopeChat {
		return "", nil, fmt.Errorf("auth: a key bound to a bot has the chat scope, not %s", scope)
	}
	if ttl == 0 {
		ttl = t.RotateEvery
	}
	now := s.now()
	k := &Key{ID: randomString(5), Tenant: tenant, Incarnation: t.Incarnation, Name: name, Scope: scope, Created: now.Unix(), Bot: bot}
	if bot != "" {
		k.Kind = KindBot
	}
	if ttl > 0 {
		k.Expires = now.Add(ttl).Unix()
	}
	secret := randomString(20)
	k.Hash = hashSecret(secret)
	if err := s.putKey(k); err != nil {
		return "", nil, err
	}
	return "mb_" + k.ID + "_" + secret, k, nil
}

func (s *Service) info(k *Key) *KeyInfo {
	i := &KeyInfo{ID: k.ID, Tenant: k.Tenant, Name: k.Name, Scope: k.Scope, Created: k.Created, Expires: k.Expires,
		Revoked: k.Revoked, Successor: k.Successor, State: "active", Kind: k.Kind, Bot: k.Bot}
	if k.Kind == KindOllama {
		i.OllamaKey = ssh.KeyAlgoED25519 + " " + base64.StdEncoding.EncodeToString(k.PublicKey)
		i.Fingerprint = OllamaFingerprint(k.PublicKey)
	}
	now := s.now().Unix()
	switch {
	case k.Revoked != 0:
		i.State = "revoked"
	case !s.current(k):
		i.State = "orphaned"
	case k.Expires != 0 && now >= k.Expires:
		i.State = "expired"
	case k.Successor != "":
		i.State = "expiring"
	}
	return i
}

// current reports whether k belongs to the live incarnation of its tenant.
func (s *Service) current(k *Key) bool {
	t := s.tenant(k.Tenant)
	return t != nil && t.Incarnation == k.Incarnation
}

// ListKeys lists tenant's keys ("" for every tenant, with the keys of
// deleted tenants), newest first. A tenant sees only the keys of its live
// incarnation: not those of an earlier tenant with its id.
func (s *Service) ListKeys(tenant string) ([]KeyInfo, error) {
	var out []KeyInfo
	err := s.kv.keys.Scan(func(_ string, v []byte) bool {
		var k Key
		if json.Unmarshal(v, &k) == nil && (tenant == "" || k.Tenant == tenant && s.current(&k)) {
			out = append(out, *s.info(&k))
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created > out[j].Created || out[i].Created == out[j].Created && out[i].ID < out[j].ID
	})
	return out, err
}

// ownKey loads key id if tenant may see it ("" sees all): a key of
// tenant's live incarnation.
func (s *Service) ownKey(tenant, id string) (*Key, error) {
	k, err := s.getKey(id)
	if err != nil {
		return nil, err
	}
	if tenant != "" && (k.Tenant != tenant || !s.current(k)) {
		return nil, ErrNotFound
	}
	return k, nil
}

// RevokeKey stops a key at once.
func (s *Service) RevokeKey(tenant, id string) (*KeyInfo, error) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	k, err := s.ownKey(tenant, id)
	if err != nil {
		return nil, err
	}
	if k.Revoked == 0 {
		k.Revoked = s.now().Unix()
		if err := s.putKey(k); err != nil {
			return nil, err
		}
		s.log.Info("api key revoked", "key_id", k.ID, "tenant", k.Tenant)
	}
	return s.info(k), nil
}

// RotatedError is the answer to rotating a key that already has a
// successor: a key is rotated once (errors.Is(err, ErrConflict)).
type RotatedError struct{ ID, Successor string }

func (e *RotatedError) Error() string {
	return fmt.Sprintf("auth: key %s was already rotated; its successor is %s", e.ID, e.Successor)
}

// Is makes a RotatedError an ErrConflict.
func (e *RotatedError) Is(target error) bool { return target == ErrConflict }

// RotateKey issues a successor with the same tenant, name and scope; the
// old key keeps working for grace (0: it stops now; DefaultGrace is what
// callers use when none is given), then expires. A key has one successor:
// rotating it again is a *RotatedError.
func (s *Service) RotateKey(tenant, id string, grace time.Duration) (string, *KeyInfo, error) {
	if grace < 0 || grace > MaxKeyLife {
		return "", nil, fmt.Errorf("auth: grace must be between 0 and %s", MaxKeyLife)
	}
	// One lock over read, check and both writes: two rotations of one key
	// cannot both make a successor on this node.
	s.recMu.Lock()
	defer s.recMu.Unlock()
	k, err := s.ownKey(tenant, id)
	if err != nil {
		return "", nil, err
	}
	if k.Revoked != 0 {
		return "", nil, fmt.Errorf("auth: key %s is revoked", id)
	}
	if k.Successor != "" {
		return "", nil, &RotatedError{ID: k.ID, Successor: k.Successor}
	}
	if k.Kind == KindOllama {
		return "", nil, fmt.Errorf("auth: key %s is an Ollama public key: register the new public key and revoke this one", id)
	}
	if !s.current(k) {
		return "", nil, ErrNotFound
	}
	var ttl time.Duration
	if k.Expires != 0 {
		ttl = max(time.Duration(k.Expires-k.Created)*time.Second, time.Second)
	}
	secret, next, err := s.createKeyLocked(k.Tenant, k.Name, k.Scope, min(ttl, MaxKeyLife), k.Bot)
	if err != nil {
		return "", nil, err
	}
	end := s.now().Add(grace).Unix()
	if k.Expires == 0 || end < k.Expires {
		k.Expires = end
	}
	k.Successor = next.ID
	if err := s.putKey(k); err != nil {
		return "", nil, err
	}
	s.log.Info("api key rotated", "key_id", k.ID, "successor", next.ID, "grace", grace)
	return secret, s.info(next), nil
}

// checkKey verifies an API key and returns its principal.
func (s *Service) checkKey(cred string) (*Principal, *Error) {
	id, secret, ok := splitKey(cred)
	if !ok {
		return nil, unauthorized("malformed", "invalid_token", "malformed API key (want mb_<id>_<secret>)")
	}
	k, err := s.keyRecord(id)
	h := sha256.Sum256([]byte(secret))
	if err != nil || k.Kind != "" && k.Kind != KindBot {
		// Compare anyway, so a wrong id costs the same time as a wrong
		// secret. An Ollama key's record is never an API key.
		subtle.ConstantTimeCompare(h[:], zeroHash[:])
		return nil, unauthorized("unknown_key", "invalid_token", "unknown API key")
	}
	if subtle.ConstantTimeCompare(h[:], k.Hash) != 1 {
		return nil, unauthorized("wrong_secret", "invalid_token", "unknown API key")
	}
	now := s.now()
	t, aerr := s.keyValid(k, now)
	if aerr != nil {
		return nil, aerr
	}
	p := &Principal{Tenant: k.Tenant, Space: t.Space(), Scope: k.Scope, KeyID: k.ID, Method: "key", Bot: k.Bot}
	if k.Expires != 0 {
		p.Expires = time.Unix(k.Expires, 0)
		life := time.Duration(k.Expires-k.Created) * time.Second
		p.ExpiresSoon = k.Successor != "" || p.Expires.Sub(now) < min(7*24*time.Hour, life/4)
	}
	return p, nil
}

// keyValid is every reason a key stops working: revoked, expired (a
// rotated key's grace is its expiry), its tenant deleted, or made again
// since the key was issued. It returns the key's tenant (the stored
// record: read only). Tokens issued to the key are checked with it on
// every use.
func (s *Service) keyValid(k *Key, now time.Time) (*Tenant, *Error) {
	if k.Revoked != 0 {
		return nil, unauthorized("revoked", "invalid_token", "the API key was revoked")
	}
	if k.Expires != 0 && !now.Before(time.Unix(k.Expires, 0)) {
		return nil, unauthorized("expired", "invalid_token", "the API key expired at %s", time.Unix(k.Expires, 0).UTC().Format(time.RFC3339))
	}
	t := s.tenant(k.Tenant)
	if t == nil || t.Incarnation != k.Incarnation {
		return nil, unauthorized("unknown_tenant", "invalid_token", "the API key's tenant no longer exists")
	}
	return t, nil
}

// RotateSelf rotates the key of principal p (a client rotating its own
// key). A key in its grace has a successor already and cannot.
func (s *Service) RotateSelf(p *Principal, grace time.Duration) (string, *KeyInfo, error) {
	if p.Method != "key" {
		return "", nil, fmt.Errorf("auth: only API keys rotate; this request used %s", p.Method)
	}
	return s.RotateKey(p.Tenant, p.KeyID, grace)
}
