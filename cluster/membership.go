package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol is the cluster protocol version. Nodes of another protocol are
// refused at join and kept off the ring: they could not read our messages.
const Protocol = 2

// Config configures membership.
type Config struct {
	// Bind is the gossip address host:port (UDP and TCP).
	Bind string
	// Advertise is the address others reach us at (default: Bind).
	Advertise string
	// Join lists seeds host:port; joining retries with backoff until one answers.
	Join []string
	// Keys are the gossip keys (16, 24 or 32 bytes each): the first
	// encrypts, every one decrypts (a rotation lists old and new). Empty:
	// gossip is neither encrypted nor authenticated (loopback or insecure).
	Keys [][]byte
	// Name is this node's name, from its certificate ("" without TLS).
	Name string
	// RPC and HTTP are this node's addresses, published in its metadata.
	RPC, HTTP string
	Version   string
	// Profile tunes failure detection (one of Profiles): "lan", "local"
	// (one host), or "test" (fast timers for tests: dead within about a
	// second).
	Profile string
	Logger  *slog.Logger
	// Load is read when metadata is refreshed (conversations in memory).
	Load func() int
	// Bootstrap is how long a node with seeds waits to join before it serves
	// alone (it may be the first node up); zero: DefaultConfig's, 2s with
	// the profile "test".
	Bootstrap time.Duration
	// Verify proves a member's RPC identity (it dials the member, whose
	// certificate must name it). A member whose proof fails with an error
	// wrapping ErrIdentity is kept off the ring until a later proof
	// succeeds; any other failure (a timeout, a refused connection) leaves
	// it on the ring, as the gossip says it is alive, and is retried: a
	// member that cannot be reached is not a reason for two owners. nil:
	// no proofs.
	Verify func(ctx context.Context, n Node) error
	// OnRefuse counts gossip connections refused (too many from one address).
	OnRefuse func(reason string)
	// OnVerify hears of a member's identity proved (err nil) or refuted
	// (for the audit log), once per change. It runs on a verification
	// goroutine, without the cluster's lock.
	OnVerify func(n Node, err error)

	proto int // tests: pretend to speak another protocol
}

// Profiles are the values of Config.Profile.
var Profiles = []string{"lan", "local", "test"}

// DefaultConfig is every default of Config: the LAN profile, and 10s for
// the seeds to answer before a node serves alone. Zero fields take these
// values.
func DefaultConfig() Config {
	return Config{Profile: "lan", Bootstrap: 10 * time.Second}
}

func (c *Config) ensureDefaults() {
	d := DefaultConfig()
	if c.Profile == "" {
		c.Profile = d.Profile
	}
	if c.Bootstrap <= 0 {
		c.Bootstrap = d.Bootstrap
		if c.Profile == "test" {
			c.Bootstrap = 2 * time.Second
		}
	}
}

func (c *Cluster) protocol() int {
	if c.cfg.proto != 0 {
		return c.cfg.proto
	}
	return Protocol
}

// meta is a node's metadata as gossiped (JSON, kept small).
type meta struct {
	RPC     string `json:"r"`
	HTTP    string `json:"h"`
	Ver     string `json:"v"`
	Proto   int    `json:"p"`
	Load    int    `json:"l"`
	Leaving bool   `json:"x,omitempty"`
	Name    string `json:"n,omitempty"`
}

// Cluster is this node's view of the membership.
type Cluster struct {
	cfg    Config
	gossip // the engine (gossip.go; none in the edge build)
	log    *slog.Logger
	id     string
	stop   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	members map[string]*Node
	ring    *Ring
	changes chan struct{}
	left    bool
	joined  bool
	started time.Time

	gossipRound time.Duration
	verifyKick  chan struct{}
	joinKick    chan struct{} // another member appeared: try the seeds again now
	dir         atomic.Pointer[directory]
}

// ReadKeyFile reads gossip keys: one per line, each base64 or hex text
// (lines starting with # are comments), or a single raw 16/24/32-byte key.
// The first key encrypts; all of them decrypt, so a rotation lists the new
// key beside the old one (see docs/SECURITY.md).
func ReadKeyFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: key file: %w", err)
	}
	var keys [][]byte
	bad := 0
	for i, line := range strings.Split(string(b), "\n") {
		text := strings.TrimSpace(line)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		k, ok := decodeKey(text)
		if !ok {
			bad = i + 1
			break
		}
		keys = append(keys, k)
	}
	if bad == 0 && len(keys) > 0 {
		return dedupeKeys(keys), nil
	}
	if validKeyLen(len(b)) {
		return [][]byte{b}, nil
	}
	if bad > 0 {
		return nil, fmt.Errorf("cluster: key file %s:%d: want a 16, 24 or 32-byte key as base64 or hex (one per line; the first encrypts)", path, bad)
	}
	return nil, fmt.Errorf("cluster: key file %s: no key in it; want a 16, 24 or 32-byte key as base64 or hex", path)
}

func decodeKey(text string) ([]byte, bool) {
	// Hex first: a hex key is also valid base64 (of another length).
	for _, dec := range []func(string) ([]byte, error){hex.DecodeString, base64.StdEncoding.DecodeString} {
		if k, err := dec(text); err == nil && validKeyLen(len(k)) {
			return k, true
		}
	}
	return nil, false
}

func dedupeKeys(keys [][]byte) [][]byte {
	var out [][]byte
	for _, k := range keys {
		dup := false
		for _, o := range out {
			dup = dup || bytes.Equal(o, k)
		}
		if !dup {
			out = append(out, k)
		}
	}
	return out
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return h, port, nil
}

// ID is this node's id (its advertised gossip address).
func (c *Cluster) ID() string { return c.id }

// Ready reports whether the node may serve conversations: it has joined
// (or has no seeds), or no seed answered within the bootstrap window and it
// serves as the first node. Before that, its ring is only itself, or only
// the members heard of so far: serving would hide conversations the
// cluster holds, or take them over from a copy that is not the newest.
// (Hearing of another member is not having joined: a member that joins
// this node starts this node's next join attempt at once.)
func (c *Cluster) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.joined || len(c.cfg.Join) == 0 || time.Since(c.started) > c.cfg.Bootstrap
}

// explainJoin turns memberlist's join errors into what to check.
func explainJoin(msg string, keyed bool) string {
	switch {
	case strings.Contains(msg, "decrypt") || strings.Contains(msg, "No installed keys") || strings.Contains(msg, "encryption"):
		return msg + " (the cluster's gossip key differs: check cluster.key_file on every node)"
	case strings.Contains(msg, "connection refused"):
		return msg + " (nothing listens at the seed's gossip address)"
	case strings.Contains(msg, "incompatible"):
		return msg
	}
	if keyed {
		return msg + " (if the seed is up, its gossip key may differ)"
	}
	return msg
}

// Ring returns the current ring of alive members.
func (c *Cluster) Ring() *Ring {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ring
}

// Changes signals (coalesced) when the ring changed.
func (c *Cluster) Changes() <-chan struct{} { return c.changes }

// Members returns every member seen, with its state, sorted by id.
func (c *Cluster) Members() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Node, 0, len(c.members))
	for _, n := range c.members {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// onRing: alive, of our protocol, and its RPC identity not refuted.
func (c *Cluster) onRing(n *Node) bool {
	return n.State == "alive" && n.Proto == c.protocol() && !n.Refuted
}

func (c *Cluster) rebuildLocked() {
	var live []Node
	for _, n := range c.members {
		if c.onRing(n) {
			live = append(live, *n)
		}
	}
	c.ring = NewRing(live)
	c.dir.Store(newDirectory(c.members))
	select {
	case c.changes <- struct{}{}:
	default:
	}
	if c.cfg.Verify != nil {
		select {
		case c.verifyKick <- struct{}{}:
		default:
		}
	}
}

// setState records a member's state; a member that stops being alive must
// prove its identity again when it comes back.
func (n *Node) setState(state string, now time.Time) {
	if n.State != state {
		n.State, n.since = state, now
	}
	if state == "dead" || state == "left" {
		n.Verified, n.Refuted, n.failures = false, false, 0
	}
}
