// Package discord is the Discord adapter (channel type discord): a bot
// that keeps a Gateway connection (outbound, so it works behind NAT) for
// the messages people write to it, answers through the REST API, and
// serves the Interactions endpoint for slash commands when the channel
// has a public_key.
//
// It is written on the protocol directly (gorilla/websocket, net/http,
// crypto/ed25519), not on discordgo, whose released version ignores
// resume_gateway_url and keeps its endpoints in package globals (one bot
// per process, no parallel tests against a fake).
//
// The Gateway (gateway.go): GET /gateway/bot before an IDENTIFY (its URL
// is cached for when the call fails, its session_start_limit obeyed);
// HELLO, the first heartbeat after interval×jitter, then one every
// interval; a heartbeat without an ACK before the next is a zombie
// connection, closed with a code that keeps the session and resumed;
// READY's session_id and resume_gateway_url kept (in memory and, with the
// last sequence number handled, in the Host's state, so the node that
// runs the channel next resumes it, replaying what was missed; the Host
// drops what it already took); op 7, op 9 and the close codes as
// documented (4004 and 4010-4014 are Fatal); at most 120 sends a minute;
// frames capped at 1 MiB; no compression.
//
// Concurrency: Run's goroutine reads the connection; a heartbeat
// goroutine per connection writes heartbeats (writes are serialized by a
// mutex); a worker goroutine per Run turns MESSAGE_CREATE dispatches into
// Host.Accept calls in order, off the reader, so a slow disk or an image
// download never delays reading an ACK. Send, Typing and ServeHTTP may
// run on any node, concurrently with each other and with Run.
package discord

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moltbot/moltbot/channels"
)

// Gateway intents (Discord's bit numbers).
const (
	IntentGuilds          = 1 << 0
	IntentGuildMessages   = 1 << 9
	IntentDirectMessages  = 1 << 12
	IntentMessageContent  = 1 << 15
	DefaultIntents        = IntentGuildMessages | IntentDirectMessages | IntentMessageContent
	defaultAPI            = "https://discord.com/api/v10"
	maxContent            = 2000 // characters of a message's content
	maxImages             = 4    // images fetched per message
	maxInteraction        = 256 << 10
	interactionTokenLife  = 15 * time.Minute
	interactionTokenGrace = 30 * time.Second // a token this close to its end is not used
)

// Type is the discord channel type, for cmd's list of types.
func Type() channels.Type {
	return channels.Type{
		Name:     "discord",
		Options:  []string{"token", "application_id", "public_key", "api_url", "intents", "require_mention", "command"},
		Required: []string{"token"},
		Check:    check,
		New:      New,
	}
}

// options are a channel's Config.Options, checked.
type options struct {
	token          string
	appID          string
	publicKey      ed25519.PublicKey // nil: no interactions endpoint
	api            string            // without a trailing slash
	apiHost        string
	intents        int
	requireMention bool
	command        string // a slash command to register ("" none)
}

func check(c channels.Config) error {
	_, err := parseOptions(c.Options)
	return err
}

func parseOptions(o map[string]string) (options, error) {
	opt := options{api: defaultAPI, intents: DefaultIntents, requireMention: true}
	opt.token = strings.TrimSpace(o["token"])
	opt.token = strings.TrimPrefix(opt.token, "Bot ")
	if opt.token == "" {
		return opt, errors.New("discord: option token: the bot's token is required (Developer Portal, Bot, Reset Token)")
	}
	for i := 0; i < len(opt.token); i++ {
		if c := opt.token[i]; c <= ' ' || c >= 0x7f {
			return opt, errors.New("discord: option token: holds a space or a control character")
		}
	}
	if v := o["application_id"]; v != "" {
		if !snowflake(v) {
			return opt, fmt.Errorf("discord: option application_id: %q is not a Discord id (digits)", v)
		}
		opt.appID = v
	}
	if v := o["public_key"]; v != "" {
		k, err := hex.DecodeString(strings.TrimSpace(v))
		if err != nil || len(k) != ed25519.PublicKeySize {
			return opt, errors.New("discord: option public_key: want the application's public key, 64 hex digits")
		}
		opt.publicKey = k
	}
	if v := o["api_url"]; v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
			return opt, fmt.Errorf("discord: option api_url: %q: want an http(s) URL like %s", v, defaultAPI)
		}
		opt.api = strings.TrimRight(v, "/")
	}
	if u, err := url.Parse(opt.api); err == nil {
		opt.apiHost = u.Host
	}
	if v := o["intents"]; v != "" {
		n, err := parseIntents(v)
		if err != nil {
			return opt, fmt.Errorf("discord: option intents: %v", err)
		}
		opt.intents = n
	}
	if v := o["command"]; v != "" {
		if len(v) > 32 || strings.TrimLeft(v, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
			return opt, fmt.Errorf("discord: option command: %q: want a slash command's name, 1-32 of a-z, 0-9, - and _", v)
		}
		opt.command = v
	}
	switch strings.ToLower(o["require_mention"]) {
	case "", "true", "yes", "on":
	case "false", "no", "off":
		opt.requireMention = false
	default:
		return opt, fmt.Errorf("discord: option require_mention: %q: want true or false", o["require_mention"])
	}
	return opt, nil
}

// parseIntents reads a number or names joined by | or , (GUILD_MESSAGES,
// DIRECT_MESSAGES, MESSAGE_CONTENT, GUILDS).
func parseIntents(v string) (int, error) {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if n <= 0 || n >= 1<<26 {
			return 0, fmt.Errorf("%d is not a set of intents", n)
		}
		return n, nil
	}
	n := 0
	for _, name := range strings.FieldsFunc(v, func(r rune) bool { return r == '|' || r == ',' || r == ' ' }) {
		switch strings.ToUpper(name) {
		case "GUILDS":
			n |= IntentGuilds
		case "GUILD_MESSAGES":
			n |= IntentGuildMessages
		case "DIRECT_MESSAGES":
			n |= IntentDirectMessages
		case "MESSAGE_CONTENT":
			n |= IntentMessageContent
		default:
			return 0, fmt.Errorf("unknown intent %q (want a number, or GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES, MESSAGE_CONTENT joined by |)", name)
		}
	}
	if n == 0 {
		return 0, errors.New("empty")
	}
	return n, nil
}

// snowflake reports whether s can be a Discord id: 1-20 digits. Every id
// that goes into a URL path is checked with it.
func snowflake(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// snowflakeTime is when the object with id s was made (zero if s is not one).
func snowflakeTime(s string) time.Time {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(n>>22) + 1420070400000)
}

// Adapter is one discord channel.
type Adapter struct {
	cfg  channels.Config
	host channels.Host
	opt  options
	rest *rest
	aead cipher.AEAD // seals interaction tokens in Reply addresses

	mu      sync.Mutex
	sess    session // the Gateway session: what a RESUME needs
	gen     int     // bumped at each READY: a dispatch of an older session does not move done
	done    int64   // the sequence number of the last dispatch the worker finished
	self    string  // the bot's user id (READY)
	gateway string  // GET /gateway/bot's URL, cached
	saved   time.Time
	parts   map[string]int       // message id -> parts of it already sent (a retried Send goes on)
	typed   map[string]time.Time // channel -> the last typing call

	interacting chan struct{}  // gateway interactions in flight (a semaphore)
	inflight    sync.WaitGroup // and Run waits for them

	// Knobs the tests turn (New sets Discord's values).
	jitter       func() float64                  // the first heartbeat's fraction of the interval
	backoff      func(attempt int) time.Duration // reconnect backoff
	stableAfter  time.Duration                   // a connection this old resets it
	invalidWait  func() time.Duration            // after op 9: 1-5 s
	persistEvery time.Duration                   // how often the handled sequence number is saved
	helloTimeout time.Duration
	dialer       *websocket.Dialer
	httpClient   *http.Client
	now          func() time.Time
}

// New makes a discord adapter; it does no I/O.
func New(c channels.Config, h channels.Host) (channels.Adapter, error) {
	a, err := newAdapter(c, h)
	if err != nil {
		return nil, err
	}
	return a, nil
}

func newAdapter(c channels.Config, h channels.Host) (*Adapter, error) {
	opt, err := parseOptions(c.Options)
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256([]byte("moltbot discord interaction token\x00" + opt.token))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 20 * time.Second}
	a := &Adapter{
		cfg: c, host: h, opt: opt, aead: aead,
		jitter:       rand.Float64,
		backoff:      func(n int) time.Duration { return channels.Backoff(n, time.Second, 2*time.Minute) },
		stableAfter:  30 * time.Second,
		invalidWait:  func() time.Duration { return time.Second + rand.N(4*time.Second) },
		persistEvery: 10 * time.Second,
		helloTimeout: 20 * time.Second,
		dialer: &websocket.Dialer{
			Proxy:            http.ProxyFromEnvironment,
			HandshakeTimeout: 15 * time.Second,
		},
		httpClient:  hc,
		now:         time.Now,
		interacting: make(chan struct{}, 16),
	}
	a.rest = newREST(opt.api, opt.token, hc)
	return a, nil
}
