//go:build !edge

package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/moltbot/moltbot/internal/testutil"
)

func ids(n int) []Node {
	var out []Node
	for i := 0; i < n; i++ {
		out = append(out, Node{ID: fmt.Sprintf("127.0.0.1:%d", 7946+i*10)})
	}
	return out
}

// No node owns more than 1.5x the mean of 30k conversation ids, for 3 and 5 nodes.
func TestPlacementSpread(t *testing.T) {
	for _, n := range []int{3, 5} {
		r := NewRing(ids(n))
		owned := map[string]int{}
		replicas := map[string]int{}
		for i := 0; i < 30000; i++ {
			key := fmt.Sprintf("default/c_%08x", i*2654435761)
			o, _ := r.Owner(key)
			owned[o.ID]++
			rk := r.Ranked(key, 2)
			if rk[0].ID != o.ID || rk[1].ID == o.ID {
				t.Fatalf("ranking disagrees with owner for %s", key)
			}
			replicas[rk[1].ID]++
		}
		mean := 30000.0 / float64(n)
		for id, c := range owned {
			if float64(c) > 1.5*mean || float64(c) < 0.5*mean {
				t.Errorf("%d nodes: %s owns %d (mean %.0f)", n, id, c, mean)
			}
			if float64(replicas[id]) > 1.5*mean {
				t.Errorf("%d nodes: %s holds %d replicas (mean %.0f)", n, id, replicas[id], mean)
			}
		}
	}
}

// Adding a node moves only keys to the new node; removing one moves only its keys.
func TestMinimalMovement(t *testing.T) {
	r3, r4 := NewRing(ids(3)), NewRing(ids(4))
	newID := ids(4)[3].ID
	moved := 0
	for i := 0; i < 10000; i++ {
		key := fmt.Sprint("k", i)
		a, _ := r3.Owner(key)
		b, _ := r4.Owner(key)
		if a.ID != b.ID {
			moved++
			if b.ID != newID {
				t.Fatalf("key %s moved between old nodes", key)
			}
		}
		// The order of the old nodes is unchanged.
		old := r3.Ranked(key, 3)
		var kept []string
		for _, n := range r4.Ranked(key, 4) {
			if n.ID != newID {
				kept = append(kept, n.ID)
			}
		}
		for j := range old {
			if old[j].ID != kept[j] {
				t.Fatalf("rank order of old nodes changed for %s", key)
			}
		}
	}
	if moved < 2000 || moved > 3000 {
		t.Errorf("%d of 10000 keys moved to the 4th node; want about a quarter", moved)
	}
	if _, ok := NewRing(nil).Owner("x"); ok {
		t.Error("empty ring has an owner")
	}
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func startNode(t *testing.T, join []string, key []byte, proto int) (*Cluster, *logBuf) {
	t.Helper()
	var keys [][]byte
	if key != nil {
		keys = [][]byte{key}
	}
	return startWith(t, Config{Join: join, Keys: keys, proto: proto})
}

func startWith(t *testing.T, cfg Config) (*Cluster, *logBuf) {
	t.Helper()
	port := testutil.FreePort(t)
	lb := &logBuf{}
	cfg.Bind = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.RPC, cfg.HTTP, cfg.Version, cfg.Profile = fmt.Sprintf("127.0.0.1:%d", port+1000), "127.0.0.1:1", "test", "test"
	cfg.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Load = func() int { return 7 }
	c, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	return c, lb
}

func ringIDs(c *Cluster) string {
	var s []string
	for _, n := range c.Ring().Nodes() {
		s = append(s, n.ID)
	}
	return strings.Join(s, ",")
}

func TestMembership(t *testing.T) {
	a, _ := startNode(t, nil, nil, 0)
	var nodes []*Cluster
	nodes = append(nodes, a)
	for i := 0; i < 4; i++ {
		n, _ := startNode(t, []string{a.ID()}, nil, 0)
		nodes = append(nodes, n)
	}
	testutil.Eventually(t, 10*time.Second, "5 nodes converge", func() bool {
		for _, n := range nodes {
			if n.Ring().Len() != 5 || ringIDs(n) != ringIDs(a) {
				return false
			}
		}
		return true
	})
	// Metadata travels: RPC address and load.
	testutil.Eventually(t, 10*time.Second, "metadata", func() bool {
		for _, m := range a.Members() {
			if m.RPC == "" || m.Ver != "test" || m.Proto != Protocol {
				return false
			}
		}
		return true
	})
	// Graceful leave: state "left", off the ring everywhere.
	leaver := nodes[4]
	leaver.Leave(time.Second)
	leaver.Shutdown()
	testutil.Eventually(t, 10*time.Second, "leave seen", func() bool {
		for _, n := range nodes[:4] {
			if n.Ring().Len() != 4 {
				return false
			}
		}
		return true
	})
	testutil.Eventually(t, 10*time.Second, "left node reported as left", func() bool {
		for _, m := range a.Members() {
			if m.ID == leaver.ID() {
				return m.State == "left"
			}
		}
		return false
	})
	// Death: shut down without leaving; the failure detector declares it dead.
	dead := nodes[3]
	dead.Shutdown()
	testutil.Eventually(t, 15*time.Second, "death seen", func() bool {
		for _, n := range nodes[:3] {
			if n.Ring().Len() != 3 {
				return false
			}
		}
		return true
	})
	for _, m := range a.Members() {
		if m.ID == dead.ID() && m.State != "dead" {
			t.Errorf("dead node state %q", m.State)
		}
	}
	select {
	case <-a.Changes():
	default:
		t.Error("no change signalled")
	}
}

func TestJoinRetriesUntilSeedUp(t *testing.T) {
	seedPort := testutil.FreePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	b, logs := startNode(t, []string{seed}, nil, 0)
	if b.Ring().Len() != 1 {
		t.Fatal("not serving alone")
	}
	testutil.Eventually(t, 5*time.Second, "retry logged", func() bool { return strings.Contains(logs.String(), "cannot join the cluster yet") })
	a, err := Start(Config{Bind: seed, RPC: "x:1", Version: "test", Profile: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	testutil.Eventually(t, 20*time.Second, "joined after the seed came up", func() bool { return b.Ring().Len() == 2 && a.Ring().Len() == 2 })
}

func TestWrongKeyRejected(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16)
	a, alog := startNode(t, nil, k1, 0)
	b, blog := startNode(t, []string{a.ID()}, k2, 0)
	testutil.Eventually(t, 10*time.Second, "clear log line", func() bool {
		return strings.Contains(alog.String()+blog.String(), "gossip key")
	})
	if a.Ring().Len() != 1 || b.Ring().Len() != 1 {
		t.Fatal("nodes with different keys formed a cluster")
	}
	// Same key: they join.
	c, _ := startNode(t, []string{a.ID()}, k1, 0)
	testutil.Eventually(t, 10*time.Second, "same key joins", func() bool { return c.Ring().Len() == 2 })
}

// Nodes of another protocol never share a ring. Absence is proved after
// the exchange happened, not after a sleep: b's join attempts reached a and
// came back refused (two rounds of them, each a full push/pull in which
// both sides judged the other), and only then are the rings looked at.
func TestIncompatibleProtocolRefused(t *testing.T) {
	a, alog := startNode(t, nil, nil, 0)
	b, blog := startNode(t, []string{a.ID()}, nil, Protocol+1)
	testutil.Eventually(t, 15*time.Second, "two join attempts refused on both sides", func() bool {
		return strings.Count(alog.String(), "refusing to join nodes of another protocol") >= 2 &&
			strings.Contains(blog.String(), "attempt=2") && strings.Contains(blog.String(), "incompatible node")
	})
	if a.Ring().Len() != 1 || b.Ring().Len() != 1 || len(a.Members()) != 1 || len(b.Members()) != 1 {
		t.Fatalf("incompatible nodes on one ring: %s / %s", ringIDs(a), ringIDs(b))
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, 32)
	key2 := bytes.Repeat([]byte{9}, 16)
	for name, content := range map[string]string{"b64": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", "hex": strings.Repeat("07", 32), "raw": string(key)} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		got, err := ReadKeyFile(p)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], key) {
			t.Errorf("%s: %x %v", name, got, err)
		}
	}
	// A rotation: several keys, the first encrypts; comments and blank lines.
	p := filepath.Join(dir, "two")
	os.WriteFile(p, []byte("# new key first\n"+strings.Repeat("09", 16)+"\n\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"), 0o600)
	got, err := ReadKeyFile(p)
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], key2) || !bytes.Equal(got[1], key) {
		t.Errorf("two keys: %x %v", got, err)
	}
	p = filepath.Join(dir, "short")
	os.WriteFile(p, []byte("abc"), 0o600)
	if _, err := ReadKeyFile(p); err == nil || !strings.Contains(err.Error(), "16, 24 or 32") {
		t.Errorf("short key: %v", err)
	}
	p = filepath.Join(dir, "badline")
	os.WriteFile(p, []byte(strings.Repeat("09", 16)+"\nnot a key\n"), 0o600)
	if _, err := ReadKeyFile(p); err == nil || !strings.Contains(err.Error(), "badline:2") {
		t.Errorf("bad second line: %v", err)
	}
}

// gossipWorks proves that every node reaches every other under the keys
// in force, both ways and on both transports: a ping answered (UDP packets,
// encrypted by the sender's primary key and decrypted by the receiver's
// ring, the ack likewise) and a push/pull (a TCP stream).
func gossipWorks(t *testing.T, what string, nodes []*Cluster) {
	t.Helper()
	for _, n := range nodes {
		for _, m := range nodes {
			if n == m {
				continue
			}
			addr, err := net.ResolveUDPAddr("udp", m.ID())
			if err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, fmt.Sprintf("%s: %s pings %s", what, n.ID(), m.ID()), func() bool {
				_, err := n.ml.Ping(m.ID(), addr)
				return err == nil
			})
			if _, err := n.ml.Join([]string{m.ID()}); err != nil {
				t.Fatalf("%s: push/pull from %s to %s: %v", what, n.ID(), m.ID(), err)
			}
		}
	}
}

// The gossip key rotates on a running cluster (add, use, drop) with no
// member ever leaving the ring; afterwards only the new key joins. Each
// step is proved by traffic under its keys (gossipWorks), not by a sleep.
func TestGossipKeyRotation(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	a, _ := startNode(t, nil, k1, 0)
	b, _ := startNode(t, []string{a.ID()}, k1, 0)
	c, _ := startNode(t, []string{a.ID()}, k1, 0)
	all := []*Cluster{a, b, c}
	whole := func() bool {
		for _, n := range all {
			if n.Ring().Len() != 3 {
				return false
			}
		}
		return true
	}
	testutil.Eventually(t, 10*time.Second, "three members", whole)
	var broke atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, n := range all {
				for _, m := range n.Members() {
					if m.State != "alive" {
						broke.Store(true)
					}
				}
			}
		}
	}()
	for i, step := range [][][]byte{{k1, k2}, {k2, k1}, {k2}} {
		for _, n := range all {
			if err := n.SetKeys(step); err != nil {
				t.Fatal(err)
			}
		}
		gossipWorks(t, fmt.Sprintf("step %d", i+1), all)
	}
	close(stop)
	<-done
	if broke.Load() || !whole() {
		t.Fatal("a member was lost during the key rotation")
	}
	for _, n := range all {
		if n.KeyCount() != 1 {
			t.Fatalf("%s holds %d keys after the rotation", n.ID(), n.KeyCount())
		}
	}
	old, _ := startNode(t, []string{a.ID()}, k1, 0)
	fresh, _ := startNode(t, []string{a.ID()}, k2, 0)
	testutil.Eventually(t, 10*time.Second, "the new key joins", func() bool { return fresh.Ring().Len() == 4 })
	if old.Ring().Len() != 1 {
		t.Fatal("the retired key still joins")
	}
	if err := a.SetKeys(nil); err == nil {
		t.Fatal("dropping every key of a running node was accepted")
	}
}

// A member whose identity is refuted (its certificate names another node,
// or is not the CA's) stays off the ring until a proof succeeds; a member
// that merely cannot be reached stays on it: the gossip says it is alive,
// and taking it off would give its conversations a second owner.
func TestVerifyKeepsRefutedOffTheRing(t *testing.T) {
	var verdict sync.Map // name -> error
	verify := func(ctx context.Context, n Node) error {
		if v, ok := verdict.Load(n.Name); ok && v != nil {
			return v.(error)
		}
		return nil
	}
	a, _ := startWith(t, Config{Name: "a", Verify: verify})
	b, _ := startWith(t, Config{Name: "b", Join: []string{a.ID()}, Verify: verify})
	testutil.Eventually(t, 10*time.Second, "a and b on the ring", func() bool { return a.Ring().Len() == 2 && b.Ring().Len() == 2 })
	verdict.Store("x", fmt.Errorf("%w: x presented a certificate for node %q", ErrIdentity, "y"))
	verdict.Store("u", errors.New("timeout"))
	x, _ := startWith(t, Config{Name: "x", Join: []string{a.ID()}, Verify: verify})
	u, _ := startWith(t, Config{Name: "u", Join: []string{a.ID()}, Verify: verify})
	testutil.Eventually(t, 10*time.Second, "x refuted, u on the ring unproved", func() bool {
		mx, okx := a.Member(x.ID())
		mu, oku := a.Member(u.ID())
		return okx && mx.Refuted && !a.Ring().Has(x.ID()) && oku && !mu.Verified && a.Ring().Has(u.ID())
	})
	if !a.HasName("x") {
		t.Fatal("a refuted member's name is no longer current (its stream would be refused before its proof could succeed)")
	}
	if n, ok := a.NameAt(b.cfg.RPC); !ok || n != "b" {
		t.Fatalf("NameAt(b) = %q %v", n, ok)
	}
	// x proves itself by calling a (a Hello over RPC): back on a's ring.
	a.Proved(x.ID())
	if !a.Ring().Has(x.ID()) {
		t.Fatal("a member that proved itself by calling stays off the ring")
	}
	// b's own proof of x still refutes it until x's certificate is fixed.
	testutil.Eventually(t, 10*time.Second, "b refutes x", func() bool { return !b.Ring().Has(x.ID()) })
	verdict.Store("x", nil)
	testutil.Eventually(t, 10*time.Second, "x on b's ring once proved", func() bool { return b.Ring().Has(x.ID()) })
	x.Shutdown()
	testutil.Eventually(t, 10*time.Second, "x dead", func() bool { _, ok := a.Member(x.ID()); return !ok })
	if a.HasName("x") {
		t.Fatal("a dead member's name is still current")
	}
}

// Streams to the gossip port before any key is checked: an address holds at
// most maxStreamsPerAddr at once, each for at most TCPTimeout.
func TestGossipStreamsBounded(t *testing.T) {
	var refused atomic.Int64
	a, _ := startWith(t, Config{OnRefuse: func(string) { refused.Add(1) }})
	var conns []net.Conn
	for i := 0; i < maxStreamsPerAddr+4; i++ {
		c, err := net.Dial("tcp", a.ID())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	testutil.Eventually(t, 5*time.Second, "extra streams refused", func() bool { return refused.Load() >= 4 })
	if h := a.transport.held(); h > maxStreamsPerAddr {
		t.Fatalf("%d streams held from one address", h)
	}
	// Silent streams are dropped after TCPTimeout (1s on the test profile).
	testutil.Eventually(t, 5*time.Second, "silent streams dropped", func() bool { return a.transport.held() == 0 })
	for _, c := range conns {
		c.Close()
	}
	b, _ := startNode(t, []string{a.ID()}, nil, 0)
	testutil.Eventually(t, 10*time.Second, "a member still joins", func() bool { return a.Ring().Len() == 2 && b.Ring().Len() == 2 })
}

// A key file is outside input: nothing in it crashes the reader, and
// whatever it accepts is a usable key.
func FuzzKeyFile(f *testing.F) {
	f.Add([]byte("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"))
	f.Add([]byte("# c\n" + strings.Repeat("09", 16) + "\n\n" + strings.Repeat("0a", 24)))
	f.Add(bytes.Repeat([]byte{7}, 16))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "k")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Skip()
		}
		keys, err := ReadKeyFile(p)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("no key and no error")
		}
		for _, k := range keys {
			if !validKeyLen(len(k)) {
				t.Fatalf("accepted a %d-byte key", len(k))
			}
		}
		if _, err := memberlist.NewKeyring(keys, keys[0]); err != nil {
			t.Fatalf("memberlist refuses what the reader accepted: %v", err)
		}
	})
}

// Packets that do not decrypt (anyone can send them) are counted, and
// logged at most once a second.
func TestJunkGossipCountedNotLogged(t *testing.T) {
	var refused atomic.Int64
	a, alog := startWith(t, Config{Keys: [][]byte{bytes.Repeat([]byte{3}, 32)}, OnRefuse: func(r string) {
		if r == "gossip_decrypt" {
			refused.Add(1)
		}
	}})
	c, err := net.Dial("udp", a.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	junk := bytes.Repeat([]byte{0x5a}, 64)
	for i := 0; i < 300; i++ {
		c.Write(junk)
	}
	testutil.Eventually(t, 5*time.Second, "junk counted", func() bool { return refused.Load() >= 250 })
	if n := strings.Count(alog.String(), "does not decrypt"); n > 3 {
		t.Fatalf("%d log lines for junk packets", n)
	}
}

// Hearing of another member is not having joined: a node whose seeds have
// not answered serves only after its bootstrap window, even when a member
// joined it meanwhile (its ring may lack members the cluster has: serving
// then took conversations over from old copies). A member that joins it
// starts its next join attempt at once.
func TestReadyNeedsJoinNotJustAMember(t *testing.T) {
	seed, _ := startNode(t, nil, nil, 0)
	a, _ := startWith(t, Config{Join: []string{"127.0.0.1:1"}, Bootstrap: time.Hour}) // its only seed never answers
	if a.Ready() {
		t.Fatal("ready before joining")
	}
	b, _ := startNode(t, []string{a.ID()}, nil, 0)
	testutil.Eventually(t, 10*time.Second, "b joined a", func() bool { return a.Ring().Len() == 2 && b.Ring().Len() == 2 })
	if a.Ready() {
		t.Fatal("a member joining this node made it ready, though it never joined the cluster through its seeds")
	}
	// A node whose seed answers is ready once it has joined.
	c, _ := startWith(t, Config{Join: []string{seed.ID()}, Bootstrap: time.Hour})
	testutil.Eventually(t, 10*time.Second, "c joined", c.Ready)
}

// A zero Config takes DefaultConfig's values; the test profile bootstraps sooner.
func TestDefaultConfig(t *testing.T) {
	var c Config
	c.ensureDefaults()
	if d := DefaultConfig(); c.Profile != d.Profile || c.Bootstrap != d.Bootstrap || !slices.Contains(Profiles, d.Profile) {
		t.Errorf("zero resolves to %+v, DefaultConfig is %+v", c, d)
	}
	c = Config{Profile: "test"}
	c.ensureDefaults()
	if c.Bootstrap != 2*time.Second {
		t.Errorf("test profile bootstrap %s", c.Bootstrap)
	}
}

// A node whose shutdown outlasts GossipToTheDeadTime after its Leave must
// not re-advertise itself: memberlist has forgotten its own node by then,
// and UpdateNode dereferenced the missing entry (a node crashed with exit 2
// on SIGTERM in TestClusterProcessesRollingRestart, its metaLoop's tick
// 3 s into a slow shutdown).
func TestNoAdvertiseAfterLeave(t *testing.T) {
	a, _ := startNode(t, nil, nil, 0)
	b, _ := startNode(t, []string{a.ID()}, nil, 0)
	testutil.Eventually(t, 10*time.Second, "joined", func() bool { return a.Ring().Len() == 2 && b.Ring().Len() == 2 })
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	forgotten := func() (gone bool) {
		defer func() {
			if recover() != nil {
				gone = true // memberlist's own entry is gone: LocalNode dereferences nil
			}
		}()
		b.ml.LocalNode()
		return false
	}
	testutil.Eventually(t, 15*time.Second, "memberlist forgets the node that left", forgotten)
	if b.advertiseLoad(9) {
		t.Fatal("a node that left advertised its load again")
	}
}
