// Package slack is the Slack adapter (channel type "slack"): a Slack app
// that answers mentions and direct messages, in the mention's thread.
//
// Two transports, chosen by the option mode:
//
//   - socket (the default): Socket Mode, an outbound WebSocket that works
//     behind NAT. Run opens it (apps.connections.open with the app-level
//     xapp- token, then the wss:// URL it returns), acknowledges each
//     envelope, reconnects with a fresh URL on Slack's `disconnect`, and
//     watches the socket: a ping every PingEvery and a read deadline of
//     IdleTimeout, so a half-open socket (a NAT that forgot us) is noticed
//     and replaced.
//   - http: the Events API. Slack POSTs each event to
//     /channels/{name}/ (ServeHTTP); the `v0` HMAC-SHA256 signature over
//     "v0:" + timestamp + ":" + raw body is checked in constant time, and
//     the timestamp within five minutes, before the body is parsed.
//
// The protocol is written here, over gorilla/websocket, rather than with
// slack-go: slack-go added 2.08 MB to the default build (this package
// 0.20 MB) and 2.5 times the allocations per event, for a protocol of
// three Web API methods and four frame types (docs/DESIGN.md, "Built:
// the Slack adapter").
//
// Both transports make a channels.Message of an `app_mention`, or of a
// `message` in an `im` (a direct message), and drop the rest: any subtype
// (edits, bot messages, joins), a bot_id, our own user id. Message.ID is
// channel + ":" + ts, the message's own identity, so a mention that also
// arrives as a message event, an envelope Slack sends again and an Events
// API retry all make one turn (the Host deduplicates by ID, cluster-wide).
//
// Replies (Send) go by chat.postMessage to the address channel or
// channel/thread_ts, split at 4000 runes, with <, > and & escaped (the
// model's text cannot ping @channel, @here or anyone), paced at about one
// message a second per channel, 429s waited out (Retry-After).
package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// Modes (the option mode).
const (
	ModeSocket = "socket"
	ModeHTTP   = "http"
)

// DefaultAPIURL is Slack's Web API (the option api_url).
const DefaultAPIURL = "https://slack.com/api/"

// Type is the adapter type "slack", as cmd registers it.
func Type() channels.Type {
	return channels.Type{
		Name:     "slack",
		Options:  []string{"mode", "bot_token", "app_token", "signing_secret", "api_url"},
		Required: []string{"bot_token"},
		Check:    check,
		New:      New,
	}
}

// check checks a channel's options; an error is "key: what is wrong"
// (the core reports it at that key's line).
func check(cfg channels.Config) error {
	o := cfg.Options
	mode := o["mode"]
	switch mode {
	case "", ModeSocket, ModeHTTP:
	default:
		return fmt.Errorf("mode: %q is not socket or http", mode)
	}
	if !strings.HasPrefix(o["bot_token"], "xoxb-") {
		return errors.New("bot_token: not a bot token (xoxb-...)")
	}
	if mode == "" || mode == ModeSocket {
		if o["app_token"] == "" {
			return errors.New("app_token: is required in socket mode (an app-level token, xapp-..., with connections:write)")
		}
		if !strings.HasPrefix(o["app_token"], "xapp-") {
			return errors.New("app_token: not an app-level token (xapp-...)")
		}
	}
	if mode == ModeHTTP && o["signing_secret"] == "" {
		return errors.New("signing_secret: is required in http mode (the app's Signing Secret)")
	}
	if u := o["api_url"]; u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fmt.Errorf("api_url: %q is not an http(s) URL", channels.Redact(u))
		}
	}
	return nil
}

// Adapter is one Slack channel. Its zero value is not usable: New makes it.
type Adapter struct {
	cfg    channels.Config
	host   channels.Host
	mode   string
	bot    string // xoxb- token: Web API calls
	app    string // xapp- token: apps.connections.open
	secret []byte // signing secret (http mode)
	api    string // the Web API's base URL, ending in "/"

	// Tuning, set by New; a test in the package shortens them.
	pingEvery   time.Duration // our pings on the socket
	idleTimeout time.Duration // read deadline: no frame or pong for this long closes the socket
	backoffBase time.Duration
	backoffMax  time.Duration
	inflight    int // envelopes handled at once; more are left unacknowledged (Slack sends them again)
	now         func() time.Time

	client *http.Client
	dialer *websocket.Dialer
	lim    channels.Limiter

	mu     sync.Mutex
	self   string         // our bot user's id (auth.test)
	sent   map[string]int // parts of a reply already posted, for a retried Send
	selfAt time.Time      // when auth.test was last tried (http mode fetches it lazily)
}

// New makes a Slack adapter; it does no I/O.
func New(cfg channels.Config, host channels.Host) (channels.Adapter, error) {
	if err := check(cfg); err != nil {
		return nil, err
	}
	o := cfg.Options
	a := &Adapter{
		cfg:         cfg,
		host:        host,
		mode:        o["mode"],
		bot:         o["bot_token"],
		app:         o["app_token"],
		secret:      []byte(o["signing_secret"]),
		api:         o["api_url"],
		pingEvery:   30 * time.Second,
		idleTimeout: 75 * time.Second,
		backoffBase: time.Second,
		backoffMax:  2 * time.Minute,
		inflight:    16,
		now:         time.Now,
		client:      &http.Client{Timeout: 30 * time.Second},
		dialer: &websocket.Dialer{
			Proxy:            http.ProxyFromEnvironment,
			HandshakeTimeout: 15 * time.Second,
			ReadBufferSize:   4 << 10,
			WriteBufferSize:  1 << 10,
		},
		lim: channels.Limiter{Rate: 1, Burst: 2},
	}
	if a.mode == "" {
		a.mode = ModeSocket
	}
	if a.api == "" {
		a.api = DefaultAPIURL
	}
	if !strings.HasSuffix(a.api, "/") {
		a.api += "/"
	}
	return a, nil
}

// Run keeps the Socket Mode connection until ctx ends (socket mode); in
// http mode there is nothing to keep and it returns nil at once.
func (a *Adapter) Run(ctx context.Context) error {
	if a.mode == ModeHTTP {
		a.host.Report(channels.StateListening, nil)
		return nil
	}
	return a.runSocket(ctx)
}

// Typing is a no-op: Slack has no typing indicator for bots over Socket
// Mode or the Events API (the RTM API's typing is gone; assistant
// threads' "is thinking" status needs the Agents & AI Apps feature and
// its scope). The reply arrives as one message when the turn ends.
func (a *Adapter) Typing(ctx context.Context, address string) error { return nil }

var _ channels.Adapter = (*Adapter)(nil)

// selfID is our bot user's id, "" before auth.test answered.
func (a *Adapter) selfID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.self
}

// Send posts m to address; see send.go.
func (a *Adapter) Send(ctx context.Context, address string, m moltbot.Message) error {
	return a.send(ctx, address, m)
}
