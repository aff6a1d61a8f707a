package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Replication. In a cluster every node holds every auth record, so a key
// made on one node works on all of them, a revocation anywhere ends it
// everywhere, and a token one node issued verifies on another:
//
//   - keys/<id> and tenants/<id> carry a version ("ver", a hybrid clock:
//     unix nanoseconds, strictly increasing per node); a record replaces
//     the local one only when its version is newer (last writer wins; equal
//     versions keep the greater bytes, so every node converges). A deleted
//     tenant stays as a tombstone, or a node that missed the deletion would
//     bring it back.
//   - jwks/<kid> are the public halves of every node's token signing keys.
//     They never change: "until" is when the last token the key can sign
//     has expired (created + signing_rotate + token_ttl + leeway), after
//     which they are dropped. Private keys (signing/) never leave the node.
//
// Nothing replicated is secret: keys are stored as SHA-256 hashes of 130
// random bits. Changes go out through the publisher (the cluster sends
// them to every member at once); State and Merge are the periodic full
// exchange that repairs whatever a member missed.

// record is one replicated record on the wire.
type record struct {
	K string          `json:"k"`
	V json.RawMessage `json:"v"`
}

const pubPrefix = "jwks/"

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

// nextVer returns a version newer than any this node has written or seen.
func (s *Service) nextVer() int64 {
	s.verMu.Lock()
	defer s.verMu.Unlock()
	v := s.now().UnixNano()
	if v <= s.lastVer {
		v = s.lastVer + 1
	}
	s.lastVer = v
	return v
}

// sawVer keeps the clock ahead of versions seen from other nodes.
func (s *Service) sawVer(v int64) {
	s.verMu.Lock()
	if v > s.lastVer {
		s.lastVer = v
	}
	s.verMu.Unlock()
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
	for _, prefix := range []string{keyPrefix, tenantPrefix, pubPrefix} {
		_ = s.kv.ScanRaw(prefix, func(k string, v []byte) bool {
			recs = append(recs, record{K: k, V: append(json.RawMessage(nil), v...)})
			return true
		})
	}
	b, _ := json.Marshal(recs)
	return b
}

// Merge applies records from another node: a change or a full state. It
// returns how many changed something here. Records it cannot read, or of
// another kind, are skipped (and counted in the error).
func (s *Service) Merge(b []byte) (int, error) {
	var recs []record
	if err := json.Unmarshal(b, &recs); err != nil {
		return 0, fmt.Errorf("auth: merge: %w", err)
	}
	applied, bad := 0, 0
	for _, r := range recs {
		ok, err := s.mergeOne(r.K, r.V)
		if err != nil {
			bad++
			continue
		}
		if ok {
			applied++
		}
	}
	if bad > 0 {
		return applied, fmt.Errorf("auth: merge: %d of %d records skipped", bad, len(recs))
	}
	return applied, nil
}

// versioned reads the version of a stored record.
type versioned struct {
	Ver int64 `json:"ver"`
}

// putIfNewerLocked stores a versioned record from another node when it is
// newer than ours (absent: always; equal versions: the greater bytes), and
// keeps this node's clock ahead of it. The caller holds recMu.
func (s *Service) putIfNewerLocked(key string, val []byte, ver int64) (bool, error) {
	s.sawVer(ver)
	stored, found, err := s.kv.GetRaw(key)
	if err != nil {
		return false, err
	}
	if found {
		var sv versioned
		_ = json.Unmarshal(stored, &sv)
		if ver < sv.Ver || ver == sv.Ver && bytes.Compare(val, stored) <= 0 {
			return false, nil
		}
	}
	return true, s.kv.PutRaw(key, val, true)
}

func (s *Service) mergeOne(key string, val []byte) (bool, error) {
	switch {
	case strings.HasPrefix(key, keyPrefix):
		var k Key
		if err := json.Unmarshal(val, &k); err != nil || keyPrefix+k.ID != key || len(k.ID) != 8 || len(k.Hash) != 32 || !ValidTenantID(k.Tenant) {
			return false, fmt.Errorf("auth: bad key record %q", key)
		}
		s.recMu.Lock()
		defer s.recMu.Unlock()
		return s.putIfNewerLocked(key, val, k.Ver)
	case strings.HasPrefix(key, tenantPrefix):
		var t Tenant
		if err := json.Unmarshal(val, &t); err != nil || tenantPrefix+t.ID != key || !ValidTenantID(t.ID) || t.ID == DefaultTenant {
			return false, fmt.Errorf("auth: bad tenant record %q", key)
		}
		s.recMu.Lock()
		defer s.recMu.Unlock()
		if ok, err := s.putIfNewerLocked(key, val, t.Ver); !ok || err != nil {
			return false, err
		}
		s.mu.Lock()
		if cur, ok := s.tenants[t.ID]; !ok || !cur.FromConfig {
			if t.Deleted != 0 {
				delete(s.tenants, t.ID)
			} else {
				t.FromConfig = false
				s.tenants[t.ID] = &t
			}
		}
		s.mu.Unlock()
		return true, nil
	case strings.HasPrefix(key, pubPrefix):
		var p pubKey
		if err := json.Unmarshal(val, &p); err != nil || pubPrefix+p.KID != key || p.parse() != nil {
			return false, fmt.Errorf("auth: bad public key record %q", key)
		}
		if !s.now().Before(time.Unix(p.Until, 0)) {
			return false, nil // expired: every token it signed is dead
		}
		s.signer.mu.Lock()
		defer s.signer.mu.Unlock()
		if _, ok := s.signer.remote[p.KID]; ok || s.signer.ownLocked(p.KID) != nil {
			return false, nil
		}
		if err := s.kv.PutRaw(key, val, true); err != nil {
			return false, err
		}
		s.signer.remote[p.KID] = &p
		return true, nil
	}
	return false, fmt.Errorf("auth: not a replicated record: %q", key)
}
