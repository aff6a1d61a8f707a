package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
	"github.com/moltbot/moltbot/storage/replica"
)

// The channels, wired: the config's channels: checked against the types
// (channel_types.go), the core (package channels) over the chat service,
// this node's inbox namespace, the channels' state replicated to every
// member (a part of the shared state, tag 0x04) and the ring; its
// /channels/ mount is the gateway's, its Deliver the outbox's for the
// channels' destinations.

// channelStateTag is the channels' Get/Put state's part of what every
// member holds (actors.SharedMux).
const channelStateTag = 0x04

// channelSpecs checks the config's channels against the types and returns
// them as the core takes them; every error names channels[i].KEY and its
// line.
func channelSpecs(cfg *configs.Config, types []channels.Type) ([]channels.Spec, error) {
	var specs []channels.Spec
	var errs []error
	known := make([]string, 0, len(types))
	for _, t := range types {
		known = append(known, t.Name)
	}
	for i, c := range cfg.Channels {
		ti := slices.IndexFunc(types, func(t channels.Type) bool { return t.Name == c.Type })
		if ti < 0 {
			errs = append(errs, cfg.ChannelErr(i, "type", "unknown channel type %q (known: %s)", c.Type, strings.Join(known, ", ")))
			continue
		}
		t := types[ti]
		bad := false
		for _, k := range slices.Sorted(mapKeys(c.Options)) {
			if !slices.Contains(t.Options, k) {
				bad = true
				errs = append(errs, cfg.ChannelErr(i, k, "unknown key for a %s channel (known: name, type, bot, conversations, allow_bots, %s)",
					c.Type, strings.Join(t.Options, ", ")))
			}
		}
		for _, k := range t.Required {
			if c.Options[k] == "" {
				bad = true
				errs = append(errs, cfg.ChannelErr(i, k, "is required by a %s channel", c.Type))
			}
		}
		keying := c.Conversations
		if keying == "" {
			keying = channels.PerUser
		}
		opts := c.Options
		if slices.Contains(t.Options, "trusted_proxies") && opts["trusted_proxies"] == "" && len(cfg.Server.TrustedProxies) > 0 {
			// A type that counts client addresses (the widget) trusts
			// the node's proxies unless it names its own.
			opts = maps.Clone(opts)
			if opts == nil {
				opts = map[string]string{}
			}
			opts["trusted_proxies"] = strings.Join(cfg.Server.TrustedProxies, ",")
		}
		cc := channels.Config{Name: c.Name, Type: c.Type, Bot: c.Bot, Tenant: cfg.ChannelTenant(c), Conversations: keying, Options: opts}
		if !bad && t.Check != nil {
			if err := t.Check(cc); err != nil {
				// "key: what is wrong" names the option at fault.
				key, msg, ok := strings.Cut(err.Error(), ": ")
				if !ok || !slices.Contains(t.Options, key) {
					key, msg = "type", err.Error()
				}
				errs = append(errs, cfg.ChannelErr(i, key, "%s", msg))
				continue
			}
		}
		specs = append(specs, channels.Spec{Config: cc, Type: t, AllowBots: c.AllowBots})
	}
	return specs, errors.Join(errs...)
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// chatChannels is the chat service as the channels' core asks it: a turn
// run to its end.
type chatChannels struct{ svc func() *chat.Service }

func (c chatChannels) Turn(ctx context.Context, p *moltbot.Principal, conversation string, in moltbot.TurnInput) (*moltbot.TurnResult, error) {
	s := c.svc()
	if s == nil {
		return nil, &moltbot.Error{Code: moltbot.EUnavailable, Message: "the node is starting"}
	}
	st, err := s.Turn(ctx, p, chat.TurnRequest{Conversation: conversation, Input: in})
	if err != nil {
		return nil, err
	}
	return st.Wait()
}

func (c chatChannels) Create(ctx context.Context, p *moltbot.Principal, o moltbot.NewConversation) (*moltbot.Conversation, error) {
	s := c.svc()
	if s == nil {
		return nil, &moltbot.Error{Code: moltbot.EUnavailable, Message: "the node is starting"}
	}
	return s.Create(ctx, p, o)
}

// tenantSpace is a tenant's space as auth knows it now (the id, with its
// incarnation for a tenant made through the API); an error for a tenant
// that does not exist or was deleted. The default tenant is "default" when
// auth keeps no record of it. The channels and the widget resolve by it.
func tenantSpace(as *auth.Service) func(string) (string, error) {
	return func(tenant string) (string, error) {
		t, ok := as.Tenant(tenant)
		switch {
		case !ok && tenant == moltbot.DefaultTenant:
			return tenant, nil
		case !ok || t.Deleted != 0:
			return "", fmt.Errorf("no tenant %q", tenant)
		}
		return t.Space(), nil
	}
}

// newChannels makes the core with the config's channels (not started):
// before the runtime, whose outbox delivers through it.
func (n *Node) newChannels(specs []channels.Spec, store storage.Namespaces, as *auth.Service, met *metrics.Registry) error {
	state, err := replica.Open(replica.Config{KV: store.Namespace(storage.ChannelsState), MaxValue: channels.MaxStateValue})
	if err != nil {
		return fmt.Errorf("channels: %w", err)
	}
	pub, err := n.sharePart(channelStateTag, state)
	if err != nil {
		return err
	}
	state.SetPublish(pub)
	core := channels.NewCore(channels.CoreConfig{Chat: chatChannels{svc: n.chatSvc.Load}, Space: tenantSpace(as),
		Inbox: store.Namespace(storage.ChannelsInbox), State: state, Metrics: met, Logger: n.Log})
	if err := core.Set(specs); err != nil {
		return err
	}
	n.chans = core
	n.channelGauges(met)
	return nil
}

// startChannels starts the core once the runtime (and the cluster) run:
// in a cluster each Run goes where the ring puts it.
func (n *Node) startChannels(rt *actors.Runtime) error {
	if n.cl != nil {
		n.chans.Place(actors.SingletonsOf(rt), n.cl.ID())
	}
	return n.chans.Start(context.Background())
}

// channelGauges exports each channel's inbox depth (once a name).
func (n *Node) channelGauges(met *metrics.Registry) {
	core := n.chans
	for _, name := range core.Names() {
		met.Gauge(`moltbot_channel_inbox_depth{channel="`+name+`"}`, func() float64 {
			st, _ := core.StatusOf(name)
			return float64(st.Pending)
		})
	}
}

// reloadChannels applies the file's channels: (SIGHUP): only what changed
// restarts. A config whose channels do not check keeps the running ones.
func (n *Node) reloadChannels(cfg *configs.Config) error {
	if n.chans == nil {
		return nil
	}
	specs, err := channelSpecs(cfg, n.channelTypes())
	if err == nil {
		err = n.chans.Set(specs)
	}
	if err != nil {
		n.Log.Error("channels not reloaded; the running ones stay", "err", err)
		return err
	}
	n.channelGauges(n.met)
	return nil
}
