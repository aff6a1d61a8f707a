package configs

import (
	"errors"
	"fmt"
	"github.com/moltbot/moltbot/inference/ollama"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/inference/sim"
	"gopkg.in/yaml.v3"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

const minimal = `
providers:
  - name: local
    type: ollama
    url: http://127.0.0.1:11434
models:
  primary: local/llama3.2
`

func TestPresetsLoad(t *testing.T) {
	for _, name := range Presets() {
		c, err := Parse("preset:"+name, mustPreset(name), env(nil))
		if err != nil {
			t.Fatalf("preset %s: %v", name, err)
		}
		if c.Server.Host != "127.0.0.1" || c.Server.Port != 3000 {
			t.Errorf("preset %s listens on %s:%d; presets must stay on loopback:3000", name, c.Server.Host, c.Server.Port)
		}
	}
	d := Default()
	if d.Models.Threshold.Latency.D() != 3*time.Second || d.Models.Threshold.ErrorRate != 0.05 || d.Chain()[0].String() != "local/llama3.2" {
		t.Errorf("default thresholds %+v", d.Models)
	}
	demo, _ := LoadPreset("demo")
	chain := demo.Chain()
	if chain[len(chain)-1].Provider != "sim" || demo.Provider("sim").Type != sim.TypeName {
		t.Errorf("demo chain must end with the simulator: %v", chain)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("m.yaml", []byte(minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.MaxBodyBytes != 1<<20 || c.Conversations.IdleTimeout.D() != 5*time.Minute || c.Conversations.MaxContextTokens != 4096 ||
		c.Log.Level != "info" || c.Storage.Path != "data" || c.Providers[0].MaxInFlight != 64 || c.Cluster.Replicas != 2 {
		t.Errorf("defaults not filled: %+v", c)
	}
	// The HTTP edge is closed by default: bodies have a deadline, anonymous
	// requests a bound per address, /metrics needs the operator when auth is
	// on, X-Forwarded-For is believed from no one.
	if c.Server.ReadBodyTimeout.D() != 30*time.Second || c.Server.MaxAnonymousRequests != 16 || c.Auth.MetricsOpen ||
		len(c.Server.TrustedProxies) != 0 || len(c.Server.AllowedHosts) != 0 || c.Server.TLS.Enabled() {
		t.Errorf("edge defaults: %+v metrics_open %v", c.Server, c.Auth.MetricsOpen)
	}
	for _, name := range Presets() {
		if p, _ := LoadPreset(name); p.Auth.MetricsOpen {
			t.Errorf("preset %s opens /metrics", name)
		}
	}
	c, _ = Parse("m.yaml", []byte("server: {port: 0}\n"+minimal), env(nil))
	if c.Server.Port != 0 {
		t.Errorf("an explicit port 0 became %d", c.Server.Port)
	}
}

func TestValues(t *testing.T) {
	c, err := Parse("m.yaml", []byte(`
server: {max_body_bytes: 2MiB, request_timeout: 90s, memory_limit: 48MiB}
providers:
  - {name: cloud, type: openai, url: "${BASE:-https://api.example.com/v1}", api_keys: ["${KEY}", "lit$$eral"], timeout: 1500ms}
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0, tokens: 5}}
models:
  primary: cloud/gpt-4o-mini
  fallback: [sim/sim]
  threshold: {latency: 2500ms, error_rate: 0.1}
conversations: {idle_timeout: 1m, max_context_tokens: 8192, max_message_bytes: 512KiB}
`), env(map[string]string{"KEY": "sk-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Providers[0]
	if p.URL != "https://api.example.com/v1" || p.APIKeys[0].Value() != "sk-secret" || p.APIKeys[1].Value() != "lit$eral" || p.Timeout.D() != 1500*time.Millisecond {
		t.Errorf("provider %+v", p)
	}
	if c.Server.MaxBodyBytes != 2<<20 || c.Server.MemoryLimit != 48<<20 || c.Models.Threshold.ErrorRate != 0.1 || c.Models.Threshold.Latency.D() != 2500*time.Millisecond ||
		c.Conversations.MaxMessageBytes != 512<<10 || c.Providers[1].Sim.TTFT != 0 || c.Providers[1].Sim.ITL != 0 {
		t.Errorf("values %+v", c)
	}
	if got := fmt.Sprintf("%v %s %+v", p.APIKeys[0], p.APIKeys[0], p.APIKeys); strings.Contains(got, "sk-secret") {
		t.Errorf("secret printed: %s", got)
	}
	if strings.Contains(c.Redacted(), "sk-secret") || !strings.Contains(c.Redacted(), "[REDACTED]") {
		t.Errorf("redacted dump: %s", c.Redacted())
	}
}

func TestErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"undefined provider", minimal + "  fallback: [locl/x]\n", []string{`m.yaml:8: models.fallback[0]: provider "locl" is not defined (defined: local)`}},
		{"primary undefined", strings.Replace(minimal, "local/llama3.2", "locl/llama3.2", 1), []string{`m.yaml:7: models.primary: provider "locl" is not defined`}},
		{"typo", "sever: {}\n" + minimal, []string{`m.yaml:1: sever: unknown key (did you mean "server"?)`}},
		{"nested typo", "server: {prot: 1}\n" + minimal, []string{`m.yaml:1: server.prot: unknown key (did you mean "port"?)`}},
		{"wrong type", "server:\n  port: lots\n" + minimal, []string{`m.yaml:2: server.port: want a whole number, got "lots"`}},
		{"port range", "server: {port: 70000}\n" + minimal, []string{`m.yaml:1: server.port: must be between 0 and 65535`}},
		{"bad percent", minimal + "  threshold: {error_rate: 150%}\n", []string{`m.yaml:8: models.threshold.error_rate: must be between 0% and 100%`}},
		{"bad duration", "conversations: {idle_timeout: 5 minutes}\n" + minimal, []string{`m.yaml:1: conversations.idle_timeout: want a duration`}},
		{"bad size", "server: {max_body_bytes: 1 potato}\n" + minimal, []string{`server.max_body_bytes: want a size`}},
		{"small memory limit", "server: {memory_limit: 1MiB}\n" + minimal, []string{`m.yaml:1: server.memory_limit: must be 0 (none) or at least 16MiB, got 1MiB`}},
		{"list not map", "providers: {name: x}\nmodels: {primary: x/y}\n", []string{`m.yaml:1: providers: want a list`}},
		{"bad type", "providers: [{name: a, type: llama}]\nmodels: {primary: a/b}\n", []string{`m.yaml:1: providers[0].type: must be one of anthropic, ollama, openai, sim, got "llama"`}},
		{"no url", "providers:\n  - name: a\n    type: openai\nmodels: {primary: a/b}\n", []string{`m.yaml:2: providers[0].url: is required for type openai`}},
		{"bad url", "providers: [{name: a, type: ollama, url: 'localhost:11434'}]\nmodels: {primary: a/b}\n", []string{`providers[0].url: want an http:// or https:// URL`}},
		{"duplicate provider", "providers: [{name: a, type: sim}, {name: a, type: sim}]\nmodels: {primary: a/b}\n", []string{`providers[1].name: provider "a" is defined twice`}},
		{"slash in name", "providers: [{name: a/b, type: sim}]\nmodels: {primary: x/y}\n", []string{`providers[0].name: must not contain '/'`}},
		{"bare model nobody lists", "providers: [{name: a, type: sim}, {name: b, type: sim}]\nmodels: {primary: justamodel}\n", []string{`models.primary: model "justamodel": no provider lists it in its models: (providers: a, b)`}},
		{"ambiguous bare model", "providers: [{name: a, type: sim, models: [m]}, {name: b, type: sim, models: [m]}]\nmodels: {primary: m}\n", []string{`models.primary: model "m" is ambiguous: a/m and b/m list it`}},
		{"bare model twice in chain", "providers: [{name: a, type: sim, models: [m]}, {name: b, type: sim}]\nmodels: {primary: m, fallback: [a/m]}\n", []string{`models.fallback[0]: "a/m" is already in the chain`}},
		{"unknown capability", "providers: [{name: a, type: sim, capabilities: {m: [tools, telepathy]}}]\nmodels: {primary: a/m}\n", []string{`providers[0].capabilities.m: unknown capability "telepathy" (known: tools, vision, json_schema, embeddings)`}},
		{"no primary", "providers: [{name: a, type: sim}]\n", []string{`models.primary: is required`}},
		{"no providers", "models: {primary: a/b}\n", []string{`providers: at least one provider is needed`, `provider "a" is not defined`}},
		{"duplicate in chain", minimal + "  fallback: [local/llama3.2]\n", []string{`models.fallback[0]: "local/llama3.2" is already in the chain`}},
		{"unset env", "providers: [{name: a, type: sim, url: '${NOPE}'}]\nmodels: {primary: a/b}\n", []string{`m.yaml:1: providers[0].url: environment variable NOPE is not set`}},
		{"unclosed env", "providers: [{name: a, type: sim, url: '${NOPE'}]\nmodels: {primary: a/b}\n", []string{`unclosed ${`}},
		{"key twice", "log: {level: info, level: debug}\n" + minimal, []string{`m.yaml:1: log.level: key given twice`}},
		{"two documents", minimal + "---\nlog: {}\n", []string{`only one YAML document`}},
		{"empty", "", []string{`m.yaml: the config is empty`}},
		{"yaml syntax", "server: [\n", []string{`m.yaml: `}},
		{"log level", "log: {level: loud}\n" + minimal, []string{`m.yaml:1: log.level: must be one of debug, info, warn, error, got "loud"`}},
		{"several at once", "log: {level: loud, format: xml}\n" + minimal, []string{`log.level`, `log.format`}},
		{"trusted proxy", "server:\n  trusted_proxies: [10.0.0.0/8, proxy.lan]\n" + minimal, []string{`m.yaml:2: server.trusted_proxies[1]: want an IP address or a CIDR such as 10.0.0.0/8, got "proxy.lan"`}},
		{"allowed host", "server:\n  allowed_hosts:\n    - moltbot.lan\n    - http://x.lan:3000\n" + minimal, []string{`m.yaml:4: server.allowed_hosts[1]: want a host name`}},
		{"tls half", "server:\n  tls: {cert_file: c.pem}\n" + minimal, []string{`m.yaml:2: server.tls.key_file: is required with server.tls.cert_file`}},
		{"body timeout", "server: {read_body_timeout: 1ms}\n" + minimal, []string{`m.yaml:1: server.read_body_timeout: must be at least 100ms`}},
		{"anonymous", "server: {max_anonymous_requests: -1}\n" + minimal, []string{`m.yaml:1: server.max_anonymous_requests: must be at least 1`}},
		{"cluster bind name", "cluster:\n  bind: localhost:7946\n" + minimal, []string{`m.yaml:2: cluster.bind: want an IP address, not the host name "localhost"`}},
		{"cluster advertise name", "cluster: {bind: 127.0.0.1:7946, advertise: node1.lan:7946}\n" + minimal, []string{`cluster.advertise: want an IP address, not the host name "node1.lan"`}},
		{"cluster tls half", "cluster:\n  bind: 127.0.0.1:7946\n  tls: {ca_file: ca.crt}\n" + minimal, []string{`cluster.tls.cert_file: is needed`, `cluster.tls.key_file: is needed`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("m.yaml", []byte(tc.yaml), env(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestEdgeValues(t *testing.T) {
	c, err := Parse("m.yaml", []byte(`
server:
  trusted_proxies: [10.0.0.0/8, "192.0.2.7", "::1", "2001:db8::/32"]
  allowed_hosts: [moltbot.lan, .example.com]
  tls: {cert_file: tls/cert.pem, key_file: tls/key.pem}
  read_body_timeout: 5s
  max_anonymous_requests: 4
auth: {metrics_open: true}
`+minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Server
	if len(s.TrustedProxies) != 4 || s.AllowedHosts[1] != ".example.com" || s.TLS.CertFile != "tls/cert.pem" || !s.TLS.Enabled() ||
		s.ReadBodyTimeout.D() != 5*time.Second || s.MaxAnonymousRequests != 4 || !c.Auth.MetricsOpen {
		t.Errorf("%+v", s)
	}
	for in, want := range map[string]string{"10.1.2.3/8": "10.0.0.0/8", "192.0.2.7": "192.0.2.7/32", "::1": "::1/128", "::ffff:10.0.0.1": "10.0.0.1/32"} {
		if p, err := ParsePrefix(in); err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	lookup := env(map[string]string{"A": "1", "EMPTY": ""})
	for in, want := range map[string]string{"x": "x", "${A}": "1", "a${A}b${A}": "a1b1", "${B:-def}": "def", "${EMPTY:-d}": "d",
		"${EMPTY}": "", "$$": "$", "$${A}": "${A}", "$5": "$5", "${B:-}": ""} {
		got, err := expandEnv(in, lookup)
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"${B}", "${", "${1A}", "${A-B}"} {
		if _, err := expandEnv(in, lookup); err == nil {
			t.Errorf("expand(%q) accepted", in)
		}
	}
}

func TestRoundTripYAML(t *testing.T) {
	c := Default()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("dump", b, env(nil))
	if err != nil {
		t.Fatalf("a dumped config does not load: %v\n%s", err, b)
	}
	if back.Models.Threshold != c.Models.Threshold || fmt.Sprintf("%+v", back.Server) != fmt.Sprintf("%+v", c.Server) || back.Auth.MetricsOpen != c.Auth.MetricsOpen {
		t.Errorf("round trip changed values")
	}
}

// FuzzParse: any input gives a config or an error, never a panic, and every
// field error names its file.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add(mustPreset("default"))
	f.Add(mustPreset("demo"))
	f.Add([]byte("a: &x [*x]\nserver: *x\n"))
	f.Add([]byte("providers: [{name: a, type: sim, sim: {tokens: ${N:-3}}}]\nmodels: {primary: a/b, threshold: {error_rate: 5%}}"))
	f.Add([]byte("providers: [{name: a, type: sim}]\nmodels: {primary: a/b}\nbots: [{name: s}]\nchannels:\n  - {name: h, type: webhook, bot: s, secret: \"${N}\", allow_bots: true, conversations: chat}\n  - &c {name: g, type: x, k: [1]}\n  - *c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("f.yaml", b, env(map[string]string{"N": "4"}))
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) && fe.File != "f.yaml" {
				t.Fatalf("field error without the file: %v", err)
			}
			return
		}
		if c.Validate() != nil || len(c.Chain()) == 0 {
			t.Fatalf("accepted an invalid config")
		}
	})
}

// The seed writes its chain with bare names (primary: "anthropic-pro-200"):
// each is the model of the provider that lists it; capabilities declared
// per model reach the provider spec.
func TestBareModelNames(t *testing.T) {
	yaml := `providers:
  - {name: cloud, type: anthropic, url: "https://api.anthropic.com", api_keys: [k], models: [anthropic-pro-200]}
  - {name: gpt, type: openai, url: "https://api.openai.com/v1", api_keys: [k], models: [openai-gpt4]}
  - name: local
    type: ollama
    url: "http://127.0.0.1:11434"
    models: [local-llama3, llava]
    capabilities: {llava: [vision, json_schema]}
models:
  primary: "anthropic-pro-200"
  fallback: ["openai-gpt4", "local-llama3", "local/llava"]
`
	c, err := Parse("m.yaml", []byte(yaml), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range c.Chain() {
		got = append(got, r.String())
	}
	if strings.Join(got, " ") != "cloud/anthropic-pro-200 gpt/openai-gpt4 local/local-llama3 local/llava" {
		t.Fatalf("chain %v", got)
	}
	caps := c.Provider("local").Caps()
	if l := caps["llava"]; !l.Known || !l.Vision || !l.JSONSchema || l.Tools {
		t.Fatalf("%+v", caps)
	}
	if c.Provider("cloud").Caps() != nil {
		t.Fatal("capabilities made up")
	}
}

// keep_alive is Ollama's: a duration or -1, reaching the client's options;
// on another type it is an error naming the key.
func TestKeepAlive(t *testing.T) {
	for v, want := range map[string]time.Duration{"30m": 30 * time.Minute, "-1": -1} {
		c, err := Parse("m.yaml", []byte("providers: [{name: l, type: ollama, url: 'http://127.0.0.1:11434', keep_alive: '"+v+"'}]\nmodels: {primary: l/m}\n"), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		o, ok := c.Providers[0].Spec(nil, nil).Options.(ollama.Options)
		if !ok || o.KeepAlive == nil || *o.KeepAlive != want {
			t.Fatalf("%s: %#v", v, c.Providers[0].Spec(nil, nil).Options)
		}
	}
	if c, _ := Parse("m.yaml", []byte("providers: [{name: l, type: ollama, url: 'http://127.0.0.1:11434'}]\nmodels: {primary: l/m}\n"), env(nil)); c.Providers[0].Spec(nil, nil).Options != nil {
		t.Fatal("keep_alive sent unset")
	}
	for yaml, want := range map[string]string{
		"providers: [{name: s, type: sim, keep_alive: 5m}]\nmodels: {primary: s/m}\n":                                     `providers[0].keep_alive: is for type ollama only`,
		"providers: [{name: l, type: ollama, url: 'http://127.0.0.1:11434', keep_alive: soon}]\nmodels: {primary: l/m}\n": `keep_alive`,
	} {
		if _, err := Parse("m.yaml", []byte(yaml), env(nil)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", yaml, err)
		}
	}
}
