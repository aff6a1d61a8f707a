package auth

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
)

// Limits are a tenant's (and each of its keys') rates; 0 means unlimited.
type Limits struct {
	RequestsPerMinute int `json:"requests_per_minute,omitempty" yaml:"requests_per_minute"`
	TokensPerMinute   int `json:"tokens_per_minute,omitempty" yaml:"tokens_per_minute"`
}

// Tenant is an isolated customer or team of the deployment.
type Tenant struct {
	ID     string   `json:"id"`
	Name   string   `json:"name,omitempty"`
	Models []string `json:"models,omitempty"` // allowed models; empty: all
	Limits Limits   `json:"limits"`
	// RotateEvery makes the tenant's new keys expire after this long.
	RotateEvery time.Duration `json:"rotate_every,omitempty"`
	// FromConfig tenants are defined in the config file; the API cannot delete them.
	FromConfig bool  `json:"from_config,omitempty"`
	Created    int64 `json:"created"`
	// Deleted marks a tombstone (unix seconds); Ver orders changes across
	// a cluster (replicate.go).
	Deleted int64 `json:"deleted,omitempty"`
	Ver     int64 `json:"ver,omitempty"`
}

const tenantPrefix = "tenants/"

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
	s.tenants[DefaultTenant] = &Tenant{ID: DefaultTenant, Name: "default", FromConfig: true}
	for i := range s.cfg.Tenants {
		t := s.cfg.Tenants[i]
		if err := checkTenantID(t.ID); err != nil {
			return err
		}
		t.FromConfig = true
		s.tenants[t.ID] = &t
	}
	return s.kv.ScanRaw(tenantPrefix, func(_ string, v []byte) bool {
		var t Tenant
		if json.Unmarshal(v, &t) == nil && t.Deleted == 0 {
			if _, cfg := s.tenants[t.ID]; !cfg {
				s.tenants[t.ID] = &t
			}
		}
		return true
	})
}

// SetConfigTenants replaces the tenants defined in the config file (a
// reload): new ones appear, changed ones take their new models, limits and
// rotation, removed ones are gone (their keys then fail as of an unknown
// tenant). Tenants made through the API stay, unless the file now defines
// the same id: the file wins, as at start.
func (s *Service) SetConfigTenants(ts []Tenant) error {
	for _, t := range ts {
		if err := checkTenantID(t.ID); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tenants {
		if t.FromConfig {
			delete(s.tenants, id)
		}
	}
	s.tenants[DefaultTenant] = &Tenant{ID: DefaultTenant, Name: "default", FromConfig: true}
	for i := range ts {
		t := ts[i]
		t.FromConfig = true
		s.tenants[t.ID] = &t
	}
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

// CreateTenant adds a tenant through the API.
func (s *Service) CreateTenant(t Tenant) (*Tenant, error) {
	if err := checkTenantID(t.ID); err != nil {
		return nil, err
	}
	if t.Limits.RequestsPerMinute < 0 || t.Limits.TokensPerMinute < 0 || t.RotateEvery < 0 {
		return nil, fmt.Errorf("auth: limits and rotate_every must not be negative")
	}
	// Lock order: recMu, then mu (as Merge takes them).
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tenants[t.ID]; ok {
		return nil, ErrConflict
	}
	t.FromConfig = false
	t.Created = s.now().Unix()
	t.Deleted = 0
	t.Ver = s.nextVer()
	b, _ := json.Marshal(&t)
	if err := s.kv.PutRaw(tenantPrefix+t.ID, b, true); err != nil {
		return nil, err
	}
	s.publish(tenantPrefix+t.ID, b)
	s.tenants[t.ID] = &t
	s.log.Info("tenant created", "tenant", t.ID)
	c := t
	return &c, nil
}

// DeleteTenant removes an API-created tenant and revokes its keys. Its
// conversations stay on disk but are unreachable.
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
	// the tenant back.
	b, _ := json.Marshal(&Tenant{ID: id, Created: t.Created, Deleted: s.now().Unix(), Ver: s.nextVer()})
	if err := s.kv.PutRaw(tenantPrefix+id, b, true); err != nil {
		return err
	}
	s.publish(tenantPrefix+id, b)
	delete(s.tenants, id)
	return nil
}

// ModelAllowed reports whether tenant may use model (as requested).
func (s *Service) ModelAllowed(tenant, model string) bool {
	t, ok := s.Tenant(tenant)
	if !ok {
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
