package cache

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/cache/resp"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
)

// redisServer is a redis-server of a test's own: a free loopback port, a
// temporary directory, nothing saved; killed when the test ends.
type redisServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
}

// startRedis starts Debian's redis-server, or skips the test when it is not
// installed (make test installs it).
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed, and could not be (make test runs apt-get install redis-server): the Redis tier is not tested")
	}
	r := &redisServer{t: t, bin: bin, port: testutil.FreePort(t), dir: t.TempDir(), args: args}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// start runs the server and waits until it answers.
func (r *redisServer) start() {
	r.t.Helper()
	args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--daemonize", "no", "--loglevel", "warning"}, r.args...)
	r.cmd = exec.Command(r.bin, args...)
	var out bytes.Buffer
	r.cmd.Stdout, r.cmd.Stderr = &out, &out
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	testutil.Eventually(r.t, 10*time.Second, "redis-server answers on "+r.addr(), func() bool {
		c, err := net.DialTimeout("tcp", r.addr(), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// kill ends the server at once (SIGKILL: no goodbye to its clients).
func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// client is a resp client to r, for a test to look at what is stored.
func (r *redisServer) client(password string, db int) *resp.Client {
	c := resp.New(resp.Config{Addr: r.addr(), Password: password, DB: db})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// logBuffer is a log sink safe for concurrent writers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func redisConfig(r *redisServer, password string, db int) Config {
	port := r.port
	return Config{Type: TypeRedis, Host: "127.0.0.1", Port: port, Password: password, DB: db, TTL: time.Minute,
		Retry: 10 * time.Millisecond, MaxRetry: 40 * time.Millisecond}
}

// The Redis tier: AUTH and the database from the config, SET with PX,
// entries found by a node that did not write them, a tenant purged by
// SCAN and DEL.
func TestRedisTier(t *testing.T) {
	r := startRedis(t, "--requirepass", "s3cret pass")
	ctx := ctx(t)
	cfg := redisConfig(r, "s3cret pass", 3)
	cfg.Metrics = metrics.New("test")
	writer := newCache(t, cfg)
	a, b := key("acme", 1), key("bob", 2)
	writer.Put(a, entry(writer, "for acme"))
	writer.Put(b, entry(writer, "for bob"))
	if err := writer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rc := r.client("s3cret pass", 3)
	v, err := rc.Do(ctx, "PTTL", redisPrefix+a.String())
	if err != nil || v.Int <= 0 || v.Int > time.Minute.Milliseconds() {
		t.Fatalf("PTTL %+v %v", v, err)
	}
	if _, found, _ := r.client("s3cret pass", 0).Get(ctx, redisPrefix+a.String()); found {
		t.Error("written to database 0, not 3")
	}

	// Another node: its memory is empty, Redis has the entry.
	cfg.Metrics = metrics.New("test")
	reader := newCache(t, cfg)
	if e := reader.Get(ctx, a); e == nil || e.Content != "for acme" {
		t.Fatalf("from redis: %+v", e)
	}
	st := reader.Stats(ctx)
	if rs := tierOf(st, TypeRedis); rs.Hits != 1 || rs.Entries != 2 || rs.Bytes <= 0 || !rs.Up {
		t.Errorf("stats %+v", st)
	}
	res, err := reader.Purge(ctx, "acme")
	if err != nil || res.Removed[TypeRedis] != 1 || res.Removed[TypeMemory] != 1 {
		t.Fatalf("purge %+v %v", res, err)
	}
	if _, found, _ := rc.Get(ctx, redisPrefix+a.String()); found {
		t.Error("acme's entry is still in redis")
	}
	if _, found, _ := rc.Get(ctx, redisPrefix+b.String()); !found {
		t.Error("bob's entry went with acme's")
	}
	// A stored value that is not an entry is a miss, counted as an error.
	if err := rc.Set(ctx, redisPrefix+a.String(), []byte("garbage"), 0); err != nil {
		t.Fatal(err)
	}
	if reader.Get(ctx, a) != nil || tierOf(reader.Stats(ctx), TypeRedis).Errors != 1 {
		t.Error("a damaged entry")
	}
}

// With cache.secret, an entry in Redis is served only if its MAC holds:
// one another writer to the database made, or moved from another key
// (another tenant's), or one written with another secret, is a miss,
// counted, and the tier stays up.
func TestRedisEntriesAuthenticated(t *testing.T) {
	r := startRedis(t)
	ctx := ctx(t)
	cfg := redisConfig(r, "", 0)
	cfg.Secret = "cluster secret"
	cfg.Metrics = metrics.New("test")
	writer := newCache(t, cfg)
	a, b := key("acme", 1), key("bob", 2)
	writer.Put(a, entry(writer, "for acme"))
	writer.Put(b, entry(writer, "for bob"))
	if err := writer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rc := r.client("", 0)
	// bob's entry copied under acme's key: its MAC covers bob's key.
	v, _, err := rc.Get(ctx, redisPrefix+b.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Set(ctx, redisPrefix+a.String(), v, 0); err != nil {
		t.Fatal(err)
	}
	cfg.Metrics = metrics.New("test")
	reader := newCache(t, cfg)
	if e := reader.Get(ctx, a); e != nil {
		t.Fatalf("a moved entry was served: %+v", e)
	}
	if e := reader.Get(ctx, b); e == nil || e.Content != "for bob" {
		t.Fatalf("an authentic entry: %+v", e)
	}
	// A node with another secret serves none of them; without one, the
	// MAC is just bytes it cannot decode.
	other := cfg
	other.Secret, other.Metrics = "another", metrics.New("test")
	if e := newCache(t, other).Get(ctx, b); e != nil {
		t.Fatal("served with another secret")
	}
	// An entry forged in Redis (no MAC).
	plain := cfg
	plain.Secret, plain.Metrics = "", metrics.New("test")
	pw := newCache(t, plain)
	c := key("carol", 3)
	pw.Put(c, entry(pw, "forged"))
	if err := pw.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if e := reader.Get(ctx, c); e != nil {
		t.Fatal("an entry without a MAC was served")
	}
	if st := tierOf(reader.Stats(ctx), TypeRedis); st.Errors != 2 || !st.Up || st.Hits != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A refused AUTH takes the tier out, says so without the password, and
// the requests go on without it.
func TestRedisWrongPassword(t *testing.T) {
	r := startRedis(t, "--requirepass", "right")
	var logs logBuffer
	cfg := redisConfig(r, "wrong-password-1234", 0)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c := newCache(t, cfg)
	if c.Get(ctx(t), key("a", 1)) != nil {
		t.Fatal("a hit")
	}
	if st := tierOf(c.Stats(ctx(t)), TypeRedis); st.Up || st.Errors != 1 {
		t.Errorf("stats %+v", st)
	}
	out := logs.String()
	if !strings.Contains(out, "cache tier failed") || !strings.Contains(out, "AUTH") || strings.Contains(out, "wrong-password-1234") {
		t.Errorf("log:\n%s", out)
	}
}

// Redis killed under a running node: the requests are answered (the model
// instead of Redis), the metrics and one log line say the tier is down;
// Redis back, the tier comes back by itself.
func TestRedisKilledMidTest(t *testing.T) {
	r := startRedis(t)
	var logs logBuffer
	cfg := redisConfig(r, "", 0)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	m := &model{text: []string{"a", "b"}}
	e := start(t, m, cfg)
	ask := func(text string) answer {
		return e.complete(ctx(t), req{tenant: "acme", opts: zero(), text: text})
	}
	up := func() bool { return e.c.guard.up() }
	if a := ask("one"); a.err != nil || a.result != moltbot.CacheMiss {
		t.Fatalf("%+v", a)
	}
	if err := e.c.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n := e.met.Get(metrics.CacheStores, TypeRedis); n != 1 {
		t.Fatalf("redis stores %d", n)
	}

	r.kill()
	for i := range 5 {
		// A new request each time: memory cannot answer, Redis is asked
		// (once; then bypassed), the model answers.
		if a := ask(fmt.Sprintf("while down %d", i)); a.err != nil || a.comp.Content != "ab" {
			t.Fatalf("%d with redis down: %+v", i, a)
		}
	}
	if up() {
		t.Fatal("the tier is up with redis killed")
	}
	if n := e.met.Get(metrics.CacheErrors, TypeRedis); n == 0 {
		t.Error("no error counted")
	}
	var prom bytes.Buffer
	e.met.WritePrometheus(&prom)
	if !strings.Contains(prom.String(), `moltbot_cache_up{tier="redis"} 0`) {
		t.Error("moltbot_cache_up does not say redis is down")
	}
	if a := ask("while down 0"); a.result != moltbot.CacheHit {
		t.Errorf("the memory tier stops with redis: %+v", a)
	}
	if n := strings.Count(logs.String(), "cache tier failed"); n != 1 {
		t.Errorf("%d 'failed' log lines, want 1:\n%s", n, logs.String())
	}

	r.start() // empty: it saved nothing
	i := 0
	testutil.Eventually(t, 10*time.Second, "the redis tier back", func() bool {
		i++
		ask(fmt.Sprintf("after %d", i)) // each a lookup: a try once the wait passed
		return up()
	})
	if !strings.Contains(logs.String(), "cache tier is back") {
		t.Errorf("log:\n%s", logs.String())
	}
	before := e.met.Get(metrics.CacheStores, TypeRedis)
	if a := ask("after it came back"); a.err != nil {
		t.Fatal(a.err)
	}
	if err := e.c.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if e.met.Get(metrics.CacheStores, TypeRedis) <= before {
		t.Error("nothing written to redis once it was back")
	}
}
