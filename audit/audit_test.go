package audit

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot/storage"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)         { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) advance(d time.Duration) { c.set(c.now().Add(d)) }

func newLog(t *testing.T, kv storage.Namespaces, cfg Config) (*Log, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg.Now, cfg.Node = c.now, "n1"
	l, err := New(kv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

func TestRecordAndQuery(t *testing.T) {
	mem := storage.NewMemory()
	l, c := newLog(t, mem, Config{})
	for i := 0; i < 5; i++ {
		l.Record(Event{Actor: Actor{Tenant: "default", KeyID: "abcdefgh", Method: "key"}, Action: "key.create",
			Target: fmt.Sprintf("key:k%d", i), Tenant: "acme", Remote: "192.0.2.1", Outcome: OK})
		c.advance(time.Second)
	}
	// The clock steps back: ids still increase.
	c.advance(-time.Hour)
	l.Record(Event{Action: "tenant.delete", Outcome: Denied})
	p, err := l.Query(Query{})
	if err != nil || len(p.Events) != 6 || p.More {
		t.Fatalf("%+v %v", p, err)
	}
	for i := 1; i < len(p.Events); i++ {
		if p.Events[i].ID <= p.Events[i-1].ID || !p.Events[i].Time.After(p.Events[i-1].Time) {
			t.Fatalf("not ordered: %+v", p.Events)
		}
	}
	if e := p.Events[0]; e.Node != "n1" || e.Actor.KeyID != "abcdefgh" || e.Target != "key:k0" || e.Time.IsZero() {
		t.Fatalf("event %+v", e)
	}
	// The newest two; then from a time, in pages.
	if p, _ := l.Query(Query{Limit: 2}); len(p.Events) != 2 || p.Events[1].Action != "tenant.delete" || p.Events[0].Target != "key:k4" {
		t.Fatalf("newest: %+v", p)
	}
	p, _ = l.Query(Query{Since: p.Events[1].Time, Limit: 2})
	if len(p.Events) != 2 || p.Events[0].Target != "key:k1" || !p.More || p.Next == nil {
		t.Fatalf("since: %+v", p)
	}
	p, _ = l.Query(Query{Since: *p.Next, Limit: 10})
	if len(p.Events) != 3 || p.Events[0].Target != "key:k3" || p.More {
		t.Fatalf("next page: %+v", p)
	}
	// A restart continues after the stored ids.
	l2, err := New(mem, Config{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	l2.Record(Event{Action: "config.reload", Outcome: OK})
	p, _ = l2.Query(Query{Limit: 2})
	if p.Events[1].Action != "config.reload" || p.Events[1].ID <= p.Events[0].ID {
		t.Fatalf("after a restart: %+v", p.Events)
	}
}

// Retention: at most MaxEvents, none older than MaxAge; the oldest go.
func TestRetention(t *testing.T) {
	mem := storage.NewMemory()
	l, c := newLog(t, mem, Config{MaxEvents: 10, MaxAge: time.Hour})
	for i := 0; i < 25; i++ {
		l.Record(Event{Action: "key.create", Target: fmt.Sprint("key:", i), Outcome: OK})
		c.advance(time.Minute)
	}
	count := func() int {
		n := 0
		mem.Namespace(storage.Audit).Scan(func(string, []byte) bool { n++; return true })
		return n
	}
	p, _ := l.Query(Query{Limit: 100})
	if count() != 10 || len(p.Events) != 10 || p.Events[0].Target != "key:15" {
		t.Fatalf("by count: %d stored, first %+v", count(), p.Events[0])
	}
	c.advance(55 * time.Minute) // the newest is 56 min old, the oldest 65
	l.Record(Event{Action: "key.revoke", Outcome: OK})
	p, _ = l.Query(Query{Limit: 100})
	if len(p.Events) != 6 || p.Events[0].Target != "key:20" {
		t.Fatalf("by age: %d left, first %+v", len(p.Events), p.Events[0])
	}
	// Retention applies at open, too.
	c.advance(2 * time.Hour)
	if _, err := New(mem, Config{Now: c.now, MaxAge: time.Hour}); err != nil || count() != 0 {
		t.Fatalf("at open: %d left, %v", count(), err)
	}
}

// Nothing secret is stored even if a caller puts an API key in a field;
// fields are bounded.
func TestNoSecretsStored(t *testing.T) {
	mem := storage.NewMemory()
	l, _ := newLog(t, mem, Config{})
	secret := "mb_abcdefgh_" + strings.Repeat("q", 32)
	l.Record(Event{Action: "key.create", Target: "key:abcdefgh", Detail: "oops " + secret, Actor: Actor{Subject: secret}, Outcome: OK})
	l.Record(Event{Action: strings.Repeat("x", 10000), Outcome: OK})
	mem.Namespace(storage.Audit).Scan(func(_ string, v []byte) bool {
		if strings.Contains(string(v), strings.Repeat("q", 32)) {
			t.Fatalf("a secret was stored: %s", v)
		}
		if len(v) > 3000 {
			t.Fatalf("an unbounded field: %d bytes", len(v))
		}
		return true
	})
	p, _ := l.Query(Query{})
	if !strings.Contains(p.Events[0].Detail, "mb_abcdefgh_[REDACTED]") {
		t.Fatalf("detail %q", p.Events[0].Detail)
	}
}

// failKV fails every write.
type failKV struct{ storage.KV }

func (failKV) Put(string, []byte) error { return fmt.Errorf("disk full") }

type failDB struct{ *storage.Memory }

func (d failDB) Namespace(ns storage.Namespace) storage.KV { return failKV{d.Memory.Namespace(ns)} }

func TestStoreFailureCounted(t *testing.T) {
	n := 0
	l, _ := newLog(t, failDB{storage.NewMemory()}, Config{OnError: func() { n++ }})
	l.Record(Event{Action: "key.create", Outcome: OK})
	if n != 1 {
		t.Fatalf("failures counted: %d", n)
	}
}

// FuzzClean: whatever a request puts in an event's fields, what is stored
// is valid UTF-8, bounded, and holds no API key secret.
func FuzzClean(f *testing.F) {
	f.Add("mb_abcdefgh_"+strings.Repeat("a", 32), "key:x")
	f.Add("\xff\xfe", strings.Repeat("é", 600))
	f.Add("mb_abcdefgh_mb_abcdefgh_zzzzzzzzzzzzzzzz", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		e := clean(Event{Action: a, Target: b, Detail: a + b, Actor: Actor{Subject: b}})
		raw, _ := json.Marshal(e)
		for _, s := range []string{e.Action, e.Target, e.Detail, e.Actor.Subject} {
			if !utf8.ValidString(s) || len(s) > maxDetail+3 {
				t.Fatalf("field %q", s)
			}
			if m := apiKey().FindString(s); m != "" {
				t.Fatalf("a key survived: %q in %q", m, s)
			}
		}
		if !json.Valid(raw) {
			t.Fatal("invalid JSON")
		}
	})
}

// A zero Config takes DefaultConfig's bounds.
func TestDefaultConfig(t *testing.T) {
	l, err := New(storage.NewMemory(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if d := DefaultConfig(); l.cfg.MaxEvents != d.MaxEvents || l.cfg.MaxAge != d.MaxAge {
		t.Errorf("zero resolves to %+v, DefaultConfig is %+v", l.cfg, d)
	}
}
