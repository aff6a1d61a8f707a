package configs

import (
	"fmt"
	"sort"
	"strings"

	"github.com/moltbot/moltbot"
	"gopkg.in/yaml.v3"
)

// ChannelConfig is a channel of the file (channels:): a chat platform or
// a signed webhook a bot is reached through (package channels). name,
// type, bot, conversations and allow_bots are the channel's; every other
// key is an option of its type (a credential, a mode), a string with
// ${VAR} expanded. Which options a type knows and needs is the type's to
// say: cmd checks them (channel_types.go), naming channels[i].KEY and its
// line.
type ChannelConfig struct {
	// Name is unique among the channels: [a-z0-9_-], at most 32 bytes.
	Name string
	Type string
	// Bot is the bots: entry the channel speaks as (its tenant is the
	// channel's); "": the default tenant, no persona.
	Bot string
	// Conversations is user (one per author and chat, the default), chat
	// or thread.
	Conversations string
	// AllowBots lets bot authors in (a per-pair budget still cuts loops).
	AllowBots bool
	// Options are the type's keys.
	Options map[string]string

	node *yaml.Node
}

func (c *ChannelConfig) keep(n *yaml.Node) { c.node = n }

// MarshalYAML writes the channel with its options redacted (they hold
// credentials).
func (c ChannelConfig) MarshalYAML() (any, error) {
	m := map[string]any{"name": c.Name, "type": c.Type}
	if c.Bot != "" {
		m["bot"] = c.Bot
	}
	if c.Conversations != "" {
		m["conversations"] = c.Conversations
	}
	if c.AllowBots {
		m["allow_bots"] = true
	}
	for k := range c.Options {
		m[k] = "[REDACTED]"
	}
	return m, nil
}

// ChannelNameRule describes a channel's name.
const ChannelNameRule = "use 1-32 lowercase letters, digits, '-' or '_'"

// ValidChannelName reports whether s can name a channel (it is a URL path
// segment, /channels/NAME/, and a metric label).
func ValidChannelName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// decodeChannels decodes each channel's keys: its own, then its type's
// options (strings, ${VAR} expanded; anything else is an error naming the
// key and line).
func (d *decoder) decodeChannels(cfg *Config) {
	for i := range cfg.Channels {
		c := &cfg.Channels[i]
		path := fmt.Sprintf("channels[%d]", i)
		n := c.node
		if n == nil {
			continue
		}
		for n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n.Line, path, "want a mapping of keys (name, type, bot, ...), got %s", kindName(n))
			continue
		}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, v := n.Content[j], n.Content[j+1]
			for v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			p := path + "." + k.Value
			if _, dup := d.lines[p]; dup {
				d.fail(k.Line, p, "is written twice")
				continue
			}
			d.lines[p] = k.Line
			if v.Kind != yaml.ScalarNode {
				d.fail(v.Line, p, "want a string, got %s", kindName(v))
				continue
			}
			if v.Tag == "!!null" {
				continue
			}
			s, ok := d.scalar(v, p)
			if !ok {
				continue
			}
			switch k.Value {
			case "name":
				c.Name = s
			case "type":
				c.Type = s
			case "bot":
				c.Bot = s
			case "conversations":
				c.Conversations = s
			case "allow_bots":
				switch strings.TrimSpace(s) {
				case "true":
					c.AllowBots = true
				case "false":
				default:
					d.fail(v.Line, p, "want true or false, got %q", s)
				}
			default:
				if c.Options == nil {
					c.Options = map[string]string{}
				}
				c.Options[k.Value] = s
			}
		}
	}
}

// validateChannels checks channels: what does not depend on the types
// (cmd checks the types and their options).
func (c *Config) validateChannels(add func(path, format string, args ...any)) {
	names := map[string]bool{}
	bots := map[string]bool{}
	for _, b := range c.Bots {
		bots[b.Name] = true
	}
	for i, ch := range c.Channels {
		at := func(k string) string { return fmt.Sprintf("channels[%d].%s", i, k) }
		switch {
		case ch.Name == "":
			add(at("name"), "is required")
		case !ValidChannelName(ch.Name):
			add(at("name"), ChannelNameRule+", got %q", ch.Name)
		case names[ch.Name]:
			add(at("name"), "channel %q is defined twice", ch.Name)
		}
		names[ch.Name] = true
		if ch.Type == "" {
			add(at("type"), "is required (slack, discord, telegram, feishu, webhook, widget)")
		}
		if ch.Bot != "" && !bots[ch.Bot] {
			known := make([]string, 0, len(bots))
			for b := range bots {
				known = append(known, b)
			}
			sort.Strings(known)
			add(at("bot"), "names no bot of bots: (%s)", strings.Join(known, ", "))
		}
		switch ch.Conversations {
		case "", "user", "chat", "thread":
		default:
			add(at("conversations"), "want user, chat or thread, got %q", ch.Conversations)
		}
	}
}

// ChannelTenant is the tenant a channel's conversations belong to: its
// bot's, or the default tenant.
func (c *Config) ChannelTenant(ch ChannelConfig) string {
	for _, b := range c.Bots {
		if b.Name == ch.Bot && b.Tenant != "" {
			return b.Tenant
		}
	}
	return moltbot.DefaultTenant
}

// ChannelErr is an error about a channel's key (channels[i].key), at its
// line: for cmd's checks of the types' options.
func (c *Config) ChannelErr(i int, key, format string, args ...any) error {
	return c.errAt(fmt.Sprintf("channels[%d].%s", i, key), format, args...)
}
