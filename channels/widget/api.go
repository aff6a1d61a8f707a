package widget

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// sessionJSON is POST api/session's answer.
type sessionJSON struct {
	Token    string `json:"token"`
	Visitor  string `json:"visitor"`
	Expires  int64  `json:"expires"` // Unix seconds
	New      bool   `json:"new"`     // a new visitor (no token, or one no longer good)
	Title    string `json:"title"`
	Greeting string `json:"greeting,omitempty"`
	// MaxImageBytes is the largest image a message may attach (0: none).
	MaxImageBytes int `json:"max_image_bytes"`
}

// session hands out a visitor token: the one a valid token names, with
// its expiry moved on, or a new visitor's (at most new_visitors a client
// address).
func (w *Widget) session(rw http.ResponseWriter, r *http.Request) {
	if r.Body != nil {
		// Nothing is read from it; a client may send {}.
		io.Copy(io.Discard, io.LimitReader(r.Body, maxSessionBody))
	}
	k := r.Header.Get(keyHeader)
	if k == "" {
		writeError(rw, unauthorized("no publishable key: send the channel's key (pk_...) in "+keyHeader))
		return
	}
	if !w.keyMatches(k) {
		writeError(rw, unauthorized("the publishable key is not this channel's"))
		return
	}
	now := w.now()
	v, _, err := w.sign.verify(bearer(r.Header.Get("Authorization")), now)
	fresh := err != nil
	if fresh {
		if wait, ok := w.fresh.take(w.clientKey(r)); !ok {
			writeError(rw, &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: wait,
				Message: "too many new visitors from this address (" + w.o.fresh.String() + "); wait and try again"})
			return
		}
		v = newVisitorID()
	} else if wait, ok := w.visitors.take(v); !ok {
		writeError(rw, &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: wait,
			Message: "this visitor sends more than " + w.o.rate.String() + "; wait and try again"})
		return
	}
	exp := now.Add(w.o.ttl).Truncate(time.Second)
	writeJSON(rw, http.StatusOK, sessionJSON{Token: w.sign.sign(v, exp), Visitor: v, Expires: exp.Unix(), New: fresh,
		Title: w.o.title, Greeting: w.o.greeting, MaxImageBytes: w.o.maxImage})
}

// messageJSON is a message as a visitor sees it: no model names, no
// tool calls; an agent's reply says so; images are counted, not sent
// back (the page shows its own while it lives).
type messageJSON struct {
	ID         string `json:"id"`
	Role       string `json:"role"` // user, assistant
	Content    string `json:"content"`
	Created    int64  `json:"created"` // Unix seconds
	Images     int    `json:"images,omitempty"`
	Agent      bool   `json:"agent,omitempty"`
	Incomplete bool   `json:"incomplete,omitempty"`
}

// visible is m as the visitor sees it; false for what a visitor is not
// shown (system, tool messages, an assistant's tool calls without text).
func visible(m *moltbot.Message) (messageJSON, bool) {
	if m.Role != moltbot.RoleUser && m.Role != moltbot.RoleAssistant {
		return messageJSON{}, false
	}
	images := 0
	for i := range m.Parts {
		if m.Parts[i].Type == moltbot.PartImage {
			images++
		}
	}
	text := m.Text()
	if text == "" && images == 0 {
		return messageJSON{}, false
	}
	return messageJSON{ID: m.ID, Role: string(m.Role), Content: text, Created: m.Created / 1000, Images: images,
		Agent: strings.HasPrefix(m.Model, "agent/"), Incomplete: m.Incomplete}, true
}

// historyJSON is GET api/history's answer.
type historyJSON struct {
	Object string        `json:"object"` // list
	Data   []messageJSON `json:"data"`
	// Handoff is who answers now when a person was asked for: queue (a
	// person will) or agent (one does); absent when the bot does.
	Handoff string `json:"handoff,omitempty"`
}

// history answers the visitor's conversation's messages, the newest
// maxHistory (none before its first message).
func (w *Widget) history(rw http.ResponseWriter, r *http.Request, v string) {
	svc, p, err := w.service(v)
	if err != nil {
		writeError(rw, err)
		return
	}
	out := historyJSON{Object: "list", Data: []messageJSON{}}
	c, err := svc.Get(r.Context(), p, w.conversation(v))
	switch {
	case moltbot.ErrorCode(err) == moltbot.ENotFound:
	case err != nil:
		writeError(rw, err)
		return
	default:
		for i := range c.Messages {
			if m, ok := visible(&c.Messages[i]); ok {
				out.Data = append(out.Data, m)
			}
		}
		if n := len(out.Data); n > maxHistory {
			out.Data = out.Data[n-maxHistory:]
		}
		if h := moltbot.HandoffOf(c); h != nil && h.Owner != "bot" {
			out.Handoff = h.Owner
		}
	}
	writeJSON(rw, http.StatusOK, out)
}

// messageRequest is POST api/messages's body.
type messageRequest struct {
	Content string `json:"content"`
	// ID is the client's id of the message (1-64 of [A-Za-z0-9._:-]): the
	// same message sent again (a retry after a dropped connection) is not
	// a second turn; its stored reply is answered.
	ID string `json:"id"`
	// Images are attached images as data URLs (data:image/png;base64,...),
	// at most maxImages of at most max_image_bytes each.
	Images []string `json:"images"`
}

// maxImages is how many images one message may carry.
const maxImages = 2

// message is a parsed message: its text and, with images, its parts.
type message struct {
	messageRequest
	parts []moltbot.Part // nil for text only
}

// bodyCap is the largest message body: the text (escaped, at worst six
// bytes a byte) and the images (base64) with room for the JSON, within
// what the core lets through (channels.MaxBody).
func (o *options) bodyCap() int {
	n := 6*o.maxMsg + 4<<10
	if o.maxImage > 0 {
		n += maxImages * (o.maxImage/3 + 1) * 4
	}
	return min(n, channels.MaxBody)
}

// parseMessage reads a message body: one JSON object with a content of at
// most o.maxMsg bytes of UTF-8 (not blank unless images come), an
// optional id and optional images; any other field, a second value or a
// body over o.bodyCap is refused.
func parseMessage(body io.Reader, o *options) (message, error) {
	var req message
	limit := o.bodyCap()
	b, err := io.ReadAll(io.LimitReader(body, int64(limit)+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, &moltbot.Error{Code: moltbot.ETooLarge, Message: "the body is over the node's limit"}
		}
		return req, moltbot.Errorf(moltbot.EInvalid, "reading the body: %v", err)
	}
	if len(b) > limit {
		return req, &moltbot.Error{Code: moltbot.ETooLarge, Message: "a message's body is at most " + itoa(limit) + " bytes"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req.messageRequest); err != nil {
		return req, &moltbot.Error{Code: moltbot.EInvalid, Message: "the body is one JSON object {\"content\": \"...\", \"id\": \"...\", \"images\": [...]}: " + clipPath(err.Error())}
	}
	if dec.More() {
		return req, moltbot.Errorf(moltbot.EInvalid, "the body holds more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, moltbot.Errorf(moltbot.EInvalid, "the body holds more than one JSON value")
	}
	switch {
	case strings.TrimSpace(req.Content) == "" && len(req.Images) == 0:
		return req, &moltbot.Error{Code: moltbot.EInvalid, Param: "content", Message: "content is the message's text, not empty"}
	case len(req.Content) > o.maxMsg:
		return req, &moltbot.Error{Code: moltbot.ETooLarge, Param: "content",
			Message: "content is " + itoa(len(req.Content)) + " bytes; a message is at most " + itoa(o.maxMsg) + " (max_message_bytes)"}
	case !utf8.ValidString(req.Content):
		return req, &moltbot.Error{Code: moltbot.EInvalid, Param: "content", Message: "content is not valid UTF-8"}
	case req.ID != "" && !moltbot.ValidRequestID(req.ID):
		return req, &moltbot.Error{Code: moltbot.EInvalid, Param: "id", Message: "id is 1-64 of A-Z a-z 0-9 . _ : -"}
	case len(req.Images) > 0 && o.maxImage == 0:
		return req, &moltbot.Error{Code: moltbot.EInvalid, Param: "images", Message: "this widget takes no images (max_image_bytes: 0)"}
	case len(req.Images) > maxImages:
		return req, &moltbot.Error{Code: moltbot.EInvalid, Param: "images", Message: "a message carries at most " + itoa(maxImages) + " images"}
	}
	if len(req.Images) == 0 {
		return req, nil
	}
	req.parts = make([]moltbot.Part, 0, len(req.Images)+1)
	if req.Content != "" {
		req.parts = append(req.parts, moltbot.Part{Type: moltbot.PartText, Text: req.Content})
	}
	for i, u := range req.Images {
		mt, data, err := openaiwire.DecodeImageURL(u, o.maxImage)
		if err != nil {
			code := moltbot.EInvalid
			var ie *openaiwire.ImageError
			if errors.As(err, &ie) && ie.TooLarge {
				code = moltbot.ETooLarge
			}
			return req, &moltbot.Error{Code: code, Param: "images[" + itoa(i) + "]", Message: "images[" + itoa(i) + "]: " + err.Error() + " (max_image_bytes)"}
		}
		req.parts = append(req.parts, moltbot.Part{Type: moltbot.PartImage, MIME: mt, Data: data})
	}
	return req, nil
}

// message runs a turn of the visitor's conversation (made at its first
// message) and streams the reply as server-sent events: token
// ({"content"}) as it is written, handoff ({"owner"}) when a person takes
// over, then done ({"message","finish_reason","replayed"}) or error
// ({"error"}). Headers leave with the first event, so an error before it
// is a plain JSON error with its status.
func (w *Widget) message(rw http.ResponseWriter, r *http.Request, v string) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(rw, &moltbot.Error{Code: codeMediaType, Message: "the body is application/json (Content-Type)"})
		return
	}
	req, err := parseMessage(r.Body, w.o)
	if err != nil {
		writeError(rw, err)
		return
	}
	svc, p, err := w.service(v)
	if err != nil {
		writeError(rw, err)
		return
	}
	id := w.conversation(v)
	in := moltbot.TurnInput{Content: req.Content, Parts: req.parts}
	if req.ID != "" {
		in.ExternalID = "w:" + req.ID
	}
	turn := chat.TurnRequest{Conversation: id, Input: in, Stream: true}
	st, err := svc.Turn(r.Context(), p, turn)
	if moltbot.ErrorCode(err) == moltbot.ENotFound {
		// The visitor's first message: its conversation begins (a race
		// with another tab's first message makes it once).
		if _, cerr := svc.Create(r.Context(), p, moltbot.NewConversation{ID: id}); cerr != nil && moltbot.ErrorCode(cerr) != moltbot.EConflict {
			writeError(rw, cerr)
			return
		}
		st, err = svc.Turn(r.Context(), p, turn)
	}
	if err != nil {
		writeError(rw, err)
		return
	}
	sw := newSSE(rw)
	defer sw.release()
	defer st.Close()
	for ev := range st.Events() {
		switch ev.Kind {
		case moltbot.EventToken:
			if ev.Text == "" {
				continue
			}
			sw.event("token")
			sw.buf = append(sw.buf, `{"content":`...)
			sw.buf = jsonw.String(sw.buf, ev.Text)
			sw.buf = append(sw.buf, "}\n\n"...)
		case moltbot.EventHandoff:
			sw.event("handoff")
			sw.buf = append(sw.buf, `{"owner":`...)
			sw.buf = jsonw.String(sw.buf, ev.Text)
			sw.buf = append(sw.buf, "}\n\n"...)
		case moltbot.EventDone:
			sw.done(ev.Result)
			return
		case moltbot.EventError:
			if !sw.started {
				writeError(rw, ev.Err)
				return
			}
			sw.fail(ev.Err)
			return
		default:
			continue
		}
		if st.Pending() > 0 {
			continue // one write for a burst
		}
		if sw.flush() != nil {
			return // the visitor left: Close cancels the turn
		}
	}
}

// doneJSON is the done event's data.
type doneJSON struct {
	Message      *messageJSON `json:"message,omitempty"` // absent when nothing was said (a message relayed to a person)
	FinishReason string       `json:"finish_reason"`
	Replayed     bool         `json:"replayed,omitempty"`
}

// sse writes server-sent events, headers with the first.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	buf     []byte
	started bool
}

// newSSE writes events to w; release gives it back when the stream is done.
func newSSE(w http.ResponseWriter) *sse {
	s := sseWriters.Get().(*sse)
	*s = sse{w: w, rc: http.NewResponseController(w), buf: s.buf[:0]}
	return s
}

// sseWriters are pooled with their buffers: a burst of tokens leaves in
// one write of a few KB, which a fresh buffer would grow to every time.
var sseWriters = sync.Pool{New: func() any { return &sse{buf: make([]byte, 0, 2048)} }}

// release returns s to the pool; s is not used after.
func (s *sse) release() {
	if cap(s.buf) > 64<<10 {
		return
	}
	*s = sse{buf: s.buf[:0]}
	sseWriters.Put(s)
}

func (s *sse) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

// event starts an event of kind (its data follows in buf).
func (s *sse) event(kind string) {
	s.start()
	s.buf = append(s.buf, "event: "...)
	s.buf = append(s.buf, kind...)
	s.buf = append(s.buf, "\ndata: "...)
}

// flush writes what waits, within writeTimeout: a visitor that stops
// reading cannot hold a model call.
func (s *sse) flush() error {
	s.start()
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	if err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sse) done(res *moltbot.TurnResult) {
	d := doneJSON{FinishReason: "stop"}
	if res != nil {
		if m, ok := visible(&res.Message); ok {
			d.Message = &m
		}
		if res.Completion != nil && res.Completion.FinishReason != "" {
			d.FinishReason = res.Completion.FinishReason
		}
		d.Replayed = res.Replayed
	}
	b, _ := json.Marshal(d)
	s.event("done")
	s.buf = append(s.buf, b...)
	s.buf = append(s.buf, "\n\n"...)
	s.flush()
}

func (s *sse) fail(err error) {
	s.event("error")
	s.buf = appendError(s.buf, err)
	s.buf = append(s.buf, "\n\n"...)
	s.flush()
}

// events follows the visitor's conversation: subscribed (first, and again
// after the conversation moved between nodes: read the history then),
// message (each message stored: the visitor's, the bot's, a person's),
// comments every 15 s while quiet, and error when it ends (the
// conversation deleted, the token expired, a follower too slow). At most
// two a visitor and eight a client address on a node.
func (w *Widget) events(rw http.ResponseWriter, r *http.Request, v string, exp time.Time) {
	if !w.open.hold(v, maxStreamsVisitor) {
		writeError(rw, &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: 5 * time.Second,
			Message: "this visitor follows its conversation twice already; close one"})
		return
	}
	defer w.open.leave(v)
	// Visitors are cheap to make (new_visitors an address): the address's
	// streams are bounded too, or one address could hold the tenant's
	// subscriptions on this node (chat's MaxSubscriptions a space).
	client := w.clientKey(r)
	if !w.openAt.hold(client, maxStreamsClient) {
		writeError(rw, &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: 5 * time.Second,
			Message: "this address follows " + itoa(maxStreamsClient) + " conversations already; close one"})
		return
	}
	defer w.openAt.leave(client)
	svc, p, err := w.service(v)
	if err != nil {
		writeError(rw, err)
		return
	}
	st, err := svc.Subscribe(r.Context(), p, w.conversation(v))
	if err != nil {
		writeError(rw, err)
		return
	}
	defer st.Close()
	sw := newSSE(rw)
	defer sw.release()
	sw.buf = append(sw.buf, ": following\n\n"...)
	if sw.flush() != nil {
		return
	}
	evs := make(chan moltbot.Event)
	go func() { // owned here: ends when st ends, which Close below makes sure of
		defer close(evs)
		for ev := range st.Events() {
			evs <- ev
		}
	}()
	defer func() {
		st.Close()
		for range evs {
		}
	}()
	tick := time.NewTicker(w.keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if !w.now().Before(exp) {
				sw.fail(unauthorized(errTokenExpired.Error()))
				return
			}
			sw.buf = append(sw.buf, ": keep-alive\n\n"...)
		case ev, ok := <-evs:
			if !ok {
				return
			}
			switch ev.Kind {
			case moltbot.EventSubscribed:
				sw.event("subscribed")
				sw.buf = append(sw.buf, "{}\n\n"...)
			case moltbot.EventMessage:
				m, ok := visible(ev.Message)
				if !ok {
					continue
				}
				b, _ := json.Marshal(m)
				sw.event("message")
				sw.buf = append(sw.buf, b...)
				sw.buf = append(sw.buf, "\n\n"...)
			case moltbot.EventError:
				sw.fail(ev.Err)
				return
			default:
				continue // tokens: the turn's own request streams them
			}
		}
		if sw.flush() != nil {
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func itoa(n int) string {
	return string(jsonw.Int(nil, int64(n)))
}
