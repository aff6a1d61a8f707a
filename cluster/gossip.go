//go:build !edge

package cluster

// The gossip engine (hashicorp/memberlist): Start, the key ring, joining,
// leaving, and memberlist's delegates. The edge build has none of it
// (gossip_edge.go): there Start refuses, and no Cluster exists.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossip is the engine's part of a Cluster.
type gossip struct {
	ml        *memberlist.Memberlist
	keyring   *memberlist.Keyring
	transport *limitedTransport
	// metaMu orders metaLoop's re-advertising against Leave: once Leave
	// has begun, nothing advertises this node again. (memberlist forgets
	// its own node GossipToTheDeadTime after a leave, and UpdateNode then
	// dereferences a nil entry: a node whose shutdown took longer than
	// that crashed with exit 2 on SIGTERM.)
	metaMu   sync.Mutex
	metaDone bool
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
			if !c.advertiseLoad(l) {
				return
			}
		}
	}
}

// advertiseLoad puts load in this node's metadata and re-advertises it,
// unless the node is leaving (false: metaLoop ends).
func (c *Cluster) advertiseLoad(load int) bool {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	if c.metaDone {
		return false
	}
	c.mu.Lock()
	if n := c.members[c.id]; n != nil {
		n.Load = load
	}
	c.mu.Unlock()
	_ = c.ml.UpdateNode(time.Second)
	return true
}

// Leave announces a graceful departure and waits up to timeout for it to
// spread. Peers first see this node's metadata say "leaving" (memberlist
// itself reports a leave like a death), then its departure.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.metaMu.Lock()
	c.metaDone = true // metaLoop advertises no more (an update in flight is done)
	c.metaMu.Unlock()
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
