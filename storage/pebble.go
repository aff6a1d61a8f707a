package storage

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/moltbot/moltbot"
)

// Options size the Pebble database. The defaults (DefaultOptions) suit a
// 512 MB device.
type Options struct {
	// CacheSize is the block cache.
	CacheSize int64
	// MemtableSize is the write buffer before a flush.
	MemtableSize int64
	// InMemory keeps the database in memory (tests): nothing touches disk.
	InMemory bool
	// Logger receives Pebble's own log lines at debug level; nil discards them.
	Logger *slog.Logger
}

// DefaultOptions are the sizes for a small device: an 8 MiB block cache
// and 1 MiB memtables (a memtable is Go heap in this cgo-free build, and
// Pebble holds up to three: the one written, one flushing, one kept for
// reuse; at 4 MiB they were 12 MB of a node's live heap after 10,000
// conversations, and the collector doubles what is live).
func DefaultOptions() Options {
	return Options{CacheSize: 8 << 20, MemtableSize: 1 << 20}
}

// EnsureDefaults fills zero fields from DefaultOptions.
func (o *Options) EnsureDefaults() {
	d := DefaultOptions()
	if o.CacheSize <= 0 {
		o.CacheSize = d.CacheSize
	}
	if o.MemtableSize <= 0 {
		o.MemtableSize = d.MemtableSize
	}
}

// Pebble is the on-disk Store.
type Pebble struct {
	db    *pebble.DB
	cache *pebble.Cache
	// mu is held shared by every operation and exclusively by Close: Pebble
	// panics when used after Close, and a late actor write must get ErrClosed.
	mu      sync.RWMutex
	closed  bool
	dir     string
	locks   keyLocks
	written atomic.Int64 // see Written
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l != nil {
		p.l.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	if p.l != nil {
		p.l.Error(strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "pebble")
	}
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.l != nil {
		p.l.Error(msg, "component", "pebble")
	}
	panic("storage: pebble: " + msg)
}

// Open opens (creating if needed) the database in dir: a private directory
// (0700, files 0600), tightened if it was not.
func Open(dir string, o Options) (*Pebble, error) {
	o.EnsureDefaults()
	cache := pebble.NewCache(o.CacheSize)
	opts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                uint64(o.MemtableSize),
		MemTableStopWritesThreshold: 4,
		MaxOpenFiles:                256,
		L0CompactionThreshold:       2,
		L0StopWritesThreshold:       1000,
		MaxConcurrentCompactions:    func() int { return 1 },
		Logger:                      pebbleLogger{o.Logger},
	}
	if o.InMemory {
		opts.FS = vfs.NewMem()
	} else {
		// Private: the directory holds the conversations and the token
		// signing keys (private.go). A directory left too open by an
		// older build, or by hand, is tightened, and the log says so.
		opts.FS = privateFS{vfs.Default}
		if err := os.MkdirAll(dir, dirMode); err != nil {
			cache.Unref()
			return nil, fmt.Errorf("storage: create %s: %w", dir, err)
		}
		changed, err := Tighten(dir)
		if err != nil {
			cache.Unref()
			return nil, fmt.Errorf("storage: make %s private: %w", dir, err)
		}
		if len(changed) > 0 && o.Logger != nil {
			o.Logger.Warn("storage: the data directory was readable by others; made it private (directories 0700, files 0600)",
				"dir", dir, "changed", len(changed), "first", changed[0])
		}
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		cache.Unref()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("storage: %s is in use by another moltbot process: %w", dir, err)
		}
		return nil, fmt.Errorf("storage: open %s: %w", dir, err)
	}
	return &Pebble{db: db, cache: cache, dir: dir}, nil
}

func writeOpts(sync bool) *pebble.WriteOptions {
	if sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

// iterView is a view over one Pebble iterator: a consistent read.
type iterView struct{ it *pebble.Iterator }

func (v iterView) get(key []byte) ([]byte, bool, error) {
	if v.it.SeekGE(key) && bytes.Equal(v.it.Key(), key) {
		return v.it.Value(), true, nil
	}
	return nil, false, v.it.Error()
}

func (v iterView) scan(lo, hi []byte, fn func(key, val []byte) bool) error {
	for ok := v.it.SeekGE(lo); ok && bytes.Compare(v.it.Key(), hi) < 0; ok = v.it.Next() {
		if !fn(v.it.Key(), v.it.Value()) {
			break
		}
	}
	return v.it.Error()
}

// headers calls fn with the key and value of each conversation header in
// the iterator's bounds, skipping the records beside them (one seek per
// conversation); fn may use the iterator.
func (v iterView) headers(fn func(key, val []byte) bool) error {
	for ok := v.it.First(); ok; {
		k := v.it.Key()
		if i := bytes.IndexByte(k, recordSep); i >= 0 { // records without a header
			ok = v.it.SeekGE(append(k[:i:i], recordSep+1))
			continue
		}
		next := convEnd(k)
		if !fn(k, v.it.Value()) {
			break
		}
		ok = v.it.SeekGE(next)
	}
	return v.it.Error()
}

// dbView reads the database as it is at each call: for a writer that holds
// the conversation's lock (nothing else writes it meanwhile).
type dbView struct{ db *pebble.DB }

func (v dbView) get(key []byte) ([]byte, bool, error) {
	val, closer, err := v.db.Get(key)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	defer closer.Close()
	return bytes.Clone(val), true, nil
}

func (v dbView) scan(lo, hi []byte, fn func(key, val []byte) bool) error {
	it, err := v.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	err = iterView{it}.scan(lo, hi, fn)
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return err
}

// convView is a view of one conversation's records; the caller closes it.
func (p *Pebble) convView(key []byte) (iterView, error) {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: key, UpperBound: convEnd(key)})
	return iterView{it}, err
}

type pebbleBatch struct{ b *pebble.Batch }

func (b pebbleBatch) set(key, val []byte) error       { return b.b.Set(key, val, nil) }
func (b pebbleBatch) deleteRange(lo, hi []byte) error { return b.b.DeleteRange(lo, hi, nil) }

// Get implements Store.
func (p *Pebble) Get(tenant, id string) (*moltbot.Conversation, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, ErrClosed
	}
	v, err := p.convView(Key(tenant, id))
	if err != nil {
		return nil, fmt.Errorf("storage: get %s/%s: %w", tenant, id, err)
	}
	defer v.it.Close()
	c, err := loadConv(v, Key(tenant, id))
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("storage: %s/%s: %w", tenant, id, err)
	}
	return c, nil
}

// Put implements Store.
func (p *Pebble) Put(c *moltbot.Conversation, sync bool) error {
	_, _, _, err := p.put(c, sync, false)
	return err
}

// PutIfNewer implements Store.
func (p *Pebble) PutIfNewer(c *moltbot.Conversation, sync bool) (bool, uint64, uint64, error) {
	return p.put(c, sync, true)
}

// put reads what is held under c's key and writes c over it in one batch
// (fenced: if c is newer), under the key's lock: nothing else writes
// the conversation meanwhile (DeleteSpaces holds the store exclusively).
func (p *Pebble) put(c *moltbot.Conversation, sync, fenced bool) (bool, uint64, uint64, error) {
	mu := p.locks.lock(c.Tenant, c.ID)
	defer mu.Unlock()
	return p.putLocked(c, sync, fenced)
}

// BumpEpoch implements Store: the stored copy is read and written back
// with its new epoch under the key's lock, so a replica write that lands
// meanwhile is either in the copy or fenced off by the new epoch.
func (p *Pebble) BumpEpoch(tenant, id string, floor uint64, sync bool) (*moltbot.Conversation, error) {
	mu := p.locks.lock(tenant, id)
	defer mu.Unlock()
	c, err := p.Get(tenant, id)
	if err != nil {
		return nil, err
	}
	c.Epoch = max(c.Epoch, floor) + 1
	if _, _, _, err := p.putLocked(c, sync, false); err != nil {
		return nil, err
	}
	return c, nil
}

// putLocked is put under the key's lock.
func (p *Pebble) putLocked(c *moltbot.Conversation, sync, fenced bool) (bool, uint64, uint64, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false, 0, 0, ErrClosed
	}
	key := Key(c.Tenant, c.ID)
	v := dbView{p.db}
	old, err := readHeld(v, key)
	if err != nil {
		err = fmt.Errorf("storage: %s/%s: %w", c.Tenant, c.ID, err)
	}
	commit := func(old held) error {
		b := p.db.NewBatch()
		defer b.Close()
		if err := writeConv(v, pebbleBatch{b}, c, old); err != nil {
			return fmt.Errorf("storage: put %s/%s: %w", c.Tenant, c.ID, err)
		}
		p.written.Add(int64(b.Len()))
		if err := b.Commit(writeOpts(sync)); err != nil {
			return fmt.Errorf("storage: put %s/%s: %w", c.Tenant, c.ID, err)
		}
		return nil
	}
	if fenced {
		return putIfNewer(c, old, err, commit)
	}
	if err != nil {
		old = held{found: true, whole: true} // unreadable: replaced whole, as before this layout
	}
	return true, c.Epoch, c.Version, commit(old)
}

// Written is how many bytes this store's conversation writes have put in
// Pebble batches (keys, values and the batches' own framing), since Open.
func (p *Pebble) Written() int64 { return p.written.Load() }

// Health reports whether the database can be read, for readiness probes:
// ErrClosed after Close, else the error of one point read (of a key no
// record uses). Its cost does not grow with what is stored, unlike Count.
func (p *Pebble) Health() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	_, closer, err := p.db.Get(healthKey)
	switch {
	case err == nil:
		return closer.Close()
	case errors.Is(err, pebble.ErrNotFound):
		return nil
	}
	return fmt.Errorf("storage: health: %w", err)
}

// healthKey is read by Health; nothing is stored under it.
var healthKey = []byte("health/probe")

// Delete implements Store: the header and every record beside it, in
// one range deletion.
func (p *Pebble) Delete(tenant, id string, sync bool) error {
	mu := p.locks.lock(tenant, id)
	defer mu.Unlock()
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	key := Key(tenant, id)
	if err := p.db.DeleteRange(key, convEnd(key), writeOpts(sync)); err != nil {
		return fmt.Errorf("storage: delete %s/%s: %w", tenant, id, err)
	}
	return nil
}

// convs is a view of every conversation; the caller closes it.
func (p *Pebble) convs(lo, hi []byte) (iterView, error) {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	return iterView{it}, err
}

var convsEnd = []byte("conv0") // past conv/...

// Count implements Store by walking the headers (one seek per
// conversation); it costs O(stored conversations).
func (p *Pebble) Count() (int, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return 0, ErrClosed
	}
	v, err := p.convs([]byte(convPrefix), convsEnd)
	if err != nil {
		return 0, err
	}
	n := 0
	err = v.headers(func(_, _ []byte) bool { n++; return true })
	if cerr := v.it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("storage: count: %w", err)
	}
	return n, nil
}

// ForEach implements Store. It reads one consistent view of the store.
func (p *Pebble) ForEach(fn func(c *moltbot.Conversation) bool) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	v, err := p.convs([]byte(convPrefix), convsEnd)
	if err != nil {
		return err
	}
	defer v.it.Close()
	return v.headers(func(key, _ []byte) bool {
		c, err := loadConv(v, bytes.Clone(key))
		if err != nil {
			return true // a corrupt conversation: skip it, do not stop the scan
		}
		return fn(c)
	})
}

// ForEachHeader calls fn with each conversation without its messages
// (its header record: version, owner, user, outbox, ...), for scans that
// need no history: one read per conversation, not one per message. A
// conversation stored by an older build comes whole.
func (p *Pebble) ForEachHeader(fn func(c *moltbot.Conversation) bool) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	v, err := p.convs([]byte(convPrefix), convsEnd)
	if err != nil {
		return err
	}
	defer v.it.Close()
	return v.headers(func(_, val []byte) bool {
		c, err := headerOf(val)
		if err != nil {
			return true // a corrupt conversation: skip it
		}
		return fn(c)
	})
}

// Flush writes the memtable to disk (tests and shutdown).
func (p *Pebble) Flush() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	return p.db.Flush()
}

// Close implements Store. It is idempotent.
func (p *Pebble) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.db.Close()
	p.cache.Unref()
	return err
}

// Metrics returns Pebble's own metrics (for status and debugging).
func (p *Pebble) Metrics() *pebble.Metrics { return p.db.Metrics() }

// Namespace implements Namespaces: the records of ns (namespace.go).
func (p *Pebble) Namespace(ns Namespace) KV { return space{p, ns} }

// getRaw returns the value under a whole key; found is false when there is none.
func (p *Pebble) getRaw(key string) (val []byte, found bool, err error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, false, ErrClosed
	}
	v, closer, err := p.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: get %s: %w", key, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

// putRaw stores val under a whole key.
func (p *Pebble) putRaw(key string, val []byte, sync bool) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	return p.db.Set([]byte(key), val, writeOpts(sync))
}

// deleteRaw removes a whole key.
func (p *Pebble) deleteRaw(key string, sync bool) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	return p.db.Delete([]byte(key), writeOpts(sync))
}

// scanRaw calls fn for every key with prefix, in order, until fn returns false.
func (p *Pebble) scanRaw(prefix string, fn func(key string, val []byte) bool) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	upper := []byte(prefix)
	upper[len(upper)-1]++
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if !fn(string(it.Key()), append([]byte(nil), it.Value()...)) {
			break
		}
	}
	return it.Error()
}

// DeleteSpaces deletes every conversation whose space (the tenant part of
// its key, conv/<space>/<id>) dead reports true, and returns how many it
// deleted. It walks the spaces (one seek per space, not per conversation),
// asks dead about each without holding the store's lock (dead may read the
// store), then deletes each dead space's range in one synced batch, holding
// the store exclusively while it counts and commits so that no Put (which
// writes a delta over what it read) lands in between.
func (p *Pebble) DeleteSpaces(dead func(space string) bool) (int, error) {
	spaces, err := p.spaces()
	if err != nil {
		return 0, err
	}
	var gone []string
	for _, sp := range spaces {
		if dead(sp) {
			gone = append(gone, sp)
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	n := 0
	b := p.db.NewBatch()
	defer b.Close()
	for _, sp := range gone {
		lo, hi := spaceBounds(sp)
		v, err := p.convs(lo, hi)
		if err != nil {
			return 0, err
		}
		err = v.headers(func(_, _ []byte) bool { n++; return true })
		if cerr := v.it.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, err
		}
		if err := b.DeleteRange(lo, hi, nil); err != nil {
			return 0, err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("storage: delete spaces: %w", err)
	}
	return n, nil
}

// spaces lists the distinct spaces of the stored conversations, in order.
func (p *Pebble) spaces() ([]string, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, ErrClosed
	}
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte(convPrefix), UpperBound: convsEnd})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []string
	for valid := it.First(); valid; {
		sp, _, ok := strings.Cut(string(it.Key()[len(convPrefix):]), "/")
		if !ok {
			valid = it.Next()
			continue
		}
		out = append(out, sp)
		_, hi := spaceBounds(sp)
		valid = it.SeekGE(hi)
	}
	return out, it.Error()
}

// spaceBounds are the keys of a space's conversations: [conv/<sp>/, conv/<sp>0).
func spaceBounds(sp string) (lo, hi []byte) {
	lo = append(append([]byte(convPrefix), sp...), '/')
	hi = append(append([]byte(convPrefix), sp...), '/'+1)
	return lo, hi
}
