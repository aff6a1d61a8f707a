// Package metrics is moltbot's metrics registry over VictoriaMetrics/metrics:
// one Registry per node (several nodes can live in one test process), metric
// families declared once below, Prometheus text exposition with # HELP and
// # TYPE, latency histograms with `le` buckets for histogram_quantile.
//
// Lookups by label values do not allocate once a series exists.
package metrics

import (
	"io"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// Family is a metric name with its label names.
type Family struct {
	Name   string
	Labels []string
}

// The families moltbot exports.
var (
	HTTPRequests      = &Family{"moltbot_http_requests_total", []string{"route", "code"}}
	HTTPDuration      = &Family{"moltbot_http_request_duration_seconds", []string{"route"}}
	HTTPConnsRefused  = &Family{"moltbot_http_connections_refused_total", nil}
	InferenceRequests = &Family{"moltbot_inference_requests_total", []string{"provider", "model", "outcome"}}
	InferenceDuration = &Family{"moltbot_inference_duration_seconds", []string{"provider", "model"}}
	InferenceTTFT     = &Family{"moltbot_inference_ttft_seconds", []string{"provider", "model"}}
	InferenceTokens   = &Family{"moltbot_inference_tokens_total", []string{"provider", "model", "kind"}}
	ProviderBusy      = &Family{"moltbot_provider_rejected_total", []string{"provider"}}
	Failovers         = &Family{"moltbot_failovers_total", []string{"from", "to", "reason"}}
	SnapshotWrites    = &Family{"moltbot_snapshot_writes_total", []string{"outcome"}}
	SnapshotDuration  = &Family{"moltbot_snapshot_write_duration_seconds", nil}
	ActorRestarts     = &Family{"moltbot_actor_restarts_total", []string{"actor"}}
	Passivations      = &Family{"moltbot_conversations_passivated_total", nil}
	Activations       = &Family{"moltbot_conversations_activated_total", []string{"source"}}
	ConversationTurns = &Family{"moltbot_conversation_turns_total", []string{"outcome"}}
	ContextTrimmed    = &Family{"moltbot_context_trimmed_messages_total", nil}
	ContextSummaries  = &Family{"moltbot_context_summaries_total", []string{"outcome"}}
	SummaryTokens     = &Family{"moltbot_context_summary_tokens_total", []string{"kind"}}
	ConversationsBusy = &Family{"moltbot_conversation_rejected_total", nil}
	ForwardedTurns    = &Family{"moltbot_forwarded_turns_total", nil}
	ReplicationWrites = &Family{"moltbot_replication_writes_total", []string{"outcome"}}
	Handoffs          = &Family{"moltbot_handoffs_total", []string{"direction"}}
	AuthFailures      = &Family{"moltbot_auth_failures_total", []string{"reason"}}
	RateLimited       = &Family{"moltbot_rate_limited_total", []string{"tenant"}}
	KeyCooldowns      = &Family{"moltbot_provider_key_cooldowns_total", []string{"provider"}}
	ClusterRefused    = &Family{"moltbot_cluster_rpc_refused_total", []string{"reason"}}
	ClusterBusy       = &Family{"moltbot_cluster_rpc_busy_total", []string{"kind"}}
	SharedMerges      = &Family{"moltbot_cluster_shared_records_total", []string{"outcome"}}
	AuthMergeRefused  = &Family{"moltbot_auth_merge_refused_total", []string{"reason"}}
	AuditWriteErrors  = &Family{"moltbot_audit_write_errors_total", nil}
	ChatSlowClients   = &Family{"moltbot_chat_slow_clients_total", nil}
	OutboxDeliveries  = &Family{"moltbot_outbox_deliveries_total", []string{"outcome"}}

	// The channels (package channels): events by outcome, turns failed,
	// sends by outcome, per channel.
	ChannelEvents      = &Family{"moltbot_channel_events_total", []string{"channel", "outcome"}}
	ChannelTurnsFailed = &Family{"moltbot_channel_turns_failed_total", []string{"channel"}}
	ChannelSends       = &Family{"moltbot_channel_sends_total", []string{"channel", "outcome"}}

	RetentionDeleted  = &Family{"moltbot_retention_deleted_total", nil}
	RetentionTrimmed  = &Family{"moltbot_retention_trimmed_total", nil}
	RetentionArchived = &Family{"moltbot_retention_archived_total", nil}
	RetentionErrors   = &Family{"moltbot_retention_errors_total", nil}
	QuotaRefused      = &Family{"moltbot_quota_refused_total", []string{"limit"}}
	EmbedMismatches   = &Family{"moltbot_embedding_mismatches_total", []string{"provider", "model"}}
	CacheHits         = &Family{"moltbot_cache_hits_total", []string{"tier"}}
	CacheMisses       = &Family{"moltbot_cache_misses_total", []string{"tier"}}
	CacheStores       = &Family{"moltbot_cache_stores_total", []string{"tier"}}
	CacheEvictions    = &Family{"moltbot_cache_evictions_total", []string{"tier"}}
	CacheErrors       = &Family{"moltbot_cache_errors_total", []string{"tier"}}
	CacheShared       = &Family{"moltbot_cache_shared_total", nil}
	// CacheSemanticLookup times the semantic tier's lookups by part:
	// embed (the message through the embedding chain), search (the index).
	CacheSemanticLookup = &Family{"moltbot_cache_semantic_lookup_seconds", []string{"part"}}
	// SkillRuns counts JavaScript skill runs by skill and outcome;
	// SkillDuration times them.
	SkillRuns     = &Family{"moltbot_skill_runs_total", []string{"skill", "outcome"}}
	SkillDuration = &Family{"moltbot_skill_run_duration_seconds", []string{"skill"}}
	// IntentTurns counts the turns the intent stage classified, by the
	// stage that decided (rules, ngram, model, fallback).
	IntentTurns = &Family{"moltbot_intent_turns_total", []string{"stage"}}
)

// LatencyBuckets are the `le` bounds (seconds) of every latency histogram.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// help is each family's HELP text, made on the first scrape (a map
// literal in a package var would be built at every start: DESIGN.md, "What
// a linked package may do at start").
var help = sync.OnceValue(func() map[string]string {
	return map[string]string{
		"moltbot_http_requests_total":             "HTTP requests served, by route pattern and status code.",
		"moltbot_http_request_duration_seconds":   "HTTP request duration, by route pattern.",
		"moltbot_http_connections_refused_total":  "Connections closed at once: server.max_connections or max_connections_per_client reached.",
		"moltbot_inference_requests_total":        "Model calls, by provider, model and outcome (ok or an error kind).",
		"moltbot_inference_duration_seconds":      "Model call duration, request to last token.",
		"moltbot_inference_ttft_seconds":          "Model time to first token.",
		"moltbot_inference_tokens_total":          "Tokens reported by model servers, by kind (prompt, completion).",
		"moltbot_provider_rejected_total":         "Model calls refused because a provider's in-flight and queue limits were full.",
		"moltbot_failovers_total":                 "Turns moved from one model to the next, by reason.",
		"moltbot_snapshot_writes_total":           "Conversation snapshot writes, by outcome.",
		"moltbot_snapshot_write_duration_seconds": "Conversation snapshot write duration (synced writes include fsync).",
		"moltbot_actor_restarts_total":            "Actors restarted by their supervisor after a panic.",
		"moltbot_conversations_passivated_total":  "Idle conversation actors stopped (their snapshot stays on disk).",
		"moltbot_conversations_activated_total":   "Conversation actors started, by source (new, snapshot).",
		"moltbot_conversation_turns_total":        "Conversation turns, by outcome.",
		"moltbot_context_trimmed_messages_total":  "Old messages left out of a model's context to fit max_context_tokens (a summary stands for those it covers: they are not counted).",
		"moltbot_context_summaries_total":         "Summaries of a conversation's oldest turns made to fit max_context_tokens, by outcome (ok, failed: the turns were left out instead).",
		"moltbot_context_summary_tokens_total":    "Tokens of the model calls that made summaries, by kind (prompt, completion): as the server counted them, else estimated.",
		"moltbot_conversation_rejected_total":     "Turns refused because a conversation's turn queue was full.",
		"moltbot_conversations_active":            "Conversation actors in memory.",
		"moltbot_build_info":                      "Build information; always 1.",
		"moltbot_forwarded_turns_total":           "Turns this node forwarded to the conversation's owner.",
		"moltbot_replication_writes_total":        "Snapshot copies sent to replicas, by outcome (ok, stale, busy, error).",
		"moltbot_handoffs_total":                  "Conversations handed to a new owner, by direction (sent, received).",
		"moltbot_cluster_members":                 "Cluster members by state, as this node sees them.",
		"moltbot_auth_failures_total":             "Failed authentications, by reason.",
		"moltbot_rate_limited_total":              "Requests refused by a tenant's or key's limits.",
		"moltbot_provider_key_cooldowns_total":    "Provider API keys put aside after a 401 or 429.",
		"moltbot_cluster_rpc_refused_total":       "Node-to-node connections and messages refused, by reason (handshake, not_member, not_ready, identity, malformed, target, type, panic, ...).",
		"moltbot_cluster_rpc_busy_total":          "Requests from other nodes answered busy at once because this node ran its bound of that kind (turn, conv, replicate, fetch), or the sender its share.",
		"moltbot_cluster_rpc_work":                "Requests from other nodes being served now, by kind.",
		"moltbot_cluster_cert_expiry_seconds":     "Seconds until this node's cluster certificate expires.",
		"moltbot_cluster_shared_records_total":    "Shared-state messages (auth records) from other members, by outcome (merged, refused, error).",
		"moltbot_auth_merge_refused_total":        "Replicated auth records refused, by reason (future_version, bad_record).",
		"moltbot_audit_write_errors_total":        "Audit events that could not be stored.",
		"moltbot_outbox_deliveries_total":         "Outbox deliveries to channels, by outcome (ok, retry, failed: given up).",
		"moltbot_chat_slow_clients_total":         "Turns canceled because the edge did not read their events as fast as they came (chat event buffer full).",
		"moltbot_retention_deleted_total":         "Conversations the retention sweep deleted (idle past their tenant's retention.days).",
		"moltbot_retention_trimmed_total":         "Conversations the retention sweep trimmed to their tenant's retention.messages.",
		"moltbot_retention_archived_total":        "Records the retention sweep appended to the archive (a deleted conversation, or the messages trimmed away).",
		"moltbot_retention_errors_total":          "Conversations the retention sweep could not archive, delete or trim (retried at the next sweep).",
		"moltbot_quota_refused_total":             "Calls refused at a tenant's quota, by limit (max_conversations, max_stored_bytes).",
		"moltbot_embedding_mismatches_total":      "Embedding answers discarded because the model gave vectors of another length than its chain's (models.embeddings) or the request's; the model is skipped for such requests from then on.",
		"moltbot_cache_hits_total":                "Output cache lookups answered by a tier, by tier (memory, pebble, redis; semantic: a stored reply to a question close in meaning).",
		"moltbot_cache_semantic_lookup_seconds":   "The semantic cache tier's lookups, by part: embed (the last user message through models.embeddings), search (the index of the request's context).",
		"moltbot_cache_misses_total":              "Output cache lookups a tier could not answer, by tier.",
		"moltbot_cache_stores_total":              "Replies written to an output cache tier, by tier.",
		"moltbot_cache_evictions_total":           "Entries the memory tier let go to stay within cache.max_bytes.",
		"moltbot_cache_errors_total":              "Output cache tier operations that failed or were dropped (the tier down, its write queue full; semantic: an embedding that failed or timed out, the tier bypassed), by tier.",
		"moltbot_cache_shared_total":              "Cacheable requests that shared an identical request's model call in flight instead of making their own.",
		"moltbot_cache_bytes":                     "Bytes held by an output cache tier (pebble: as of its last sweep, plus writes since).",
		"moltbot_cache_entries":                   "Entries held by an output cache tier (pebble: as of its last sweep, plus writes since).",
		"moltbot_cache_up":                        "Whether an output cache tier answers (0 while it is bypassed after failures).",
		"moltbot_skill_runs_total":                "JavaScript skill runs, by skill and outcome (ok; error: the skill failed; deadline: stopped at its deadline; killed: its worker killed, not answering; memory: over its memory budget; busy: no worker free).",
		"moltbot_skill_run_duration_seconds":      "JavaScript skill runs' duration, by skill, their model calls included.",

		"moltbot_channel_events_total":       "Messages channel adapters handed in, by channel and outcome (accepted; duplicate: seen before here, or answered by another node's turn; dropped_bot, dropped_budget: a per chat and author budget against loops, dropped_empty).",
		"moltbot_channel_turns_failed_total": "Accepted channel messages whose turn failed for good (refused: the user got a notice; or given up after its attempts), by channel.",
		"moltbot_channel_sends_total":        "Replies and notices sent through channel adapters, by channel and outcome (ok, failed).",
		"moltbot_channel_inbox_depth":        "Messages in this node's channel inbox (accepted, not answered yet), by channel.",

		"moltbot_intent_turns_total": "Turns the intent stage classified, by the stage that decided: rules, ngram, model, or fallback (none was confident).",
	}
})

func init() { vm.ExposeMetadata(true) }

type key struct {
	f *Family
	v [3]string
}

// Registry holds one node's metrics.
type Registry struct {
	set   *vm.Set
	cnt   series[vm.Counter]
	hist  series[vm.PrometheusHistogram]
	start time.Time
}

// series are metrics by family and label values. A lookup of a series
// that exists reads an immutable copy of the map without a lock (every
// request counts several: a read lock's shared counter was a cache line
// both cores wrote on every one); the copy is made again, as sync.Map
// promotes its dirty map, once as many lookups missed it as there are
// series (a new series misses until then): amortized, a lookup costs
// O(1) whatever the number of series.
type series[T any] struct {
	read   atomic.Pointer[map[key]*T] // a copy of all as it was; never written
	mu     sync.Mutex
	all    map[key]*T
	misses int
}

// load returns the series under k from the copy, or nil: the caller
// then calls put.
func (s *series[T]) load(k key) *T {
	if m := s.read.Load(); m != nil {
		return (*m)[k]
	}
	return nil
}

// put returns the series under k, made by mk(name) if there is none.
func (s *series[T]) put(k key, name string, mk func(string) *T) *T {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.all[k]
	if v == nil {
		if s.all == nil {
			s.all = map[key]*T{}
		}
		v = mk(name)
		s.all[k] = v
	}
	if s.misses++; s.misses >= len(s.all) {
		m := maps.Clone(s.all)
		s.read.Store(&m)
		s.misses = 0
	}
	return v
}

// each calls fn with every series (under the lock: fn must not call get).
func (s *series[T]) each(fn func(k key, v *T)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.all {
		fn(k, v)
	}
}

// New returns an empty registry with moltbot_build_info set.
func New(version string) *Registry {
	r := &Registry{set: vm.NewSet(), start: time.Now()}
	r.set.NewGauge(`moltbot_build_info{version="`+escape(version)+`"}`, func() float64 { return 1 })
	return r
}

func escape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func name(f *Family, vals []string) string {
	if len(f.Labels) == 0 {
		return f.Name
	}
	var b strings.Builder
	b.WriteString(f.Name)
	b.WriteByte('{')
	for i, l := range f.Labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l)
		b.WriteString(`="`)
		if i < len(vals) {
			b.WriteString(escape(vals[i]))
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func mkKey(f *Family, vals []string) key {
	k := key{f: f}
	copy(k.v[:], vals)
	return k
}

// Counter returns the counter of f with the label values given in order.
func (r *Registry) Counter(f *Family, vals ...string) *vm.Counter {
	k := mkKey(f, vals)
	if c := r.cnt.load(k); c != nil {
		return c
	}
	return r.cnt.put(k, name(f, vals), r.set.GetOrCreateCounter)
}

// Inc adds one to a counter.
func (r *Registry) Inc(f *Family, vals ...string) { r.Counter(f, vals...).Inc() }

// Add adds n to a counter.
func (r *Registry) Add(f *Family, n uint64, vals ...string) { r.Counter(f, vals...).AddInt64(int64(n)) }

// Histogram returns the latency histogram of f with the label values given.
func (r *Registry) Histogram(f *Family, vals ...string) *vm.PrometheusHistogram {
	k := mkKey(f, vals)
	if h := r.hist.load(k); h != nil {
		return h
	}
	return r.hist.put(k, name(f, vals), func(n string) *vm.PrometheusHistogram {
		return r.set.GetOrCreatePrometheusHistogramExt(n, LatencyBuckets)
	})
}

// Observe records d in a histogram, in seconds.
func (r *Registry) Observe(f *Family, d time.Duration, vals ...string) {
	r.Histogram(f, vals...).Update(d.Seconds())
}

// Gauge registers a gauge whose value is read from fn at scrape time.
func (r *Registry) Gauge(metric string, fn func() float64) {
	r.set.GetOrCreateGauge(metric, fn)
}

// Get returns the current value of a counter (tests, status).
func (r *Registry) Get(f *Family, vals ...string) uint64 { return r.Counter(f, vals...).Get() }

// Sum returns the total of every series of a counter family.
func (r *Registry) Sum(f *Family) uint64 {
	var n uint64
	r.cnt.each(func(k key, c *vm.Counter) {
		if k.f == f {
			n += c.Get()
		}
	})
	return n
}

// WritePrometheus writes the node's metrics then Go and process metrics.
func (r *Registry) WritePrometheus(w io.Writer) {
	var b strings.Builder
	r.set.WritePrometheus(&b)
	// VictoriaMetrics writes a generic HELP line; give ours instead.
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			metric, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
			if h, ok := help()[metric]; ok {
				io.WriteString(w, "# HELP "+metric+" "+h+"\n")
				continue
			}
		}
		io.WriteString(w, line)
	}
	vm.WriteProcessMetrics(w)
}
