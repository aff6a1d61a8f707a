package manage

import (
	"context"

	"github.com/moltbot/moltbot"
)

// Cache is the node's output cache (*cache.Cache).
type Cache interface {
	Stats(ctx context.Context) CacheStats
	Purge(ctx context.Context, tenant string) (*CachePurge, error)
}

// CacheEnabled reports whether the node has an output cache: the HTTP
// edge then reads the clients' cache headers and answers X-Moltbot-Cache.
func (s *Service) CacheEnabled() bool { return s.cfg.Cache != nil }

func (s *Service) needCache() error {
	if s.cfg.Cache == nil {
		return moltbot.Errorf(moltbot.ENotFound, "this node has no output cache (cache.type is not set)")
	}
	return nil
}

// CacheStats is the output cache's figures, tier by tier (the
// operator's: they span every tenant).
func (s *Service) CacheStats(ctx context.Context, p *moltbot.Principal) (*CacheStats, error) {
	if err := requireOperator(p); err != nil {
		return nil, err
	}
	if err := s.needCache(); err != nil {
		return nil, err
	}
	st := s.cfg.Cache.Stats(ctx)
	return &st, nil
}

// PurgeCache removes a tenant's cached replies from every tier: a tenant
// admin's own tenant's (tenant "" or its id), any tenant's for the
// operator, whose tenant "" is every tenant's. In a cluster, Redis is
// shared; the memory tier in front of it on the other nodes lets go of
// its copies within a minute.
func (s *Service) PurgeCache(ctx context.Context, p *moltbot.Principal, tenant string) (*CachePurge, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	t, ok := scopeTenant(p, tenant)
	if !ok {
		return nil, moltbot.Errorf(moltbot.EForbidden, "a tenant's admin may purge only its own tenant's cache")
	}
	if err := s.needCache(); err != nil {
		return nil, err
	}
	return s.cfg.Cache.Purge(ctx, t)
}
