// Package configs holds moltbot's configuration: the YAML schema, its defaults,
// ${VAR} expansion, validation whose every error names the key and the line,
// and the embedded presets (default.yaml for an edge device with Ollama,
// demo.yaml whose fallback chain ends with the built-in simulator).
//
// Read a file with Load, a preset with LoadPreset; both return a config with
// defaults filled and validated. After changing fields (flags), call Validate.
package configs

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/audit"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/cache"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/retention"
	"github.com/moltbot/moltbot/skills/builtin"
	"github.com/moltbot/moltbot/storage"
	"gopkg.in/yaml.v3"
)

// Config is one node's configuration.
type Config struct {
	Server        ServerConfig        `yaml:"server"`
	Log           LogConfig           `yaml:"log"`
	Storage       StorageConfig       `yaml:"storage"`
	Providers     []ProviderConfig    `yaml:"providers"`
	Models        ModelsConfig        `yaml:"models"`
	Conversations ConversationsConfig `yaml:"conversations"`
	Cluster       ClusterConfig       `yaml:"cluster"`
	Auth          AuthConfig          `yaml:"auth"`
	Tenants       []TenantConfig      `yaml:"tenants"`
	Retention     RetentionConfig     `yaml:"retention"`
	Audit         AuditConfig         `yaml:"audit"`
	Cache         CacheConfig         `yaml:"cache"`
	Skills        SkillsConfig        `yaml:"skills"`
	// Bots is bots: (bots.go; BotProfiles returns them resolved).
	Bots []BotConfig `yaml:"bots"`
	// HandoffSection is handoff: (handoff.go; Handoff returns it as
	// skills/handoff takes it).
	HandoffSection HandoffConfig `yaml:"handoff"`
	// Channels is channels: (channels.go): the chat platforms and signed
	// webhooks the bots are reached through.
	Channels []ChannelConfig `yaml:"channels"`

	// File is where the config came from ("moltbot.yaml", "preset:demo").
	File string `yaml:"-"`
	// lines maps dotted keys ("models.primary", "providers[1].url") to their line.
	lines map[string]int
}

// ServerConfig is the HTTP listener.
type ServerConfig struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// MaxBodyBytes caps every request body; larger bodies get 413.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// ReadHeaderTimeout bounds slow clients sending headers.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// RequestTimeout bounds one model turn end to end.
	RequestTimeout Duration `yaml:"request_timeout"`
	// ShutdownTimeout is how long SIGTERM waits for in-flight turns.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// ReadBodyTimeout bounds reading one request body, from the end of its
	// headers to its last byte; a slower client gets 408 and is cut off.
	ReadBodyTimeout Duration `yaml:"read_body_timeout"`
	// MaxAnonymousRequests bounds the requests in flight without a
	// credential (the token endpoint, health probes, open metrics) from one
	// client address when auth is on; past it, 429.
	MaxAnonymousRequests int `yaml:"max_anonymous_requests"`
	// MaxConnections bounds the connections the API port holds at once;
	// MaxConnectionsPerClient those of one client address (an IPv6 /64;
	// trusted proxies are not bound by it). Past either, a new connection
	// is closed at once.
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// TrustedProxies are the addresses (IPs or CIDRs) whose
	// X-Forwarded-For is believed; empty: the header is ignored.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`
	// AllowedHosts are host names, besides IP addresses and localhost, that
	// a node without auth answers to (DNS rebinding guard). ".example.com"
	// allows the domain and its subdomains.
	AllowedHosts []string `yaml:"allowed_hosts,omitempty"`
	// TLS serves HTTPS with this certificate (reloaded on SIGHUP).
	TLS TLSConfig `yaml:"tls"`
	// MemoryLimit is a soft limit on the Go runtime's memory (heap,
	// stacks, the runtime's own; not the binary's pages): the garbage
	// collector runs as often as it must to stay under it, and returns
	// freed memory to the system at once rather than over minutes.
	// 0: none (or the GOMEMLIMIT environment variable's).
	MemoryLimit ByteSize `yaml:"memory_limit"`
}

// TLSConfig is the API port's certificate. Both files or neither; relative
// paths are relative to the workspace.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether the node serves HTTPS.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// LogConfig is the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// StorageConfig is the node's Pebble database.
type StorageConfig struct {
	// Path is the data directory, relative to the workspace unless absolute.
	Path         string   `yaml:"path"`
	CacheSize    ByteSize `yaml:"cache_size"`
	MemtableSize ByteSize `yaml:"memtable_size"`
}

// ProviderConfig is one model server.
type ProviderConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// URL is the server's base: http://127.0.0.1:11434 (ollama),
	// https://api.openai.com/v1 (openai), https://api.anthropic.com (anthropic).
	URL     string   `yaml:"url"`
	APIKeys []Secret `yaml:"api_keys"`
	// Models lists the models this provider serves, for /v1/models; optional.
	// A bare model name in the chain (models.primary: llama3.2) is the
	// provider's that lists it here.
	Models []string `yaml:"models"`
	// Capabilities declares what models can do, by model name: a list of
	// tools, vision, json_schema, embeddings (e.g. llava: [vision]). A
	// model declared here is held to it; others are asked of the server
	// (Ollama's /api/show) or presumed able. Failover skips a model that
	// lacks what a request needs.
	Capabilities map[string][]string `yaml:"capabilities"`
	// Timeout bounds one call to the provider, first byte to last.
	Timeout Duration `yaml:"timeout"`
	// MaxInFlight caps concurrent calls; MaxQueue caps calls waiting for a slot.
	// Past both, the provider answers busy at once.
	MaxInFlight int `yaml:"max_in_flight"`
	MaxQueue    int `yaml:"max_queue"`
	// Sim configures the in-process simulator (type sim).
	Sim SimConfig `yaml:"sim"`
	// KeepAlive (type ollama) is how long Ollama keeps a model in memory
	// after a call or a load: sent with each (-1: for good); unset: the
	// server's own default (OLLAMA_KEEP_ALIVE, 5 minutes).
	KeepAlive KeepAlive `yaml:"keep_alive"`
	// OAuth gets the provider's bearer token by the client credentials grant.
	OAuth *ProviderOAuth `yaml:"oauth"`
}

// ProviderOAuth is OAuth 2.0 client credentials to a provider.
type ProviderOAuth struct {
	TokenURL     string   `yaml:"token_url"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret Secret   `yaml:"client_secret"`
	Scopes       []string `yaml:"scopes"`
}

// SimConfig shapes the simulated model's timing and text.
type SimConfig struct {
	TTFT   Duration `yaml:"ttft"`
	ITL    Duration `yaml:"itl"`
	Tokens int      `yaml:"tokens"`
	Seed   int64    `yaml:"seed"`
}

// ModelsConfig is the model chain: primary first, then the fallbacks in order.
type ModelsConfig struct {
	Primary   string          `yaml:"primary"`
	Fallback  []string        `yaml:"fallback"`
	Threshold ThresholdConfig `yaml:"threshold"`
	// Window is the sliding window of the breakers' error rate and latency.
	Window Duration `yaml:"window"`
	// MinRequests is the fewest samples a breaker decides on.
	MinRequests int `yaml:"min_requests"`
	// Cooldown is how long an open breaker waits before its probe; it
	// doubles on each failed probe, up to MaxCooldown.
	Cooldown    Duration `yaml:"cooldown"`
	MaxCooldown Duration `yaml:"max_cooldown"`
	// StreamFailure is what happens when a model fails after tokens were
	// streamed: "terminate" ends the stream with an error event, "continue"
	// asks the next model to continue from the partial text.
	StreamFailure string `yaml:"stream_failure"`
	// HedgeAfter > 0 also asks the next model when the first has produced no
	// token by then; the first to produce one wins.
	HedgeAfter Duration `yaml:"hedge_after"`
	// HealthInterval is how often each provider is probed.
	HealthInterval Duration `yaml:"health_interval"`
	// Embeddings is the embedding chain (embeddings.go); none by default.
	Embeddings EmbeddingsConfig `yaml:"embeddings,omitempty"`
}

// Stream failure policies.
const (
	StreamTerminate = "terminate"
	StreamContinue  = "continue"
)

// ThresholdConfig says when a model counts as failing.
type ThresholdConfig struct {
	Latency   Duration `yaml:"latency"`
	ErrorRate Percent  `yaml:"error_rate"`
}

// ConversationsConfig shapes conversation actors.
type ConversationsConfig struct {
	// IdleTimeout passivates a conversation actor after this long without a message.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxContextTokens bounds what is sent to the model; the oldest turns
	// are summarized (Summary) or dropped.
	MaxContextTokens int `yaml:"max_context_tokens"`
	// Summary: what no longer fits MaxContextTokens is summarized by a
	// model instead of dropped (summary.go).
	Summary SummaryConfig `yaml:"summary"`
	// MaxQueuedTurns bounds turns waiting behind the running one; past it, busy.
	MaxQueuedTurns int `yaml:"max_queued_turns"`
	// MaxMessageBytes bounds one message's content.
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	// MaxImageBytes bounds one image of a message (decoded); the request
	// body limit (server.max_body_bytes) bounds them too.
	MaxImageBytes ByteSize `yaml:"max_image_bytes"`
}

// AuthConfig is inbound authentication.
type AuthConfig struct {
	// Enabled requires a credential on every API call. Unset: on when
	// server.host is not a loopback address.
	Enabled *bool `yaml:"enabled"`
	// MetricsOpen serves /metrics without a credential when auth is on
	// (default false: the operator's, as it names tenants). Without auth
	// /metrics is open like everything else.
	MetricsOpen bool `yaml:"metrics_open"`
	// TokenTTL is the lifetime of tokens from /oauth/token.
	TokenTTL Duration `yaml:"token_ttl"`
	// SigningRotate is how often moltbot's token signing key changes.
	SigningRotate Duration `yaml:"signing_rotate"`
	// FailureLimit failed authentications a minute from one address before 429.
	FailureLimit int         `yaml:"failure_limit"`
	OAuth        OAuthConfig `yaml:"oauth"`
}

// AuditConfig bounds the node's audit log of admin actions (keys, tenants,
// reloads, cluster changes): the oldest events go first.
type AuditConfig struct {
	// MaxEvents are kept at most.
	MaxEvents int `yaml:"max_events"`
	// MaxAge: older events are deleted.
	MaxAge Duration `yaml:"max_age"`
}

// OAuthConfig lists trusted issuers of JWT access tokens.
type OAuthConfig struct {
	Issuers []IssuerConfig `yaml:"issuers"`
}

// IssuerConfig is one trusted issuer.
type IssuerConfig struct {
	Issuer  string `yaml:"issuer"`
	JWKSURL string `yaml:"jwks_url"`
	// Audience is the "aud" a token must carry. Required: without it a
	// token the issuer made for any other service would be accepted;
	// AudienceAny ("any") says so explicitly.
	Audience    string `yaml:"audience"`
	TenantClaim string `yaml:"tenant_claim"`
}

// AudienceAny as an issuer's audience accepts tokens for any audience.
const AudienceAny = "any"

// TenantConfig is a tenant defined in the file.
type TenantConfig struct {
	ID          string       `yaml:"id"`
	Name        string       `yaml:"name"`
	Models      []string     `yaml:"models"`
	Limits      LimitsConfig `yaml:"limits"`
	RotateEvery Duration     `yaml:"rotate_every"`
	// Retention is the tenant's retention policy (none when empty).
	Retention TenantRetentionConfig `yaml:"retention"`
}

// LimitsConfig are per-minute rates and the tenant's quotas; 0: unlimited.
type LimitsConfig struct {
	RequestsPerMinute int `yaml:"requests_per_minute"`
	TokensPerMinute   int `yaml:"tokens_per_minute"`
	// MaxConversations the tenant may keep; past it, creating one is 429.
	MaxConversations int64 `yaml:"max_conversations"`
	// MaxStoredBytes the tenant's conversations may take; past it,
	// creates and turns are 429.
	MaxStoredBytes ByteSize `yaml:"max_stored_bytes"`
}

// TenantRetentionConfig is a tenant's retention policy (auth.Retention);
// zero fields keep everything.
type TenantRetentionConfig struct {
	// Days deletes a conversation idle (by its last change) for longer.
	Days int `yaml:"days"`
	// Messages trims a conversation to its newest messages (the system
	// prompt stays).
	Messages int `yaml:"messages"`
	// Archive appends what goes to WORKSPACE/archive/<tenant>/ first.
	Archive bool `yaml:"archive"`
}

// SkillsConfig is the JavaScript skills of the workspace's skills/
// directory (package skills), run by the moltbot-skills worker process.
type SkillsConfig struct {
	// Worker is the moltbot-skills binary; empty: the one next to the
	// moltbot binary (make build puts both in bin/).
	Worker string `yaml:"worker"`
	// Timeout bounds a skill's run, its model calls included (default 20s).
	Timeout Duration `yaml:"timeout"`
	// Tools bounds the server-side tool loop (configs/skills.go).
	Tools ToolsConfig `yaml:"tools"`
	// MCP are MCP servers whose tools are offered to the model, as the
	// JavaScript skills that say tool: are (configs/skills.go).
	MCP []MCPServerConfig `yaml:"mcp"`
	// Workers is how many worker processes may run skills at once, each
	// one run at a time, started as turns need them (default 2).
	Workers int `yaml:"workers"`
	// TenantWorkers bounds the workers one tenant's skill runs hold at
	// once (0, the default: all): on a node several tenants share,
	// workers-1 keeps one tenant's long or hostile skills from holding
	// every worker while another's wait.
	TenantWorkers int `yaml:"tenant_workers"`
	// Memory is each worker's memory budget (default 256MiB): its data
	// segment is capped there (RLIMIT_DATA) and its Go heap's soft limit
	// set below it; a skill that allocates past it kills its worker,
	// reported as over its budget, and the node keeps serving.
	Memory ByteSize `yaml:"memory"`
	// Models maps a skill's callModel alias to a model the router knows
	// (provider/model, or a name a provider lists), for every skill: it
	// takes precedence over the skill's own models: map. A model it
	// names that the router does not know is a load error naming it.
	Models map[string]string `yaml:"models"`
	// Presets are the preset skills, in Go (package skills/builtin): each
	// a stage of every turn, in the order listed, after the flows and
	// before the JavaScript skills. None: nothing on the turn's path.
	Presets []PresetConfig `yaml:"presets"`
	// KB is the knowledge-base stage (configs/kb.go).
	KB KBConfig `yaml:"kb"`
}

// PresetConfig is a preset skill: {name: pii, use: guard, with: {...}}.
type PresetConfig struct {
	// Name names it in logs, notes and moltbot skills list (letters,
	// digits, - and _; unique).
	Name string `yaml:"name"`
	// Use is its kind: faq, guard, tools, sentiment, collect, code-gen,
	// code-explain, summarize, translate (builtin.Uses).
	Use string `yaml:"use"`
	// With are its options: the kind's options struct in skills/builtin
	// (GuardOptions, FAQOptions, ...), decoded once Use is known, with
	// the same errors by key and line as the rest of the file.
	With PresetWith `yaml:"with"`
}

// PresetWith holds a preset's with: (its YAML until Use is known, then its
// decoded options).
type PresetWith struct {
	node *yaml.Node
	// Opts is the value builtin.Options(Use) gave, decoded from with:
	// (its defaults when with: is not written); nil until decoded.
	Opts any
}

func (w *PresetWith) keep(n *yaml.Node) { w.node = n }

// MarshalYAML writes the options (Redacted).
func (w PresetWith) MarshalYAML() (any, error) { return w.Opts, nil }

// CacheConfig is the output cache (package cache): without a type, none.
// The seed's block, `cache: {type: redis, host, port, ttl: 3600}`, is
// taken as written (a key without a value keeps its default).
type CacheConfig struct {
	// Type is memory (an LRU in the process), pebble (the node's
	// database, a memory tier in front) or redis (shared by a cluster, a
	// memory tier in front); empty: no cache.
	Type string `yaml:"type"`
	// Host, Port, Password, DB are the Redis server's (type redis).
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	Password Secret `yaml:"password"`
	DB       int    `yaml:"db"`
	// Secret (type redis), shared by the cluster's nodes, authenticates
	// the entries they write (HMAC-SHA256): whoever else can write to the
	// database cannot make a node serve a reply of theirs. Unset: Redis
	// is trusted, and the node says so at start.
	Secret Secret `yaml:"secret"`
	// TTL is how long a reply is served: seconds (3600) or a duration (1h).
	TTL Seconds `yaml:"ttl"`
	// MaxBytes bounds the memory tier; MaxEntryBytes one reply (a larger
	// one is not stored).
	MaxBytes      ByteSize `yaml:"max_bytes"`
	MaxEntryBytes ByteSize `yaml:"max_entry_bytes"`
	// Semantic is the semantic tier; off by default.
	Semantic CacheSemanticConfig `yaml:"semantic"`
}

// CacheSemanticConfig is the output cache's semantic tier (package cache,
// semantic.go): a request that misses is answered by a reply stored for
// the same context whose last user message is close in meaning (cosine
// similarity of their embeddings through models.embeddings at least
// Threshold). Off by default: a wrong hit answers another question, and
// every eligible miss costs an embedding call.
type CacheSemanticConfig struct {
	Enabled bool `yaml:"enabled"`
	// Threshold is the least cosine similarity of a hit (0 < t <= 1).
	Threshold float64 `yaml:"threshold"`
	// MaxEntries bounds the index (in memory, every tenant together;
	// least recently used first out).
	MaxEntries int `yaml:"max_entries"`
	// Timeout bounds an embedding: a slower one bypasses the tier.
	Timeout Duration `yaml:"timeout"`
}

// RetentionConfig is the retention sweep (package retention).
type RetentionConfig struct {
	// Interval between sweeps of this node's conversations.
	Interval Duration `yaml:"interval"`
}

// AuthEnabled resolves auth.enabled: explicit, or on beyond loopback.
func (c *Config) AuthEnabled() bool {
	if c.Auth.Enabled != nil {
		return *c.Auth.Enabled
	}
	ip := net.ParseIP(c.Server.Host)
	return !(c.Server.Host == "localhost" || ip != nil && ip.IsLoopback())
}

// ClusterConfig is gossip membership. Without bind the node runs alone and
// starts no cluster machinery.
type ClusterConfig struct {
	// Bind is the gossip address host:port (UDP and TCP).
	Bind string `yaml:"bind"`
	// Advertise is the address other nodes reach this one at (default: bind).
	Advertise string `yaml:"advertise"`
	// Join lists seeds host:port; unreachable seeds are retried with backoff.
	Join []string `yaml:"join"`
	// Replicas is how many nodes hold each conversation, owner included.
	Replicas int `yaml:"replicas"`
	// KeyFile holds the gossip keys (16, 24 or 32 bytes, base64 or hex, one
	// per line; the first encrypts, all decrypt); every node needs them.
	// Relative to the workspace. Default: cluster/gossip.key when it exists.
	KeyFile string `yaml:"key_file"`
	// TLS is the node's certificate for RPC between nodes (mutual TLS 1.3,
	// issued by the cluster CA). Default: cluster/{ca.crt,node.crt,node.key}
	// in the workspace when they exist.
	TLS ClusterTLSConfig `yaml:"tls"`
	// Insecure lets a node bound beyond loopback run without a gossip key
	// and certificates: anyone who reaches its ports is a member.
	Insecure bool `yaml:"insecure"`
	// RPC is the address of actor messages between nodes (default: the bind
	// host, bind port + 1).
	RPC string `yaml:"rpc"`
	// Profile tunes failure detection: lan (default), local, or test.
	Profile string `yaml:"profile"`
	// RemoteWork bounds the work other nodes may start on this one at
	// once, per kind; past a bound the sender is answered busy at once.
	RemoteWork RemoteWorkConfig `yaml:"remote_work"`
}

// RemoteWorkConfig is actors.RemoteWork: what other nodes may run here at
// once (defaults: actors.DefaultRemoteWork).
type RemoteWorkConfig struct {
	// Turns forwarded here, each holding a goroutine for the turn.
	Turns int `yaml:"turns"`
	// Conv are creates, gets and deletes of conversations.
	Conv int `yaml:"conv"`
	// Replicate are snapshots being stored (a synced write each).
	Replicate int `yaml:"replicate"`
	// Fetch are copies asked for by a new owner.
	Fetch int `yaml:"fetch"`
}

// ClusterTLSConfig names a node's cluster TLS files, relative to the
// workspace unless absolute.
type ClusterTLSConfig struct {
	// CAFile is the cluster CA bundle (old and new CA during a rotation).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this node's certificate and private key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Loopback reports whether every address the cluster listens on or
// advertises is a loopback address (127.0.0.0/8, ::1, localhost).
func (c *ClusterConfig) Loopback() bool {
	for _, a := range []string{c.Bind, c.Advertise, c.RPCAddr()} {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		if err != nil || !IsLoopback(host) {
			return false
		}
	}
	return true
}

// IsLoopback reports whether host is a loopback address or localhost.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RPCAddr returns the cluster RPC address (rpc, or bind's port + 1).
func (c *ClusterConfig) RPCAddr() string {
	if c.RPC != "" {
		return c.RPC
	}
	host, port, err := net.SplitHostPort(c.Bind)
	if err != nil {
		return ""
	}
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}

//go:embed presets/*.yaml
var presets embed.FS

// Presets lists the embedded preset names.
func Presets() []string {
	ents, _ := presets.ReadDir("presets")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return out
}

// PresetYAML returns the commented YAML text of a preset.
func PresetYAML(name string) ([]byte, error) {
	b, err := presets.ReadFile("presets/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("configs: no preset %q (have %s)", name, strings.Join(Presets(), ", "))
	}
	return b, nil
}

// LoadPreset parses an embedded preset with the process environment.
func LoadPreset(name string) (*Config, error) {
	b, err := PresetYAML(name)
	if err != nil {
		return nil, err
	}
	return Parse("preset:"+name, b, os.LookupEnv)
}

// Load reads and parses a config file with the process environment.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configs: %w", err)
	}
	return Parse(path, b, os.LookupEnv)
}

// Parse decodes YAML, expands ${VAR} with lookup, fills defaults and validates.
// Every error names file, line and key; several errors are joined.
func Parse(file string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the config is empty", file)
		}
		return nil, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: only one YAML document is allowed", file, extra.Line)
	}
	cfg := &Config{File: file}
	d := &decoder{file: file, lookup: lookup, lines: map[string]int{}}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	d.decode(doc, reflect.ValueOf(cfg).Elem(), "")
	d.decodePresets(cfg)
	d.decodeChannels(cfg)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	cfg.lines = d.lines
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Default returns the embedded default preset, or panics: it is tested.
func Default() *Config {
	c, err := Parse("preset:default", mustPreset("default"), func(string) (string, bool) { return "", false })
	if err != nil {
		panic(err)
	}
	return c
}

func mustPreset(name string) []byte {
	b, err := PresetYAML(name)
	if err != nil {
		panic(err)
	}
	return b
}

// EnsureDefaults fills zero values with the edge defaults. Each package
// owns its defaults (actors.DefaultConfig, storage.DefaultOptions,
// auth.DefaultConfig, ...); only the HTTP edge's, which the gateway does
// not export yet, and the workspace layout are written here. A key written
// as 0 keeps 0 where 0 is a setting of its own (server.port, max_queue,
// max_queued_turns, sim timings); elsewhere 0 means the default.
func (c *Config) EnsureDefaults() {
	written := func(key string) bool { return c.lines[key] > 0 }
	// The JavaScript skills' workers (package skills).
	if c.Skills.Workers == 0 {
		c.Skills.Workers = 2
	}
	if c.Skills.Memory == 0 {
		c.Skills.Memory = 256 << 20
	}
	// The HTTP edge (gateway).
	if c.Server.Host == "" {
		c.Server.Host = "127.0.0.1"
	}
	if c.Server.Port == 0 && !written("server.port") {
		c.Server.Port = 3000
	}
	if c.Server.MaxBodyBytes == 0 {
		c.Server.MaxBodyBytes = 1 << 20
	}
	if c.Server.ReadHeaderTimeout == 0 {
		c.Server.ReadHeaderTimeout = Duration(10e9)
	}
	if c.Server.ShutdownTimeout == 0 {
		c.Server.ShutdownTimeout = Duration(8e9)
	}
	if c.Server.ReadBodyTimeout == 0 {
		c.Server.ReadBodyTimeout = Duration(30e9)
	}
	if c.Server.MaxAnonymousRequests == 0 {
		c.Server.MaxAnonymousRequests = 16
	}
	if c.Server.MaxConnections == 0 {
		c.Server.MaxConnections = 4096
	}
	if c.Server.MaxConnectionsPerClient == 0 {
		c.Server.MaxConnectionsPerClient = 1024
	}
	if c.Conversations.MaxMessageBytes == 0 {
		c.Conversations.MaxMessageBytes = 256 << 10
	}
	if c.Conversations.MaxImageBytes == 0 {
		c.Conversations.MaxImageBytes = 5 << 20
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Storage.Path == "" {
		c.Storage.Path = "data"
	}

	sd := storage.DefaultOptions()
	if c.Storage.CacheSize == 0 {
		c.Storage.CacheSize = ByteSize(sd.CacheSize)
	}
	if c.Storage.MemtableSize == 0 {
		c.Storage.MemtableSize = ByteSize(sd.MemtableSize)
	}

	ad, pd, simd := actors.DefaultConfig(), actors.DefaultProviderSpec(), sim.DefaultProviderOptions()
	if c.Server.RequestTimeout == 0 {
		c.Server.RequestTimeout = Duration(ad.RequestTimeout)
	}
	for i := range c.Providers {
		p := &c.Providers[i]
		at := func(k string) string { return fmt.Sprintf("providers[%d].%s", i, k) }
		if p.Timeout == 0 {
			p.Timeout = Duration(pd.Timeout)
		}
		if p.MaxInFlight == 0 {
			p.MaxInFlight = pd.MaxInFlight
		}
		if p.MaxQueue == 0 && !written(at("max_queue")) {
			p.MaxQueue = pd.MaxQueue
		}
		if p.Type == sim.TypeName {
			if p.Sim.TTFT == 0 && !written(at("sim.ttft")) {
				p.Sim.TTFT = Duration(simd.TTFT)
			}
			if p.Sim.ITL == 0 && !written(at("sim.itl")) {
				p.Sim.ITL = Duration(simd.ITL)
			}
			if p.Sim.Tokens == 0 {
				p.Sim.Tokens = simd.Tokens
			}
			if p.Sim.Seed == 0 {
				p.Sim.Seed = simd.Seed
			}
		}
	}
	fd := ad.Failover
	if c.Models.Threshold.Latency == 0 {
		c.Models.Threshold.Latency = Duration(fd.Latency)
	}
	if c.Models.Threshold.ErrorRate == 0 {
		c.Models.Threshold.ErrorRate = Percent(fd.ErrorRate)
	}
	if c.Models.Window == 0 {
		c.Models.Window = Duration(fd.Window)
	}
	if c.Models.MinRequests == 0 {
		c.Models.MinRequests = fd.MinRequests
	}
	if c.Models.Cooldown == 0 {
		c.Models.Cooldown = Duration(fd.Cooldown)
	}
	if c.Models.MaxCooldown == 0 {
		c.Models.MaxCooldown = Duration(fd.MaxCooldown)
	}
	if c.Models.StreamFailure == "" {
		c.Models.StreamFailure = StreamTerminate
	}
	if c.Models.HealthInterval == 0 {
		c.Models.HealthInterval = Duration(ad.HealthInterval)
	}
	if c.Conversations.IdleTimeout == 0 {
		c.Conversations.IdleTimeout = Duration(ad.IdleTimeout)
	}
	if c.Conversations.MaxContextTokens == 0 {
		c.Conversations.MaxContextTokens = ad.MaxContextTokens
	}
	c.summaryDefaults(written)
	if c.Conversations.MaxQueuedTurns == 0 && !written("conversations.max_queued_turns") {
		c.Conversations.MaxQueuedTurns = ad.MaxQueuedTurns
	}
	if c.Cluster.Replicas == 0 {
		c.Cluster.Replicas = ad.Replicas
	}
	for _, w := range []struct {
		key string
		v   *int
		d   int
	}{{"turns", &c.Cluster.RemoteWork.Turns, ad.RemoteWork.Turns}, {"conv", &c.Cluster.RemoteWork.Conv, ad.RemoteWork.Conv},
		{"replicate", &c.Cluster.RemoteWork.Replicate, ad.RemoteWork.Replicate}, {"fetch", &c.Cluster.RemoteWork.Fetch, ad.RemoteWork.Fetch}} {
		if *w.v == 0 && !written("cluster.remote_work."+w.key) {
			*w.v = w.d
		}
	}
	if c.Cluster.Profile == "" {
		c.Cluster.Profile = cluster.DefaultConfig().Profile
	}

	if c.Retention.Interval == 0 {
		c.Retention.Interval = Duration(retention.DefaultConfig().Interval)
	}
	aud := audit.DefaultConfig()
	if c.Audit.MaxEvents == 0 {
		c.Audit.MaxEvents = aud.MaxEvents
	}
	if c.Audit.MaxAge == 0 {
		c.Audit.MaxAge = Duration(aud.MaxAge)
	}
	cd := cache.DefaultConfig()
	if c.Cache.Host == "" {
		c.Cache.Host = cd.Host
	}
	if c.Cache.Port == 0 {
		c.Cache.Port = cd.Port
	}
	if c.Cache.TTL == 0 {
		c.Cache.TTL = Seconds(cd.TTL)
	}
	if c.Cache.MaxBytes == 0 {
		c.Cache.MaxBytes = ByteSize(cd.MaxBytes)
	}
	if c.Cache.MaxEntryBytes == 0 {
		c.Cache.MaxEntryBytes = ByteSize(cd.MaxEntryBytes)
	}
	if cs := &c.Cache.Semantic; cs.Threshold == 0 {
		cs.Threshold = cache.DefaultSemanticThreshold
	}
	if cs := &c.Cache.Semantic; cs.MaxEntries == 0 {
		cs.MaxEntries = cache.DefaultSemanticMaxEntries
	}
	if cs := &c.Cache.Semantic; cs.Timeout == 0 {
		cs.Timeout = Duration(cache.DefaultSemanticTimeout)
	}
	authd := auth.DefaultConfig()
	if c.Auth.TokenTTL == 0 {
		c.Auth.TokenTTL = Duration(authd.TokenTTL)
	}
	if c.Auth.SigningRotate == 0 {
		c.Auth.SigningRotate = Duration(authd.SigningRotate)
	}
	if c.Auth.FailureLimit == 0 {
		c.Auth.FailureLimit = authd.FailureLimit
	}
}

// Line returns the line of a dotted key in the source, or 0.
func (c *Config) Line(path string) int { return c.lines[path] }

func (c *Config) errAt(path, format string, args ...any) error {
	return &FieldError{File: c.File, Line: c.lineOf(path), Path: path, Msg: fmt.Sprintf(format, args...)}
}

// lineOf is the line of path, or of its nearest written ancestor when the key
// itself is missing (a required key is reported where its parent is).
func (c *Config) lineOf(path string) int {
	for path != "" {
		if l := c.lines[path]; l > 0 {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Provider returns the provider named name, or nil.
func (c *Config) Provider(name string) *ProviderConfig {
	for i := range c.Providers {
		if c.Providers[i].Name == name {
			return &c.Providers[i]
		}
	}
	return nil
}

// Chain returns primary then fallbacks, parsed, bare names resolved
// (ResolveModel).
func (c *Config) Chain() []moltbot.ModelRef {
	var out []moltbot.ModelRef
	for _, s := range append([]string{c.Models.Primary}, c.Models.Fallback...) {
		if r, err := c.ResolveModel(s); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// ResolveModel parses a model of the chain: "provider/model", or a bare
// name, as the seed writes them (primary: "anthropic-pro-200"): the model
// of the one provider that lists it in its models:, or of the only
// provider when there is one. A name several providers list is ambiguous,
// and the error names them.
func (c *Config) ResolveModel(s string) (moltbot.ModelRef, error) {
	if strings.Contains(s, "/") {
		if r, err := moltbot.ParseModelRef(s); err == nil && c.Provider(r.Provider) != nil {
			return r, nil
		}
		// "org/model" may be a model that a provider lists whole (vLLM).
		if r, n := c.lists(s); n == 1 {
			return r, nil
		}
		return moltbot.ParseModelRef(s)
	}
	if s == "" {
		return moltbot.ModelRef{}, fmt.Errorf("want provider/model or a model a provider lists, got \"\"")
	}
	r, n := c.lists(s)
	switch {
	case n == 1:
		return r, nil
	case n > 1:
		var who []string
		for _, p := range c.Providers {
			if slices.Contains(p.Models, s) {
				who = append(who, p.Name+"/"+s)
			}
		}
		return moltbot.ModelRef{}, fmt.Errorf("model %q is ambiguous: %s list it; write one of them", s, strings.Join(who, " and "))
	case len(c.Providers) == 1:
		return moltbot.ModelRef{Provider: c.Providers[0].Name, Model: s}, nil
	}
	names := make([]string, 0, len(c.Providers))
	for _, p := range c.Providers {
		names = append(names, p.Name)
	}
	return moltbot.ModelRef{}, fmt.Errorf("model %q: no provider lists it in its models: (providers: %s); add it to one, or write provider/model", s, strings.Join(names, ", "))
}

// lists finds the providers whose models: hold model: the last one's ref
// and how many.
func (c *Config) lists(model string) (moltbot.ModelRef, int) {
	var r moltbot.ModelRef
	n := 0
	for _, p := range c.Providers {
		if slices.Contains(p.Models, model) {
			r, n = moltbot.ModelRef{Provider: p.Name, Model: model}, n+1
		}
	}
	return r, n
}

// Capability names of ProviderConfig.Capabilities.
var capabilityNames = []string{"tools", "vision", "json_schema", "embeddings"}

// Caps returns p's declared capabilities by model.
func (p *ProviderConfig) Caps() map[string]moltbot.Capabilities {
	if len(p.Capabilities) == 0 {
		return nil
	}
	out := make(map[string]moltbot.Capabilities, len(p.Capabilities))
	for m, list := range p.Capabilities {
		c := moltbot.Capabilities{Known: true}
		for _, name := range list {
			switch name {
			case "tools":
				c.Tools = true
			case "vision":
				c.Vision = true
			case "json_schema":
				c.JSONSchema = true
			case "embeddings":
				c.Embeddings = true
			}
		}
		out[m] = c
	}
	return out
}

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"json", "text"}
)

// Validate checks the whole config and returns every problem found, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, c.errAt(path, format, args...)) }

	if c.Server.Port < 0 || c.Server.Port > 65535 {
		add("server.port", "must be between 0 and 65535, got %d", c.Server.Port)
	}
	if c.Server.MaxBodyBytes < 1024 {
		add("server.max_body_bytes", "must be at least 1KiB, got %s", c.Server.MaxBodyBytes)
	}
	if c.Server.MemoryLimit != 0 && c.Server.MemoryLimit < 16<<20 {
		add("server.memory_limit", "must be 0 (none) or at least 16MiB, got %s", c.Server.MemoryLimit)
	}
	if c.Skills.Workers < 1 || c.Skills.Workers > 64 {
		add("skills.workers", "must be between 1 and 64, got %d", c.Skills.Workers)
	}
	if c.Skills.TenantWorkers < 0 || c.Skills.TenantWorkers > c.Skills.Workers {
		add("skills.tenant_workers", "must be between 0 (all) and skills.workers (%d), got %d", c.Skills.Workers, c.Skills.TenantWorkers)
	}
	if c.Skills.Memory < 32<<20 {
		add("skills.memory", "must be at least 32MiB, got %s", c.Skills.Memory)
	}
	for alias, model := range c.Skills.Models {
		if alias == "" || model == "" || len(alias) > 256 || len(model) > 256 {
			add("skills.models", "alias %q: an alias and its model must be 1 to 256 bytes, got %q", alias, model)
		}
	}
	if c.Server.ReadBodyTimeout.D() < 1e8 {
		add("server.read_body_timeout", "must be at least 100ms, got %s", c.Server.ReadBodyTimeout)
	}
	if c.Server.MaxAnonymousRequests < 1 {
		add("server.max_anonymous_requests", "must be at least 1, got %d", c.Server.MaxAnonymousRequests)
	}
	if c.Server.MaxConnections < 1 {
		add("server.max_connections", "must be at least 1, got %d", c.Server.MaxConnections)
	}
	if c.Server.MaxConnectionsPerClient < 1 {
		add("server.max_connections_per_client", "must be at least 1, got %d", c.Server.MaxConnectionsPerClient)
	} else if c.Server.MaxConnectionsPerClient > c.Server.MaxConnections {
		add("server.max_connections_per_client", "must not exceed server.max_connections (%d), got %d", c.Server.MaxConnections, c.Server.MaxConnectionsPerClient)
	}
	for i, p := range c.Server.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			add(fmt.Sprintf("server.trusted_proxies[%d]", i), "want an IP address or a CIDR such as 10.0.0.0/8, got %q", p)
		}
	}
	for i, h := range c.Server.AllowedHosts {
		if !validHostName(h) {
			add(fmt.Sprintf("server.allowed_hosts[%d]", i), "want a host name such as moltbot.lan or .example.com (no scheme, port or path), got %q", h)
		}
	}
	if t := c.Server.TLS; t.Enabled() {
		if t.CertFile == "" {
			add("server.tls.cert_file", "is required with server.tls.key_file")
		}
		if t.KeyFile == "" {
			add("server.tls.key_file", "is required with server.tls.cert_file")
		}
	}
	if !slices.Contains(logLevels, c.Log.Level) {
		add("log.level", "must be one of %s, got %q", strings.Join(logLevels, ", "), c.Log.Level)
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		add("log.format", "must be one of %s, got %q", strings.Join(logFormats, ", "), c.Log.Format)
	}
	if c.Storage.CacheSize < 1<<20 {
		add("storage.cache_size", "must be at least 1MiB, got %s", c.Storage.CacheSize)
	}
	if c.Storage.MemtableSize < 1<<20 {
		add("storage.memtable_size", "must be at least 1MiB, got %s", c.Storage.MemtableSize)
	}

	if len(c.Providers) == 0 {
		add("providers", "at least one provider is needed")
	}
	names := map[string]bool{}
	for i := range c.Providers {
		p := &c.Providers[i]
		at := func(k string) string { return fmt.Sprintf("providers[%d].%s", i, k) }
		switch {
		case p.Name == "":
			add(at("name"), "is required")
		case strings.ContainsAny(p.Name, "/ \t"):
			add(at("name"), "must not contain '/' or spaces, got %q", p.Name)
		case p.Name == "moltbot":
			add(at("name"), `"moltbot" is reserved for the configured chain`)
		case names[p.Name]:
			add(at("name"), "provider %q is defined twice", p.Name)
		}
		names[p.Name] = true
		if t, ok := inference.LookupType(p.Type); !ok {
			add(at("type"), "must be one of %s, got %q", strings.Join(inference.Types(), ", "), p.Type)
		} else if t.NeedsURL {
			if p.URL == "" && t.DefaultURL != nil {
				p.URL = t.DefaultURL()
			}
			if p.URL == "" {
				add(at("url"), "is required for type %s", p.Type)
			} else if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(at("url"), "want an http:// or https:// URL, got %q", p.URL)
			}
		}
		if p.MaxInFlight < 1 {
			add(at("max_in_flight"), "must be at least 1, got %d", p.MaxInFlight)
		}
		if p.MaxQueue < 0 {
			add(at("max_queue"), "must not be negative, got %d", p.MaxQueue)
		}
		if p.KeepAlive.Set && p.Type != "ollama" {
			add(at("keep_alive"), "is for type ollama only, not %q", p.Type)
		}
		if p.Type == sim.TypeName && p.Sim.Tokens < 1 {
			add(at("sim.tokens"), "must be at least 1, got %d", p.Sim.Tokens)
		}
		for m, list := range p.Capabilities {
			if m == "" {
				add(at("capabilities"), "a model name must not be empty")
			}
			for _, name := range list {
				if !slices.Contains(capabilityNames, name) {
					add(at("capabilities."+m), "unknown capability %q (known: %s)", name, strings.Join(capabilityNames, ", "))
				}
			}
		}
	}

	checkRef := func(path, s string) {
		if !strings.Contains(s, "/") {
			if _, err := c.ResolveModel(s); err != nil {
				add(path, "%v", err)
			}
			return
		}
		r, err := c.ResolveModel(s)
		if err != nil {
			add(path, "want provider/model, got %q", s)
			return
		}
		if !names[r.Provider] {
			defined := make([]string, 0, len(names))
			for n := range names {
				defined = append(defined, n)
			}
			sort.Strings(defined)
			add(path, "provider %q is not defined (defined: %s)", r.Provider, strings.Join(defined, ", "))
		}
	}
	if c.Models.Primary == "" {
		add("models.primary", "is required (provider/model)")
	} else {
		checkRef("models.primary", c.Models.Primary)
	}
	key := func(s string) string {
		if r, err := c.ResolveModel(s); err == nil {
			return r.String()
		}
		return s
	}
	seen := map[string]bool{key(c.Models.Primary): true}
	for i, f := range c.Models.Fallback {
		path := fmt.Sprintf("models.fallback[%d]", i)
		checkRef(path, f)
		if seen[key(f)] {
			add(path, "%q is already in the chain", f)
		}
		seen[key(f)] = true
	}
	c.validateEmbeddings(names, add)
	if c.Models.Threshold.Latency <= 0 {
		add("models.threshold.latency", "must be more than 0")
	}
	if c.Models.Threshold.ErrorRate <= 0 {
		add("models.threshold.error_rate", "must be more than 0%%")
	}
	if c.Models.Window.D() < 1e9 {
		add("models.window", "must be at least 1s, got %s", c.Models.Window)
	}
	if c.Models.MinRequests < 1 {
		add("models.min_requests", "must be at least 1, got %d", c.Models.MinRequests)
	}
	if c.Models.Cooldown.D() < 1e8 {
		add("models.cooldown", "must be at least 100ms, got %s", c.Models.Cooldown)
	}
	if c.Models.MaxCooldown < c.Models.Cooldown {
		add("models.max_cooldown", "must not be less than models.cooldown (%s), got %s", c.Models.Cooldown, c.Models.MaxCooldown)
	}
	if c.Models.StreamFailure != StreamTerminate && c.Models.StreamFailure != StreamContinue {
		add("models.stream_failure", "must be %s or %s, got %q", StreamTerminate, StreamContinue, c.Models.StreamFailure)
	}
	if c.Models.HealthInterval.D() < 1e8 {
		add("models.health_interval", "must be at least 100ms, got %s", c.Models.HealthInterval)
	}
	if c.Conversations.IdleTimeout.D() < 1e9 {
		add("conversations.idle_timeout", "must be at least 1s, got %s", c.Conversations.IdleTimeout)
	}
	if c.Conversations.MaxContextTokens < 128 {
		add("conversations.max_context_tokens", "must be at least 128, got %d", c.Conversations.MaxContextTokens)
	}
	c.validateSummary(checkRef, add)
	c.validateSkills(add)
	c.validateHandoff(add)
	if c.Conversations.MaxImageBytes < 0 || c.Conversations.MaxImageBytes > 1<<30 {
		add("conversations.max_image_bytes", "must be between 0 (the default, 5MiB) and 1GiB, got %s", c.Conversations.MaxImageBytes)
	}
	if c.Conversations.MaxQueuedTurns < 0 {
		add("conversations.max_queued_turns", "must not be negative, got %d", c.Conversations.MaxQueuedTurns)
	}
	if c.Cluster.Replicas < 1 {
		add("cluster.replicas", "must be at least 1, got %d", c.Cluster.Replicas)
	}
	for k, v := range map[string]int{"turns": c.Cluster.RemoteWork.Turns, "conv": c.Cluster.RemoteWork.Conv,
		"replicate": c.Cluster.RemoteWork.Replicate, "fetch": c.Cluster.RemoteWork.Fetch} {
		if v < 1 {
			add("cluster.remote_work."+k, "must be at least 1, got %d", v)
		}
	}
	c.validateBots(checkRef, add)
	c.validateChannels(add)
	tenantIDs := map[string]bool{} // default always exists; listed, it takes the file's settings
	for i, t := range c.Tenants {
		at := func(k string) string { return fmt.Sprintf("tenants[%d].%s", i, k) }
		switch {
		case t.ID == "":
			add(at("id"), "is required")
		case !moltbot.ValidTenantID(t.ID):
			add(at("id"), moltbot.TenantIDRule+", got %q", t.ID)
		case tenantIDs[t.ID]:
			add(at("id"), "tenant %q is defined twice", t.ID)
		}
		tenantIDs[t.ID] = true
		if t.Limits.RequestsPerMinute < 0 || t.Limits.TokensPerMinute < 0 {
			add(at("limits"), "must not be negative")
		}
		if v := t.Limits.MaxConversations; v < 0 || v > auth.MaxLimit {
			add(at("limits.max_conversations"), "must be between 0 (unlimited) and %d, got %d", auth.MaxLimit, v)
		}
		if v := t.Limits.MaxStoredBytes; v < 0 || v > auth.MaxStoredBytes {
			add(at("limits.max_stored_bytes"), "must be between 0 (unlimited) and %s, got %s", ByteSize(auth.MaxStoredBytes), v)
		}
		if v := t.Retention.Days; v < 0 || v > auth.MaxRetentionDays {
			add(at("retention.days"), "must be between 0 (keep) and %d, got %d", auth.MaxRetentionDays, v)
		}
		if v := t.Retention.Messages; v < 0 || v > auth.MaxLimit {
			add(at("retention.messages"), "must be between 0 (keep all) and %d, got %d", auth.MaxLimit, v)
		}
		if r := t.Retention; r.Archive && r.Days == 0 && r.Messages == 0 {
			add(at("retention.archive"), "archives what days or messages remove; set one of them")
		}
	}
	if c.Retention.Interval.D() < time.Second {
		add("retention.interval", "must be at least 1s, got %s", c.Retention.Interval)
	}
	for i, is := range c.Auth.OAuth.Issuers {
		at := func(k string) string { return fmt.Sprintf("auth.oauth.issuers[%d].%s", i, k) }
		if is.Issuer == "" {
			add(at("issuer"), "is required")
		}
		if u, err := url.Parse(is.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(at("jwks_url"), "want an http:// or https:// URL, got %q", is.JWKSURL)
		}
		if strings.TrimSpace(is.Audience) == "" {
			add(at("audience"), "is required: the \"aud\" this node's tokens carry (without it a token the issuer made for any other service would do); write `audience: %s` to accept any", AudienceAny)
		}
	}
	if d := c.Auth.TokenTTL.D(); d < 0 || d > 24*time.Hour {
		add("auth.token_ttl", "must be between 0s and 24h, got %s", c.Auth.TokenTTL)
	}
	if d := c.Auth.SigningRotate.D(); d < 0 || d > 8760*time.Hour {
		add("auth.signing_rotate", "must be between 0s and 8760h, got %s", c.Auth.SigningRotate)
	}
	if c.Auth.FailureLimit < 0 {
		add("auth.failure_limit", "must not be negative")
	}
	if c.Audit.MaxEvents < 100 || c.Audit.MaxEvents > 1_000_000 {
		add("audit.max_events", "must be between 100 and 1000000, got %d", c.Audit.MaxEvents)
	}
	if c.Audit.MaxAge.D() < time.Hour {
		add("audit.max_age", "must be at least 1h, got %s", c.Audit.MaxAge)
	}
	for i, p := range c.Providers {
		if o := p.OAuth; o != nil {
			at := func(k string) string { return fmt.Sprintf("providers[%d].oauth.%s", i, k) }
			if u, err := url.Parse(o.TokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(at("token_url"), "want an http:// or https:// URL, got %q", o.TokenURL)
			}
			if o.ClientID == "" {
				add(at("client_id"), "is required")
			}
		}
	}
	if t := c.Cache.Type; t != "" && !slices.Contains(cache.Types, t) {
		add("cache.type", "must be one of %s (or left out: no cache), got %q", strings.Join(cache.Types, ", "), t)
	}
	if c.Cache.TTL.D() < time.Second {
		add("cache.ttl", "must be at least 1s (written as seconds, 3600, or a duration, 1h), got %s", c.Cache.TTL)
	}
	if c.Cache.MaxBytes < 1<<20 {
		add("cache.max_bytes", "must be at least 1MiB, got %s", c.Cache.MaxBytes)
	}
	if c.Cache.MaxEntryBytes < 1<<10 || c.Cache.MaxEntryBytes > c.Cache.MaxBytes {
		add("cache.max_entry_bytes", "must be between 1KiB and cache.max_bytes (%s), got %s", c.Cache.MaxBytes, c.Cache.MaxEntryBytes)
	}
	if c.Cache.Port < 1 || c.Cache.Port > 65535 {
		add("cache.port", "must be between 1 and 65535, got %d", c.Cache.Port)
	}
	if c.Cache.DB < 0 {
		add("cache.db", "must not be negative, got %d", c.Cache.DB)
	}
	if h := c.Cache.Host; net.ParseIP(h) == nil && !validHostName(h) || strings.HasPrefix(h, ".") {
		add("cache.host", "want a host name or an IP address (no scheme or port), got %q", h)
	}
	if cs := c.Cache.Semantic; cs.Enabled {
		if c.Cache.Type == "" {
			add("cache.semantic.enabled", "needs cache.type (the semantic tier indexes the replies the cache stores)")
		}
		if c.Models.Embeddings.Primary == "" {
			add("cache.semantic.enabled", "needs an embedding chain: set models.embeddings.primary (provider/model)")
		}
	}
	if th := c.Cache.Semantic.Threshold; !(th > 0 && th <= 1) {
		add("cache.semantic.threshold", "must be above 0 and at most 1 (a cosine similarity), got %v", th)
	}
	if n := c.Cache.Semantic.MaxEntries; n < 1 || n > 1_000_000 {
		add("cache.semantic.max_entries", "must be between 1 and 1000000, got %d", n)
	}
	if d := c.Cache.Semantic.Timeout.D(); d < 10*time.Millisecond || d > 10*time.Second {
		add("cache.semantic.timeout", "must be between 10ms and 10s, got %s", d)
	}
	hostPort := func(path, v string) {
		_, p, err := net.SplitHostPort(v)
		if n, perr := strconv.Atoi(p); err != nil || perr != nil || n < 0 || n > 65535 {
			add(path, "want host:port, got %q", v)
		}
	}
	// The cluster's own addresses are IP addresses: memberlist binds every
	// interface for a host name ("localhost" included), and what a node
	// advertises is dialed by others as it is.
	ipPort := func(path, v string) {
		host, p, err := net.SplitHostPort(v)
		if n, perr := strconv.Atoi(p); err != nil || perr != nil || n < 0 || n > 65535 {
			add(path, "want ip:port, got %q", v)
			return
		}
		if host != "" && net.ParseIP(host) == nil {
			add(path, "want an IP address, not the host name %q (memberlist would bind every interface for it): e.g. 127.0.0.1:%s or 10.0.0.5:%s", host, p, p)
		}
	}
	if c.Cluster.Bind != "" {
		ipPort("cluster.bind", c.Cluster.Bind)
		if c.Cluster.Advertise != "" {
			ipPort("cluster.advertise", c.Cluster.Advertise)
		}
		if c.Cluster.RPC != "" {
			ipPort("cluster.rpc", c.Cluster.RPC)
		}
		for i, j := range c.Cluster.Join {
			hostPort(fmt.Sprintf("cluster.join[%d]", i), j)
		}
		if !slices.Contains(cluster.Profiles, c.Cluster.Profile) {
			add("cluster.profile", "must be one of %s, got %q", strings.Join(cluster.Profiles, ", "), c.Cluster.Profile)
		}
		if t := c.Cluster.TLS; t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" {
			for _, f := range []struct{ key, v string }{{"cluster.tls.ca_file", t.CAFile}, {"cluster.tls.cert_file", t.CertFile}, {"cluster.tls.key_file", t.KeyFile}} {
				if f.v == "" {
					add(f.key, "is needed with the other cluster.tls files (ca_file, cert_file, key_file)")
				}
			}
		}
	} else if len(c.Cluster.Join) > 0 {
		add("cluster.join", "needs cluster.bind: a node joins a cluster by gossiping on an address")
	}
	errs = append(errs, c.validatePresets()...)
	errs = append(errs, c.validateKB()...)
	return errors.Join(errs...)
}

// validatePresets checks skills.presets: names, kinds, and each one's
// options (builtin.Check), every error at its key under with:.
func (c *Config) validatePresets() []error {
	var errs []error
	names := map[string]int{}
	for i := range c.Skills.Presets {
		p := &c.Skills.Presets[i]
		path := fmt.Sprintf("skills.presets[%d]", i)
		switch {
		case p.Name == "":
			errs = append(errs, c.errAt(path+".name", "missing: a name for the preset (such as %q)", p.Use))
		case !validPresetName(p.Name):
			errs = append(errs, c.errAt(path+".name", "%q: want letters, digits, - and _ (at most 64)", p.Name))
		default:
			if j, dup := names[p.Name]; dup {
				errs = append(errs, c.errAt(path+".name", "%q is skills.presets[%d]'s name too", p.Name, j))
			}
			names[p.Name] = i
		}
		if builtin.Options(p.Use) == nil {
			// (Parse reports it while decoding; this is a config made in code.)
			errs = append(errs, c.errAt(path+".use", "unknown preset %q (known: %s)", p.Use, strings.Join(builtin.Uses(), ", ")))
			continue
		}
		if p.With.Opts == nil {
			p.With.Opts = builtin.Options(p.Use)
		}
		err := builtin.Check(p.Use, p.With.Opts)
		if err == nil {
			continue
		}
		for _, e := range unjoin(err) {
			var oe *builtin.OptionError
			if errors.As(e, &oe) {
				errs = append(errs, c.errAt(path+".with."+oe.Key, "%s", oe.Msg))
			} else {
				errs = append(errs, c.errAt(path+".with", "%v", e))
			}
		}
	}
	return errs
}

// unjoin is the errors errors.Join joined (err itself otherwise).
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

func validPresetName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ParsePrefix parses an IP address ("10.0.0.1", "::1") or a CIDR
// ("10.0.0.0/8") as a prefix; a bare address is a /32 or /128.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// validHostName accepts a DNS name, optionally with a leading dot.
func validHostName(h string) bool {
	h = strings.TrimPrefix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Redacted returns the config as YAML with secrets shown as [REDACTED].
func (c *Config) Redacted() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
