package storage

// The key layout of a node's database, in one place. Conversations
// (conv/<space>/<id>) are the Store's own and are reached through its
// methods; every other record lives in a Namespace, and no package outside
// storage builds a key prefix. The prefixes are those of the first
// releases: a database written before namespaces existed reads the same.
var (
	// AuthKeys are API key records (keys/<id>), AuthTenants tenant
	// records (tenants/<id>): every write synced, never deleted (a
	// deleted tenant stays as a tombstone).
	AuthKeys    = Namespace{Name: "auth.keys", prefix: "keys/", syncPut: true}
	AuthTenants = Namespace{Name: "auth.tenants", prefix: "tenants/", syncPut: true}
	// AuthSigning are the node's private token signing keys
	// (signing/<kid>): a retired key's deletion is synced too, so it does
	// not come back after a crash.
	AuthSigning = Namespace{Name: "auth.signing", prefix: "signing/", syncPut: true, syncDelete: true}
	// AuthJWKS are the public halves of every node's signing keys
	// (jwks/<kid>); an expired one's deletion need not be durable.
	AuthJWKS = Namespace{Name: "auth.jwks", prefix: "jwks/", syncPut: true}
	// Audit is the audit log (audit/<id>): events synced, the retention
	// sweep's deletions not.
	Audit = Namespace{Name: "audit", prefix: "audit/", syncPut: true}
	// Cache is the output cache's pebble tier (cache/<tenant>/<hash>):
	// nothing synced, as an entry lost in a crash is only a miss.
	Cache = Namespace{Name: "cache", prefix: "cache/"}
	// Skills are the JavaScript skills' records (package skills:
	// context.kv, per tenant and skill): synced, as a skill that set a
	// key may have told the user so whatever becomes of the turn (a run
	// makes at most 64 kv calls).
	Skills = Namespace{Name: "skills", prefix: "skills/", syncPut: true, syncDelete: true}
	// SkillsKV are the same records replicated to every member of a
	// cluster (storage/replica: each with its version; a deletion a
	// tombstone): the node moves what it finds under Skills here when it
	// starts.
	SkillsKV = Namespace{Name: "skills.kv", prefix: "skillkv/", syncPut: true, syncDelete: true}
	// KB are the knowledge bases' documents (package skills/kb:
	// kb/<space>/<kb>/<document>, a deleted one as a tombstone): synced,
	// as the admin API answers that a document is stored.
	KB = Namespace{Name: "kb", prefix: "kb/", syncPut: true, syncDelete: true}
	// Handoff is the hand-off queue's index (skills/handoff,
	// handoff/<space>/<conversation>): a view of the conversations' own
	// state, but the only list of the queued ones a node has after a
	// crash, so puts are synced (one per change of owner and per message
	// relayed to a person); a lost delete leaves a tombstone.
	Handoff = Namespace{Name: "handoff", prefix: "handoff/", syncPut: true}
	// ChannelsInbox is this node's channel inbox (package channels,
	// chinbox/<channel>/<id hash>): a message an adapter acknowledged to
	// its platform waits here for its turn, so puts are synced; a lost
	// delete replays a turn its conversation answers from its history
	// (the turn's external id).
	ChannelsInbox = Namespace{Name: "channels.inbox", prefix: "chinbox/", syncPut: true}
	// ChannelsState is the channels' Get/Put state (a Telegram offset, a
	// session to resume), replicated to every member (storage/replica).
	ChannelsState = Namespace{Name: "channels.state", prefix: "chstate/", syncPut: true, syncDelete: true}
	// SkillFiles are tenants' pushed skill files (package skills,
	// TenantFiles: one record per tenant's space, replicated to every
	// member through storage/replica): synced, as the admin API answers
	// that a push is stored.
	SkillFiles = Namespace{Name: "skill.files", prefix: "skillfiles/", syncPut: true, syncDelete: true}
)

// namespaces are every Namespace above, with the conversations' prefix:
// none may be a prefix of another (TestNamespacesDisjoint).
var namespaces = []Namespace{AuthKeys, AuthTenants, AuthSigning, AuthJWKS, Audit, Cache, Skills, SkillsKV, KB, Handoff, ChannelsInbox, ChannelsState, SkillFiles}

// Namespace is one named range of keys with the sync policy of its
// writes. The values are declared above; a new kind of record (the
// output cache, skills' knowledge base, channels' offsets) adds one.
type Namespace struct {
	// Name is for errors and logs.
	Name   string
	prefix string
	// syncPut: Put is durable on return (fsync of the WAL); syncDelete:
	// Delete too.
	syncPut, syncDelete bool
}

// KV is the records of one namespace. Keys are relative to it (an id,
// never a prefix); writes follow the namespace's sync policy. Safe for
// concurrent use.
type KV interface {
	// Get returns the value under key; found is false when there is none.
	Get(key string) (val []byte, found bool, err error)
	// Put stores val under key.
	Put(key string, val []byte) error
	// Delete removes key; deleting what is absent is not an error.
	Delete(key string) error
	// Scan calls fn with every record, in key order, until fn returns
	// false. val is fn's to keep. fn must not write: collect, then write
	// after Scan returns (Pebble reads under its close lock).
	Scan(fn func(key string, val []byte) bool) error
	// ScanPrefix is Scan over the keys that start with prefix.
	ScanPrefix(prefix string, fn func(key string, val []byte) bool) error
}

// Namespaces hands out the namespaces of a database (Pebble, Memory).
type Namespaces interface {
	Namespace(ns Namespace) KV
}

// rawDB is what a namespace needs of a database: whole keys.
type rawDB interface {
	getRaw(key string) ([]byte, bool, error)
	putRaw(key string, val []byte, sync bool) error
	deleteRaw(key string, sync bool) error
	scanRaw(prefix string, fn func(key string, val []byte) bool) error
}

// space is a KV over one namespace of a rawDB.
type space struct {
	db rawDB
	ns Namespace
}

func (s space) Get(key string) ([]byte, bool, error) { return s.db.getRaw(s.ns.prefix + key) }

func (s space) Put(key string, val []byte) error {
	return s.db.putRaw(s.ns.prefix+key, val, s.ns.syncPut)
}

func (s space) Delete(key string) error { return s.db.deleteRaw(s.ns.prefix+key, s.ns.syncDelete) }

func (s space) Scan(fn func(key string, val []byte) bool) error { return s.ScanPrefix("", fn) }

func (s space) ScanPrefix(prefix string, fn func(key string, val []byte) bool) error {
	n := len(s.ns.prefix)
	return s.db.scanRaw(s.ns.prefix+prefix, func(k string, v []byte) bool { return fn(k[n:], v) })
}
