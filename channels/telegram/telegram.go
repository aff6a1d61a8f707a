// Package telegram is the Telegram channel (type telegram): the Bot API
// over HTTPS, written directly (getMe, getUpdates, sendMessage,
// sendChatAction, getFile: a few JSON methods need no library).
//
// Two transports. mode: poll (the default) long-polls getUpdates from Run,
// which the core runs on one node of a cluster; the next offset is kept in
// the Host's shared state once a batch's messages are accepted, so the
// node that takes the poller over (a restart, the ring moving) goes on
// where it stopped and the Host's dedup absorbs a batch taken twice.
// mode: webhook takes Telegram's POSTs in ServeHTTP on any node, each
// checked against secret_token (X-Telegram-Bot-Api-Secret-Token, constant
// time, before the body is read); setWebhook is the operator's (README).
//
// The bot token is in every URL of the API: no URL and no error carrying
// one reaches a log or a returned error unredacted (channels.Redact).
//
// Concurrency: Run, ServeHTTP, Send and Typing may be called at once from
// any goroutines; the adapter's state (the bot's identity, the limiters,
// the parts of a reply already sent) is behind its own locks.
package telegram

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot/channels"
)

// The type's options.
const (
	optToken          = "token"
	optMode           = "mode"
	optSecretToken    = "secret_token"
	optAPIURL         = "api_url"
	optRequireMention = "require_mention"
)

const (
	// DefaultAPI is the Bot API's server.
	DefaultAPI = "https://api.telegram.org"
	// MaxText is a message's length limit in UTF-16 code units.
	MaxText = 4096
	// pollTimeout is getUpdates' long-poll wait; a poll that has not
	// answered pollMargin after it is cancelled (the stall watchdog).
	pollTimeout = 30 * time.Second
	pollMargin  = 15 * time.Second
	// callTimeout bounds a call made without a deadline (getMe, getFile,
	// a photo's download in the poller).
	callTimeout = 30 * time.Second
	// maxResponse caps an answer of the API read into memory (100 updates
	// of 4096-unit texts with their entities fit many times over).
	maxResponse = 16 << 20
	// secretHeader carries setWebhook's secret_token on every POST.
	secretHeader = "X-Telegram-Bot-Api-Secret-Token"
)

// Type is the telegram channel type, as cmd registers it.
func Type() channels.Type {
	return channels.Type{
		Name:     "telegram",
		Options:  []string{optToken, optMode, optSecretToken, optAPIURL, optRequireMention},
		Required: []string{optToken},
		Check:    check,
		New:      New,
	}
}

// check validates the options; an error names the key and never quotes a
// credential.
func check(c channels.Config) error {
	o := c.Options
	if !validToken(o[optToken]) {
		return errors.New("telegram: token: not a bot token (digits, a colon, then letters, digits, _ and -, as @BotFather gives it)")
	}
	switch o[optMode] {
	case "", "poll":
		if o[optSecretToken] != "" {
			return errors.New("telegram: secret_token: only for mode: webhook")
		}
	case "webhook":
		if !validSecret(o[optSecretToken]) {
			return errors.New("telegram: secret_token: mode: webhook needs one, 1 to 256 of A-Z, a-z, 0-9, _ and - (setWebhook's secret_token)")
		}
	default:
		return fmt.Errorf("telegram: mode: %q is neither poll nor webhook", o[optMode])
	}
	if v := o[optAPIURL]; v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("telegram: api_url: %q is not an http(s) URL", v)
		}
	}
	switch o[optRequireMention] {
	case "", "true", "false":
	default:
		return fmt.Errorf("telegram: require_mention: %q is neither true nor false", o[optRequireMention])
	}
	return nil
}

// validToken: "123456:ABC-def_..." (the bot's id, a colon, the secret).
func validToken(s string) bool {
	id, secret, ok := strings.Cut(s, ":")
	if !ok || id == "" || secret == "" || len(s) > 256 {
		return false
	}
	for _, r := range id {
		if r < '0' || r > '9' {
			return false
		}
	}
	return validSecret(secret)
}

// validSecret: 1-256 of [A-Za-z0-9_-].
func validSecret(s string) bool {
	if len(s) == 0 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Adapter is one telegram channel.
type Adapter struct {
	cfg            channels.Config
	host           channels.Host
	log            *slog.Logger
	token          string
	api            string // without a trailing slash
	webhook        bool
	secret         []byte
	requireMention bool
	client         *http.Client

	// Pacing: about one message a second in a private chat, 20 a minute in
	// a group, 30 a second for the whole bot (destination "").
	private, group, global channels.Limiter

	meMu ctxMutex // held across getMe; waiters give up with their ctx
	me   *user    // getMe's answer, once known

	progress channels.Progress

	// Knobs the tests turn (zero: the defaults above).
	pollTimeout, pollMargin time.Duration
	backoffBase, backoffMax time.Duration
	now                     func() time.Time
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
		cfg:            c,
		host:           h,
		log:            h.Log(),
		token:          o[optToken],
		api:            api,
		webhook:        o[optMode] == "webhook",
		secret:         []byte(o[optSecretToken]),
		requireMention: o[optRequireMention] != "false",
		// No client timeout: every call has its context (a poll's
		// deadline is its watchdog).
		client:  &http.Client{},
		private: channels.Limiter{Rate: 1, Burst: 1},
		group:   channels.Limiter{Rate: 20.0 / 60, Burst: 3},
		global:  channels.Limiter{Rate: 30, Burst: 30},
		meMu:    make(ctxMutex, 1),
	}
	return a, nil
}

// ServeHTTP takes Telegram's webhook POSTs (mode: webhook; 404 in poll
// mode): the secret header checked before the body is read, one update a
// request, 200 once the message is accepted (or dropped).
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.webhook {
		httpError(w, http.StatusNotFound, "this telegram channel polls (mode: poll): it takes no webhook")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, "a Telegram webhook is a POST")
		return
	}
	got := r.Header.Get(secretHeader)
	if subtle.ConstantTimeCompare([]byte(got), a.secret) != 1 {
		httpError(w, http.StatusUnauthorized, "missing or wrong "+secretHeader)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "the update is over the 1 MiB body limit")
		return
	}
	u, err := parseUpdate(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.handle(r.Context(), u); err != nil {
		// Not taken (the bot's identity unknown yet, the core busy, the
		// request gone): Telegram sends it again.
		a.log.Warn("telegram: webhook update not taken; Telegram will retry", "update", u.UpdateID, "err", channels.Redact(err.Error()))
		var nt *notTaken
		if errors.As(err, &nt) {
			w.Header().Set("Retry-After", strconv.Itoa(int((nt.wait+time.Second-1)/time.Second)))
		}
		httpError(w, http.StatusServiceUnavailable, "the update could not be taken now; retry")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{}"))
}

// handle turns one update into a message and hands it to the Host. It
// returns an error only when the update was not taken and must be seen
// again (the context ended, the bot's identity could not be read); a
// message the Host refuses or already has is taken.
func (a *Adapter) handle(ctx context.Context, u *update) error {
	me, err := a.identity(ctx)
	if err != nil {
		return err
	}
	m, ok := a.toMessage(ctx, u, me)
	if !ok {
		return nil
	}
	switch err := a.host.Accept(ctx, m); {
	case err == nil, errors.Is(err, channels.ErrDuplicate):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		if wait, ok := channels.Retry(err); ok {
			return &notTaken{err: err, wait: wait}
		}
		a.log.Info("telegram: message refused", "id", m.ID, "err", err)
		return nil
	}
}

// notTaken is an Accept that failed for now (the core busy, moving,
// stopping): the update is seen again, after wait.
type notTaken struct {
	err  error
	wait time.Duration
}

func (e *notTaken) Error() string { return "telegram: not taken for now: " + e.err.Error() }
func (e *notTaken) Unwrap() error { return e.err }

// identity is getMe's answer, asked once.
func (a *Adapter) identity(ctx context.Context) (*user, error) {
	if err := a.meMu.lock(ctx); err != nil {
		return nil, err
	}
	defer a.meMu.unlock()
	if a.me != nil {
		return a.me, nil
	}
	var me user
	if err := a.call(ctx, "getMe", struct{}{}, &me); err != nil {
		return nil, err
	}
	if me.ID == 0 || me.Username == "" {
		return nil, errors.New("telegram: getMe: an answer without the bot's id or username")
	}
	a.me = &me
	return a.me, nil
}

// Typing sends the chat action "typing" (it shows for 5 s or until the
// next message).
func (a *Adapter) Typing(ctx context.Context, address string) error {
	d, err := parseAddress(address)
	if err != nil {
		return err
	}
	if err := a.global.Wait(ctx, ""); err != nil {
		return err
	}
	return a.call(ctx, "sendChatAction", chatAction{ChatID: d.chat, ThreadID: d.thread, Action: "typing"}, nil)
}

// ctxMutex is a mutex whose Lock gives up when ctx ends (a webhook must
// not wait past its request for another's getMe).
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

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"error\":%q}\n", msg)
}

func (a *Adapter) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

var _ channels.Adapter = (*Adapter)(nil)
