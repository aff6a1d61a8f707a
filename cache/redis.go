package cache

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
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
	// mac, when set (cache.secret), is the key of the entries' MACs.
	mac []byte
}

func newRedis(cfg *Config) *redisTier {
	r := &redisTier{c: resp.New(resp.Config{Addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)), Password: cfg.Password, DB: cfg.DB,
		DialTimeout: cfg.RedisTimeout, IOTimeout: cfg.RedisTimeout, PoolSize: cfg.RedisPool, MaxBulk: int(cfg.MaxEntryBytes) + 4096})}
	if cfg.Secret != "" {
		// A key of its own, derived: the secret itself never meets a hash
		// whose output Redis holds.
		h := hmac.New(sha256.New, []byte(cfg.Secret))
		h.Write([]byte("moltbot cache entries v1"))
		r.mac = h.Sum(nil)
	}
	return r
}

// errForged: an entry in Redis without a valid MAC (cache.secret): not
// served, counted as the tier's error.
var errForged = errors.New("cache: a Redis entry failed its authentication (another writer, or another cache.secret): not served")

// sum is the MAC of val stored under key (the key is covered: an entry
// moved to another key, another tenant's, fails).
func (r *redisTier) sum(key string, val []byte) []byte {
	h := hmac.New(sha256.New, r.mac)
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(val)
	return h.Sum(nil)
}

func (r *redisTier) get(ctx context.Context, key string) ([]byte, bool, error) {
	b, ok, err := r.c.Get(ctx, redisPrefix+key)
	if err != nil || !ok || r.mac == nil {
		return b, ok, err
	}
	if len(b) < sha256.Size || !hmac.Equal(b[:sha256.Size], r.sum(key, b[sha256.Size:])) {
		return nil, false, errForged
	}
	return b[sha256.Size:], true, nil
}

func (r *redisTier) set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if r.mac != nil {
		val = append(r.sum(key, val), val...)
	}
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
