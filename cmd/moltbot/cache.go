package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"text/tabwriter"

	"github.com/moltbot/moltbot"

	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/cache"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/storage"
	"github.com/urfave/cli/v2"
)

// startCache opens the output cache of cfg.Cache (nil when cache.type is
// not set) and the turn stage around the model that uses it.
//
// The semantic tier (cache.semantic) embeds through rt's embedding chain;
// rt is read when a turn needs it (the runtime is made after the cache,
// whose stage it runs).
func startCache(cfg *configs.Config, store storage.Namespaces, met *metrics.Registry, log *slog.Logger,
	rt *atomic.Pointer[actors.Runtime]) (*cache.Cache, []actors.AroundModel, error) {
	cc := cfg.Cache
	if cc.Type == "" {
		return nil, nil, nil
	}
	sc := cache.SemanticConfig{Enabled: cc.Semantic.Enabled, Threshold: cc.Semantic.Threshold, MaxEntries: cc.Semantic.MaxEntries,
		Timeout: cc.Semantic.Timeout.D()}
	if sc.Enabled {
		sc.Embed = func(ctx context.Context, text string) ([]float32, error) {
			r := rt.Load()
			if r == nil {
				return nil, errors.New("the runtime is not started")
			}
			out, err := actors.EmbeddingsOf(r).Embed(ctx, &moltbot.EmbedRequest{Input: []string{text}})
			if err != nil {
				return nil, err
			}
			return out.Vectors[0], nil
		}
	}
	c, err := cache.New(cache.Config{Type: cc.Type, TTL: cc.TTL.D(), MaxBytes: int64(cc.MaxBytes), MaxEntryBytes: int64(cc.MaxEntryBytes),
		Host: cc.Host, Port: cc.Port, Password: cc.Password.Value(), DB: cc.DB, Secret: cc.Secret.Value(), Store: store, Metrics: met, Logger: log, Semantic: sc})
	if err != nil {
		return nil, nil, err
	}
	attrs := []any{"type", cc.Type, "ttl", cc.TTL.D(), "max_bytes", cc.MaxBytes.String()}
	if cc.Type == cache.TypeRedis {
		attrs = append(attrs, "redis", fmt.Sprintf("%s:%d", cc.Host, cc.Port), "db", cc.DB, "auth", cc.Password != "", "entries_authenticated", cc.Secret != "")
		if cc.Secret == "" {
			log.Warn("cache: Redis entries are not authenticated: whoever can write to its database can make this node serve a reply of theirs; set cache.secret (the same on every node)")
		}
	}
	if sc.Enabled {
		attrs = append(attrs, "semantic_threshold", sc.Threshold, "semantic_max_entries", sc.MaxEntries)
	}
	log.Info("output cache", attrs...)
	return c, []actors.AroundModel{cache.NewStage(c)}, nil
}

// closeCache closes c, if there is one.
func closeCache(c *cache.Cache) {
	if c != nil {
		c.Close()
	}
}

// cacheOf is c as the management service takes it (nil: no cache; a nil
// *cache.Cache in the interface would not be).
func cacheOf(c *cache.Cache) manage.Cache {
	if c == nil {
		return nil
	}
	return c
}

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "the output cache: figures per tier, purge (through the node's admin API)",
		Description: `A node with cache.type set answers identical deterministic requests
(temperature 0, or a seed; or any request sent with X-Moltbot-Cache: use) from
its output cache. "stats" shows each tier's hits, misses, stores, evictions,
errors, entries and bytes (the operator's); "purge" removes a tenant's cached
replies from every tier (--tenant; the operator without it: every tenant's). A
tenant's admin key purges its own tenant's.`,
		Subcommands: []*cli.Command{{
			Name: "stats", Usage: "each tier's figures", Flags: append(adminFlags(), &cli.BoolFlag{Name: "json", Usage: "print the API's JSON"}),
			Action: func(c *cli.Context) error {
				_, raw, err := adminShow(c, "/v1/admin/cache")
				if err != nil || raw == nil {
					return err
				}
				var st cache.Stats
				if err := json.Unmarshal(raw, &st); err != nil {
					return fail(1, "unexpected reply: %v", err)
				}
				printCacheStats(c, &st)
				return nil
			},
		}, {
			Name: "purge", Usage: "remove cached replies", Flags: append(adminFlags(), &cli.StringFlag{Name: "tenant", Usage: "only this tenant's (default: every tenant's for the operator, the key's own for a tenant's admin)"}),
			Action: func(c *cli.Context) error {
				var r manage.CachePurge
				if err := adminCall(c, "POST", "/v1/admin/cache/purge", map[string]any{"tenant": c.String("tenant")}, &r); err != nil {
					return err
				}
				var parts []string
				for _, tier := range []string{cache.TypeMemory, cache.TypePebble, cache.TypeRedis, cache.TierSemantic} {
					if n, ok := r.Removed[tier]; ok {
						parts = append(parts, fmt.Sprintf("%d from %s", n, tier))
					}
				}
				who := "every tenant"
				if r.Tenant != "" {
					who = "tenant " + r.Tenant
				}
				fmt.Fprintf(c.App.Writer, "purged %s's cached replies: %s\n", who, strings.Join(parts, ", "))
				return nil
			},
		}},
	}
}

func printCacheStats(c *cli.Context, st *cache.Stats) {
	w := c.App.Writer
	fmt.Fprintf(w, "type %s, ttl %gs, %d requests shared an identical one's model call\n", st.Type, st.TTLSeconds, st.Shared)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tUP\tHITS\tMISSES\tSTORES\tEVICTIONS\tERRORS\tENTRIES\tBYTES")
	for _, t := range st.Tiers {
		entries, bytes := fmt.Sprint(t.Entries), fmt.Sprint(t.Bytes)
		if t.Entries < 0 {
			entries, bytes = "?", "?"
		}
		if t.MaxBytes > 0 {
			bytes += fmt.Sprintf(" of %s", configs.ByteSize(t.MaxBytes))
		}
		fmt.Fprintf(tw, "%s\t%v\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", t.Tier, t.Up, t.Hits, t.Misses, t.Stores, t.Evictions, t.Errors, entries, bytes)
	}
	tw.Flush()
	for _, t := range st.Tiers {
		if t.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", t.Tier, t.Error)
		}
	}
}
