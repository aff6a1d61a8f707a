// Package widget is the web chat widget: a channel whose platform is the
// browser. The node serves an embeddable script (widget.js: a launcher
// button and a chat panel in a shadow DOM), a standalone chat page (what
// an iframe shows) and a small JSON API under /channels/{name}/api/ that
// the script calls: a session (the channel's publishable key in, a signed
// visitor token out), the visitor's history, a turn (its reply streamed
// back as server-sent events) and the visitor's conversation's events (a
// human agent's reply after a hand-off).
//
// Unlike the platform adapters, the widget streams turns itself, so it is
// an edge of the chat service (it imports chat, as the gateway does); it
// still takes its config, its logger and its state from a channels.Host.
// Each visitor has one conversation of the channel's bot, created at its
// first message: Principal{Tenant and Space of the bot, Bot, User
// "visitor:<id>", UserBound, Channel "widget:<name>", Method "channel"}.
//
// Everything the API answers is checked in this order: the Origin (an
// exact member of the channel's origins; 403 and no CORS headers
// otherwise), the publishable key (session: 401) or the visitor token
// (HMAC, expiry: 401), the per-visitor rate limit (429, Retry-After),
// body and message caps (413). Nothing here runs a goroutine of its own:
// a request's work is on its handler's goroutine (and the chat service's).
package widget

import (
	"context"
	"crypto/subtle"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/chat"
)

// Core is what the widget needs of the node it runs on, looked up at each
// request (the node makes its chat service as it starts, after the
// channel types are registered).
type Core struct {
	// Chat is the node's chat service; nil while the node starts (503).
	Chat *chat.Service
	// Space is where tenant's conversations live (auth's Tenant.Space: the
	// id, with its incarnation for a tenant made through the API); an
	// error when the tenant does not exist (any more).
	Space func(tenant string) (string, error)
}

// Type is the widget channel type; core is called at each request.
func Type(core func() Core) channels.Type {
	return channels.Type{
		Name:     "widget",
		Options:  optionKeys,
		Required: requiredKeys,
		Check: func(c channels.Config) error {
			_, err := parseOptions(c.Options)
			if err == nil {
				err = checkName(c.Name)
			}
			return err
		},
		New: func(c channels.Config, h channels.Host) (channels.Adapter, error) {
			return New(c, h, core)
		},
	}
}

// checkName: the channel's name goes into conversation ids.
func checkName(name string) error {
	if !moltbot.ValidID(name) || len(name) > 64 {
		return optionError("name", "a widget channel's name is 1-64 letters, digits, '-', '_', '.' or ':' (it names its visitors' conversations)")
	}
	return nil
}

// Limits a configuration does not change.
const (
	maxSessionBody    = 4 << 10 // POST session: its body is not read beyond this
	maxVisitors       = 1 << 16 // visitors with a rate-limit bucket on a node
	maxClients        = 1 << 14 // client addresses with a new-visitor bucket
	maxStreamsVisitor = 2       // events streams a visitor holds open on a node
	maxStreamsClient  = 8       // and a client address (each holds one of the space's subscriptions)
	maxHistory        = 200     // the newest messages GET history answers
	defaultKeepAlive  = 15 * time.Second
	writeTimeout      = 30 * time.Second
	corsMaxAge        = "600"
	keyHeader         = "X-Widget-Key"
)

// Widget is one widget channel.
type Widget struct {
	cfg    channels.Config
	o      *options
	host   channels.Host
	core   func() Core
	sign   signer
	conv   string // conversation id prefix: "widget:<name>:"
	origin string // Principal.Channel: "widget:<name>"

	visitors *buckets // every API call of a visitor
	fresh    *buckets // new visitors per client address
	open     streams  // events streams per visitor
	openAt   streams  // events streams per client address

	assetsOnce sync.Once
	page       asset // GET / (this channel's page)
	now        func() time.Time
	keepAlive  time.Duration // an events stream's comment when quiet, and its token's check
}

// New makes a widget channel (no I/O).
func New(c channels.Config, h channels.Host, core func() Core) (*Widget, error) {
	o, err := parseOptions(c.Options)
	if err != nil {
		return nil, err
	}
	if err := checkName(c.Name); err != nil {
		return nil, err
	}
	if core == nil {
		return nil, optionError("type", "the widget needs the node's chat service (cmd wires widget.Type)")
	}
	w := &Widget{cfg: c, o: o, host: h, core: core,
		sign: newSigner(c.Name, o.secret), conv: "widget:" + c.Name + ":", origin: "widget:" + c.Name,
		visitors: newBuckets(o.rate, maxVisitors), fresh: newBuckets(o.fresh, maxClients), now: time.Now, keepAlive: defaultKeepAlive}
	return w, nil
}

// Run has nothing to keep: the widget only answers requests.
func (w *Widget) Run(ctx context.Context) error {
	w.host.Report(channels.StateListening, nil)
	return nil
}

// Send accepts a message for a visitor and does nothing with it: a widget
// has no platform to post to. The visitor's turns carry no reply
// destination (their replies stream back in the request), and a message
// made later (a human agent's reply) is stored in the visitor's
// conversation, reaches an open page through the events stream, and is
// in the history the page reads when it opens next.
func (w *Widget) Send(ctx context.Context, address string, m moltbot.Message) error { return nil }

// Typing is a no-op: the page shows its own indicator while a reply streams.
func (w *Widget) Typing(ctx context.Context, address string) error { return nil }

// ServeHTTP serves /channels/{name}/... with the prefix stripped.
func (w *Widget) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "" {
		// /channels/NAME without its slash: the page's relative URLs
		// (widget.js) need it. A relative Location resolves against the
		// URL the browser asked for, whatever prefix the core stripped.
		rw.Header().Set("Location", w.cfg.Name+"/")
		rw.WriteHeader(http.StatusMovedPermanently)
		return
	}
	if api, ok := strings.CutPrefix(path, "/api/"); ok {
		w.serveAPI(rw, r, api)
		return
	}
	switch path {
	case "/", "/index.html":
		w.serveAsset(rw, r, w.pageAsset(), true)
	case "/widget.js":
		w.serveAsset(rw, r, script(), false)
	case "/widget.css":
		w.serveAsset(rw, r, style(), false)
	default:
		writeError(rw, moltbot.Errorf(moltbot.ENotFound, "no such widget path %q (widget.js, widget.css, the page at /, api/...)", clipPath(path)))
	}
}

// serveAPI checks the Origin, answers a preflight, and routes.
func (w *Widget) serveAPI(rw http.ResponseWriter, r *http.Request, route string) {
	origin, ok := w.allowedOrigin(r)
	if !ok {
		writeError(rw, forbiddenOrigin(r.Header.Get("Origin")))
		return
	}
	h := rw.Header()
	if origin != "" {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
	}
	h.Add("Vary", "Origin")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodOptions {
		method := r.Header.Get("Access-Control-Request-Method")
		if method != http.MethodGet && method != http.MethodPost {
			writeError(rw, moltbot.Errorf(moltbot.EInvalid, "the widget API answers GET and POST, not %q", clipPath(method)))
			return
		}
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, "+keyHeader)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		rw.WriteHeader(http.StatusNoContent)
		return
	}
	want := http.MethodGet
	switch route {
	case "session", "messages":
		want = http.MethodPost
	case "history", "events":
	default:
		writeError(rw, moltbot.Errorf(moltbot.ENotFound, "no such widget API %q (session, history, messages, events)", clipPath(route)))
		return
	}
	if r.Method != want {
		h.Set("Allow", want)
		writeError(rw, errMethod(want))
		return
	}
	if route == "session" {
		w.session(rw, r)
		return
	}
	v, exp, err := w.visitor(r)
	if err != nil {
		writeError(rw, err)
		return
	}
	if wait, ok := w.visitors.take(v); !ok {
		writeError(rw, &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: wait,
			Message: "this visitor sends more than " + w.o.rate.String() + "; wait and try again"})
		return
	}
	switch route {
	case "history":
		w.history(rw, r, v)
	case "messages":
		w.message(rw, r, v)
	case "events":
		w.events(rw, r, v, exp)
	}
}

// allowedOrigin checks where a call comes from: a browser names the page's
// origin in Origin on every cross-origin call, and a page cannot change
// it. The channel's own page (served by the node, same-origin) is told by
// the browser's Sec-Fetch-Site; a same-origin GET carries no Origin. It
// returns the origin to allow in CORS ("" for same-origin).
func (w *Widget) allowedOrigin(r *http.Request) (string, bool) {
	o := r.Header.Get("Origin")
	if r.Header.Get("Sec-Fetch-Site") == "same-origin" {
		return "", true
	}
	if o == "" || o == "null" {
		return "", false
	}
	if w.o.any || w.o.origins[o] {
		return o, true
	}
	return "", false
}

func forbiddenOrigin(o string) error {
	if o == "" {
		return &moltbot.Error{Code: moltbot.EForbidden, Param: "Origin",
			Message: "the widget API is called from the web pages of the channel's origins: the request names no Origin"}
	}
	return &moltbot.Error{Code: moltbot.EForbidden, Param: "Origin",
		Message: "origin " + clipPath(o) + " is not one of this widget channel's origins"}
}

// visitor is the visitor a call's token names and when the token
// expires, or a 401.
func (w *Widget) visitor(r *http.Request) (string, time.Time, error) {
	tok := bearer(r.Header.Get("Authorization"))
	if tok == "" {
		return "", time.Time{}, unauthorized("no visitor token: send Authorization: Bearer <token> from POST api/session")
	}
	v, exp, err := w.sign.verify(tok, w.now())
	if err != nil {
		return "", time.Time{}, unauthorized(err.Error())
	}
	return v, exp, nil
}

// keyMatches compares the publishable key in constant time (it is public,
// but a comparison that leaks its prefix teaches nothing worth teaching).
func (w *Widget) keyMatches(k string) bool {
	return subtle.ConstantTimeCompare([]byte(k), []byte(w.o.key)) == 1
}

// principal is visitor v's, speaking to the channel's bot.
func (w *Widget) principal(space, v string) *moltbot.Principal {
	return &moltbot.Principal{Tenant: w.tenant(), Space: space, Scope: moltbot.ScopeChat, Method: "channel",
		Channel: w.origin, Bot: w.cfg.Bot, User: "visitor:" + v, UserBound: true}
}

func (w *Widget) tenant() string {
	if w.cfg.Tenant == "" {
		return moltbot.DefaultTenant
	}
	return w.cfg.Tenant
}

// service is the chat service and the principal of visitor v, or why not.
func (w *Widget) service(v string) (*chat.Service, *moltbot.Principal, error) {
	c := w.core()
	if c.Chat == nil {
		return nil, nil, &moltbot.Error{Code: moltbot.EUnavailable, RetryAfter: time.Second, Message: "the node is starting"}
	}
	space := w.tenant()
	if c.Space != nil {
		s, err := c.Space(space)
		if err != nil {
			return nil, nil, moltbot.Errorf(moltbot.EForbidden, "the widget's tenant %q does not exist", space)
		}
		space = s
	}
	return c.Chat, w.principal(space, v), nil
}

// conversation is visitor v's conversation id.
func (w *Widget) conversation(v string) string { return w.conv + v }

// clientKey keys a client's budget of new visitors: its address, an IPv6
// one by its /64 (one host's share of a network).
func (w *Widget) clientKey(r *http.Request) string {
	a := clientAddr(r, w.o.proxies)
	if ip, err := netip.ParseAddr(a); err == nil && ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return a
}

func clipPath(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

var _ channels.Adapter = (*Widget)(nil)
