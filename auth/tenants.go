package auth

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
)

// Limits are a tenant's (and each of its keys') rates, and the tenant's
// quotas on what it stores; 0 means unlimited.
type Limits struct {
	RequestsPerMinute int `json:"requests_per_minute,omitempty" yaml:"requests_per_minute"`
	TokensPerMinute   int `json:"tokens_per_minute,omitempty" yaml:"tokens_per_minute"`
	// MaxConversations and MaxStoredBytes are quotas of the tenant (not
	// of its keys): past them, creating a conversation (or, for bytes,
	// a turn) is refused with moltbot.EQuota.
	MaxConversations int64 `json:"max_conversations,omitempty" yaml:"max_conversations"`
	MaxStoredBytes   int64 `json:"max_stored_bytes,omitempty" yaml:"max_stored_bytes"`
}

// Retention is how long a tenant's conversations are kept (package
// retention applies it); zero fields keep everything.
type Retention struct {
	// Days deletes a conversation idle (by its last change) for longer.
	Days int `json:"days,omitempty"`
	// Messages trims a conversation to its newest Messages messages (the
	// system prompt is kept).
	Messages int `json:"messages,omitempty"`
	// Archive appends what is deleted or trimmed away to the workspace's
	// archive before it goes.
	Archive bool `json:"archive,omitempty"`
}

// Tenant is an isolated customer or team of the deployment.
type Tenant struct {
	ID     string   `json:"id"`
	Name   string   `json:"name,omitempty"`
	Models []string `json:"models,omitempty"` // allowed models; empty: all
	Limits Limits   `json:"limits"`
	// RotateEvery makes the tenant's new keys expire after this long.
	RotateEvery time.Duration `json:"rotate_every,omitempty"`
	// Retention is the tenant's retention policy; nil keeps everything.
	Retention *Retention `json:"retention,omitempty"`
	// FromConfig tenants are defined in the config file; the API cannot delete them.
	FromConfig bool  `json:"from_config,omitempty"`
	Created    int64 `json:"created"`
	// Incarnation tells this tenant from an earlier one with the same id:
	// random, set when the tenant is made through the API, replicated with
	// it. "" for default, for the config file's tenants and for tenants
	// made before incarnations existed. Keys record the incarnation they
	// were issued under and conversations live in Space, so a tenant
	// deleted and made again has none of the old one's keys or data.
	Incarnation string `json:"incarnation,omitempty"`
	// Dead are the incarnations of this id that are gone for good (at most
	// 32; "" when the id had a life without one): their conversations are
	// swept on every node.
	Dead []string `json:"dead,omitempty"`
	// Deleted marks a tombstone (unix seconds); Ver orders changes across
	// a cluster (replicate.go).
	Deleted int64 `json:"deleted,omitempty"`
	Ver     int64 `json:"ver,omitempty"`
}

// Space is where the tenant's conversations live: its id, then ":" and its
// incarnation if it has one (tenant ids never hold ':').
func (t *Tenant) Space() string {
	if t.Incarnation == "" {
		return t.ID
	}
	return t.ID + ":" + t.Incarnation
}

// ValidTenantID is the shape of tenant ids (moltbot.ValidTenantID).
func ValidTenantID(s string) bool { return moltbot.ValidTenantID(s) }

// checkTenantID explains an invalid tenant id.
func checkTenantID(id string) error {
	if !moltbot.ValidTenantID(id) {
		return fmt.Errorf("auth: tenant id %q: %s", id, moltbot.TenantIDRule)
	}
	return nil
}

func (s *Service) loadTenants() error {
	for _, t := range s.cfg.Tenants {
		if err := checkTenantID(t.ID); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setTenantsLocked(s.cfg.Tenants)
}

// setTenantsLocked rebuilds the tenant table: default, the config file's
// tenants (ts), and the API's live tenants whose id the file does not take.
// The caller holds mu.
func (s *Service) setTenantsLocked(ts []Tenant) error {
	m := map[string]*Tenant{DefaultTenant: {ID: DefaultTenant, Name: "default", FromConfig: true}}
	for i := range ts {
		t := ts[i]
		t.FromConfig, t.Incarnation, t.Dead = true, "", nil
		if t.ID == DefaultTenant && t.Name == "" {
			t.Name = "default" // listed in the file for its limits or retention
		}
		m[t.ID] = &t
	}
	err := s.kv.tenants.Scan(func(_ string, v []byte) bool {
		var t Tenant
		if json.Unmarshal(v, &t) == nil && t.Deleted == 0 && !t.FromConfig && ValidTenantID(t.ID) {
			if _, cfg := m[t.ID]; !cfg {
				m[t.ID] = &t
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	s.tenants = m
	return nil
}

// SetConfigTenants replaces the tenants defined in the config file (a
// reload): new ones appear, changed ones take their new models, limits and
// rotation, removed ones are gone (their keys then fail as of an unknown
// tenant; their conversations stay, unreachable, until the id is made
// through the API, which makes it another tenant and sweeps them). Tenants
// made through the API stay, unless the file now defines the same id: the
// file wins, as at start.
func (s *Service) SetConfigTenants(ts []Tenant) error {
	for _, t := range ts {
		if err := checkTenantID(t.ID); err != nil {
			return err
		}
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.setTenantsLocked(ts); err != nil {
		return err
	}
	s.kickSweep()
	return nil
}

// Tenant returns a tenant by id.
func (s *Service) Tenant(id string) (*Tenant, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.tenants[id]
	if !ok {
		return nil, false
	}
	c := *t
	return &c, true
}

// tenant returns tenant id's record itself, for reading only (a record is
// replaced, never changed, so it may be read after the lock is let go);
// nil when there is none. The request path reads it without a copy.
func (s *Service) tenant(id string) *Tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tenants[id]
}

// Tenants lists every tenant, sorted by id.
func (s *Service) Tenants() []Tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Tenant, 0, len(s.tenants))
	for _, t := range s.tenants {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// storedTenant reads the replicated record of id (live, shadowed by the
// config file, or a tombstone); nil when there is none.
func (s *Service) storedTenant(id string) *Tenant {
	v, found, err := s.kv.tenants.Get(id)
	if err != nil || !found {
		return nil
	}
	var t Tenant
	if json.Unmarshal(v, &t) != nil {
		return nil
	}
	return &t
}

// withDead returns dead plus inc, without repeats, at most maxDead long:
// "" (the id's life without an incarnation) stays, the oldest others go.
func withDead(dead []string, inc string) []string {
	out := []string{""}
	for _, d := range append(append([]string(nil), dead...), inc) {
		if d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if len(out) > maxDead {
		out = append(out[:1], out[len(out)-maxDead+1:]...)
	}
	return out
}

// CreateTenant adds a tenant through the API. It is a new incarnation of
// its id: every earlier tenant of that id (deleted, or the config file's)
// is dead, its keys do not work for this one and its conversations are
// swept.
func (s *Service) CreateTenant(t Tenant) (*Tenant, error) {
	if err := t.checkSettings(); err != nil {
		return nil, err
	}
	// Lock order: recMu, then mu (as Merge takes them).
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tenants[t.ID]; ok {
		return nil, ErrConflict
	}
	var dead []string
	if old := s.storedTenant(t.ID); old != nil {
		dead = append(old.Dead, old.Incarnation)
	}
	t.FromConfig = false
	t.Created = s.now().Unix()
	t.Deleted = 0
	t.Incarnation = randomString(10)
	t.Dead = withDead(dead, "")
	t.Ver = s.nextVer()
	b, _ := json.Marshal(&t)
	if err := s.kv.tenants.Put(t.ID, b); err != nil {
		return nil, err
	}
	s.publish(wireTenant+t.ID, b)
	s.tenants[t.ID] = &t
	s.kickSweep()
	s.log.Info("tenant created", "tenant", t.ID, "incarnation", t.Incarnation)
	c := t
	return &c, nil
}

// DeleteTenant removes an API-created tenant and revokes its keys. Its
// incarnation is dead: its keys and tokens stop at once (on every node as
// the tombstone arrives), and its conversations are swept from each node's
// store.
func (s *Service) DeleteTenant(id string) error {
	if err := s.deleteTenant(id); err != nil {
		return err
	}
	keys, _ := s.ListKeys(id)
	for _, k := range keys {
		s.RevokeKey(id, k.ID)
	}
	s.log.Info("tenant deleted", "tenant", id, "keys_revoked", len(keys))
	return nil
}

func (s *Service) deleteTenant(id string) error {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tenants[id]
	if !ok {
		return ErrNotFound
	}
	if t.FromConfig {
		return fmt.Errorf("auth: tenant %q is defined in the config file; remove it there", id)
	}
	// A tombstone, not a deletion: a node that missed this must not bring
	// the tenant back. It names the incarnation that died.
	b, _ := json.Marshal(&Tenant{ID: id, Created: t.Created, Deleted: s.now().Unix(), Incarnation: t.Incarnation,
		Dead: t.Dead, Ver: s.nextVer()})
	if err := s.kv.tenants.Put(id, b); err != nil {
		return err
	}
	s.publish(wireTenant+id, b)
	delete(s.tenants, id)
	s.kickSweep()
	return nil
}

// RestrictsModels reports whether tenant has a model allow-list (an
// unknown tenant may use nothing).
func (s *Service) RestrictsModels(tenant string) bool {
	t := s.tenant(tenant)
	return t == nil || len(t.Models) > 0
}

// ModelAllowed reports whether tenant may use model (as requested).
func (s *Service) ModelAllowed(tenant, model string) bool {
	t := s.tenant(tenant)
	if t == nil {
		return false
	}
	if len(t.Models) == 0 {
		return true
	}
	if model == "" {
		model = "moltbot"
	}
	for _, m := range t.Models {
		if m == model || strings.HasSuffix(m, "/*") && strings.HasPrefix(model, strings.TrimSuffix(m, "*")) {
			return true
		}
	}
	return false
}
