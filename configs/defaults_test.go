package configs

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/audit"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/storage"
	"gopkg.in/yaml.v3"
)

const minimalSim = "providers: [{name: s, type: sim}]\nmodels: {primary: s/x}\n"

func parse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse("m.yaml", []byte(text), env(nil))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return c
}

// A key left out takes its package's default: configs restates no number
// that a package owns.
func TestDefaultsArePackageDefaults(t *testing.T) {
	c := parse(t, minimalSim)
	ad, pd, simd := actors.DefaultConfig(), actors.DefaultProviderSpec(), sim.DefaultProviderOptions()
	sd, aud, authd := storage.DefaultOptions(), audit.DefaultConfig(), auth.DefaultConfig()
	p := c.Providers[0]
	for name, pair := range map[string][2]any{
		"storage.cache_size":               {int64(c.Storage.CacheSize), sd.CacheSize},
		"storage.memtable_size":            {int64(c.Storage.MemtableSize), sd.MemtableSize},
		"server.request_timeout":           {c.Server.RequestTimeout.D(), ad.RequestTimeout},
		"providers[].timeout":              {p.Timeout.D(), pd.Timeout},
		"providers[].max_in_flight":        {p.MaxInFlight, pd.MaxInFlight},
		"providers[].max_queue":            {p.MaxQueue, pd.MaxQueue},
		"providers[].sim":                  {[4]any{p.Sim.TTFT.D(), p.Sim.ITL.D(), p.Sim.Tokens, p.Sim.Seed}, [4]any{simd.TTFT, simd.ITL, simd.Tokens, simd.Seed}},
		"models.threshold.latency":         {c.Models.Threshold.Latency.D(), ad.Failover.Latency},
		"models.threshold.error_rate":      {float64(c.Models.Threshold.ErrorRate), ad.Failover.ErrorRate},
		"models.window":                    {c.Models.Window.D(), ad.Failover.Window},
		"models.min_requests":              {c.Models.MinRequests, ad.Failover.MinRequests},
		"models.cooldown":                  {c.Models.Cooldown.D(), ad.Failover.Cooldown},
		"models.max_cooldown":              {c.Models.MaxCooldown.D(), ad.Failover.MaxCooldown},
		"models.health_interval":           {c.Models.HealthInterval.D(), ad.HealthInterval},
		"models.hedge_after":               {c.Models.HedgeAfter.D(), ad.HedgeAfter},
		"models.stream_failure":            {c.Models.StreamFailure == StreamContinue, ad.StreamContinue},
		"conversations.idle_timeout":       {c.Conversations.IdleTimeout.D(), ad.IdleTimeout},
		"conversations.max_context_tokens": {c.Conversations.MaxContextTokens, ad.MaxContextTokens},
		"conversations.max_queued_turns":   {c.Conversations.MaxQueuedTurns, ad.MaxQueuedTurns},
		"conversations.summary":            {[2]any{!c.Conversations.Summary.Enabled, c.Conversations.Summary.MaxTokens}, [2]any{ad.Summary.Off, ad.Summary.MaxTokens}},
		"cluster.replicas":                 {c.Cluster.Replicas, ad.Replicas},
		"cluster.remote_work":              {[4]int{c.Cluster.RemoteWork.Turns, c.Cluster.RemoteWork.Conv, c.Cluster.RemoteWork.Replicate, c.Cluster.RemoteWork.Fetch}, [4]int{ad.RemoteWork.Turns, ad.RemoteWork.Conv, ad.RemoteWork.Replicate, ad.RemoteWork.Fetch}},
		"cluster.profile":                  {c.Cluster.Profile, cluster.DefaultConfig().Profile},
		"audit.max_events":                 {c.Audit.MaxEvents, aud.MaxEvents},
		"audit.max_age":                    {c.Audit.MaxAge.D(), aud.MaxAge},
		"auth.token_ttl":                   {c.Auth.TokenTTL.D(), authd.TokenTTL},
		"auth.signing_rotate":              {c.Auth.SigningRotate.D(), authd.SigningRotate},
		"auth.failure_limit":               {c.Auth.FailureLimit, authd.FailureLimit},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s: %v, its package's default is %v", name, pair[0], pair[1])
		}
	}
}

// The default preset says it shows every default: it does, for every key
// but its example provider's.
func TestDefaultPresetShowsTheDefaults(t *testing.T) {
	preset := parse(t, string(mustPreset("default")))
	bare := parse(t, "providers: [{name: local, type: ollama, url: 'http://127.0.0.1:11434'}]\nmodels: {primary: local/llama3.2}\n")
	preset.Providers, bare.Providers = nil, nil
	if a, b := preset.Redacted(), bare.Redacted(); a != b {
		t.Errorf("default.yaml and the defaults differ:\n%s", lineDiff(a, b))
	}
}

// lineDiff shows the lines of a and b that the other lacks.
func lineDiff(a, b string) string {
	var out []string
	for _, side := range []struct {
		mark     string
		this, to string
	}{{"-", a, b}, {"+", b, a}} {
		other := map[string]int{}
		for _, l := range strings.Split(side.to, "\n") {
			other[l]++
		}
		for _, l := range strings.Split(side.this, "\n") {
			if other[l] > 0 {
				other[l]--
				continue
			}
			out = append(out, side.mark+" "+l)
		}
	}
	return strings.Join(out, "\n")
}

// Every default the README's configuration table gives as a value is the
// default: writing it into a config changes nothing.
func TestReadmeDefaults(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Configuration\n")
	end := strings.Index(text[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README has no configuration section")
	}
	row := regexp.MustCompile("(?m)^\\| (`[^|]+) \\| ([^|]+) \\|")
	literal := regexp.MustCompile("^`([^`]*)`$")
	want := parse(t, minimalSim).Redacted()
	checked := 0
	for _, m := range row.FindAllStringSubmatch(text[start:start+1+end], -1) {
		keys, vals := strings.Split(m[1], " / "), strings.Split(strings.TrimSpace(m[2]), " / ")
		if len(keys) != len(vals) {
			continue
		}
		var set []string
		for i := range keys {
			key := strings.Trim(strings.TrimSpace(keys[i]), "`")
			v := literal.FindStringSubmatch(strings.TrimSpace(vals[i]))
			if v == nil {
				set = nil
				break
			}
			if i > 0 && !strings.Contains(key, ".") {
				first := strings.Trim(keys[0], "` ")
				key = first[:strings.LastIndex(first, ".")+1] + key
			}
			set = append(set, key, v[1])
		}
		if set == nil || strings.Contains(strings.TrimPrefix(set[0], "providers[]."), "[]") {
			continue // no literal default, or a list without a first element
		}
		doc := map[string]any{}
		yaml.Unmarshal([]byte(minimalSim), &doc)
		for i := 0; i < len(set); i += 2 {
			var val any
			if err := yaml.Unmarshal([]byte("v: "+set[i+1]), &struct{ V *any }{&val}); err != nil {
				t.Errorf("README: %s: default %q is not YAML", set[i], set[i+1])
				continue
			}
			at := doc
			path := strings.Split(set[i], ".")
			if path[0] == "providers[]" {
				at, path = doc["providers"].([]any)[0].(map[string]any), path[1:]
			}
			for _, k := range path[:len(path)-1] {
				if _, ok := at[k].(map[string]any); !ok {
					at[k] = map[string]any{}
				}
				at = at[k].(map[string]any)
			}
			at[path[len(path)-1]] = val
		}
		out, _ := yaml.Marshal(doc)
		c, err := Parse("readme.yaml", out, env(nil))
		if err != nil {
			t.Errorf("README: %s: %v", strings.Join(set, " "), err)
			continue
		}
		if got := c.Redacted(); got != want {
			t.Errorf("README says the default of %s is %s; written, it changes:\n%s", set[0], set[1], lineDiff(want, got))
		}
		checked++
	}
	if checked < 30 {
		t.Fatalf("only %d README defaults checked: the table's shape changed?", checked)
	}
}

// cluster.remote_work is read, defaulted per key, and bounded with the
// key and line named; a written 0 where 0 is a setting stays 0.
func TestRemoteWorkAndWrittenZeros(t *testing.T) {
	c := parse(t, "cluster:\n  remote_work: {turns: 8, fetch: 2}\nconversations: {max_queued_turns: 0}\n"+minimalSim)
	ad := actors.DefaultConfig()
	if rw := c.Cluster.RemoteWork; rw.Turns != 8 || rw.Fetch != 2 || rw.Conv != ad.RemoteWork.Conv || rw.Replicate != ad.RemoteWork.Replicate {
		t.Errorf("remote_work %+v", rw)
	}
	if c.Conversations.MaxQueuedTurns != 0 {
		t.Errorf("max_queued_turns: 0 became %d", c.Conversations.MaxQueuedTurns)
	}
	_, err := Parse("m.yaml", []byte("cluster:\n  remote_work:\n    conv: 0\n    turns: -1\n"+minimalSim), env(nil))
	for _, w := range []string{"m.yaml:3: cluster.remote_work.conv: must be at least 1, got 0", "m.yaml:4: cluster.remote_work.turns: must be at least 1, got -1"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v\nlacks %q", err, w)
		}
	}
	_, err = Parse("m.yaml", []byte("cluster:\n  remote_work: {turn: 1}\n"+minimalSim), env(nil))
	if err == nil || !strings.Contains(err.Error(), `m.yaml:2: cluster.remote_work.turn: unknown key (did you mean "turns"?)`) {
		t.Errorf("typo: %v", err)
	}
}

// The known provider types are the registry's, and an unknown one is
// answered with them.
func TestProviderTypesFromTheRegistry(t *testing.T) {
	types := inference.Types()
	if strings.Join(types, ",") != "anthropic,ollama,openai,sim" {
		t.Errorf("registered: %v", types)
	}
	_, err := Parse("m.yaml", []byte("providers: [{name: a, type: gemini}]\nmodels: {primary: a/b}\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), `m.yaml:1: providers[0].type: must be one of `+strings.Join(types, ", ")+`, got "gemini"`) {
		t.Errorf("unknown type: %v", err)
	}
	// A type that needs no URL (the simulator) is not asked for one.
	for _, typ := range types {
		tp, _ := inference.LookupType(typ)
		_, err := Parse("m.yaml", []byte("providers: [{name: a, type: "+typ+"}]\nmodels: {primary: a/b}\n"), env(nil))
		if asked := err != nil && strings.Contains(err.Error(), "providers[0].url: is required"); asked != (tp.NeedsURL && tp.DefaultURL == nil) {
			t.Errorf("type %s: url asked %v, needs %v", typ, asked, tp.NeedsURL)
		}
	}
	p := parse(t, "providers: [{name: s, type: sim, models: [m], sim: {ttft: 0s, tokens: 3}}]\nmodels: {primary: s/m}\n").Providers[0]
	prov, err := inference.NewProvider(p.Type, p.Spec(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if o := prov.(*sim.Provider).Engine.Options(); o.TTFT != 0 || o.ITL != 5*time.Millisecond || o.Tokens != 3 || o.Models[0] != "m" {
		t.Errorf("sim options %+v", o)
	}
}
