package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/audit"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/cache"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/gateway"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/failover"
	"github.com/moltbot/moltbot/internal/gctune"
	"github.com/moltbot/moltbot/internal/logging"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/retention"
	"github.com/moltbot/moltbot/skills"
	"github.com/moltbot/moltbot/skills/intent"
	"github.com/moltbot/moltbot/skills/kb"
	"github.com/moltbot/moltbot/storage"
	"github.com/moltbot/moltbot/usage"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Node is one running moltbot: storage, actors and the HTTP gateway. Start it
// with Start, stop it with Shutdown. Tests start it on port 0 in-process.
type Node struct {
	Config    *configs.Config
	Workspace string
	Log       *slog.Logger
	// Channels are the outbox's adapters by channel name (a reply to
	// Destination{Channel: name}); set before Start. The hand-off's
	// tickets (handoff.ticket) are always there.
	Channels map[string]actors.Deliverer

	store    *storage.Pebble
	audit    *audit.Log
	rt       *actors.Runtime
	cl       *cluster.Cluster
	rpcCreds *cluster.Credentials
	sec      *clusterSecurity
	auth     *auth.Service
	creds    map[string]*inference.Credentials
	srv      *http.Server
	sweeper  *retention.Sweeper
	cache    *cache.Cache             // the output cache, nil without one
	skills   *skillStage              // the JS skills (their worker), nil without a workspace
	handoff  *handoffParts            // the hand-off stage, queue index and timer
	presets  *presetStage             // skills.presets, as last built
	bots     *skills.Bots             // the config's bots (bots:), swapped on a reload
	kb       *kb.Store                // the knowledge bases (skills.kb; kb.go)
	kbRef    atomic.Pointer[kb.Store] // kb, for auth's sweep of deleted tenants (set once open)
	kbStage  *kb.Stage                // their stage before the model
	shared   *actors.SharedMux        // what every member holds (nil alone): auth, usage, Node.sharePart's parts
	rtRef    *atomic.Pointer[actors.Runtime]
	stopPeer context.CancelFunc // Peers.Run (cluster), nil alone
	peerDone chan struct{}
	certs    *certSource // server.tls, nil for plain HTTP
	ln       net.Listener
	served   chan error
	stopOnce sync.Once
	stopErr  error

	// The channels (channels.go), the chat service they turn through, and
	// the node's metrics they export to.
	chans   *channels.Core
	chatSvc atomic.Pointer[chat.Service]
	met     *metrics.Registry
}

// DataDir is the storage directory: storage.path, relative to the workspace.
func (n *Node) DataDir() string {
	p := n.Config.Storage.Path
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(n.Workspace, p)
}

func keyValues(p configs.ProviderConfig) []string {
	var keys []string
	for _, k := range p.APIKeys {
		keys = append(keys, k.Value())
	}
	return keys
}

// buildProviders turns provider configs into inference clients of their
// registered types (inference.Register), with their credentials (key
// pools, or OAuth client credentials) by provider name.
func buildProviders(cfg *configs.Config, met *metrics.Registry) ([]actors.ProviderSpec, map[string]*inference.Credentials, error) {
	var out []actors.ProviderSpec
	creds := map[string]*inference.Credentials{}
	for _, p := range cfg.Providers {
		hc := inference.NewHTTPClient(p.MaxInFlight)
		var cr *inference.Credentials
		if o := p.OAuth; o != nil {
			cc := &clientcredentials.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret.Value(), TokenURL: o.TokenURL, Scopes: o.Scopes}
			cr = inference.NewOAuth(cc.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, hc)))
		} else {
			cr = inference.NewKeyPool(keyValues(p))
		}
		name := p.Name
		cr.OnCooldown = func() { met.Inc(metrics.KeyCooldowns, name) }
		creds[p.Name] = cr
		prov, err := inference.NewProvider(p.Type, p.Spec(cr, hc))
		if err != nil {
			return nil, nil, err
		}
		out = append(out, actors.ProviderSpec{Name: p.Name, Type: p.Type, URL: redactURL(p.URL), Provider: prov, MaxInFlight: p.MaxInFlight,
			MaxQueue: p.MaxQueue, Timeout: p.Timeout.D(), Models: p.Models, Keys: cr.Status, Caps: p.Caps()})
	}
	return out, creds, nil
}

// Reload re-reads the config file's provider credentials and tenants
// (SIGHUP, moltbot keys reload) without a restart; calls in flight finish on
// their old key.
//
// The TLS certificate (server.tls) is re-read first, whatever the config
// file: a certificate or key that fails to load keeps the old one in use,
// and the error, naming the file, is logged and returned. What the
// providers learned of their models (capabilities, the models they list)
// is forgotten and asked again. The workspace's skills/ is read again in
// a new worker; one that does not load keeps the skills in use.
func (n *Node) Reload() (int, error) {
	if n.rt != nil {
		actors.ForgetModels(n.rt)
	}
	var errs []error
	if err := n.ReloadCluster(); err != nil {
		errs = append(errs, err)
	}
	if err := n.reloadCert(); err != nil {
		errs = append(errs, err)
	}
	if err := n.reloadSkills(); err != nil {
		errs = append(errs, err)
	}
	if n.Config.File == "" || strings.HasPrefix(n.Config.File, "preset:") {
		// No file to read skills.presets from: their files (an FAQ) only.
		if err := n.reloadPresets(); err != nil {
			errs = append(errs, err)
		}
	}
	k, err := n.reloadConfig()
	if errors.Is(err, errNoFile) && (n.cl != nil || n.certs != nil || n.skills != nil || len(n.presets.presets()) > 0) {
		err = nil // the certificates, the skills were what there was to reload
	}
	return k, errors.Join(append(errs, err)...)
}

// reloadCert re-reads the HTTPS certificate (server.tls); a certificate or
// key that fails to load keeps the old one in use.
func (n *Node) reloadCert() error {
	if n.certs == nil {
		return nil
	}
	if err := n.certs.load(); err != nil {
		n.Log.Error("TLS certificate not reloaded; the old one stays in use", "err", err)
		return err
	}
	n.Log.Info("TLS certificate reloaded", "cert_file", n.certs.certFile)
	return nil
}

// errNoFile: the node runs an embedded preset.
var errNoFile = errors.New("the node runs an embedded preset: there is no file to reload")

// reloadConfig re-reads provider credentials and tenants from the file.
func (n *Node) reloadConfig() (int, error) {
	if n.Config.File == "" || strings.HasPrefix(n.Config.File, "preset:") {
		return 0, errNoFile
	}
	cfg, err := configs.Load(n.Config.File)
	if err != nil {
		// The presets stay, their files (an FAQ) read again.
		return 0, errors.Join(err, n.reloadPresets())
	}
	var perr error
	if n.presets != nil {
		perr = n.swapPresets(cfg) // skills.presets, and their files, again
	}
	k := 0
	for _, p := range cfg.Providers {
		if cr := n.creds[p.Name]; cr != nil && p.OAuth == nil {
			cr.Replace(keyValues(p))
			k++
		}
	}
	if n.auth != nil {
		if err := n.auth.SetConfigTenants(configTenants(cfg)); err != nil {
			return k, err
		}
	}
	if n.bots != nil {
		n.bots.Set(cfg.BotProfiles())
		if n.kbStage != nil {
			n.kbStage.SetConfig(kbStageConfig(cfg)) // skills.kb: turns from now on
			n.kbStage.SetBotsSearch(botsSearch(cfg))
		}
		n.checkBots(cfg)
	}
	if err := n.reloadChannels(cfg); err != nil {
		perr = errors.Join(perr, err)
	}
	if n.handoff != nil {
		// handoff: (triggers, texts, the ticket webhook); the queue's timer
		// keeps its tick until a restart.
		if err := n.handoff.stage.Reload(cfg.Handoff()); err != nil {
			perr = errors.Join(perr, err)
		}
	}
	n.Log.Info("provider credentials, tenants, bots and presets reloaded", "bots", len(cfg.Bots), "presets", len(n.presets.presets()),
		"file", n.Config.File, "providers", k, "tenants", len(cfg.Tenants))
	return k, perr
}

// sharedOf is the state a cluster node shares with every member (nil when
// the node runs alone).
func sharedOf(as *auth.Service, cfg *configs.Config) actors.SharedState {
	if cfg.Cluster.Bind == "" {
		return nil
	}
	return as
}

// sharePart adds st to what every member of the cluster holds, under tag
// (actors.SharedMux), and returns the publisher st's changes go out
// through. A node alone shares nothing: st is not added and the publisher
// drops what it is given.
func (n *Node) sharePart(tag byte, st actors.SharedState) (func([]byte), error) {
	if n.shared == nil {
		return func([]byte) {}, nil
	}
	ref := n.rtRef
	return n.shared.Add(tag, st, func(b []byte) {
		if rt := ref.Load(); rt != nil {
			rt.Link().PublishShared(b)
		}
	})
}

// Audit is the node's audit log: other parts of the node (the cluster's
// events) record into it; nil before Start.
func (n *Node) Audit() audit.Recorder { return n.audit }

// reloadOnSignal reloads on SIGHUP (the cluster's keys and certificates,
// then the file's provider credentials and tenants) and records both in the
// audit log.
func (n *Node) reloadOnSignal() {
	if n.cl != nil {
		e := audit.Event{Actor: audit.Actor{Method: "signal"}, Action: "cluster.reload", Target: "cluster keys and certificates", Remote: "local",
			Outcome: audit.OK, Detail: "SIGHUP"}
		if err := n.ReloadCluster(); err != nil {
			n.Log.Error("cluster reload on SIGHUP failed; the node keeps its keys and certificate", "err", err)
			e.Outcome, e.Detail = audit.Invalid, "SIGHUP; "+err.Error()
		}
		n.record(e)
	}
	if n.certs != nil {
		e := audit.Event{Actor: audit.Actor{Method: "signal"}, Action: "server.tls_reload", Target: n.certs.certFile, Remote: "local",
			Outcome: audit.OK, Detail: "SIGHUP"}
		if err := n.reloadCert(); err != nil {
			e.Outcome, e.Detail = audit.Invalid, "SIGHUP; "+err.Error()
		}
		n.record(e)
	}
	if n.skills != nil {
		// Audited when there are skills, before or after, or an error.
		had := n.skills.loaded()
		e := audit.Event{Actor: audit.Actor{Method: "signal"}, Action: "skills.reload", Target: "skills", Remote: "local",
			Outcome: audit.OK, Detail: "SIGHUP"}
		if err := n.reloadSkills(); err != nil {
			e.Outcome, e.Detail = audit.Invalid, "SIGHUP; "+err.Error()
		} else if !had && !n.skills.loaded() {
			e.Action = ""
		}
		if e.Action != "" {
			n.record(e)
		}
	}
	k, err := n.reloadConfig()
	if errors.Is(err, errNoFile) {
		return
	}
	e := audit.Event{Actor: audit.Actor{Method: "signal"}, Action: "config.reload", Target: "config", Remote: "local",
		Outcome: audit.OK, Detail: fmt.Sprintf("SIGHUP; providers=%d", k)}
	if err != nil {
		n.Log.Error("reload on SIGHUP failed", "err", err)
		e.Outcome, e.Detail = audit.Invalid, "SIGHUP; "+err.Error()
	}
	n.record(e)
}

func (n *Node) record(e audit.Event) {
	if n.audit != nil {
		n.audit.Record(e)
	}
}

// configTenants are the tenants the config file defines.
func configTenants(cfg *configs.Config) []auth.Tenant {
	var tenants []auth.Tenant
	for _, t := range cfg.Tenants {
		at := auth.Tenant{ID: t.ID, Name: t.Name, Models: t.Models, RotateEvery: t.RotateEvery.D(),
			Limits: auth.Limits{RequestsPerMinute: t.Limits.RequestsPerMinute, TokensPerMinute: t.Limits.TokensPerMinute,
				MaxConversations: t.Limits.MaxConversations, MaxStoredBytes: int64(t.Limits.MaxStoredBytes)}}
		if r := t.Retention; r != (configs.TenantRetentionConfig{}) {
			at.Retention = &auth.Retention{Days: r.Days, Messages: r.Messages, Archive: r.Archive}
		}
		tenants = append(tenants, at)
	}
	return tenants
}

// retentionPolicy is the retention of the live tenant whose space is
// space (retention.Config.Policy): none for a space of a dead or unknown
// tenant life (auth's sweep deals with those).
func retentionPolicy(as *auth.Service) func(space string) (string, retention.Policy, bool) {
	return func(space string) (string, retention.Policy, bool) {
		id, inc, _ := strings.Cut(space, ":")
		t, ok := as.Tenant(id)
		if !ok || t.Incarnation != inc || t.Retention == nil {
			return "", retention.Policy{}, false
		}
		return id, retention.Policy{Days: t.Retention.Days, Messages: t.Retention.Messages, Archive: t.Retention.Archive}, true
	}
}

// tenantQuotas are a tenant's quotas (usage.Limits).
func tenantQuotas(as *auth.Service) usage.Limits {
	return func(tenant string) (int64, int64) {
		t, ok := as.Tenant(tenant)
		if !ok {
			return 0, 0
		}
		return t.Limits.MaxConversations, t.Limits.MaxStoredBytes
	}
}

// ArchiveDir is where retention archives go: WORKSPACE/archive ("" without
// a workspace: policies that archive then delete nothing).
func (n *Node) ArchiveDir() string {
	if n.Workspace == "" {
		return ""
	}
	return filepath.Join(n.Workspace, "archive")
}

// Start opens storage, starts the actors and begins serving HTTP.
func (n *Node) Start() (err error) {
	cfg := n.Config
	if n.Log == nil {
		n.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := clusterRefused(cfg); err != nil { // the edge build (edge.go)
		return err
	}
	chanSpecs, err := channelSpecs(cfg, n.channelTypes())
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.Port))
	// Listen first: a port in use should fail before storage is touched.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("cannot listen on %s: the address is in use (change --port or server.port)", addr)
		}
		return fmt.Errorf("cannot listen on %s (--host/--port, server.host/server.port): %w", addr, err)
	}
	// undo closes what the start opened, newest first, when it fails.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	undo = append(undo, func() { ln.Close() })
	if err := n.privateWorkspace(); err != nil {
		return err
	}
	if lim := int64(cfg.Server.MemoryLimit); lim > 0 {
		// The process's, not this node's: set once, before the node allocates.
		debug.SetMemoryLimit(lim)
		n.Log.Debug("memory limit", "server.memory_limit", cfg.Server.MemoryLimit.String())
	}
	if os.Getenv("GOGC") == "" {
		// The collector's headroom held at 8 MiB once the live heap is
		// past it (internal/gctune); GOGC set by the operator wins.
		gctune.Start(gctune.DefaultPolicy())
	}
	if t := cfg.Server.TLS; t.Enabled() {
		if n.certs, err = newCertSource(n.Workspace, t.CertFile, t.KeyFile); err != nil {
			if l := cfg.Line("server.tls"); l > 0 {
				return fmt.Errorf("%s:%d: %w", cfg.File, l, err)
			}
			return err
		}
	}
	store, err := storage.Open(n.DataDir(), storage.Options{CacheSize: int64(cfg.Storage.CacheSize),
		MemtableSize: int64(cfg.Storage.MemtableSize), Logger: n.Log})
	if err != nil {
		return err
	}
	undo = append(undo, func() { store.Close() })
	met := metrics.New(moltbot.Version)
	n.met = met
	specs, creds, err := buildProviders(cfg, met)
	if err != nil {
		return err
	}
	n.creds = creds
	tenants := configTenants(cfg)
	var issuers []auth.Issuer
	for _, is := range cfg.Auth.OAuth.Issuers {
		issuers = append(issuers, auth.Issuer{Issuer: is.Issuer, JWKSURL: is.JWKSURL, Audience: is.Audience, TenantClaim: is.TenantClaim})
	}
	// Every conversation write goes through the usage table (quotas): the
	// runtime and auth's sweep of dead tenants use the wrapper. Until the
	// runtime exists this node owns everything (nothing is written).
	var rtRef atomic.Pointer[actors.Runtime]
	table := usage.NewTable(func(space, id string) bool {
		if r := rtRef.Load(); r != nil {
			return actors.RetentionOf(r).Owns(space, id)
		}
		return true
	})
	convs := usage.NewStore(store, table)
	skillKV, err := openSkillKV(store)
	if err != nil {
		return err
	}
	skillFiles, skillFileSet, err := openSkillFiles(store)
	if err != nil {
		return err
	}
	as, err := auth.New(auth.Config{Enabled: cfg.AuthEnabled(), Tenants: tenants, Issuers: issuers, TokenTTL: cfg.Auth.TokenTTL.D(),
		SigningRotate: cfg.Auth.SigningRotate.D(), FailureLimit: cfg.Auth.FailureLimit, Logger: n.Log,
		Conversations: tenantData{convs, skillKV, skillFiles, &n.kbRef}}, store)
	if err != nil {
		return err
	}
	as.OnRefused(func(reason string) { met.Inc(metrics.AuthMergeRefused, reason) })
	undo = append(undo, func() { as.Close() })
	n.auth = as
	nodeName := ln.Addr().String()
	if cfg.Cluster.Bind != "" {
		nodeName = cfg.Cluster.Bind
		if cfg.Cluster.Advertise != "" {
			nodeName = cfg.Cluster.Advertise
		}
	}
	al, err := audit.New(store, audit.Config{MaxEvents: cfg.Audit.MaxEvents, MaxAge: cfg.Audit.MaxAge.D(), Node: nodeName,
		Logger: n.Log, OnError: func() { met.Inc(metrics.AuditWriteErrors) }})
	if err != nil {
		return err
	}
	n.audit = al
	remoteAddr, remoteAdv := "", ""
	var sec *clusterSecurity
	if cfg.Cluster.Bind != "" {
		if sec, err = n.loadClusterSecurity(); err != nil {
			return err
		}
		n.sec = sec
		if sec.id != nil {
			n.rpcCreds = cluster.NewCredentials(sec.id, cluster.CredentialsConfig{})
		}
		remoteAddr = cfg.Cluster.RPCAddr()
		if cfg.Cluster.Advertise != "" {
			remoteAdv, _, _ = net.SplitHostPort(cfg.Cluster.Advertise)
		}
	}
	var sharedEvery time.Duration // actors' default
	if cfg.Cluster.Profile == "test" {
		sharedEvery = 2 * time.Second
	}
	// In a cluster each node's usage (what it owns, per space) rides the
	// shared state beside auth's records.
	var peers *usage.Peers
	var clRef atomic.Pointer[cluster.Cluster]
	shared := sharedOf(as, cfg)
	if shared != nil {
		peers = usage.NewPeers(nodeName, table, func(id string) bool {
			c := clRef.Load()
			return c != nil && c.Ring().Has(id)
		}, as)
		shared = peers
	}
	// Later features' shared records (a knowledge base's documents, the
	// hand-off queue) ride the same exchange as parts of a mux, each under
	// a tag (Node.sharePart); auth's and usage's records stay untagged.
	if shared != nil {
		n.shared = actors.NewSharedMux(shared)
		n.rtRef = &rtRef
		shared = n.shared
	}
	pub, err := n.sharePart(skillKVTag, skillKV)
	if err != nil {
		return err
	}
	skillKV.SetPublish(pub)
	if pub, err = n.sharePart(skillFilesTag, skillFileSet); err != nil {
		return err
	}
	skillFileSet.SetPublish(pub)
	if err := n.newChannels(chanSpecs, store, as, met); err != nil {
		return err
	}
	oc, around, err := startCache(cfg, store, met, n.Log, &rtRef)
	if err != nil {
		return err
	}
	n.cache = oc
	undo = append(undo, func() { closeCache(oc) })
	// The preset skills (skills.presets), in the order listed, after the
	// flows (a flow waiting for an answer takes the message) and before
	// the JavaScript skills; a guard's output side wraps the model outside
	// the tool loop and the output cache (below). With none, no stage.
	presets, err := buildPresets(cfg, n.Workspace)
	if err != nil {
		return err
	}
	n.presets = &presetStage{}
	n.presets.cur.Store(newPresetSet(presets, n.Log))
	// The workspace's JavaScript skills (skills/*.js), run by the
	// moltbot-skills worker (with none, no worker), and its YAML flows
	// (skills/flows/*.yaml): with neither, both stages idle.
	var before []actors.BeforeModel
	if n.Workspace != "" {
		scfg := skillsConfig(cfg, filepath.Join(n.Workspace, "skills"), &rtRef)
		scfg.KV, scfg.Metrics, scfg.Logger = skillKV, met, n.Log
		scfg.Search = n.kbSearch // context.search, over the knowledge bases opened below
		st := newSkillStage(scfg, skillFiles, n.Log)
		err := st.load()
		if errors.Is(err, skills.ErrNoWorker) {
			st.noWorkerWarning(err) // the node serves without its skills; a reload tries again
			err = withoutNoWorker(err)
		}
		if err != nil {
			return err
		}
		n.skills = st
		undo = append(undo, func() { st.Close() })
		// The intent first (it never answers: flows, skills and the
		// hand-off select on its notes); then the flows: a flow waiting
		// for an answer takes the message; then the presets, then the
		// JavaScript skills.
		before = append(before, st.intents)
		before = append(before, st.flows)
		before = append(before, presetBefore{n.presets})
		before = append(before, st)
		// The tool loop goes first around the model: each of its steps
		// passes the output cache.
		around = append([]actors.AroundModel{toolStage{st}}, around...)
	} else {
		before = []actors.BeforeModel{presetBefore{n.presets}}
	}
	// The knowledge base last before the model: it answers only a miss
	// (or lets the model go on), after every stage that answers itself.
	kbStage, kbMgmt, err := n.startKB(cfg, store, &rtRef)
	if err != nil {
		return err
	}
	undo = append(undo, func() { n.kb.Close() })
	before = append(before, kbStage)
	// A guard's output side outermost: it masks whatever reaches the
	// user, each step of the tool loop and a cached reply alike.
	around = append([]actors.AroundModel{presetAround{n.presets}}, around...)
	// The hand-off first of all: while a person owns the conversation
	// nothing else runs; after the model, it counts the stages' notes.
	ho, err := n.newHandoff(cfg, store, &rtRef)
	if err != nil {
		return err
	}
	n.handoff = ho
	before = append([]actors.BeforeModel{ho.stage}, before...)
	after := []actors.AfterModel{ho.stage}
	n.bots = skills.NewBots(cfg.BotProfiles())
	n.kbStage = kbStage
	kbStage.SetBotsSearch(botsSearch(cfg))
	n.checkBots(cfg)
	rw := cfg.Cluster.RemoteWork
	rt, err := actors.New(actors.Config{Providers: specs, Chain: cfg.Chain(), Store: convs, Metrics: met, Logger: n.Log, Before: before, Around: around, After: after,
		Deliver: n.deliverer(cfg, &rtRef), Bots: n.bots, ModelAllowed: as.ModelAllowed,
		RemoteAddr: remoteAddr, RemoteAdvertise: remoteAdv, Replicas: cfg.Cluster.Replicas, RemoteTLS: n.rpcCreds,
		Shared: shared, SharedInterval: sharedEvery,
		Embeddings:  actors.EmbedChain{Models: cfg.EmbedChain(), Dimensions: cfg.Models.Embeddings.Dimensions},
		RemoteWork:  actors.RemoteWork{Turns: rw.Turns, Conv: rw.Conv, Replicate: rw.Replicate, Fetch: rw.Fetch},
		IdleTimeout: cfg.Conversations.IdleTimeout.D(), MaxContextTokens: cfg.Conversations.MaxContextTokens,
		Summary: actors.SummaryConfig{Off: !cfg.Conversations.Summary.Enabled, Model: cfg.SummaryModel(),
			MaxTokens: cfg.Conversations.Summary.MaxTokens, Prompt: cfg.Conversations.Summary.Prompt},
		MaxQueuedTurns: cfg.Conversations.MaxQueuedTurns, RequestTimeout: cfg.Server.RequestTimeout.D(),
		HealthInterval: cfg.Models.HealthInterval.D(), HedgeAfter: cfg.Models.HedgeAfter.D(),
		StreamContinue: cfg.Models.StreamFailure == configs.StreamContinue,
		Failover: failover.Config{Latency: cfg.Models.Threshold.Latency.D(), ErrorRate: float64(cfg.Models.Threshold.ErrorRate),
			Window: cfg.Models.Window.D(), MinRequests: cfg.Models.MinRequests, Cooldown: cfg.Models.Cooldown.D(), MaxCooldown: cfg.Models.MaxCooldown.D()}})
	if err != nil {
		return err
	}
	rtRef.Store(rt)
	n.kb.Start() // embeds through rt, when the node has an embedding chain
	undo = append(undo, func() { rt.Shutdown(context.Background()) })
	ho.start(context.Background())
	undo = append(undo, ho.close)
	met.Gauge(`moltbot_handoff_conversations{owner="queue"}`, func() float64 { q, _ := ho.index.Counts(); return float64(q) })
	met.Gauge(`moltbot_handoff_conversations{owner="agent"}`, func() float64 { _, a := ho.index.Counts(); return float64(a) })
	if cfg.Cluster.Bind != "" {
		httpAddr := ln.Addr().String()
		if h, p, _ := net.SplitHostPort(httpAddr); (h == "0.0.0.0" || h == "::") && remoteAdv != "" {
			httpAddr = net.JoinHostPort(remoteAdv, p)
		}
		name := ""
		if sec.id != nil {
			name = sec.id.Name
		}
		n.logClusterSecurity(sec)
		cl, err := cluster.Start(cluster.Config{Bind: cfg.Cluster.Bind, Advertise: cfg.Cluster.Advertise, Join: cfg.Cluster.Join, Keys: sec.keys,
			Name: name, RPC: rt.Link().RemoteAddress(), HTTP: httpAddr, Version: moltbot.Version, Profile: cfg.Cluster.Profile, Logger: n.Log,
			Load: func() int { return int(rt.ActiveConversations()) }, Verify: rt.Link().VerifyPeer,
			OnRefuse: func(reason string) { met.Inc(metrics.ClusterRefused, reason) },
			OnVerify: func(m cluster.Node, err error) {
				e := audit.Event{Actor: audit.Actor{Method: "cluster"}, Action: "cluster.member_verified", Target: "node:" + m.ID,
					Remote: m.RPC, Outcome: audit.OK, Detail: "name " + m.Name}
				if err != nil {
					e.Action, e.Outcome, e.Detail = "cluster.member_refused", audit.Denied, fmt.Sprintf("name %s: %v", m.Name, err)
				}
				n.record(e)
			}})
		if err != nil {
			return err
		}
		n.cl = cl
		clRef.Store(cl)
		rt.Link().Attach(cl)
		as.SetPublisher(rt.Link().PublishShared) // keys, tenants and signing keys reach every node, over authenticated RPC
		if cl.ID() != nodeName {
			n.Log.Warn("usage records name this node differently from the cluster", "cluster_id", cl.ID(), "usage_id", nodeName)
		}
		ctx, stop := context.WithCancel(context.Background())
		n.stopPeer, n.peerDone = stop, make(chan struct{})
		go func() {
			defer close(n.peerDone)
			peers.Run(ctx, rt.Link().PublishShared, time.Second, actors.RetentionOf(rt).OwnershipChanged)
		}()
		for _, state := range []string{"alive", "leaving", "dead", "left"} {
			met.Gauge(`moltbot_cluster_members{state="`+state+`"}`, func() float64 {
				k := 0
				for _, m := range cl.Members() {
					if m.State == state {
						k++
					}
				}
				return float64(k)
			})
		}
		if n.rpcCreds != nil {
			met.Gauge("moltbot_cluster_cert_expiry_seconds", func() float64 { return time.Until(n.rpcCreds.Identity().NotAfter).Seconds() })
		}
		n.Log.Info("cluster node started", "id", cl.ID(), "name", name, "rpc", rt.Link().RemoteAddress(), "join", strings.Join(cfg.Cluster.Join, ","),
			"replicas", cfg.Cluster.Replicas, "gossip", gossipState(sec), "tls", n.rpcCreds != nil)
	}
	var trusted []netip.Prefix
	for _, p := range cfg.Server.TrustedProxies {
		pr, _ := configs.ParsePrefix(p) // validated
		trusted = append(trusted, pr)
	}
	// The edges meet the runtime and auth only through the chat and
	// management services.
	quotas := usage.NewQuotas(table, peers, tenantQuotas(as), met)
	n.sweeper = retention.New(retention.Config{Interval: cfg.Retention.Interval.D(), Policy: retentionPolicy(as), Store: convs,
		Runtime: actors.RetentionOf(rt), Changed: actors.ErrChanged, Counter: table, ArchiveDir: n.ArchiveDir(),
		Metrics: met, Logger: n.Log})
	n.sweeper.Start() // at once: its scan counts what each tenant stores
	chatSvc := chat.New(handoffRuntime{rt, ho.index}, as, chat.Config{MaxMessageBytes: int(cfg.Conversations.MaxMessageBytes), MaxImageBytes: int(cfg.Conversations.MaxImageBytes),
		Metrics: met, Logger: n.Log, Quota: quotas, Embedder: actors.EmbeddingsOf(rt), Bots: n.bots})
	var pushed manage.SkillFiles
	if n.skills != nil {
		pushed = skillFilesAdmin{files: skillFiles, st: n.skills}
	}
	n.chatSvc.Store(chatSvc)
	mgmt := manage.New(manage.Config{Auth: as, Runtime: rt, Reload: n.Reload, Retention: n.sweeper.Sweep, Cache: cacheOf(oc), Bots: n.bots, KB: kbMgmt,
		StorageHealth: store.Health, Handoff: ho, Channels: n.chans, SkillFiles: pushed}) // O(1): /readyz must not walk the conversations
	gw := gateway.New(chatSvc, mgmt, gateway.Config{MaxBodyBytes: int64(cfg.Server.MaxBodyBytes),
		BodyReadTimeout: cfg.Server.ReadBodyTimeout.D(), MaxAnonymous: cfg.Server.MaxAnonymousRequests,
		TrustedProxies: trusted, AllowedHosts: cfg.Server.AllowedHosts,
		Metrics: met, Logger: n.Log, Version: moltbot.Version, MetricsOpen: cfg.Auth.MetricsOpen, Audit: al, Channels: n.chans})
	// One client cannot hold every connection (file descriptor) of the node.
	ln = gateway.LimitListener(ln, gateway.ConnLimits{Total: cfg.Server.MaxConnections, PerClient: cfg.Server.MaxConnectionsPerClient,
		Trusted: trusted, OnRefuse: func() { met.Inc(metrics.HTTPConnsRefused) }})
	n.store, n.rt, n.ln = store, rt, ln
	if err := n.startChannels(rt); err != nil {
		return err
	}
	undo = append(undo, n.chans.Close)
	// No ReadTimeout or WriteTimeout: a streamed reply may run for
	// server.request_timeout. Headers are bounded here, bodies by the
	// gateway (server.read_body_timeout), idle keep-alives by IdleTimeout.
	n.srv = &http.Server{Handler: gw, ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(), IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(n.Log.Handler(), slog.LevelWarn)}
	n.served = make(chan error, 1)
	if n.certs != nil {
		n.srv.TLSConfig = n.certs.config()
		go func() { n.served <- n.srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { n.served <- n.srv.Serve(ln) }()
	}
	chain := ""
	for i, r := range cfg.Chain() {
		if i > 0 {
			chain += " -> "
		}
		chain += r.String()
	}
	if !cfg.AuthEnabled() && !loopback(cfg.Server.Host) {
		n.Log.Warn("auth is disabled on a non-loopback address: anyone who reaches it can use it", "host", cfg.Server.Host)
	}
	if cfg.AuthEnabled() && !loopback(cfg.Server.Host) && n.certs == nil {
		n.Log.Warn("credentials reach this node in clear text unless a TLS proxy is in front: set server.tls", "host", cfg.Server.Host)
	}
	if cfg.AuthEnabled() && !n.hasOperatorKey() {
		n.Log.Warn("auth is on and no operator key exists: create one with `moltbot init --workspace DIR` while the node is stopped (it keeps an existing moltbot.yaml)", "data", n.DataDir())
	}
	n.Log.Info("moltbot started", "version", moltbot.Version, "addr", n.URL(), "config", cfg.File, "auth", cfg.AuthEnabled(),
		"data", n.DataDir(), "chain", chain, "providers", len(specs))
	return nil
}

// Addr is the address the node listens on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// URL is the node's base URL (https:// with server.tls).
func (n *Node) URL() string {
	if n.certs != nil {
		return "https://" + n.Addr()
	}
	return "http://" + n.Addr()
}

// Done yields the HTTP server's exit error (http.ErrServerClosed after Shutdown).
func (n *Node) Done() <-chan error { return n.served }

// Shutdown stops accepting, lets in-flight turns finish for up to
// server.shutdown_timeout, cancels what remains (user turns stay stored),
// stops the actors and closes storage. It is idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.Log.Info("shutting down: no new requests; waiting for in-flight turns")
		wait, cancel := context.WithTimeout(ctx, n.Config.Server.ShutdownTimeout.D())
		err := n.srv.Shutdown(wait)
		cancel()
		if err != nil {
			n.Log.Warn("in-flight turns did not finish in time; canceling them", "timeout", n.Config.Server.ShutdownTimeout.D())
		}
		if n.sweeper != nil {
			n.sweeper.Close()
		}
		if n.stopPeer != nil {
			n.stopPeer()
			<-n.peerDone
		}
		if n.cl != nil {
			// Leave: the ring drops this node, its conversations go to their
			// new owners and its stored copies to their new holders.
			n.Log.Info("leaving the cluster: handing conversations off")
			n.cl.Leave(2 * time.Second)
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			n.rt.Link().WaitHandoff(hctx)
			cancel()
		}
		n.chans.Close()   // its turns end (their messages stay in the inbox)
		n.handoff.close() // its timer's turns end before the runtime
		// Ends every remaining turn; handlers then answer and return.
		n.rt.Shutdown(ctx)
		if n.cl != nil {
			n.cl.Shutdown()
		}
		if err != nil {
			grace, cancel := context.WithTimeout(context.Background(), time.Second)
			if n.srv.Shutdown(grace) != nil {
				n.srv.Close()
			}
			cancel()
		}
		if n.auth != nil {
			n.auth.Close()
		}
		if n.skills != nil {
			n.skills.Close()
		}
		if n.kb != nil {
			n.kb.Close() // its embedder writes vectors to pebble
		}
		if n.cache != nil {
			n.cache.Close() // its last writes to pebble go before the store closes
		}
		n.stopErr = n.store.Close()
		n.Log.Info("stopped")
	})
	return n.stopErr
}

func loopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// ensureDir makes dir private (0700), creating it if needed; an existing
// directory that others could enter is tightened. It reports whether it
// changed an existing directory.
func ensureDir(dir string) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create %s: %w", dir, err)
	}
	return tightenMode(dir, 0o700)
}

// tightenMode clears every permission bit of path beyond want (a missing
// path is no change). It reports whether it changed anything.
func tightenMode(path string, want os.FileMode) (bool, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if perm := st.Mode().Perm(); perm&^want != 0 {
		if err := os.Chmod(path, perm&want); err != nil {
			return false, fmt.Errorf("make %s private: %w", path, err)
		}
		return true, nil
	}
	return false, nil
}

// privateWorkspace makes the workspace private at start: its directories
// 0700, moltbot.yaml (it may hold secrets), admin.key (the operator's
// key) and skills/intents.yaml (moltbot init writes it) 0600. Whatever was wider is tightened and logged. The data
// directory is storage.Open's (0700, files 0600, Pebble's included).
func (n *Node) privateWorkspace() error {
	if n.Workspace == "" {
		return nil
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{n.Workspace, 0o700}, {filepath.Join(n.Workspace, "skills"), 0o700}, {filepath.Join(n.Workspace, "archive"), 0o700},
		{filepath.Join(n.Workspace, "moltbot.yaml"), 0o600}, {filepath.Join(n.Workspace, adminKeyFile), 0o600},
		{filepath.Join(n.Workspace, intent.File), 0o600},
	} {
		changed, err := tightenMode(f.path, f.mode)
		if err != nil {
			return err
		}
		if changed {
			n.Log.Warn("others could read this; made it private", "path", f.path, "mode", fmt.Sprintf("%#o", f.mode))
		}
	}
	return nil
}

// newLogger builds the process logger from config.
func newLogger(w io.Writer, cfg *configs.Config) (*slog.Logger, error) {
	return logging.New(w, cfg.Log.Level, cfg.Log.Format)
}

// hasOperatorKey reports whether a usable admin key of the default tenant exists.
func (n *Node) hasOperatorKey() bool {
	keys, err := n.auth.ListKeys(auth.DefaultTenant)
	if err != nil {
		return true // unknown: do not warn
	}
	for _, k := range keys {
		if k.Scope == auth.ScopeAdmin && (k.State == "active" || k.State == "expiring") {
			return true
		}
	}
	return false
}

// redactURL is a provider's URL as logs and status may show it: without
// the password of any user info in it.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
