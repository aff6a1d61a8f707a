package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

func conv(space, id string, msgs ...string) *moltbot.Conversation {
	c := &moltbot.Conversation{Tenant: space, ID: id, System: "sys", Version: 1, Epoch: 1, Created: 1, Updated: 1}
	for _, m := range msgs {
		c.Messages = append(c.Messages, moltbot.Message{Role: moltbot.RoleUser, Content: m, Created: 1})
	}
	return c
}

func size(c *moltbot.Conversation) int64 { return int64(len(storage.Encode(nil, c))) }

func want(t *testing.T, tb *Table, space string, n, b int64) {
	t.Helper()
	if got := tb.Owned(space); got != (Totals{n, b}) {
		t.Fatalf("%s: %+v, want {%d %d}", space, got, n, b)
	}
}

// Every write and delete through the Store is counted at once, by space,
// in stored bytes; conversations another node owns are not this node's.
func TestStoreCountsWrites(t *testing.T) {
	mine := func(space, id string) bool { return !strings.HasPrefix(id, "theirs") }
	tb := NewTable(mine)
	s := NewStore(storage.NewMemory(), tb)
	a := conv("acme", "a", "hello")
	if err := s.Put(a, true); err != nil {
		t.Fatal(err)
	}
	want(t, tb, "acme", 1, size(a))
	if Size(a) != size(a) {
		t.Fatalf("Size %d, encoded %d", Size(a), size(a))
	}
	a2 := conv("acme", "a", "hello", "a longer second message")
	a2.Version = 2
	if stored, _, _, err := s.PutIfNewer(a2, true); !stored || err != nil {
		t.Fatal(stored, err)
	}
	want(t, tb, "acme", 1, size(a2))
	// A write the fence refuses changes nothing.
	if stored, _, _, _ := s.PutIfNewer(a, true); stored {
		t.Fatal("an older copy was stored")
	}
	want(t, tb, "acme", 1, size(a2))
	b := conv("acme", "b", "x")
	s.Put(b, true)
	s.Put(conv("acme", "theirs-1", "x"), true) // a replica of another node's
	s.Put(conv("other", "c", "x"), true)
	want(t, tb, "acme", 2, size(a2)+size(b))
	// A tombstone, as a clustered delete writes, and a plain delete.
	tomb := &moltbot.Conversation{Tenant: "acme", ID: "a", Version: 3, Epoch: 1, Deleted: true}
	s.Put(tomb, true)
	want(t, tb, "acme", 1, size(b))
	s.Delete("acme", "b", true)
	want(t, tb, "acme", 0, 0)
	want(t, tb, "other", 1, size(conv("other", "c", "x")))
	// The sweep of dead tenants.
	if n, err := s.DeleteSpaces(func(sp string) bool { return sp == "other" }); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	want(t, tb, "other", 0, 0)
}

// A recount fills the table from a scan of the store; a write or delete
// during the recount wins over the (older) copy the scan read, and what
// the complete scan did not see is gone.
func TestRecount(t *testing.T) {
	inner := storage.NewMemory()
	tb := NewTable(nil)
	s := NewStore(inner, tb)
	old := []*moltbot.Conversation{conv("acme", "a", "1"), conv("acme", "b", "2"), conv("acme", "c", "3")}
	for _, c := range old {
		inner.Put(c, true) // before the node started: the table knows nothing
	}
	tb.Put(conv("acme", "ghost", "gone since")) // the table believes in one the store lacks
	want(t, tb, "acme", 1, size(conv("acme", "ghost", "gone since")))
	if tb.Counted() {
		t.Fatal("counted before any recount")
	}

	tb.Begin()
	scan := old // what the scan read, begun after Begin
	newer := conv("acme", "a", "1", "and more")
	newer.Version = 2
	s.Put(newer, true)          // written during the recount
	s.Delete("acme", "b", true) // deleted during the recount
	for _, c := range scan {
		tb.Saw(c)
	}
	tb.End(true)
	want(t, tb, "acme", 2, size(newer)+size(old[2]))
	if !tb.Counted() {
		t.Fatal("not counted after a complete recount")
	}

	// An incomplete scan adds what it saw and removes nothing.
	tb.Begin()
	tb.Saw(conv("acme", "d", "4"))
	tb.End(false)
	want(t, tb, "acme", 3, size(newer)+size(old[2])+size(conv("acme", "d", "4")))
}

// After a ring change the owned flags follow owns, without reading storage.
func TestReown(t *testing.T) {
	var mu sync.Mutex
	owner := "x"
	tb := NewTable(func(space, id string) bool {
		mu.Lock()
		defer mu.Unlock()
		return owner == "x"
	})
	c := conv("acme", "a", "1")
	tb.Put(c)
	want(t, tb, "acme", 1, size(c))
	tb.TakeDirty()
	mu.Lock()
	owner = "y"
	mu.Unlock()
	tb.Reown()
	want(t, tb, "acme", 0, 0)
	if !tb.TakeDirty() || tb.TakeDirty() {
		t.Fatal("dirty not reported once")
	}
	if len(tb.Snapshot()) != 0 {
		t.Fatal(tb.Snapshot())
	}
}

func principal(tenant string) *moltbot.Principal {
	return &moltbot.Principal{Tenant: tenant, Space: tenant + ":inc"}
}

// Creates are refused at max_conversations and creates and turns at
// max_stored_bytes, with the key, the usage and the limit named; creates
// in flight count, so two racing for the last slot cannot both pass.
func TestQuotas(t *testing.T) {
	tb := NewTable(nil)
	met := metrics.New("")
	q := NewQuotas(tb, nil, func(tenant string) (int64, int64) {
		if tenant == "acme" {
			return 2, 1000
		}
		return 0, 0
	}, met)
	p := principal("acme")
	tb.Put(conv(p.Space, "a", "x"))

	rel1, err := q.AdmitCreate(p)
	if err != nil {
		t.Fatal(err)
	}
	// The first create is in flight: the second would be the third.
	_, err = q.AdmitCreate(p)
	if moltbot.ErrorCode(err) != moltbot.EQuota || !strings.Contains(err.Error(), "limits.max_conversations") ||
		!strings.Contains(err.Error(), `tenant "acme" has 2 conversations and may keep 2`) {
		t.Fatalf("%v", err)
	}
	rel1() // it failed: the slot is free again
	rel2, err := q.AdmitCreate(p)
	if err != nil {
		t.Fatal(err)
	}
	tb.Put(conv(p.Space, "b", "x")) // it succeeded: the store counts it
	rel2()
	if _, err := q.AdmitCreate(p); moltbot.ErrorCode(err) != moltbot.EQuota {
		t.Fatalf("a third: %v", err)
	}
	if err := q.AdmitTurn(p); err != nil {
		t.Fatalf("a turn under the byte quota: %v", err)
	}
	tb.Put(conv(p.Space, "b", strings.Repeat("x", 1000)))
	err = q.AdmitTurn(p)
	if moltbot.ErrorCode(err) != moltbot.EQuota || !strings.Contains(err.Error(), "limits.max_stored_bytes") {
		t.Fatalf("%v", err)
	}
	if met.Get(metrics.QuotaRefused, "max_conversations") != 2 || met.Get(metrics.QuotaRefused, "max_stored_bytes") != 1 {
		t.Fatal("refusals not counted")
	}
	// Another tenant, and one without quotas, are not held back.
	free := principal("free")
	for i := 0; i < 3; i++ {
		tb.Put(conv(free.Space, fmt.Sprint(i), strings.Repeat("x", 2000)))
	}
	if rel, err := q.AdmitCreate(free); err != nil {
		t.Fatal(err)
	} else {
		rel()
	}
	if err := q.AdmitTurn(free); err != nil {
		t.Fatal(err)
	}
	if u := q.Usage(p.Space); u.Conversations != 2 {
		t.Fatalf("pending creates left behind: %+v", u)
	}
}

// innerState stands for auth's shared state: it sees only its own records.
type innerState struct {
	mu     sync.Mutex
	merged [][]byte
}

func (s *innerState) State() []byte { return []byte(`[{"k":"keys/abc","v":{"id":"abc"}}]`) }
func (s *innerState) Merge(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.merged = append(s.merged, b)
	return 1, nil
}

// Each node's owned totals reach the others through the shared state;
// a node's total is its own plus the live others'; auth's records pass
// through untouched.
func TestPeersShareUsage(t *testing.T) {
	alive := map[string]bool{"a": true, "b": true}
	var mu sync.Mutex
	isAlive := func(id string) bool { mu.Lock(); defer mu.Unlock(); return alive[id] }
	ta, tbb := NewTable(nil), NewTable(nil)
	ia, ib := &innerState{}, &innerState{}
	pa, pb := NewPeers("a", ta, isAlive, ia), NewPeers("b", tbb, isAlive, ib)
	ca, cb := conv("acme", "1", "x"), conv("acme", "2", "yy")
	ta.Put(ca)
	tbb.Put(cb)

	// A change from a, a full state from b.
	if n, err := pb.Merge(pa.own()); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	full := pb.State()
	var recs []record
	if err := json.Unmarshal(full, &recs); err != nil || len(recs) != 2 || recs[0].K != "keys/abc" || recs[1].K != "usage/b" {
		t.Fatalf("full state %s: %v", full, err)
	}
	if n, err := pa.Merge(full); n != 2 || err != nil { // b's usage, and auth's record (counted by inner)
		t.Fatal(n, err)
	}
	if len(ia.merged) != 1 || string(ia.merged[0]) != `[{"k":"keys/abc","v":{"id":"abc"}}]` {
		t.Fatalf("auth got %q", ia.merged)
	}
	qa := NewQuotas(ta, pa, func(string) (int64, int64) { return 0, 0 }, nil)
	qb := NewQuotas(tbb, pb, func(string) (int64, int64) { return 0, 0 }, nil)
	total := Totals{2, size(ca) + size(cb)}
	if qa.Usage("acme") != total || qb.Usage("acme") != total {
		t.Fatalf("a sees %+v, b sees %+v, want %+v", qa.Usage("acme"), qb.Usage("acme"), total)
	}
	// An older record of a's life changes nothing; its own record is not
	// counted twice.
	stale := pa.own()
	ta.Put(conv("acme", "3", "z"))
	pb.Merge(pa.own())
	if n, _ := pb.Merge(stale); n != 0 {
		t.Fatal("a stale record was kept")
	}
	if n, _ := pa.Merge(pa.own()); n != 0 || qa.Usage("acme").Conversations != 3 {
		t.Fatalf("own record merged: %+v", qa.Usage("acme"))
	}
	if qb.Usage("acme").Conversations != 3 {
		t.Fatalf("b sees %+v", qb.Usage("acme"))
	}
	// a restarts: a new life's first record replaces the old one's.
	pa2 := NewPeers("a", NewTable(nil), isAlive, ia)
	if n, _ := pb.Merge(pa2.own()); n != 1 || qb.Usage("acme").Conversations != 1 {
		t.Fatalf("after a's restart b sees %+v", qb.Usage("acme"))
	}
	// a leaves the ring: it counts for nothing.
	pb.Merge(pa.own())
	mu.Lock()
	alive["a"] = false
	mu.Unlock()
	if qb.Usage("acme").Conversations != 1 {
		t.Fatalf("a dead node still counts: %+v", qb.Usage("acme"))
	}
	// Garbage is refused, not applied.
	for _, bad := range []string{
		`[{"k":"usage/x","v":{"node":"y","spaces":{}}}]`,
		`[{"k":"usage/x","v":{"node":"x","spaces":{"a/b":{"n":1,"b":1}}}}]`,
		`[{"k":"usage/x","v":{"node":"x","spaces":{"acme":{"n":-1,"b":1}}}}]`,
		`not json`,
	} {
		if _, err := pb.Merge([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// Run publishes a node's record when its totals changed, and re-owns at
// an ownership change.
func TestPeersRun(t *testing.T) {
	var mu sync.Mutex
	mine := true
	tb := NewTable(func(string, string) bool { mu.Lock(); defer mu.Unlock(); return mine })
	p := NewPeers("a", tb, func(string) bool { return true }, nil)
	published := make(chan []byte, 16)
	var chMu sync.Mutex
	changed := make(chan struct{})
	next := func() <-chan struct{} {
		chMu.Lock()
		defer chMu.Unlock()
		return changed
	}
	receive := func() nodeUsage {
		t.Helper()
		select {
		case b := <-published:
			return decodeOwn(t, b)
		case <-time.After(10 * time.Second):
			t.Fatal("nothing published")
			return nodeUsage{}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx, func(b []byte) { published <- b }, time.Millisecond, next) }()
	defer func() { cancel(); <-done }()

	tb.Put(conv("acme", "1", "x"))
	rec := receive()
	if rec.Spaces["acme"].Conversations != 1 {
		t.Fatalf("published %+v", rec)
	}
	// The ring moves the conversation away.
	mu.Lock()
	mine = false
	mu.Unlock()
	chMu.Lock()
	close(changed)
	changed = make(chan struct{})
	chMu.Unlock()
	for len(rec.Spaces) != 0 {
		rec = receive()
	}
}

func decodeOwn(t *testing.T, b []byte) nodeUsage {
	t.Helper()
	var recs []record
	var u nodeUsage
	if err := json.Unmarshal(b, &recs); err != nil || len(recs) != 1 || json.Unmarshal(recs[0].V, &u) != nil {
		t.Fatalf("published %s", b)
	}
	return u
}
