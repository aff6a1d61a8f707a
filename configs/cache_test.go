package configs

import (
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/cache"
)

// The seed's block is taken as written: host and port without values
// keep their defaults, the TTL is in seconds.
func TestCacheSeedBlockVerbatim(t *testing.T) {
	c := parse(t, "cache: {type: redis, host, port, ttl: 3600}\n"+minimalSim)
	d := cache.DefaultConfig()
	if cc := c.Cache; cc.Type != "redis" || cc.Host != d.Host || cc.Port != d.Port || cc.TTL.D() != time.Hour ||
		int64(cc.MaxBytes) != d.MaxBytes || int64(cc.MaxEntryBytes) != d.MaxEntryBytes || cc.DB != 0 {
		t.Errorf("%+v", cc)
	}
	// Without a block: no cache, the package's defaults.
	if cc := parse(t, minimalSim).Cache; cc.Type != "" || cc.TTL.D() != d.TTL || cc.Port != d.Port {
		t.Errorf("%+v", cc)
	}
}

func TestCacheConfig(t *testing.T) {
	c, err := Parse("m.yaml", []byte("cache:\n  type: redis\n  host: redis.lan\n  port: 6380\n  password: ${REDIS_PASSWORD}\n  db: 2\n  ttl: 90s\n  max_bytes: 4MiB\n  max_entry_bytes: 64KiB\n"+minimalSim),
		env(map[string]string{"REDIS_PASSWORD": "hunter2"}))
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Cache
	if cc.Host != "redis.lan" || cc.Port != 6380 || cc.Password.Value() != "hunter2" || cc.DB != 2 || cc.TTL.D() != 90*time.Second ||
		cc.MaxBytes != 4<<20 || cc.MaxEntryBytes != 64<<10 {
		t.Errorf("%+v", cc)
	}
	if strings.Contains(c.Redacted(), "hunter2") {
		t.Error("the redis password shows in the dump")
	}
	for _, tc := range []struct{ yaml, want string }{
		{"cache: {type: disk}", `m.yaml:1: cache.type: must be one of memory, pebble, redis (or left out: no cache), got "disk"`},
		{"cache: {type: memory, ttl: 500ms}", "m.yaml:1: cache.ttl: must be at least 1s"},
		{"cache: {ttl: soon}", `m.yaml:1: cache.ttl: want whole seconds such as 3600, or a duration such as 1h, got "soon"`},
		{"cache: {ttl: -5}", "m.yaml:1: cache.ttl: want whole seconds"},
		{"cache: {max_bytes: 1KiB}", "m.yaml:1: cache.max_bytes: must be at least 1MiB"},
		{"cache: {max_entry_bytes: 64MiB}", "m.yaml:1: cache.max_entry_bytes: must be between 1KiB and cache.max_bytes"},
		{"cache: {port: 70000}", "m.yaml:1: cache.port: must be between 1 and 65535"},
		{"cache: {db: -1}", "m.yaml:1: cache.db: must not be negative"},
		{"cache: {host: 'redis://x:6379'}", "m.yaml:1: cache.host: want a host name or an IP address"},
		{"cache: {typ: redis}", `m.yaml:1: cache.typ: unknown key (did you mean "type"?)`},
		{"cache: {password: '${NOPE}'}", "m.yaml:1: cache.password: environment variable NOPE is not set"},
	} {
		_, err := Parse("m.yaml", []byte(tc.yaml+"\n"+minimalSim), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant %q", tc.yaml, err, tc.want)
		}
	}
}

// The semantic tier: off by default; on, it needs a cache type and an
// embedding chain; its numbers are checked at their keys and lines.
func TestCacheSemanticConfig(t *testing.T) {
	d := parse(t, minimalSim).Cache.Semantic
	if d.Enabled || d.Threshold != cache.DefaultSemanticThreshold || d.MaxEntries != cache.DefaultSemanticMaxEntries || d.Timeout.D() != cache.DefaultSemanticTimeout {
		t.Errorf("defaults %+v", d)
	}
	const emb = "providers: [{name: s, type: sim}]\nmodels: {primary: s/x, embeddings: {primary: s/embed}}\n"
	c := parse(t, "cache:\n  type: memory\n  semantic: {enabled: true, threshold: 0.9, max_entries: 500, timeout: 100ms}\n"+emb)
	if s := c.Cache.Semantic; !s.Enabled || s.Threshold != 0.9 || s.MaxEntries != 500 || s.Timeout.D() != 100*time.Millisecond {
		t.Errorf("%+v", s)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"cache:\n  type: memory\n  semantic: {enabled: true}\n" + minimalSim, "m.yaml:3: cache.semantic.enabled: needs an embedding chain: set models.embeddings.primary"},
		{"cache:\n  semantic: {enabled: true}\n" + emb, "m.yaml:2: cache.semantic.enabled: needs cache.type"},
		{"cache:\n  type: memory\n  semantic:\n    threshold: 1.5\n" + emb, "m.yaml:4: cache.semantic.threshold: must be above 0 and at most 1 (a cosine similarity), got 1.5"},
		{"cache:\n  type: memory\n  semantic:\n    threshold: -0.2\n" + emb, "m.yaml:4: cache.semantic.threshold: must be above 0"},
		{"cache:\n  type: memory\n  semantic:\n    max_entries: -1\n" + emb, "m.yaml:4: cache.semantic.max_entries: must be between 1 and 1000000, got -1"},
		{"cache:\n  type: memory\n  semantic:\n    timeout: 1ms\n" + emb, "m.yaml:4: cache.semantic.timeout: must be between 10ms and 10s, got 1ms"},
		{"cache:\n  type: memory\n  semantic: {enable: true}\n" + emb, `m.yaml:3: cache.semantic.enable: unknown key (did you mean "enabled"?)`},
	} {
		_, err := Parse("m.yaml", []byte(tc.yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant %q", tc.yaml, err, tc.want)
		}
	}
}
