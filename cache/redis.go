package cache

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/moltbot/moltbot/cache/resp"
)

// redisPrefix heads every key the cache writes in Redis.
const redisPrefix = "moltbot:cache:"

// errBusy: every connection to the tier was in use (the request goes on
// without the cache; the tier is not down).
var errBusy = resp.ErrBusy

// redisTier keeps entries in a Redis server shared by a cluster; Redis
// expires them (SET PX).
type redisTier struct {
	c *resp.Client
}

func newRedis(cfg *Config) *redisTier {
	return &redisTier{c: resp.New(resp.Config{Addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)), Password: cfg.Password, DB: cfg.DB,
		DialTimeout: cfg.RedisTimeout, IOTimeout: cfg.RedisTimeout, PoolSize: cfg.RedisPool, MaxBulk: int(cfg.MaxEntryBytes) + 4096})}
}

func (r *redisTier) get(ctx context.Context, key string) ([]byte, bool, error) {
	return r.c.Get(ctx, redisPrefix+key)
}

func (r *redisTier) set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	return r.c.Set(ctx, redisPrefix+key, val, ttl)
}

// scan calls fn with each batch of the cache's keys of tenant (every
// tenant for "").
func (r *redisTier) scan(ctx context.Context, tenant string, fn func(keys []string) error) error {
	match := redisPrefix + "*"
	if tenant != "" {
		match = redisPrefix + tenant + "/*" // tenant ids hold no glob characters
	}
	cursor := "0"
	for {
		next, keys, err := r.c.Scan(ctx, cursor, match, 500)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := fn(keys); err != nil {
				return err
			}
		}
		if next == "0" {
			return nil
		}
		cursor = next
	}
}

func (r *redisTier) purge(ctx context.Context, tenant string) (int, error) {
	n := 0
	err := r.scan(ctx, tenant, func(keys []string) error {
		k, err := r.c.Del(ctx, keys...)
		n += int(k)
		return err
	})
	return n, err
}

func (r *redisTier) usage(ctx context.Context) (entries, bytes int64, err error) {
	err = r.scan(ctx, "", func(keys []string) error {
		lens, err := r.c.StrLen(ctx, keys)
		for i, l := range lens {
			if l > 0 {
				entries++
				bytes += l + int64(len(keys[i]))
			}
		}
		return err
	})
	return entries, bytes, err
}

func (r *redisTier) close() error { return r.c.Close() }
