// Package replica keeps a namespace of records the same on every member
// of a cluster: each record carries a version, the newest wins (last
// writer wins; equal versions keep the greater bytes, so every member
// converges), and a deletion stays as a tombstone, or a member that missed
// it would bring the record back.
//
// A Set is an actors.SharedState. A change goes out as the record itself
// (Publish, to every member at once). The periodic full exchange sends a
// digest, not the records: the records are cut into 256 buckets by a hash
// of their key, and a bucket's digest is the XOR of its records' hashes
// (key, version, deleted, value), kept up to date as records change, so the
// digest is 2 KB however many records there are. A member that gets a
// digest publishes its records of every bucket that differs; the sender's
// own digest, when it reaches a member later, makes that member publish
// what the sender lacks. Every exchange moves only what differs, and the
// members converge within a few exchanges after a partition heals.
//
// Versions are a hybrid clock: unix nanoseconds, strictly increasing on a
// member and kept ahead of every version seen. A version beyond now +
// MaxSkew is refused and never moves the clock (it would beat every later
// change).
package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/moltbot/moltbot/storage"
)

// MaxSkew bounds how far ahead of this member's clock a version may be.
const MaxSkew = 5 * time.Minute

// MaxKey bounds a record's key.
const MaxKey = 1 << 10

// MaxBatch bounds the bytes of one published batch of records: a
// bucket's records go out in batches of at most this size (a record
// bigger than it goes alone).
const MaxBatch = 512 << 10

const buckets = 256

// The messages: a digest (the full exchange) or a batch of records.
const (
	msgDigest  = 'D'
	msgRecords = 'R'
)

// Config is what a Set needs.
type Config struct {
	// KV keeps the records (a storage namespace; its sync policy is the
	// Set's). Every key of it is the Set's.
	KV storage.KV
	// MaxValue bounds a record's value (a change with a bigger one is
	// refused, here and from a member).
	MaxValue int
	// Publish sends a change to every member (nil: a member alone).
	Publish func([]byte)
	// Changed, when set, is called after a record changed here or from a
	// member (val nil: deleted), under the Set's lock: keep it short.
	Changed func(key string, val []byte)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Set is a replicated namespace of records. Safe for concurrent use.
type Set struct {
	cfg    Config
	mu     sync.Mutex
	last   uint64 // the newest version written or seen
	digest [buckets]uint64
}

// Open reads the records cfg.KV holds (their versions and digests).
func Open(cfg Config) (*Set, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxValue <= 0 {
		cfg.MaxValue = 64 << 10
	}
	s := &Set{cfg: cfg}
	limit := s.limit()
	err := cfg.KV.Scan(func(key string, v []byte) bool {
		ver, del, val, ok := decodeStored(v)
		if !ok {
			return true
		}
		s.digest[bucketOf(key)] ^= recHash(key, ver, del, val)
		if ver > s.last && ver <= limit {
			s.last = ver
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("replica: open: %w", err)
	}
	return s, nil
}

// SetPublish sets where changes go (the cluster, once it runs).
func (s *Set) SetPublish(fn func([]byte)) {
	s.mu.Lock()
	s.cfg.Publish = fn
	s.mu.Unlock()
}

// Get returns key's value; a deleted record is not found.
func (s *Set) Get(key string) ([]byte, bool, error) {
	v, found, err := s.cfg.KV.Get(key)
	if err != nil || !found {
		return nil, false, err
	}
	_, del, val, ok := decodeStored(v)
	if !ok || del {
		return nil, false, nil
	}
	return val, true, nil
}

// Scan calls fn with every record that is not deleted, in key order,
// until fn returns false. fn must not write.
func (s *Set) Scan(fn func(key string, val []byte) bool) error { return s.ScanPrefix("", fn) }

// ScanPrefix is Scan over the keys that start with prefix.
func (s *Set) ScanPrefix(prefix string, fn func(key string, val []byte) bool) error {
	return s.cfg.KV.ScanPrefix(prefix, func(key string, v []byte) bool {
		_, del, val, ok := decodeStored(v)
		if !ok || del {
			return true
		}
		return fn(key, val)
	})
}

// Put stores val under key, newest, and publishes it.
func (s *Set) Put(key string, val []byte) error { return s.write(key, val, false) }

// Seed stores val under key at the oldest version there is (1), so any
// record the key holds already (a tombstone too) stays, and publishes
// nothing: records of an earlier release moved in, which any
// write the cluster made since must beat (a record moved as a new write
// would bring back a key deleted, or an old value over one set, through
// a member upgraded sooner). The full exchange spreads it; members that
// seed the same key with different values keep the greater bytes.
func (s *Set) Seed(key string, val []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(val) > s.cfg.MaxValue {
		return fmt.Errorf("replica: a value of %d bytes under %q; at most %d", len(val), key, s.cfg.MaxValue)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.apply(record{key: key, ver: 1, val: val})
	return err
}

// Delete removes key (a tombstone) and publishes it. Deleting what is
// absent is not an error and publishes nothing.
func (s *Set) Delete(key string) error {
	if _, found, err := s.Get(key); err != nil || !found {
		return err
	}
	return s.write(key, nil, true)
}

func (s *Set) write(key string, val []byte, del bool) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(val) > s.cfg.MaxValue {
		return fmt.Errorf("replica: a value of %d bytes under %q; at most %d", len(val), key, s.cfg.MaxValue)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ver := uint64(s.cfg.Now().UnixNano())
	if ver <= s.last {
		ver = s.last + 1
	}
	// A write supersedes what this member holds of the key, even a record
	// whose version the clock does not cover (Open leaves the clock
	// behind a version beyond now + MaxSkew: one stored while the clock
	// ran ahead, before it was set right): else the write is not applied
	// here and the caller is told it was.
	old, found, err := s.cfg.KV.Get(key)
	if err != nil {
		return err
	}
	// Such a version does not move the clock for the other keys (it
	// would beat every later change of theirs).
	last := s.last
	if found {
		if ov, _, _, ok := decodeStored(old); ok && ov >= ver {
			ver = ov + 1
		}
	}
	r := record{key: key, ver: ver, del: del, val: val}
	if _, err := s.apply(r); err != nil {
		return err
	}
	if ver > s.limit() {
		s.last = last
	}
	if s.cfg.Publish != nil {
		s.cfg.Publish(appendBatch(nil, []record{r}))
	}
	return nil
}

// applyOne is apply under the lock.
func (s *Set) applyOne(r record) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apply(r)
}

// apply stores r when it is newer than what is stored; it reports whether
// it was. Called with s.mu held.
func (s *Set) apply(r record) (bool, error) {
	old, found, err := s.cfg.KV.Get(r.key)
	if err != nil {
		return false, err
	}
	enc := encodeStored(r)
	b := bucketOf(r.key)
	if found {
		ov, odel, oval, ok := decodeStored(old)
		if ok {
			if ov > r.ver || (ov == r.ver && bytes.Compare(old, enc) >= 0) {
				return false, nil
			}
			s.digest[b] ^= recHash(r.key, ov, odel, oval)
		}
	}
	if err := s.cfg.KV.Put(r.key, enc); err != nil {
		if found {
			if ov, odel, oval, ok := decodeStored(old); ok {
				s.digest[b] ^= recHash(r.key, ov, odel, oval)
			}
		}
		return false, err
	}
	s.digest[b] ^= recHash(r.key, r.ver, r.del, r.val)
	if r.ver > s.last {
		s.last = r.ver
	}
	if s.cfg.Changed != nil {
		if r.del {
			s.cfg.Changed(r.key, nil)
		} else {
			s.cfg.Changed(r.key, r.val)
		}
	}
	return true, nil
}

// State is the digest of every bucket (the full exchange).
func (s *Set) State() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]byte, 1, 1+8*buckets)
	out[0] = msgDigest
	for _, d := range s.digest {
		out = binary.BigEndian.AppendUint64(out, d)
	}
	return out
}

// Merge applies a member's records, or compares its digest with this
// member's and publishes the records of every bucket that differs. It
// returns how many records it applied.
func (s *Set) Merge(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	switch b[0] {
	case msgDigest:
		if len(b) != 1+8*buckets {
			return 0, fmt.Errorf("replica: a digest of %d bytes", len(b))
		}
		return 0, s.answerDigest(b[1:])
	case msgRecords:
		recs, err := decodeBatch(b[1:], s.cfg.MaxValue)
		if err != nil {
			return 0, err
		}
		// The lock is taken a record at a time: a batch is up to MaxBatch
		// of records, each a synced write, and this member's own writes
		// (a turn's context.kv.set) must not wait for all of them.
		limit := s.limit()
		n, refused := 0, 0
		for _, r := range recs {
			if r.ver > limit {
				refused++
				continue
			}
			ok, err := s.applyOne(r)
			if err != nil {
				return n, err
			}
			if ok {
				n++
			}
		}
		if refused > 0 {
			return n, fmt.Errorf("replica: %d records with a version beyond now + %v refused", refused, MaxSkew)
		}
		return n, nil
	}
	return 0, fmt.Errorf("replica: a message of kind %#x", b[0])
}

// answerDigest publishes this member's records of the buckets whose
// digest differs from theirs.
func (s *Set) answerDigest(theirs []byte) error {
	s.mu.Lock()
	var differ [buckets]bool
	any := false
	for i := range buckets {
		if binary.BigEndian.Uint64(theirs[8*i:]) != s.digest[i] {
			differ[i], any = true, true
		}
	}
	publish := s.cfg.Publish
	s.mu.Unlock()
	if !any || publish == nil {
		return nil
	}
	var batch []record
	size := 0
	flush := func() {
		if len(batch) > 0 {
			publish(appendBatch(nil, batch))
			batch, size = batch[:0], 0
		}
	}
	err := s.cfg.KV.Scan(func(key string, v []byte) bool {
		if !differ[bucketOf(key)] {
			return true
		}
		ver, del, val, ok := decodeStored(v)
		if !ok {
			return true
		}
		if size+len(key)+len(val)+32 > MaxBatch {
			flush()
		}
		batch = append(batch, record{key: key, ver: ver, del: del, val: val})
		size += len(key) + len(val) + 32
		return true
	})
	flush()
	return err
}

// limit is the newest version this member accepts now.
func (s *Set) limit() uint64 { return uint64(s.cfg.Now().Add(MaxSkew).UnixNano()) }

// record is one record as it travels.
type record struct {
	key string
	ver uint64
	del bool
	val []byte
}

func checkKey(key string) error {
	if key == "" || len(key) > MaxKey {
		return fmt.Errorf("replica: a key of %d bytes; 1 to %d", len(key), MaxKey)
	}
	return nil
}

// The stored form: version (8 bytes, big endian), a flag byte (1:
// deleted), the value.
func encodeStored(r record) []byte {
	out := make([]byte, 9, 9+len(r.val))
	binary.BigEndian.PutUint64(out, r.ver)
	if r.del {
		out[8] = 1
	}
	return append(out, r.val...)
}

func decodeStored(b []byte) (ver uint64, del bool, val []byte, ok bool) {
	if len(b) < 9 || b[8] > 1 {
		return 0, false, nil, false
	}
	return binary.BigEndian.Uint64(b), b[8] == 1, b[9:], true
}

// A batch: 'R', then per record: uvarint key length, key, version (8
// bytes), flag, uvarint value length, value.
func appendBatch(out []byte, recs []record) []byte {
	out = append(out, msgRecords)
	for _, r := range recs {
		out = binary.AppendUvarint(out, uint64(len(r.key)))
		out = append(out, r.key...)
		out = binary.BigEndian.AppendUint64(out, r.ver)
		if r.del {
			out = append(out, 1)
		} else {
			out = append(out, 0)
		}
		out = binary.AppendUvarint(out, uint64(len(r.val)))
		out = append(out, r.val...)
	}
	return out
}

var errCut = errors.New("replica: a batch cut short")

func decodeBatch(b []byte, maxValue int) ([]record, error) {
	var recs []record
	for len(b) > 0 {
		kl, n := binary.Uvarint(b)
		if n <= 0 || kl == 0 || kl > MaxKey || kl > uint64(len(b)-n) {
			return nil, errCut
		}
		key := string(b[n : n+int(kl)])
		b = b[n+int(kl):]
		if len(b) < 9 || b[8] > 1 {
			return nil, errCut
		}
		ver, del := binary.BigEndian.Uint64(b), b[8] == 1
		b = b[9:]
		vl, n := binary.Uvarint(b)
		if n <= 0 || vl > uint64(len(b)-n) {
			return nil, errCut
		}
		if vl > uint64(maxValue) {
			return nil, fmt.Errorf("replica: a value of %d bytes under %q; at most %d", vl, key, maxValue)
		}
		if del && vl > 0 {
			return nil, fmt.Errorf("replica: a deleted record %q with a value", key)
		}
		val := bytes.Clone(b[n : n+int(vl)])
		b = b[n+int(vl):]
		recs = append(recs, record{key: key, ver: ver, del: del, val: val})
	}
	return recs, nil
}

func bucketOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % buckets)
}

// recHash is a record's share of its bucket's digest: its key, version,
// tombstone flag and value. The value counts: two members may hold a key
// at the same version with different values (both wrote last+1 after the
// same version reached them), and the full exchange must tell them apart
// for the greater bytes to win on both. The key's length comes first, so
// that no key and value split the same bytes two ways.
func recHash(key string, ver uint64, del bool, val []byte) uint64 {
	h := fnv.New64a()
	var b [9]byte
	binary.BigEndian.PutUint64(b[:], uint64(len(key)))
	h.Write(b[:8])
	h.Write([]byte(key))
	binary.BigEndian.PutUint64(b[:], ver)
	if del {
		b[8] = 1
	}
	h.Write(b[:])
	h.Write(val)
	return h.Sum64()
}
