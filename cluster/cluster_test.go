package cluster

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
	port := testutil.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	lb := &logBuf{}
	c, err := Start(Config{Bind: addr, Join: join, Key: key, RPC: fmt.Sprintf("127.0.0.1:%d", port+1000), HTTP: "127.0.0.1:1",
		Version: "test", Profile: "test", Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), proto: proto,
		Load: func() int { return 7 }})
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

func TestIncompatibleProtocolRefused(t *testing.T) {
	a, alog := startNode(t, nil, nil, 0)
	b, _ := startNode(t, []string{a.ID()}, nil, Protocol+1)
	time.Sleep(500 * time.Millisecond) // give gossip time to (not) merge
	if a.Ring().Len() != 1 || b.Ring().Len() != 1 {
		t.Fatalf("incompatible nodes on one ring: %s / %s", ringIDs(a), ringIDs(b))
	}
	testutil.Eventually(t, 5*time.Second, "refusal logged", func() bool { return strings.Contains(alog.String(), "protocol") })
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, 32)
	for name, content := range map[string]string{"b64": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", "hex": strings.Repeat("07", 32), "raw": string(key)} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		got, err := ReadKeyFile(p)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s: %x %v", name, got, err)
		}
	}
	p := filepath.Join(dir, "short")
	os.WriteFile(p, []byte("abc"), 0o600)
	if _, err := ReadKeyFile(p); err == nil || !strings.Contains(err.Error(), "16, 24 or 32") {
		t.Errorf("short key: %v", err)
	}
}

// setState is a grow-only set of strings: the simplest mergeable state.
type setState struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *setState) add(v string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[v] = true
	return []byte(v)
}

func (s *setState) State() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for v := range s.m {
		out = append(out, v)
	}
	return []byte(strings.Join(out, "\n"))
}

func (s *setState) Merge(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range strings.Split(string(b), "\n") {
		if v != "" && !s.m[v] {
			s.m[v] = true
			n++
		}
	}
	return n, nil
}

func (s *setState) has(v string) bool { s.mu.Lock(); defer s.mu.Unlock(); return s.m[v] }

func startShared(t *testing.T, join []string) (*Cluster, *setState) {
	t.Helper()
	st := &setState{m: map[string]bool{}}
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	c, err := Start(Config{Bind: addr, Join: join, Version: "test", Profile: "test", Shared: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	return c, st
}

// A change reaches every member at once; a member that joins later gets
// the whole state from the exchange at join.
func TestSharedState(t *testing.T) {
	a, sa := startShared(t, nil)
	b, sb := startShared(t, []string{a.ID()})
	testutil.Eventually(t, 10*time.Second, "two members", func() bool { return len(b.Ring().Nodes()) == 2 && len(a.Ring().Nodes()) == 2 })
	a.Publish(sa.add("from-a"))
	b.Publish(sb.add("from-b"))
	testutil.Eventually(t, 5*time.Second, "changes delivered", func() bool { return sb.has("from-a") && sa.has("from-b") })
	c, sc := startShared(t, []string{b.ID()})
	testutil.Eventually(t, 10*time.Second, "state at join", func() bool { return sc.has("from-a") && sc.has("from-b") })
	// And the newcomer's own state reaches the others.
	c.Publish(sc.add("from-c"))
	testutil.Eventually(t, 5*time.Second, "newcomer's change", func() bool { return sa.has("from-c") && sb.has("from-c") })
}
