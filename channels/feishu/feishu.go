// Package feishu is the Feishu (Lark) channel (type feishu), written
// directly over the open platform's HTTP APIs (its official Go SDK is not
// served by the module proxy; the protocol is small).
//
// Inbound: the event subscription's POSTs to ServeHTTP, on any node. With
// encrypt_key set, Feishu signs and encrypts every event: X-Lark-Signature
// = hex(sha256(timestamp + nonce + encrypt_key + raw body)) is checked in
// constant time, with a 5-minute window on X-Lark-Request-Timestamp,
// before anything is parsed; the body {"encrypt": base64} is AES-256-CBC
// under sha256(encrypt_key), the IV its first 16 bytes, PKCS#7 padding
// (as @larksuiteoapi/node-sdk's AESCipher decrypts it; test/channels runs
// that SDK on our encryption). Without encrypt_key the events come in
// clear and only the verification token (header.token, compared in
// constant time) tells them from forgeries: the body must be parsed to
// read it. The url_verification challenge is answered (decrypted first
// when encrypted; Feishu does not sign it, so an unsigned body is read
// only for the challenge and any failure there is the same 401, which
// leaves no padding oracle).
//
// im.message.receive_v1 (schema 2.0) from a user ("user" senders only),
// text messages, in p2p chats and in groups when the bot is @mentioned
// (its open_id from /open-apis/bot/v3/info, asked once); the mention
// placeholders (@_user_1) are cut for the bot and replaced by the name
// for others. Message.ID is the message_id (Feishu sometimes redelivers a
// message under a new event_id); recent event_ids are dropped early too.
//
// Outbound: replies to the user's message (POST
// /open-apis/im/v1/messages/{message_id}/reply), or to the chat when the
// address has no message, with a tenant_access_token fetched lazily on
// Send and cached until shortly before it expires (refreshed once on an
// invalid-token answer). Nothing keeps a connection: Run returns nil at
// once, and no goroutine runs for the channel.
package feishu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot/channels"
)

// The type's options.
const (
	optAppID             = "app_id"
	optAppSecret         = "app_secret"
	optVerificationToken = "verification_token"
	optEncryptKey        = "encrypt_key"
	optAPIURL            = "api_url"
)

const (
	// DefaultAPI is Feishu's open platform; Lark's is https://open.larksuite.com.
	DefaultAPI = "https://open.feishu.cn"
	// MaxText is where a reply is split, in runes: a text message may be
	// far longer (about 150 KB), but a wall of text reads badly.
	MaxText = 4000
	// window is how far X-Lark-Request-Timestamp may be from now.
	window = 5 * time.Minute
	// maxResponse caps an API answer read into memory.
	maxResponse = 1 << 20
)

// Type is the feishu channel type, as cmd registers it.
func Type() channels.Type {
	return channels.Type{
		Name:     "feishu",
		Options:  []string{optAppID, optAppSecret, optVerificationToken, optEncryptKey, optAPIURL},
		Required: []string{optAppID, optAppSecret},
		Check:    check,
		New:      New,
	}
}

func check(c channels.Config) error {
	o := c.Options
	if o[optAppID] == "" {
		return errors.New("feishu: app_id: required (the app's App ID, cli_...)")
	}
	if o[optAppSecret] == "" {
		return errors.New("feishu: app_secret: required (the app's App Secret)")
	}
	if o[optVerificationToken] == "" && o[optEncryptKey] == "" {
		return errors.New("feishu: verification_token: set it or encrypt_key (Events and callbacks > Encryption strategy): without either any request could pass for Feishu")
	}
	if v := o[optAPIURL]; v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("feishu: api_url: %q is not an http(s) URL", v)
		}
	}
	return nil
}

// Adapter is one feishu channel.
type Adapter struct {
	cfg        channels.Config
	host       channels.Host
	log        *slog.Logger
	appID      string
	appSecret  string
	vtoken     []byte
	encryptKey string
	aesKey     [32]byte // sha256(encrypt_key)
	api        string
	client     *http.Client

	// Pacing: Feishu allows a bot about 5 messages a second per chat and
	// 50 a second in all (destination "").
	perChat, global channels.Limiter

	tokMu    ctxMutex // held across the token's fetch; waiters give up with their ctx
	tok      string
	tokUntil time.Time
	botMu    ctxMutex
	botID    string // the bot's open_id, once known

	events   recent
	progress channels.Progress

	now         func() time.Time
	backoffBase time.Duration
}

// New makes the adapter (no I/O).
func New(c channels.Config, h channels.Host) (channels.Adapter, error) {
	if err := check(c); err != nil {
		return nil, err
	}
	o := c.Options
	api := strings.TrimRight(o[optAPIURL], "/")
	if api == "" {
		api = DefaultAPI
	}
	a := &Adapter{
		cfg:        c,
		host:       h,
		log:        h.Log(),
		appID:      o[optAppID],
		appSecret:  o[optAppSecret],
		vtoken:     []byte(o[optVerificationToken]),
		encryptKey: o[optEncryptKey],
		api:        api,
		client:     &http.Client{Timeout: 20 * time.Second},
		perChat:    channels.Limiter{Rate: 5, Burst: 5},
		global:     channels.Limiter{Rate: 50, Burst: 50},
		tokMu:      make(ctxMutex, 1),
		botMu:      make(ctxMutex, 1),
	}
	if a.encryptKey != "" {
		a.aesKey = aesKey(a.encryptKey)
	}
	return a, nil
}

// Run has nothing to keep: the tenant token is refreshed lazily on Send.
func (a *Adapter) Run(ctx context.Context) error {
	a.host.Report(channels.StateListening, nil)
	return nil
}

// Typing: Feishu has no typing indicator for bots.
func (a *Adapter) Typing(ctx context.Context, address string) error { return nil }

func (a *Adapter) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

// ctxMutex is a mutex whose Lock gives up when ctx ends: a fetch held
// across the network must not hold a webhook past its platform's deadline.
type ctxMutex chan struct{}

func (m ctxMutex) lock(ctx context.Context) error {
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m ctxMutex) unlock() { <-m }

// recent is a bounded set of recently seen event ids.
type recent struct {
	mu   sync.Mutex
	set  map[string]bool
	ring [512]string
	at   int
}

// has reports whether id was added.
func (r *recent) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set[id]
}

// add records id (the oldest of 512 goes).
func (r *recent) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = map[string]bool{}
	}
	if r.set[id] {
		return
	}
	if old := r.ring[r.at]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.at] = id
	r.at = (r.at + 1) % len(r.ring)
	r.set[id] = true
}

var _ channels.Adapter = (*Adapter)(nil)
