// Package webhook is the generic signed webhook channel: any system that
// can sign an HTTP request talks to a bot through it.
//
// Inbound, POST /channels/{name}/ with a JSON body (Event) and the
// headers X-Moltbot-Timestamp (Unix seconds) and X-Moltbot-Signature
// ("sha256=" and the hex HMAC-SHA256 of "<timestamp>.<body>" keyed by the
// channel's secret: moltbot.SignHook). The signature is checked over the
// raw body, in constant time, before anything is parsed; a timestamp more
// than five minutes away is refused. The event's id (or the
// Idempotency-Key header) names it: a retry is answered as a duplicate
// and makes no second turn, on any node of a cluster.
//
// Outbound, the reply is POSTed (Reply) to the event's callback_url or the
// channel's, signed the same way, retried by the conversation's durable
// outbox until the receiver answers 2xx (a 4xx but 408 and 429 gives
// up). With reply: sync the request waits (up to wait) for the reply and
// returns it in its response. docs/API.md has the wire format.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// Skew is how far a request's timestamp may be from now.
const Skew = 5 * time.Minute

// Limits of an event's fields.
const (
	MaxID       = 200 // the id (or Idempotency-Key): printable ASCII, no spaces
	MaxCallback = 800 // a callback URL
	MaxImages   = 4
)

// Event is an inbound request's body.
type Event struct {
	// ID names the event (else the Idempotency-Key header; both sent,
	// they must be equal): 1 to 200 printable ASCII bytes without spaces.
	ID string `json:"id"`
	// User is the author's id in the sender's system (required);
	// UserName how it shows them.
	User     string `json:"user"`
	UserName string `json:"user_name,omitempty"`
	// Chat and Thread say where it was written (Chat defaults to User):
	// with the channel's conversations: they choose the conversation.
	Chat   string `json:"chat,omitempty"`
	Thread string `json:"thread,omitempty"`
	Text   string `json:"text"`
	// Images are attached images, base64 in JSON.
	Images []Image `json:"images,omitempty"`
	// CallbackURL is where this event's reply goes (else the channel's
	// callback_url).
	CallbackURL string `json:"callback_url,omitempty"`
	// Bot marks an author that is a bot (dropped unless allow_bots).
	Bot bool `json:"bot,omitempty"`
}

// Image is an attached image.
type Image struct {
	MIME string `json:"mime"`
	Data []byte `json:"data"`
}

// Reply is the body POSTed to a callback URL (and the reply of a sync
// response).
type Reply struct {
	// ID is the reply's id: the same on every retry of its delivery (its
	// Idempotency-Key header too).
	ID string `json:"id"`
	// InReplyTo is the event's id.
	InReplyTo string `json:"in_reply_to"`
	Channel   string `json:"channel"`
	Text      string `json:"text"`
	Created   int64  `json:"created"`
}

// Type is the webhook channel type: options secret (required),
// callback_url, reply (async or sync) and wait (sync: how long a request
// waits for its reply, default 25s, at most 120s).
func Type() channels.Type {
	return channels.Type{Name: "webhook", Options: []string{"secret", "callback_url", "reply", "wait"}, Required: []string{"secret"},
		Check: check, New: New}
}

func check(c channels.Config) error {
	_, err := options(c)
	return err
}

type opts struct {
	secret, callback string
	sync             bool
	wait             time.Duration
}

func options(c channels.Config) (opts, error) {
	o := opts{secret: c.Options["secret"], callback: c.Options["callback_url"], wait: 25 * time.Second}
	if len(o.secret) < 16 {
		return o, fmt.Errorf("secret: at least 16 bytes (a long random string: openssl rand -hex 32), got %d", len(o.secret))
	}
	if o.callback != "" {
		if err := checkCallback(o.callback); err != nil {
			return o, fmt.Errorf("callback_url: %w", err)
		}
	}
	switch r := c.Options["reply"]; r {
	case "", "async":
	case "sync":
		o.sync = true
	default:
		return o, fmt.Errorf("reply: want async or sync, got %q", r)
	}
	if w := c.Options["wait"]; w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d <= 0 || d > 120*time.Second {
			return o, fmt.Errorf("wait: want a duration above 0 and at most 120s (25s), got %q", w)
		}
		o.wait = d
	}
	return o, nil
}

func checkCallback(s string) error {
	if len(s) > MaxCallback {
		return fmt.Errorf("at most %d bytes, got %d", MaxCallback, len(s))
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("want an http or https URL, got %q", channels.Redact(s))
	}
	return nil
}

// Adapter is one webhook channel.
type Adapter struct {
	cfg    channels.Config
	host   channels.Host
	o      opts
	Client *http.Client
	Now    func() time.Time

	mu      sync.Mutex
	waiting map[string][]*waiter // sync requests, by event id
}

// waiter is a sync request waiting for its event's reply: Send hands the
// reply in m and learns on done whether the request answered with it
// (false: the request had ended; Send then posts it to the callback).
type waiter struct {
	m    chan moltbot.Message
	done chan bool
}

// New makes the channel's adapter.
func New(c channels.Config, h channels.Host) (channels.Adapter, error) {
	o, err := options(c)
	if err != nil {
		return nil, err
	}
	// Redirects are not followed: a signed reply goes to the URL named,
	// nowhere else.
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Adapter{cfg: c, host: h, o: o, Client: client, Now: time.Now,
		waiting: map[string][]*waiter{}}, nil
}

// Run has nothing to keep: the channel listens.
func (a *Adapter) Run(ctx context.Context) error {
	a.host.Report(channels.StateListening, nil)
	return nil
}

// Typing is a no-op: a webhook has nobody to show it to.
func (a *Adapter) Typing(context.Context, string) error { return nil }

type response struct {
	Status string `json:"status"` // accepted, answered, duplicate
	ID     string `json:"id"`
	Reply  *Reply `json:"reply,omitempty"`
}

// ServeHTTP takes an event: verified, parsed, accepted.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		fail(w, http.StatusNotFound, "post events to /channels/"+a.cfg.Name+"/")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, channels.MaxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", channels.MaxBody))
			return
		}
		fail(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	if err := moltbot.VerifyHook(a.o.secret, r.Header.Get(moltbot.HeaderHookTimestamp), r.Header.Get(moltbot.HeaderHookSignature),
		body, a.Now(), Skew); err != nil {
		fail(w, http.StatusUnauthorized, err.Error())
		return
	}
	ev, err := Parse(body, r.Header.Get("Idempotency-Key"))
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	m := channels.Message{ID: ev.ID, User: ev.User, UserName: ev.UserName, Chat: ev.Chat, Thread: ev.Thread, Text: ev.Text,
		Reply: ev.ID + " " + ev.CallbackURL, FromBot: ev.Bot, At: a.Now()}
	for _, im := range ev.Images {
		m.Images = append(m.Images, moltbot.Part{Type: moltbot.PartImage, MIME: im.MIME, Data: im.Data})
	}
	var wait *waiter
	if a.o.sync {
		wait = a.await(ev.ID)
		defer a.unwait(ev.ID, wait)
	}
	status := "accepted"
	switch err := a.host.Accept(r.Context(), m); {
	case err == nil:
	case errors.Is(err, channels.ErrDuplicate):
		status = "duplicate"
		if !errors.Is(err, channels.ErrInFlight) {
			wait = nil // answered before: nothing more to wait for
		}
	case errors.Is(err, channels.ErrRefused):
		fail(w, http.StatusUnprocessableEntity, err.Error())
		return
	case moltbot.ErrorCode(err) == moltbot.EBusy:
		w.Header().Set("Retry-After", "30")
		fail(w, http.StatusServiceUnavailable, moltbot.ErrorMessage(err))
		return
	default:
		a.host.Log().Warn("webhook event not accepted", "err", err)
		fail(w, http.StatusInternalServerError, "the event was not taken; send it again")
		return
	}
	if wait != nil {
		// A retry of an event whose turn is still to come on this node
		// waits for the same reply; one answered gets "duplicate" at once.
		t := time.NewTimer(a.o.wait)
		defer t.Stop()
		answer := func(rm moltbot.Message) {
			rep := a.reply(ev.ID, rm)
			writeJSON(w, http.StatusOK, response{Status: "answered", ID: ev.ID, Reply: &rep})
			wait.done <- true
			// A second reply handed over before the wait is gone (an
			// agent's) is given back to Send, for the callback.
			a.unwait(ev.ID, wait)
			select {
			case <-wait.m:
				wait.done <- false
			default:
			}
		}
		select {
		case rm := <-wait.m:
			answer(rm)
			return
		case <-t.C:
		case <-r.Context().Done():
		}
		// No reply is handed over once the wait is gone; one handed over
		// as it went (the timer and the reply at once) is answered, or,
		// the client gone, given back to Send for the callback.
		a.unwait(ev.ID, wait)
		select {
		case rm := <-wait.m:
			if r.Context().Err() == nil {
				answer(rm)
				return
			}
			wait.done <- false
		default:
		}
		if r.Context().Err() != nil {
			return
		}
	}
	code := http.StatusAccepted
	if status == "duplicate" {
		code = http.StatusOK
	}
	writeJSON(w, code, response{Status: status, ID: ev.ID})
}

// Parse reads an event's body (after its signature was checked); key is
// the Idempotency-Key header ("" when absent): the id when the body has
// none, else it must equal the body's id.
func Parse(body []byte, key string) (*Event, error) {
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("the body is not an event: %v", err)
	}
	if dec.More() {
		return nil, errors.New("the body holds more than one JSON value")
	}
	// The body is signed, the header is not: a header naming another id
	// than the body's would let a captured request, replayed within the
	// window with a new key, be a new event.
	switch {
	case key != "" && ev.ID != "" && key != ev.ID:
		return nil, errors.New("Idempotency-Key: differs from the body's id (the body's id is signed, the header is not): send one, or both equal")
	case key != "":
		ev.ID = key
	}
	switch {
	case ev.ID == "":
		return nil, errors.New("id: required (or an Idempotency-Key header): it names the event, so a retry is not run twice")
	case !validID(ev.ID):
		return nil, fmt.Errorf("id: 1 to %d printable ASCII bytes without spaces", MaxID)
	case ev.User == "":
		return nil, errors.New("user: required (the author's id)")
	case len(ev.User) > channels.MaxUserLen:
		return nil, fmt.Errorf("user: at most %d bytes", channels.MaxUserLen)
	case len(ev.Chat) > 256 || len(ev.Thread) > 256:
		return nil, errors.New("chat, thread: at most 256 bytes each")
	case len(ev.Images) > MaxImages:
		return nil, fmt.Errorf("images: at most %d", MaxImages)
	}
	if ev.Chat == "" {
		ev.Chat = ev.User
	}
	if ev.CallbackURL != "" {
		if err := checkCallback(ev.CallbackURL); err != nil {
			return nil, fmt.Errorf("callback_url: %w", err)
		}
	}
	for i, im := range ev.Images {
		if !strings.HasPrefix(im.MIME, "image/") || len(im.MIME) > 64 {
			return nil, fmt.Errorf("images[%d].mime: want image/..., got %q", i, cut(im.MIME))
		}
		if len(im.Data) == 0 {
			return nil, fmt.Errorf("images[%d].data: empty", i)
		}
	}
	return &ev, nil
}

func cut(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > MaxID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// await registers a sync request's wait for event id's reply.
func (a *Adapter) await(id string) *waiter {
	wt := &waiter{m: make(chan moltbot.Message, 1), done: make(chan bool, 2)}
	a.mu.Lock()
	a.waiting[id] = append(a.waiting[id], wt)
	a.mu.Unlock()
	return wt
}

// unwait ends a wait (again: nothing).
func (a *Adapter) unwait(id string, wt *waiter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.waiting[id]
	for i, c := range list {
		if c == wt {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(a.waiting, id)
	} else {
		a.waiting[id] = list
	}
}

// waitingFor reports whether a sync request waits for event id's reply.
func (a *Adapter) waitingFor(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.waiting[id]) > 0
}

// answer hands m to the sync requests waiting for event id's reply and
// reports whether one of them answered with it.
func (a *Adapter) answer(ctx context.Context, id string, m moltbot.Message) bool {
	a.mu.Lock()
	var took []*waiter
	for _, wt := range a.waiting[id] {
		select {
		case wt.m <- m:
			took = append(took, wt)
		default:
		}
	}
	a.mu.Unlock()
	answered := false
	for _, wt := range took {
		select {
		case ok := <-wt.done:
			answered = answered || ok
		case <-ctx.Done():
			return answered
		}
	}
	return answered
}

func (a *Adapter) reply(inReplyTo string, m moltbot.Message) Reply {
	created := m.Created
	if created == 0 {
		created = a.Now().UnixMilli()
	}
	return Reply{ID: m.ID, InReplyTo: inReplyTo, Channel: a.cfg.Name, Text: m.Content, Created: created}
}

// CheckTestAddress implements channels.TestChecker: a test goes only to the
// origin (scheme, host and port) of the channel's callback_url, none
// without one. (An event's own callback_url comes signed with the
// channel's secret: its sender is trusted as the secret's holder.)
func (a *Adapter) CheckTestAddress(address string) error {
	_, callback, found := strings.Cut(address, " ")
	if !found && strings.Contains(address, "://") {
		callback = address // a bare URL
	}
	if callback == "" {
		return nil // "ID" alone: the channel's own callback_url
	}
	if a.o.callback == "" {
		return errors.New("this webhook channel has no callback_url: a test sends only to its origin")
	}
	want, err := url.Parse(a.o.callback)
	if err != nil {
		return err
	}
	got, err := url.Parse(callback)
	if err != nil || got.Scheme != want.Scheme || got.Host != want.Host || got.User != nil {
		return fmt.Errorf("a test goes only to the channel's callback_url origin, %s://%s", want.Scheme, want.Host)
	}
	return nil
}

// Send delivers a reply: to the sync requests waiting for it on this node,
// else to the callback URL (the event's, or the channel's). Without
// either it is dropped (logged): a sync channel's reply that came after
// its request gave up and has nowhere else to go.
func (a *Adapter) Send(ctx context.Context, address string, m moltbot.Message) error {
	id, callback, found := strings.Cut(address, " ")
	if !found && strings.Contains(id, "://") {
		id, callback = "", id // a bare URL (moltbot channels test --to URL)
	}
	if a.o.sync && a.answer(ctx, id, m) {
		return nil
	}
	if callback == "" {
		callback = a.o.callback
	}
	if callback == "" {
		a.host.Log().Info("webhook reply has no callback URL: dropped", "in_reply_to", id)
		return nil
	}
	body, err := json.Marshal(a.reply(id, m))
	if err != nil {
		return err
	}
	ts := a.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, callback, bytes.NewReader(body))
	if err != nil {
		return &moltbot.Error{Code: moltbot.EInvalid, Message: "webhook: callback URL: " + channels.Redact(err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(moltbot.HeaderHookTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(moltbot.HeaderHookSignature, moltbot.SignHook(a.o.secret, ts, body))
	if m.ID != "" {
		req.Header.Set("Idempotency-Key", m.ID)
	}
	resp, err := a.Client.Do(req)
	if err != nil {
		return errors.New("webhook: callback: " + channels.RedactError(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 3:
		return &moltbot.Error{Code: moltbot.EInvalid, Message: fmt.Sprintf("webhook: the callback redirects (HTTP %d); redirects are not followed: configure the final URL", resp.StatusCode)}
	case resp.StatusCode/100 == 4 && resp.StatusCode != 408 && resp.StatusCode != 429:
		return &moltbot.Error{Code: moltbot.EInvalid, Message: fmt.Sprintf("webhook: the callback refused the reply (HTTP %d)", resp.StatusCode)}
	}
	return fmt.Errorf("webhook: the callback answered HTTP %d", resp.StatusCode)
}

func fail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]string{"message": msg}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

var _ channels.Adapter = (*Adapter)(nil)
