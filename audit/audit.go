// Package audit keeps the node's audit log: what was done to keys, tenants,
// the config and the cluster, by whom (tenant, key id or token subject, and
// how they authenticated), to what, when, from which address, and how it
// ended. Never a secret: no API key, no hash, no token; fields are bounded
// and anything shaped like an API key is redacted before it is stored.
//
// Events persist in the node's Pebble (namespace storage.Audit) under an
// id that is time-ordered (16 hex digits of unix nanoseconds, strictly
// increasing per node), with synced writes. Retention is bounded by count
// and by age; the oldest go first. Each node keeps the log of what it
// served (it is not replicated). Operators read it with GET
// /v1/admin/audit and `moltbot audit`.
//
// Other packages record through Recorder (one method, safe for concurrent
// use, never blocks on anything but the synced write, never fails its
// caller): the gateway for admin requests, cmd for signals and moltbot
// init, and the cluster for its own events (a member refused, a CA
// rotated) once it is handed one.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot/storage"
)

// Recorder takes audit events. Record never fails its caller: a store
// failure is logged and counted by the implementation.
type Recorder interface {
	Record(e Event)
}

// Event is one audited action.
type Event struct {
	// ID and Time are set by the Log: ID orders events, Time is when it
	// was recorded (the same instant, to the nanosecond).
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Node is the node that recorded it (set by the Log).
	Node  string `json:"node,omitempty"`
	Actor Actor  `json:"actor"`
	// Action is what was attempted, as noun.verb: key.create, key.revoke,
	// key.rotate, key.rotate_self, tenant.create, tenant.delete,
	// config.reload, and cluster.* for the cluster's events.
	Action string `json:"action"`
	// Target is what it was done to: key:<id>, tenant:<id>, node:<id>.
	Target string `json:"target,omitempty"`
	// Tenant is the tenant the target belongs to, when there is one.
	Tenant string `json:"tenant,omitempty"`
	// Remote is the client address (or "local" for the node's own CLI
	// and signals).
	Remote string `json:"remote,omitempty"`
	// Outcome is ok, denied (no right to do it), not_found, conflict,
	// invalid (a bad request) or error.
	Outcome string `json:"outcome"`
	// Detail is what else matters (a new key's scope, a rotation's
	// successor and grace, an error's message). Never a secret.
	Detail string `json:"detail,omitempty"`
}

// Actor is who acted.
type Actor struct {
	Tenant  string `json:"tenant,omitempty"`
	KeyID   string `json:"key_id,omitempty"`
	Subject string `json:"subject,omitempty"`
	// Method is how they were known: key, jwt, none (auth off), signal
	// (SIGHUP), cli (a command on the node's own store), cluster.
	Method string `json:"method"`
}

// Outcomes.
const (
	OK       = "ok"
	Denied   = "denied"
	NotFound = "not_found"
	Conflict = "conflict"
	Invalid  = "invalid"
	Error    = "error"
)

// Config configures a Log. Zero fields take DefaultConfig's values.
type Config struct {
	// MaxEvents are kept at most; the oldest go first.
	MaxEvents int
	// MaxAge: older events are deleted.
	MaxAge time.Duration
	// Node names this node in its events.
	Node   string
	Now    func() time.Time
	Logger *slog.Logger
	// OnError counts events that could not be stored.
	OnError func()
}

// DefaultConfig keeps 10000 events, none older than 90 days.
func DefaultConfig() Config {
	return Config{MaxEvents: 10000, MaxAge: 90 * 24 * time.Hour}
}

// Log is the persistent audit log. Safe for concurrent use.
type Log struct {
	kv  storage.KV // namespace storage.Audit: id -> event
	cfg Config
	log *slog.Logger

	mu    sync.Mutex // orders ids and the retention sweep
	last  int64      // nanoseconds of the newest id
	count int
}

// New opens the log kept in db (storage.Pebble, or storage.Memory in
// tests), applying retention to what is there.
func New(db storage.Namespaces, cfg Config) (*Log, error) {
	kv := db.Namespace(storage.Audit)
	d := DefaultConfig()
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = d.MaxEvents
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = d.MaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l := &Log{kv: kv, cfg: cfg, log: cfg.Logger}
	err := kv.Scan(func(id string, _ []byte) bool {
		if ns, ok := idNanos(id); ok && ns > l.last {
			l.last = ns
		}
		l.count++
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l.mu.Lock()
	l.pruneLocked()
	l.mu.Unlock()
	return l, nil
}

// idNanos reads the time of an id.
func idNanos(id string) (int64, bool) {
	if len(id) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(id, 16, 64)
	if err != nil || v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

// Record stores e (synced) with a new id and the current time. It never
// fails the caller: a store error is logged and counted.
func (l *Log) Record(e Event) {
	e = clean(e)
	e.Node = l.cfg.Node
	l.mu.Lock()
	defer l.mu.Unlock()
	ns := l.cfg.Now().UnixNano()
	if ns <= l.last {
		ns = l.last + 1 // strictly increasing, even if the clock steps back
	}
	l.last = ns
	e.ID = fmt.Sprintf("%016x", uint64(ns))
	e.Time = time.Unix(0, ns).UTC()
	b, _ := json.Marshal(&e)
	if err := l.kv.Put(e.ID, b); err != nil {
		l.log.Error("audit: cannot store an event", "action", e.Action, "target", e.Target, "err", err)
		if l.cfg.OnError != nil {
			l.cfg.OnError()
		}
		return
	}
	l.count++
	l.pruneLocked()
}

// pruneLocked deletes the oldest events beyond MaxEvents and those older
// than MaxAge. The caller holds mu.
func (l *Log) pruneLocked() {
	cutoff := l.cfg.Now().Add(-l.cfg.MaxAge).UnixNano()
	var drop []string
	_ = l.kv.Scan(func(k string, _ []byte) bool {
		ns, ok := idNanos(k)
		if l.count-len(drop) > l.cfg.MaxEvents || !ok || ns < cutoff {
			drop = append(drop, k)
			return true
		}
		return false // the rest are newer and within the count
	})
	for _, k := range drop {
		if err := l.kv.Delete(k); err != nil {
			l.log.Warn("audit: cannot delete an old event", "record", k, "err", err)
			return
		}
		l.count--
	}
}

// Query selects events.
type Query struct {
	// Since: events recorded at or after it, oldest first. Zero: the
	// newest Limit events (still oldest first).
	Since time.Time
	// Limit bounds the answer (default 100, at most 1000).
	Limit int
}

// Page is a query's answer.
type Page struct {
	Events []Event `json:"events"`
	// More is set when events after the last one exist; Next is the Since
	// that continues from there.
	More bool       `json:"more"`
	Next *time.Time `json:"next,omitempty"`
}

// MaxLimit bounds Query.Limit.
const MaxLimit = 1000

// Query returns events per q.
func (l *Log) Query(q Query) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	q.Limit = min(q.Limit, MaxLimit)
	from := ""
	if !q.Since.IsZero() {
		from = fmt.Sprintf("%016x", uint64(max(q.Since.UnixNano(), 0)))
	}
	var out []Event
	more := false
	err := l.kv.Scan(func(k string, v []byte) bool {
		if k < from {
			return true
		}
		var e Event
		if json.Unmarshal(v, &e) != nil {
			return true
		}
		if from != "" && len(out) == q.Limit {
			more = true
			return false
		}
		out = append(out, e)
		if from == "" && len(out) > q.Limit {
			out = out[1:] // keep the newest Limit
		}
		return true
	})
	if err != nil {
		return Page{}, fmt.Errorf("audit: %w", err)
	}
	p := Page{Events: out, More: more}
	if p.Events == nil {
		p.Events = []Event{}
	}
	if more {
		next := out[len(out)-1].Time.Add(time.Nanosecond)
		p.Next = &next
	}
	return p, nil
}

// apiKey matches moltbot API keys, so that a secret that found its way
// into a field (a caller's mistake) is never stored.
var apiKey = regexp.MustCompile(`mb_([a-z2-7]{8})_[A-Za-z0-9]+`)

// Bounds of the fields (bytes).
const (
	maxField  = 256
	maxDetail = 1024
)

// clean redacts API keys and bounds every field.
func clean(e Event) Event {
	f := func(s string, n int) string {
		s = apiKey.ReplaceAllString(s, "mb_${1}_[REDACTED]")
		s = strings.ToValidUTF8(s, "?")
		if len(s) > n {
			cut := n
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			s = s[:cut] + "..."
		}
		return s
	}
	e.Actor.Tenant, e.Actor.KeyID = f(e.Actor.Tenant, maxField), f(e.Actor.KeyID, maxField)
	e.Actor.Subject, e.Actor.Method = f(e.Actor.Subject, maxField), f(e.Actor.Method, maxField)
	e.Action, e.Target, e.Tenant = f(e.Action, maxField), f(e.Target, maxField), f(e.Tenant, maxField)
	e.Remote, e.Outcome, e.Detail = f(e.Remote, maxField), f(e.Outcome, maxField), f(e.Detail, maxDetail)
	return e
}
