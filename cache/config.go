package cache

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// The tier types of Config.Type.
const (
	TypeMemory = "memory"
	TypePebble = "pebble"
	TypeRedis  = "redis"
)

// Types are the known Config.Type values.
var Types = []string{TypeMemory, TypePebble, TypeRedis}

// Config configures a Cache. Zero values take DefaultConfig's.
type Config struct {
	// Type is memory, pebble or redis.
	Type string
	// TTL is how long an entry is served.
	TTL time.Duration
	// MaxBytes bounds the memory tier (in front of pebble and redis too);
	// the least recently used entries go first.
	MaxBytes int64
	// MaxEntryBytes: a larger reply is not stored.
	MaxEntryBytes int64

	// Redis: Host and Port of the server, Password (AUTH, when set) and
	// DB (SELECTed when not 0). One database per cluster: entries are
	// keyed by tenant id and model names, which another deployment may
	// use for others.
	Host     string
	Port     int
	Password string
	DB       int
	// Secret, when set, authenticates every entry written to Redis
	// (HMAC-SHA256 over its key and bytes): an entry that another writer
	// to the database made or moved is not served. The cluster's nodes
	// share it. Empty: Redis is trusted.
	Secret string
	// RedisTimeout bounds a connect and each command (a slower server is
	// treated as down); RedisPool bounds the connections.
	RedisTimeout time.Duration
	RedisPool    int
	// Retry is the first wait before a tier that failed is tried again;
	// it doubles up to MaxRetry while the tier keeps failing.
	Retry, MaxRetry time.Duration

	// Semantic is the semantic tier (off by default).
	Semantic SemanticConfig

	// Store is the node's database (type pebble).
	Store storage.Namespaces
	// Sweep is how often expired pebble entries are deleted.
	Sweep time.Duration

	Metrics *metrics.Registry
	Logger  *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// DefaultConfig is the cache's configuration when nothing is set (the
// type is left empty: no cache unless one is configured).
func DefaultConfig() Config {
	return Config{TTL: time.Hour, MaxBytes: 16 << 20, MaxEntryBytes: 1 << 20, Host: "127.0.0.1", Port: 6379,
		RedisTimeout: 500 * time.Millisecond, RedisPool: 16, Retry: time.Second, MaxRetry: 30 * time.Second, Sweep: 10 * time.Minute}
}

// EnsureDefaults fills the zero fields from DefaultConfig.
func (c *Config) EnsureDefaults() {
	d := DefaultConfig()
	if c.TTL <= 0 {
		c.TTL = d.TTL
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.MaxEntryBytes <= 0 {
		c.MaxEntryBytes = d.MaxEntryBytes
	}
	if c.Host == "" {
		c.Host = d.Host
	}
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.RedisTimeout <= 0 {
		c.RedisTimeout = d.RedisTimeout
	}
	if c.RedisPool <= 0 {
		c.RedisPool = d.RedisPool
	}
	if c.Retry <= 0 {
		c.Retry = d.Retry
	}
	if c.MaxRetry < c.Retry {
		c.MaxRetry = max(d.MaxRetry, c.Retry)
	}
	if c.Sweep <= 0 {
		c.Sweep = d.Sweep
	}
	c.Semantic.ensureDefaults()
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New("")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// check reports a configuration New cannot run with (configs names the
// keys; this is for callers that build a Config themselves).
func (c *Config) check() error {
	switch c.Type {
	case TypeMemory, TypeRedis:
	case TypePebble:
		if c.Store == nil {
			return fmt.Errorf("cache: type pebble needs the node's database")
		}
	default:
		return fmt.Errorf("cache: type must be one of memory, pebble, redis, got %q", c.Type)
	}
	if c.MaxEntryBytes > c.MaxBytes {
		return fmt.Errorf("cache: max_entry_bytes (%d) must not exceed max_bytes (%d)", c.MaxEntryBytes, c.MaxBytes)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("cache: port must be between 1 and 65535, got %d", c.Port)
	}
	return c.Semantic.check()
}
