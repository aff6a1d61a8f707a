package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
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
	cfg  Config
	ml   *memberlist.Memberlist
	log  *slog.Logger
	id   string
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	members map[string]*Node
	ring    *Ring
	changes chan struct{}
	left    bool
	joined  bool
	started time.Time

	gossipRound time.Duration
	keyring     *memberlist.Keyring
	transport   *limitedTransport
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

// Start joins (or founds) the cluster. Seeds that do not answer are retried
// in the background with backoff; the node serves alone meanwhile.
func Start(cfg Config) (*Cluster, error) {
	cfg.ensureDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, k := range cfg.Keys {
		if !validKeyLen(len(k)) {
			return nil, fmt.Errorf("cluster: a gossip key must be 16, 24 or 32 bytes, got %d", len(k))
		}
	}
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind %q: %w", cfg.Bind, err)
	}
	adv := cfg.Advertise
	if adv == "" {
		adv = cfg.Bind
	}
	advHost, advPort, err := splitHostPort(adv)
	if err != nil {
		return nil, fmt.Errorf("cluster: advertise %q: %w", adv, err)
	}
	var mc *memberlist.Config
	switch cfg.Profile {
	case "lan":
		mc = memberlist.DefaultLANConfig()
	case "local":
		mc = memberlist.DefaultLocalConfig()
	case "test":
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 100 * time.Millisecond
		mc.ProbeTimeout = 50 * time.Millisecond
		mc.GossipInterval = 30 * time.Millisecond
		mc.SuspicionMult = 2
		mc.PushPullInterval = 2 * time.Second
		mc.TCPTimeout = time.Second
		mc.RetransmitMult = 2
		mc.GossipToTheDeadTime = 2 * time.Second
	default:
		return nil, fmt.Errorf("cluster: unknown profile %q (%s)", cfg.Profile, strings.Join(Profiles, ", "))
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, id: adv, stop: make(chan struct{}), members: map[string]*Node{}, changes: make(chan struct{}, 1), started: time.Now(),
		verifyKick: make(chan struct{}, 1), joinKick: make(chan struct{}, 1)}
	mc.Name = c.id
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = advHost, advPort
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.Merge = (*merge)(c)
	mc.Alive = (*alive)(c)
	mc.LogOutput = &logWriter{c: c}
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("cluster: gossip keys: %w", err)
		}
		c.keyring = kr
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	c.gossipRound = 5 * mc.GossipInterval
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port,
		Logger: log.New(mc.LogOutput, "", log.LstdFlags)})
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", cfg.Bind, err)
	}
	c.transport = newLimitedTransport(nt, func() {
		if cfg.OnRefuse != nil {
			cfg.OnRefuse("gossip_streams")
		}
	}, c.memberHost)
	mc.Transport = c.transport
	ml, err := memberlist.Create(mc)
	if err != nil {
		c.transport.Shutdown()
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", cfg.Bind, err)
	}
	c.ml = ml
	c.mu.Lock()
	c.members[c.id] = &Node{ID: c.id, Name: cfg.Name, RPC: cfg.RPC, HTTP: cfg.HTTP, Addr: adv, Ver: cfg.Version, Proto: c.protocol(), State: "alive",
		Local: true, Verified: true, Joined: time.Now().UnixMilli(), since: time.Now()}
	c.rebuildLocked()
	c.mu.Unlock()
	if len(cfg.Join) > 0 {
		c.wg.Add(1)
		go c.joinLoop()
	}
	c.wg.Add(1)
	go c.metaLoop()
	if cfg.Verify != nil {
		c.wg.Add(1)
		go c.verifyLoop()
	}
	return c, nil
}

// memberHost reports whether host is a current member's gossip address.
func (c *Cluster) memberHost(host string) bool {
	d := c.dir.Load()
	if d == nil {
		return false
	}
	now := time.Now()
	for _, n := range d.byID {
		if h, _, err := net.SplitHostPort(n.Addr); err == nil && h == host && !n.Local && current(n, now) {
			return true
		}
	}
	return false
}

// SetKeys replaces the gossip keyring (a reload): keys[0] encrypts from now
// on, every key listed decrypts, keys not listed are dropped. A node that
// started without keys cannot start encrypting without a restart.
func (c *Cluster) SetKeys(keys [][]byte) error {
	if c.keyring == nil {
		if len(keys) == 0 {
			return nil
		}
		return errors.New("cluster: this node started without a gossip key; restart it to turn encryption on")
	}
	if len(keys) == 0 {
		return errors.New("cluster: cannot drop every gossip key of a running node; restart it without cluster.key_file")
	}
	for _, k := range keys {
		if !validKeyLen(len(k)) {
			return fmt.Errorf("cluster: a gossip key must be 16, 24 or 32 bytes, got %d", len(k))
		}
		if err := c.keyring.AddKey(k); err != nil {
			return fmt.Errorf("cluster: gossip keys: %w", err)
		}
	}
	if err := c.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("cluster: gossip keys: %w", err)
	}
	for _, old := range c.keyring.GetKeys() {
		keep := false
		for _, k := range keys {
			keep = keep || bytes.Equal(k, old)
		}
		if !keep {
			if err := c.keyring.RemoveKey(old); err != nil {
				return fmt.Errorf("cluster: gossip keys: %w", err)
			}
		}
	}
	return nil
}

// KeyCount is how many gossip keys are installed (0: none).
func (c *Cluster) KeyCount() int {
	if c.keyring == nil {
		return 0
	}
	return len(c.keyring.GetKeys())
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

func (c *Cluster) joinLoop() {
	defer c.wg.Done()
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := c.ml.Join(c.cfg.Join)
		if err == nil && n > 0 {
			c.log.Info("joined the cluster", "seeds", strings.Join(c.cfg.Join, ","), "contacted", n)
			c.mu.Lock()
			c.joined = true
			c.mu.Unlock()
			return
		}
		msg := "no seed answered"
		if err != nil {
			msg = err.Error()
		}
		level := slog.LevelWarn
		if attempt > 3 {
			level = slog.LevelDebug // keep retrying, quietly
		}
		c.log.Log(context.Background(), level, "cannot join the cluster yet; serving alone and retrying", "seeds", strings.Join(c.cfg.Join, ","),
			"attempt", attempt, "retry_in", backoff, "err", explainJoin(msg, len(c.cfg.Keys) > 0))
		select {
		case <-c.stop:
			return
		case <-c.joinKick:
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 15*time.Second)
	}
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

// metaLoop refreshes this node's load in its metadata every few seconds.
func (c *Cluster) metaLoop() {
	defer c.wg.Done()
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	last := -1
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.cfg.Load == nil {
			continue
		}
		if l := c.cfg.Load(); l != last {
			last = l
			c.mu.Lock()
			if n := c.members[c.id]; n != nil {
				n.Load = l
			}
			c.mu.Unlock()
			_ = c.ml.UpdateNode(time.Second)
		}
	}
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

// Leave announces a graceful departure and waits up to timeout for it to
// spread. Peers first see this node's metadata say "leaving" (memberlist
// itself reports a leave like a death), then its departure.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.mu.Lock()
	c.left = true
	c.mu.Unlock()
	// Tell every member directly (TCP), then in the metadata too. The
	// addresses are our copies: memberlist's own nodes change under its lock.
	bye := []byte(leavingMsg + c.id)
	for _, n := range c.Members() {
		if n.Local || n.State != "alive" {
			continue
		}
		host, port, err := splitHostPort(n.Addr)
		if ip := net.ParseIP(host); err == nil && ip != nil {
			_ = c.ml.SendReliable(&memberlist.Node{Name: n.ID, Addr: ip, Port: uint16(port)}, bye)
		}
	}
	_ = c.ml.UpdateNode(timeout / 2)
	// Let the "leaving" metadata reach the others before the leave itself
	// does, or they would report a death.
	time.Sleep(min(timeout/2, c.gossipRound))
	return c.ml.Leave(timeout)
}

// Shutdown stops gossip (after Leave, for a graceful exit). Idempotent.
func (c *Cluster) Shutdown() error {
	select {
	case <-c.stop:
		return nil
	default:
	}
	close(c.stop)
	err := c.ml.Shutdown()
	c.wg.Wait()
	return err
}

// ---- memberlist delegates: never block, never call out ----

type delegate Cluster

func (d *delegate) NodeMeta(limit int) []byte {
	c := (*Cluster)(d)
	c.mu.Lock()
	load := 0
	if n := c.members[c.id]; n != nil {
		load = n.Load
	}
	leaving := c.left
	c.mu.Unlock()
	b, _ := json.Marshal(meta{RPC: c.cfg.RPC, HTTP: c.cfg.HTTP, Ver: c.cfg.Version, Proto: c.protocol(), Load: load, Leaving: leaving, Name: c.cfg.Name})
	if len(b) > limit {
		return nil
	}
	return b
}

// leavingMsg prefixes the user message a node sends to every member just
// before it leaves: memberlist reports a leave like a death.
const leavingMsg = "moltbot/leaving:"

func (d *delegate) NotifyMsg(b []byte) {
	id, ok := strings.CutPrefix(string(b), leavingMsg)
	if !ok {
		return
	}
	c := (*Cluster)(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.members[id]
	if n == nil || n.Local {
		return
	}
	n.leaving = true
	switch n.State {
	case "dead":
		n.setState("left", time.Now())
	case "alive":
		n.setState("leaving", time.Now())
	}
	c.rebuildLocked()
}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState and MergeRemoteState carry nothing: state that every member
// holds travels over the authenticated RPC channel, not over gossip.
func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

func parseMeta(b []byte) (meta, error) {
	var m meta
	if len(b) == 0 {
		return m, errors.New("no metadata")
	}
	err := json.Unmarshal(b, &m)
	return m, err
}

type events Cluster

func (e *events) update(n *memberlist.Node, state string) {
	c := (*Cluster)(e)
	if n.Name == c.id && state != "alive" {
		return
	}
	m, err := parseMeta(n.Meta)
	c.mu.Lock()
	defer c.mu.Unlock()
	node := c.members[n.Name]
	if node == nil {
		node = &Node{ID: n.Name, Joined: time.Now().UnixMilli()}
		c.members[n.Name] = node
	}
	node.Addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	node.Local = n.Name == c.id
	if err == nil {
		if node.RPC != m.RPC || node.Name != m.Name {
			node.Verified, node.Refuted, node.failures = false, false, 0 // another identity: prove it again
		}
		node.RPC, node.HTTP, node.Ver, node.Proto, node.Load, node.Name = m.RPC, m.HTTP, m.Ver, m.Proto, m.Load, m.Name
		if m.Leaving {
			node.leaving = true
		} else if state == "alive" {
			node.leaving = false
		}
	}
	switch {
	case state == "dead" && node.leaving:
		state = "left"
	case state == "alive" && node.leaving:
		state = "leaving"
	}
	node.setState(state, time.Now())
	if node.Local {
		node.RPC, node.HTTP, node.Ver, node.Proto, node.Name, node.Verified = c.cfg.RPC, c.cfg.HTTP, c.cfg.Version, c.protocol(), c.cfg.Name, true
	}
	c.rebuildLocked()
}

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.update(n, "alive")
	select {
	case e.joinKick <- struct{}{}:
	default:
	}
}
func (e *events) NotifyUpdate(n *memberlist.Node) { e.update(n, "alive") }
func (e *events) NotifyLeave(n *memberlist.Node) {
	state := "dead"
	if n.State == memberlist.StateLeft {
		state = "left"
	}
	e.update(n, state)
}

// merge refuses to merge with a cluster holding nodes of another protocol.
type merge Cluster

func (m *merge) NotifyMerge(peers []*memberlist.Node) error {
	for _, p := range peers {
		if err := checkPeer(p, (*Cluster)(m).protocol()); err != nil {
			(*Cluster)(m).log.Warn("refusing to join nodes of another protocol", "node", p.Name, "err", err)
			return err
		}
	}
	return nil
}

type alive Cluster

func (a *alive) NotifyAlive(p *memberlist.Node) error {
	if err := checkPeer(p, (*Cluster)(a).protocol()); err != nil {
		(*Cluster)(a).log.Warn("refusing a node of another protocol", "node", p.Name, "err", err)
		return err
	}
	return nil
}

func checkPeer(p *memberlist.Node, ours int) error {
	m, err := parseMeta(p.Meta)
	if err != nil {
		return fmt.Errorf("incompatible node %s: unreadable metadata (%v)", p.Name, err)
	}
	if m.Proto != ours {
		return fmt.Errorf("incompatible node %s: cluster protocol %d, this node speaks %d (its version %s)", p.Name, m.Proto, ours, m.Ver)
	}
	return nil
}

// logWriter forwards memberlist's log lines to slog at their level, with
// the gossip-key failure spelled out.
type logWriter struct {
	c   *Cluster
	buf []byte
	mu  sync.Mutex

	lastDecrypt time.Time // emit runs under mu
	suppressed  int
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	sc := bufio.NewScanner(strings.NewReader(string(w.buf)))
	consumed := 0
	for sc.Scan() {
		line := sc.Text()
		consumed += len(line) + 1
		if consumed > len(w.buf) {
			consumed = len(w.buf)
		}
		w.emit(line)
	}
	w.buf = w.buf[consumed:]
	return len(p), nil
}

func (w *logWriter) emit(line string) {
	// "2026/11/25 16:00:00 [WARN] memberlist: ..."
	i := strings.Index(line, "[")
	level := slog.LevelDebug
	msg := line
	if i >= 0 {
		rest := line[i:]
		switch {
		case strings.HasPrefix(rest, "[ERR]"):
			level = slog.LevelError
		case strings.HasPrefix(rest, "[WARN]"):
			level = slog.LevelWarn
		case strings.HasPrefix(rest, "[INFO]"):
			level = slog.LevelDebug // memberlist's info is chatty
		}
		if j := strings.Index(rest, "]"); j >= 0 {
			msg = strings.TrimSpace(rest[j+1:])
		}
	}
	if strings.Contains(msg, "No installed keys could decrypt") || strings.Contains(msg, "Decrypt packet failed") ||
		strings.Contains(msg, "Failed to decrypt") {
		// Anyone can send packets that do not decrypt: count them all, say
		// so at most once a second.
		if w.c.cfg.OnRefuse != nil {
			w.c.cfg.OnRefuse("gossip_decrypt")
		}
		w.suppressed++
		if time.Since(w.lastDecrypt) < time.Second {
			return
		}
		w.lastDecrypt = time.Now()
		w.c.log.Warn("gossip refused: a packet or stream does not decrypt with this node's gossip keys (a node with another cluster.key_file, or not a member)",
			"detail", msg, "refused_since_last_report", w.suppressed)
		w.suppressed = 0
		return
	}
	if strings.Contains(msg, "incompatible") {
		level = slog.LevelWarn
	}
	w.c.log.Log(context.Background(), level, msg, "component", "memberlist")
}
