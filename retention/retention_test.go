package retention

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
	"github.com/moltbot/moltbot/usage"
)

// fakeRuntime applies decisions to the store as the conversation actor
// does: only at the version decided on.
type fakeRuntime struct {
	store *storage.Memory
	mu    sync.Mutex
	notMe map[string]bool // conversations another node owns
	calls int
}

func (f *fakeRuntime) Owns(space, id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.notMe[space+"/"+id]
}

func (f *fakeRuntime) Retain(_ context.Context, space, id string, version uint64, drop int) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	c, err := f.store.Get(space, id)
	if err != nil {
		return moltbot.Errorf(moltbot.ENotFound, "not found")
	}
	if c.Version != version {
		return fmt.Errorf("at %d: %w", c.Version, ErrChanged)
	}
	if drop < 0 {
		return f.store.Delete(space, id, true)
	}
	c.Messages = c.Messages[drop:]
	c.Version++
	return f.store.Put(c, true)
}

var day = 24 * time.Hour

// now is the sweeps' clock: fixed, so "idle for 30 days" is exact.
var now = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

type env struct {
	store   *storage.Memory
	rt      *fakeRuntime
	met     *metrics.Registry
	dir     string
	table   *usage.Table
	sweeper *Sweeper
}

// newEnv sweeps a memory store with these policies (by space).
func newEnv(t *testing.T, policies map[string]Policy) *env {
	e := &env{store: storage.NewMemory(), met: metrics.New(""), dir: filepath.Join(t.TempDir(), "archive"), table: usage.NewTable(nil)}
	e.rt = &fakeRuntime{store: e.store, notMe: map[string]bool{}}
	e.sweeper = New(Config{Store: e.store, Runtime: e.rt, Counter: e.table, ArchiveDir: e.dir, Metrics: e.met,
		Now: func() time.Time { return now },
		Policy: func(space string) (string, Policy, bool) {
			tenant, _, _ := strings.Cut(space, ":")
			p, ok := policies[space]
			return tenant, p, ok
		}})
	return e
}

// put stores a conversation last changed idle ago, with n messages.
func (e *env) put(t *testing.T, space, id string, idle time.Duration, n int) *moltbot.Conversation {
	t.Helper()
	at := now.Add(-idle).UnixMilli()
	c := &moltbot.Conversation{Tenant: space, ID: id, System: "sys", Version: uint64(n + 1), Epoch: 1, Created: at, Updated: at}
	for i := 0; i < n; i++ {
		c.Messages = append(c.Messages, moltbot.Message{ID: fmt.Sprint("m", i), Role: moltbot.RoleUser, Content: fmt.Sprint("message ", i), Created: at})
	}
	if err := e.store.Put(c, true); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) sweep(t *testing.T) Result {
	t.Helper()
	r, err := e.sweeper.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) has(space, id string) *moltbot.Conversation {
	c, err := e.store.Get(space, id)
	if err != nil {
		return nil
	}
	return c
}

// days: a conversation idle for longer than the policy's days is deleted,
// a younger one kept, and a tenant without a policy keeps everything; a
// second sweep finds nothing to do.
func TestDays(t *testing.T) {
	e := newEnv(t, map[string]Policy{"acme": {Days: 30}})
	e.put(t, "acme", "old", 31*day, 2)
	e.put(t, "acme", "edge", 30*day, 2) // exactly 30 days: not past it
	e.put(t, "acme", "fresh", day, 2)
	e.put(t, "free", "old", 400*day, 2)
	r := e.sweep(t)
	if r.Deleted != 1 || r.Trimmed != 0 || r.Archived != 0 || r.Scanned != 4 || r.Errors != 0 {
		t.Fatalf("%+v", r)
	}
	if e.has("acme", "old") != nil || e.has("acme", "edge") == nil || e.has("acme", "fresh") == nil || e.has("free", "old") == nil {
		t.Fatal("the wrong conversations went")
	}
	if e.met.Get(metrics.RetentionDeleted) != 1 {
		t.Fatal("not counted")
	}
	calls := e.rt.calls
	if r := e.sweep(t); r.Deleted+r.Trimmed+r.Skipped+r.Errors != 0 || e.rt.calls != calls {
		t.Fatalf("a second sweep did something: %+v", r)
	}
	if _, err := os.Stat(e.dir); !os.IsNotExist(err) {
		t.Fatal("an archive without archive: true")
	}
	// The sweep's scan is the usage recount.
	if !e.table.Counted() || e.table.Owned("acme").Conversations != 2 || e.table.Owned("free").Conversations != 1 {
		t.Fatalf("usage: acme %+v, free %+v", e.table.Owned("acme"), e.table.Owned("free"))
	}
}

// messages: a conversation longer than the policy is trimmed to its
// newest messages, its system prompt kept; idle past days wins over trim.
func TestMessages(t *testing.T) {
	e := newEnv(t, map[string]Policy{"acme:inc": {Messages: 3}, "both": {Messages: 1, Days: 10}})
	long := e.put(t, "acme:inc", "long", day, 5)
	e.put(t, "acme:inc", "short", day, 3)
	e.put(t, "both", "old", 11*day, 5)
	e.put(t, "both", "young", day, 2)
	r := e.sweep(t)
	if r.Trimmed != 2 || r.Deleted != 1 {
		t.Fatalf("%+v", r)
	}
	c := e.has("acme:inc", "long")
	if len(c.Messages) != 3 || c.Messages[0].Content != "message 2" || c.System != "sys" || c.Version != long.Version+1 {
		t.Fatalf("trimmed: %+v", c)
	}
	if len(e.has("acme:inc", "short").Messages) != 3 || e.has("both", "old") != nil || len(e.has("both", "young").Messages) != 1 {
		t.Fatal("wrong decisions")
	}
	if r := e.sweep(t); r.Trimmed+r.Deleted != 0 {
		t.Fatalf("a second sweep did something: %+v", r)
	}
}

// archive: what goes is appended first, one JSON line per conversation,
// to archive/<tenant>/<date>.jsonl, private; idempotent.
func TestArchive(t *testing.T) {
	e := newEnv(t, map[string]Policy{"acme:inc": {Days: 30, Messages: 2, Archive: true}})
	old := e.put(t, "acme:inc", "old", 60*day, 3)
	e.put(t, "acme:inc", "long", day, 4)
	// An archive directory someone opened up is made private again.
	if err := os.MkdirAll(filepath.Join(e.dir, "acme"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := e.sweep(t)
	if r.Deleted != 1 || r.Trimmed != 1 || r.Archived != 2 || e.met.Get(metrics.RetentionArchived) != 2 {
		t.Fatalf("%+v", r)
	}
	path := filepath.Join(e.dir, "acme", "2026-03-14.jsonl")
	recs := readArchive(t, path)
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	byReason := map[string]Record{}
	for _, r := range recs {
		byReason[r.Reason] = r
		if r.Tenant != "acme" || r.Archived != "2026-03-14T15:09:26Z" || r.Conversation.Tenant != "acme:inc" {
			t.Errorf("record %+v", r)
		}
	}
	idle, trim := byReason["idle"].Conversation, byReason["trimmed"].Conversation
	if idle == nil || idle.ID != "old" || len(idle.Messages) != 3 || idle.System != "sys" || idle.Version != old.Version || idle.Updated != old.Updated {
		t.Fatalf("idle record %+v", idle)
	}
	if trim == nil || trim.ID != "long" || len(trim.Messages) != 2 || trim.Messages[0].Content != "message 0" || trim.Messages[1].Content != "message 1" {
		t.Fatalf("trimmed record %+v", trim)
	}
	if kept := e.has("acme:inc", "long"); len(kept.Messages) != 2 || kept.Messages[0].Content != "message 2" {
		t.Fatalf("kept %+v", kept)
	}
	if n := testutil.CheckPrivate(t, e.dir); n != 1 {
		t.Fatalf("%d archive files", n)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("archive file %v", st.Mode())
	}
	e.sweep(t)
	if len(readArchive(t, path)) != 2 {
		t.Fatal("a second sweep archived again")
	}
}

func readArchive(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// Without an archive, a policy that archives deletes nothing: the
// conversation stays and the failure is counted.
func TestArchiveFailureKeeps(t *testing.T) {
	e := newEnv(t, map[string]Policy{"acme": {Days: 1, Archive: true}})
	e.sweeper = New(Config{Store: e.store, Runtime: e.rt, Metrics: e.met, Now: func() time.Time { return now },
		Policy: func(string) (string, Policy, bool) { return "acme", Policy{Days: 1, Archive: true}, true }})
	e.put(t, "acme", "old", 5*day, 1)
	if r := e.sweep(t); r.Errors != 1 || r.Deleted != 0 || e.has("acme", "old") == nil || e.met.Get(metrics.RetentionErrors) != 1 {
		t.Fatalf("%+v", r)
	}
}

// Only what this node owns is swept (another node sweeps the rest), and a
// conversation that changed between the scan and the decision is skipped.
func TestOwnedAndChanged(t *testing.T) {
	e := newEnv(t, map[string]Policy{"acme": {Days: 1, Archive: true}})
	e.put(t, "acme", "theirs", 5*day, 1)
	e.rt.notMe["acme/theirs"] = true
	e.put(t, "acme", "busy", 5*day, 1)
	// A turn lands after the scan read "busy": the counter's End runs
	// between the scan and the decisions.
	e.sweeper.cfg.Counter = endHook(func() {
		c := e.has("acme", "busy")
		c.Messages = append(c.Messages, moltbot.Message{Role: moltbot.RoleUser, Content: "I'm back"})
		c.Version++
		c.Updated = now.UnixMilli()
		e.store.Put(c, true)
	})
	r := e.sweep(t)
	if r.Deleted != 0 || r.Skipped != 1 || r.Archived != 0 || e.has("acme", "theirs") == nil || e.has("acme", "busy") == nil {
		t.Fatalf("%+v", r)
	}
	if r := e.sweep(t); r.Deleted+r.Skipped != 0 {
		t.Fatalf("the conversation is active again: %+v", r)
	}
}

type endHook func()

func (endHook) Begin()                    {}
func (endHook) Saw(*moltbot.Conversation) {}
func (h endHook) End(bool)                { h() }

// Start sweeps at once (the usage count is there from the start) and
// Close stops the sweeper and waits for it; both are safe to repeat.
func TestStartAndClose(t *testing.T) {
	e := newEnv(t, map[string]Policy{"acme": {Days: 1}})
	e.put(t, "acme", "old", 5*day, 1)
	e.sweeper.Start()
	testutil.Eventually(t, 10*time.Second, "the first sweep", func() bool { return e.table.Counted() && e.has("acme", "old") == nil })
	e.sweeper.Kick()
	e.sweeper.Kick()
	e.sweeper.Close()
	e.sweeper.Close()
}
