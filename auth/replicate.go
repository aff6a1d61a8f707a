package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"

	"github.com/moltbot/moltbot/storage"
)

// Replication. In a cluster every node holds every auth record, so a key
// made on one node works on all of them, a revocation anywhere ends it
// everywhere, and a token one node issued verifies on another:
//
//   - keys/<id> and tenants/<id> carry a version ("ver", a hybrid clock:
//     unix nanoseconds, strictly increasing per node, kept ahead of every
//     version seen); a record replaces the local one only when its version
//     is newer (last writer wins; equal versions keep the greater bytes, so
//     every node converges). A deleted tenant stays as a tombstone, or a
//     node that missed the deletion would bring it back. Versions are
//     bounded: one beyond now + MaxClockSkew is refused and never moves the
//     clock (a version near MaxInt64 would beat every later change, and
//     the clock's +1 overflowed), and a stored one beyond it (kept by an
//     older build) loses to any sane version.
//   - every record is checked for sane values before it is stored
//     (validate.go): the same rules as for records made here.
//   - jwks/<kid> are the public halves of every node's token signing keys.
//     They never change: "until" is when the last token the key can sign
//     has expired (created + signing_rotate + token_ttl + leeway), after
//     which they are dropped. Private keys (signing/) never leave the node.
//
// Nothing replicated is secret: keys are stored as SHA-256 hashes of 130
// random bits. Changes go out through the publisher (the cluster sends
// them to every member at once); State and Merge are the periodic full
// exchange that repairs whatever a member missed.

// record is one replicated record on the wire: K is its kind and id
// ("keys/<id>", "tenants/<id>", "jwks/<kid>").
type record struct {
	K string          `json:"k"`
	V json.RawMessage `json:"v"`
}

// The kinds of replicated records, as they travel between nodes. They
// spell the storage keys of the first releases, and nodes of different
// builds exchange them, so they stay as they are; where a record is stored
// is storage's (the namespaces of records and signer).
const (
	wireKey    = "keys/"
	wireTenant = "tenants/"
	wirePub    = "jwks/"
)

// pubKey is a published verification key of some node's signer.
type pubKey struct {
	KID   string `json:"kid"`
	X     string `json:"x"` // base64url, 32 bytes (P-256)
	Y     string `json:"y"`
	Until int64  `json:"until"` // unix seconds: no token it signed is valid after
	key   *ecdsa.PublicKey
}

func (p *pubKey) parse() error {
	x, err1 := base64.RawURLEncoding.DecodeString(p.X)
	y, err2 := base64.RawURLEncoding.DecodeString(p.Y)
	if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
		return fmt.Errorf("auth: public key %s: bad coordinates", p.KID)
	}
	k := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	if !k.Curve.IsOnCurve(k.X, k.Y) {
		return fmt.Errorf("auth: public key %s: not on P-256", p.KID)
	}
	p.key = k
	return nil
}

func newPubKey(kid string, k *ecdsa.PublicKey, until time.Time) *pubKey {
	x, y := make([]byte, 32), make([]byte, 32)
	k.X.FillBytes(x)
	k.Y.FillBytes(y)
	return &pubKey{KID: kid, X: base64.RawURLEncoding.EncodeToString(x), Y: base64.RawURLEncoding.EncodeToString(y),
		Until: until.Unix(), key: k}
}

// SetPublisher sets where changed records go (the cluster); nil: nowhere.
// The bytes are for Merge on the other nodes.
func (s *Service) SetPublisher(fn func([]byte)) {
	s.pubMu.Lock()
	s.publisher = fn
	s.pubMu.Unlock()
}

// OnRefused sets a callback counting records Merge refused, by reason
// ("future_version", "bad_record").
func (s *Service) OnRefused(fn func(reason string)) { s.onRefused = fn }

// nextVer returns a version newer than any this node has written or seen.
// lastVer never exceeds now + MaxClockSkew (sawVer and loadVersions bound
// it), so lastVer + 1 cannot overflow; it saturates all the same.
func (s *Service) nextVer() int64 {
	s.verMu.Lock()
	defer s.verMu.Unlock()
	v := s.now().UnixNano()
	if v <= s.lastVer {
		v = s.lastVer
		if v < math.MaxInt64 {
			v++
		}
	}
	s.lastVer = v
	return v
}

// sawVer keeps the clock ahead of a version accepted from another node
// (checked to be at most now + MaxClockSkew).
func (s *Service) sawVer(v int64) {
	s.verMu.Lock()
	if v > s.lastVer {
		s.lastVer = v
	}
	s.verMu.Unlock()
}

// saneVer reports whether a version may order records at now.
func (s *Service) saneVer(v int64) bool { return checkVer(v, s.now()) == nil }

// loadVersions starts the clock after the versions stored here (a node
// whose wall clock went back still writes newer versions), skipping those
// from the far future.
func (s *Service) loadVersions() error {
	far := 0
	for _, kv := range []storage.KV{s.kv.keys, s.kv.tenants} {
		err := kv.Scan(func(_ string, v []byte) bool {
			var sv versioned
			if json.Unmarshal(v, &sv) == nil {
				if s.saneVer(sv.Ver) {
					s.sawVer(sv.Ver)
				} else {
					far++
				}
			}
			return true
		})
		if err != nil {
			return err
		}
	}
	if far > 0 {
		s.log.Warn("auth records with a version from the far future: any change replaces them", "records", far)
	}
	return nil
}

// publish stores nothing: it hands a record just written to the publisher.
func (s *Service) publish(key string, val []byte) {
	s.pubMu.Lock()
	fn := s.publisher
	s.pubMu.Unlock()
	if fn == nil {
		return
	}
	b, _ := json.Marshal([]record{{K: key, V: val}})
	fn(b)
}

// State returns every replicated record (for a full exchange).
func (s *Service) State() []byte {
	var recs []record
	for _, kind := range []struct {
		wire string
		kv   storage.KV
	}{{wireKey, s.kv.keys}, {wireTenant, s.kv.tenants}, {wirePub, s.signer.jwks}} {
		_ = kind.kv.Scan(func(id string, v []byte) bool {
			recs = append(recs, record{K: kind.wire + id, V: v})
			return true
		})
	}
	b, _ := json.Marshal(recs)
	return b
}

// errFuture marks a record whose version is beyond now + MaxClockSkew.
var errFuture = errors.New("auth: version from the future")

// Merge applies records from another node: a change or a full state. It
// returns how many changed something here. Records it cannot read, of
// another kind, with insane values or a version from the future are
// refused: counted (OnRefused), logged, and summed up in the error.
func (s *Service) Merge(b []byte) (int, error) {
	var recs []record
	if err := json.Unmarshal(b, &recs); err != nil {
		return 0, fmt.Errorf("auth: merge: %w", err)
	}
	applied, future, bad := 0, 0, 0
	var first error
	for _, r := range recs {
		ok, err := s.mergeOne(r.K, r.V)
		if err != nil {
			reason := "bad_record"
			if errors.Is(err, errFuture) {
				reason = "future_version"
				future++
			} else {
				bad++
			}
			if first == nil {
				first = err
			}
			if s.onRefused != nil {
				s.onRefused(reason)
			}
			continue
		}
		if ok {
			applied++
		}
	}
	if future+bad > 0 {
		err := fmt.Errorf("auth: merge: refused %d of %d records (%d from the future, %d malformed or insane); first: %v",
			future+bad, len(recs), future, bad, first)
		s.log.Warn("refused replicated auth records", "refused", future+bad, "records", len(recs), "future", future, "bad", bad, "first", trimErr(first))
		return applied, err
	}
	return applied, nil
}

// trimErr bounds an error for a log line (a peer chooses its content).
func trimErr(err error) string {
	m := err.Error()
	if len(m) > 200 {
		m = m[:200] + "..."
	}
	return m
}

// versioned reads the version of a stored record.
type versioned struct {
	Ver int64 `json:"ver"`
}

// putIfNewerLocked stores a versioned record from another node under id
// in kv when it is newer than ours (absent, or ours from the far future:
// always; equal versions: the greater bytes), and keeps this node's clock
// ahead of it. ver has been checked (saneVer). The caller holds recMu.
func (s *Service) putIfNewerLocked(kv storage.KV, id string, val []byte, ver int64) (bool, error) {
	stored, found, err := kv.Get(id)
	if err != nil {
		return false, err
	}
	if found {
		var sv versioned
		_ = json.Unmarshal(stored, &sv)
		if s.saneVer(sv.Ver) && (ver < sv.Ver || ver == sv.Ver && bytes.Compare(val, stored) <= 0) {
			return false, nil
		}
	}
	s.sawVer(ver)
	return true, kv.Put(id, val)
}

func (s *Service) mergeOne(key string, val []byte) (bool, error) {
	now := s.now()
	switch {
	case strings.HasPrefix(key, wireKey):
		var k Key
		if err := json.Unmarshal(val, &k); err != nil || wireKey+k.ID != key {
			return false, fmt.Errorf("auth: bad key record %q", trimKey(key))
		}
		if !s.saneVer(k.Ver) {
			return false, fmt.Errorf("%w: key %s, version %d", errFuture, k.ID, k.Ver)
		}
		if err := k.check(now); err != nil {
			return false, fmt.Errorf("auth: key record %q: %w", trimKey(key), err)
		}
		s.recMu.Lock()
		defer s.recMu.Unlock()
		return s.putIfNewerLocked(s.kv.keys, k.ID, val, k.Ver)
	case strings.HasPrefix(key, wireTenant):
		var t Tenant
		if err := json.Unmarshal(val, &t); err != nil || wireTenant+t.ID != key {
			return false, fmt.Errorf("auth: bad tenant record %q", trimKey(key))
		}
		if !s.saneVer(t.Ver) {
			return false, fmt.Errorf("%w: tenant %s, version %d", errFuture, t.ID, t.Ver)
		}
		if err := t.check(now); err != nil {
			return false, fmt.Errorf("auth: tenant record %q: %w", trimKey(key), err)
		}
		s.recMu.Lock()
		defer s.recMu.Unlock()
		if ok, err := s.putIfNewerLocked(s.kv.tenants, t.ID, val, t.Ver); !ok || err != nil {
			return false, err
		}
		s.mu.Lock()
		if cur, ok := s.tenants[t.ID]; !ok || !cur.FromConfig {
			if t.Deleted != 0 {
				delete(s.tenants, t.ID)
			} else {
				s.tenants[t.ID] = &t
			}
		}
		s.mu.Unlock()
		s.kickSweep()
		return true, nil
	case strings.HasPrefix(key, wirePub):
		var p pubKey
		if err := json.Unmarshal(val, &p); err != nil || wirePub+p.KID != key {
			return false, fmt.Errorf("auth: bad public key record %q", trimKey(key))
		}
		if err := p.check(now); err != nil {
			return false, fmt.Errorf("auth: public key record %q: %w", trimKey(key), err)
		}
		if !now.Before(time.Unix(p.Until, 0)) {
			return false, nil // expired: every token it signed is dead
		}
		s.signer.mu.Lock()
		defer s.signer.mu.Unlock()
		if _, ok := s.signer.remote[p.KID]; ok || s.signer.ownLocked(p.KID) != nil {
			return false, nil
		}
		if err := s.signer.jwks.Put(p.KID, val); err != nil {
			return false, err
		}
		s.signer.remote[p.KID] = &p
		return true, nil
	}
	return false, fmt.Errorf("auth: not a replicated record: %q", trimKey(key))
}

// trimKey bounds a record key for an error message.
func trimKey(k string) string {
	if len(k) > 80 {
		return k[:80] + "..."
	}
	return k
}
