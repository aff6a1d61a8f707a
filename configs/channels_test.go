package configs

import (
	"strings"
	"testing"
)

// channels: is checked key by key; every key but the channel's own is an
// option of its type, a string with ${VAR} expanded.
func TestChannelsConfig(t *testing.T) {
	env := func(k string) (string, bool) {
		if k == "HOOK_SECRET" {
			return "s3cret-from-env-0123456789", true
		}
		return "", false
	}
	base := botsBase + "bots:\n  - {name: support, tenant: acme}\n"
	for _, tc := range []struct {
		name, channels string
		want           string // "" = valid
	}{
		{"valid", "channels:\n  - name: hooks\n    type: webhook\n    bot: support\n    conversations: chat\n    allow_bots: true\n    secret: ${HOOK_SECRET}\n    callback_url: http://127.0.0.1:9/cb\n", ""},
		{"no bot", "channels:\n  - {name: plain, type: webhook, secret: x}\n", ""},
		{"no name", "channels:\n  - {type: webhook}\n", "m.yaml:9: channels[0].name: is required"},
		{"bad name", "channels:\n  - {name: Hooks, type: webhook}\n", `m.yaml:9: channels[0].name: use 1-32 lowercase letters, digits, '-' or '_', got "Hooks"`},
		{"long name", "channels:\n  - {name: " + strings.Repeat("a", 33) + ", type: webhook}\n", `channels[0].name: use 1-32`},
		{"twice", "channels:\n  - {name: a, type: webhook}\n  - {name: a, type: slack}\n", `m.yaml:10: channels[1].name: channel "a" is defined twice`},
		{"no type", "channels:\n  - {name: a}\n", "m.yaml:9: channels[0].type: is required"},
		{"unknown bot", "channels:\n  - {name: a, type: webhook, bot: sales}\n", `m.yaml:9: channels[0].bot: names no bot of bots: (support)`},
		{"bad keying", "channels:\n  - {name: a, type: webhook, conversations: room}\n", `channels[0].conversations: want user, chat or thread, got "room"`},
		{"bad allow_bots", "channels:\n  - {name: a, type: webhook, allow_bots: maybe}\n", `channels[0].allow_bots: want true or false, got "maybe"`},
		{"non-string option", "channels:\n  - name: a\n    type: webhook\n    secret: [a, b]\n", `m.yaml:11: channels[0].secret: want a string, got a list`},
		{"mapping option", "channels:\n  - name: a\n    type: webhook\n    tokens: {a: b}\n", `m.yaml:11: channels[0].tokens: want a string, got a mapping`},
		{"unset variable", "channels:\n  - {name: a, type: webhook, secret: \"${NOPE}\"}\n", `channels[0].secret`},
		{"not a mapping", "channels:\n  - webhook\n", `channels[0]: want a mapping`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("m.yaml", []byte(base+tc.channels), env)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			_ = cfg
		})
	}
	cfg, err := Parse("m.yaml", []byte(base+"channels:\n  - name: hooks\n    type: webhook\n    bot: support\n    secret: ${HOOK_SECRET}\n    mode: \"42\"\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	ch := cfg.Channels[0]
	if ch.Name != "hooks" || ch.Type != "webhook" || ch.Bot != "support" || ch.Conversations != "" || ch.AllowBots {
		t.Fatalf("channel %+v", ch)
	}
	if ch.Options["secret"] != "s3cret-from-env-0123456789" || ch.Options["mode"] != "42" || len(ch.Options) != 2 {
		t.Fatalf("options %v", ch.Options)
	}
	if got := cfg.ChannelTenant(ch); got != "acme" {
		t.Fatalf("tenant %q, want the bot's, acme", got)
	}
	if l := cfg.Line("channels[0].secret"); l != 12 {
		t.Fatalf("line of channels[0].secret: %d, want 12", l)
	}
	if err := cfg.ChannelErr(0, "secret", "too short"); !strings.Contains(err.Error(), "m.yaml:12: channels[0].secret: too short") {
		t.Fatalf("ChannelErr: %v", err)
	}
	if red := cfg.Redacted(); strings.Contains(red, "s3cret") || !strings.Contains(red, "[REDACTED]") {
		t.Fatalf("the redacted config shows a channel's secret:\n%s", red)
	}
}
