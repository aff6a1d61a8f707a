package cache

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot/storage"
)

// pebbleTier keeps entries in the node's database (storage.Cache). Pebble
// has no expiry of its own: a read refuses an expired entry (its stored
// Expires), and sweep deletes them. Its gauges show the entries and bytes
// of its last sweep (or stats) plus the writes since.
type pebbleTier struct {
	kv             storage.KV
	now            func() time.Time
	entries, bytes atomic.Int64
}

func (p *pebbleTier) get(_ context.Context, key string) ([]byte, bool, error) {
	return p.kv.Get(key)
}

func (p *pebbleTier) set(_ context.Context, key string, val []byte, _ time.Duration) error {
	if err := p.kv.Put(key, val); err != nil {
		return err
	}
	p.entries.Add(1)
	p.bytes.Add(int64(len(key) + len(val)))
	return nil
}

// remove deletes the keys for which drop says so, after a scan (a scan
// must not write), and counts what stays.
func (p *pebbleTier) remove(drop func(key string, val []byte) bool) (int, error) {
	var gone []string
	var entries, bytes int64
	err := p.kv.Scan(func(key string, val []byte) bool {
		if drop(key, val) {
			gone = append(gone, key)
		} else {
			entries++
			bytes += int64(len(key) + len(val))
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	for i, k := range gone {
		if err := p.kv.Delete(k); err != nil {
			return i, err
		}
	}
	p.entries.Store(entries)
	p.bytes.Store(bytes)
	return len(gone), nil
}

func (p *pebbleTier) purge(_ context.Context, tenant string) (int, error) {
	return p.remove(func(key string, _ []byte) bool { return tenant == "" || strings.HasPrefix(key, tenant+"/") })
}

// sweep deletes the expired entries (and those that do not decode).
func (p *pebbleTier) sweep() (int, error) {
	now := p.now().UnixMilli()
	return p.remove(func(_ string, val []byte) bool {
		exp, ok := expiresOf(val)
		return !ok || exp <= now
	})
}

// usage counts what is stored now (a scan: stats are asked rarely; the
// gauges use the counts of the last sweep).
func (p *pebbleTier) usage(context.Context) (int64, int64, error) {
	_, err := p.remove(func(string, []byte) bool { return false })
	return p.entries.Load(), p.bytes.Load(), err
}

func (p *pebbleTier) close() error { return nil }
