package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
)

const secret = "0123456789abcdef-secret"

var now = time.Unix(1_800_000_000, 0)

func newAdapter(t testing.TB, opts map[string]string, h channels.Host) *Adapter {
	t.Helper()
	o := map[string]string{"secret": secret}
	for k, v := range opts {
		o[k] = v
	}
	a, err := New(channels.Config{Name: "hooks", Type: "webhook", Tenant: "default", Conversations: channels.PerUser, Options: o}, h)
	if err != nil {
		t.Fatal(err)
	}
	ad := a.(*Adapter)
	ad.Now = func() time.Time { return now }
	return ad
}

func signed(t testing.TB, body string, ts int64, hdr map[string]string) *http.Request {
	r := httptest.NewRequest("POST", "/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(moltbot.HeaderHookTimestamp, strconv.FormatInt(ts, 10))
	r.Header.Set(moltbot.HeaderHookSignature, moltbot.SignHook(secret, ts, []byte(body)))
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

func serve(a *Adapter, r *http.Request) (int, map[string]any) {
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

// A signed event is accepted as a Message: its id, author, chat, text,
// images, and a reply address naming the event and its callback.
func TestEventAccepted(t *testing.T) {
	h := &channeltest.Host{}
	a := newAdapter(t, nil, h)
	body := `{"id":"ev-1","user":"u1","user_name":"Ann","chat":"c9","thread":"t1","text":"hello","images":[{"mime":"image/png","data":"AQID"}],"callback_url":"http://127.0.0.1:1/cb"}`
	code, out := serve(a, signed(t, body, now.Unix(), nil))
	if code != http.StatusAccepted || out["status"] != "accepted" || out["id"] != "ev-1" {
		t.Fatalf("%d %v", code, out)
	}
	m := h.Messages()
	if len(m) != 1 {
		t.Fatalf("accepted %d", len(m))
	}
	g := m[0]
	if g.ID != "ev-1" || g.User != "u1" || g.UserName != "Ann" || g.Chat != "c9" || g.Thread != "t1" || g.Text != "hello" ||
		g.Reply != "ev-1 http://127.0.0.1:1/cb" || len(g.Images) != 1 || !bytes.Equal(g.Images[0].Data, []byte{1, 2, 3}) || g.Images[0].MIME != "image/png" {
		t.Fatalf("message %+v", g)
	}
	// The same event again (a retry): a duplicate, one message.
	if code, out := serve(a, signed(t, body, now.Unix()+3, nil)); code != http.StatusOK || out["status"] != "duplicate" {
		t.Fatalf("retry: %d %v", code, out)
	}
	// The Idempotency-Key header names the event; chat defaults to the user.
	if code, _ := serve(a, signed(t, `{"user":"u2","text":"hi"}`, now.Unix(), map[string]string{"Idempotency-Key": "key-7"})); code != http.StatusAccepted {
		t.Fatalf("by header: %d", code)
	}
	if g := h.Messages()[1]; g.ID != "key-7" || g.Chat != "u2" || g.Reply != "key-7 " {
		t.Fatalf("message %+v", g)
	}
	if len(h.Messages()) != 2 {
		t.Fatal("the retry was accepted")
	}
}

// Bad, missing or stale signatures are 401 before the body is parsed
// (a body that is not JSON gets 401, not 400); nothing is accepted.
func TestSignatureRefused(t *testing.T) {
	h := &channeltest.Host{}
	a := newAdapter(t, nil, h)
	body := `{"id":"x","user":"u","text":"hi"}`
	notJSON := `<<<not json`
	for _, tc := range []struct {
		name string
		req  func() *http.Request
	}{
		{"no headers", func() *http.Request { return httptest.NewRequest("POST", "/", strings.NewReader(body)) }},
		{"no signature", func() *http.Request {
			r := signed(t, body, now.Unix(), nil)
			r.Header.Del(moltbot.HeaderHookSignature)
			return r
		}},
		{"wrong secret", func() *http.Request {
			r := signed(t, body, now.Unix(), nil)
			r.Header.Set(moltbot.HeaderHookSignature, moltbot.SignHook("another-secret-0123", now.Unix(), []byte(body)))
			return r
		}},
		{"body changed", func() *http.Request {
			r := signed(t, body, now.Unix(), nil)
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(body, "hi", "ho", 1)))
			return r
		}},
		{"timestamp changed", func() *http.Request {
			r := signed(t, body, now.Unix(), nil)
			r.Header.Set(moltbot.HeaderHookTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return r
		}},
		{"stale", func() *http.Request { return signed(t, body, now.Add(-6*time.Minute).Unix(), nil) }},
		{"future", func() *http.Request { return signed(t, body, now.Add(6*time.Minute).Unix(), nil) }},
		{"not an integer", func() *http.Request {
			r := signed(t, body, now.Unix(), nil)
			r.Header.Set(moltbot.HeaderHookTimestamp, strconv.FormatInt(now.Unix(), 10)+".5")
			return r
		}},
		{"plus sign", func() *http.Request {
			r := signed(t, body, now.Unix(), nil)
			r.Header.Set(moltbot.HeaderHookTimestamp, "+"+strconv.FormatInt(now.Unix(), 10))
			return r
		}},
		{"upper-case hex", func() *http.Request {
			r := signed(t, body, now.Unix(), nil)
			r.Header.Set(moltbot.HeaderHookSignature, strings.ToUpper(r.Header.Get(moltbot.HeaderHookSignature)))
			return r
		}},
		{"bad signature, not JSON", func() *http.Request {
			r := signed(t, notJSON, now.Unix(), nil)
			r.Header.Set(moltbot.HeaderHookSignature, "sha256=00")
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := serve(a, tc.req())
			if code != http.StatusUnauthorized || out["error"] == nil {
				t.Fatalf("%d %v", code, out)
			}
		})
	}
	if len(h.Messages()) != 0 {
		t.Fatal("a refused request was accepted")
	}
	// Signed but not an event: 400 naming the problem.
	for body, want := range map[string]string{
		notJSON:                                          "not an event",
		`{"user":"u","text":"x"}`:                        "id: required",
		`{"id":"a b","user":"u"}`:                        "id: 1 to 200",
		`{"id":"a","text":"x"}`:                          "user: required",
		`{"id":"a","user":"u"} {}`:                       "more than one",
		`{"id":"a","user":"u","callback_url":"ftp://x"}`: "callback_url",
		`{"id":"a","user":"u","images":[{"mime":"text/html","data":"AQ=="}]}`: "images[0].mime",
	} {
		code, out := serve(a, signed(t, body, now.Unix(), nil))
		if code != http.StatusBadRequest || !strings.Contains(out["error"].(map[string]any)["message"].(string), want) {
			t.Errorf("%s: %d %v, want 400 with %q", body, code, out, want)
		}
	}
}

// Over MaxBody is 413; a GET is 405; another path 404; a refused message
// (a bot, empty) 422; a busy core 503 with Retry-After.
func TestHTTPErrors(t *testing.T) {
	h := &channeltest.Host{}
	a := newAdapter(t, nil, h)
	big := `{"id":"a","user":"u","text":"` + strings.Repeat("x", channels.MaxBody) + `"}`
	if code, _ := serve(a, signed(t, big, now.Unix(), nil)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize: %d", code)
	}
	if code, _ := serve(a, httptest.NewRequest("GET", "/", nil)); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", code)
	}
	if code, _ := serve(a, httptest.NewRequest("POST", "/other", nil)); code != http.StatusNotFound {
		t.Fatalf("other path: %d", code)
	}
	h.Refuse = channels.ErrRefused
	if code, _ := serve(a, signed(t, `{"id":"r","user":"u","text":"x","bot":true}`, now.Unix(), nil)); code != http.StatusUnprocessableEntity {
		t.Fatalf("refused: %d", code)
	}
	h.Refuse = &moltbot.Error{Code: moltbot.EBusy, Message: "full"}
	w := httptest.NewRecorder()
	a.ServeHTTP(w, signed(t, `{"id":"b","user":"u","text":"x"}`, now.Unix(), nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("busy: %d %v", w.Code, w.Header())
	}
}

// callbackServer verifies each reply's signature as a receiver would.
type callbackServer struct {
	*httptest.Server
	mu      sync.Mutex
	replies []Reply
	keys    []string
	status  int
	bad     int
}

func newCallbackServer(t *testing.T) *callbackServer {
	cs := &callbackServer{status: 200}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		cs.mu.Lock()
		defer cs.mu.Unlock()
		if err := moltbot.VerifyHook(secret, r.Header.Get(moltbot.HeaderHookTimestamp), r.Header.Get(moltbot.HeaderHookSignature), b, time.Now(), Skew); err != nil {
			cs.bad++
			w.WriteHeader(401)
			return
		}
		var rep Reply
		json.Unmarshal(b, &rep)
		cs.replies = append(cs.replies, rep)
		cs.keys = append(cs.keys, r.Header.Get("Idempotency-Key"))
		w.WriteHeader(cs.status)
	}))
	t.Cleanup(cs.Close)
	return cs
}

// Send POSTs the reply, signed, to the event's callback or the channel's;
// a 4xx is given up (EInvalid), a 5xx is an error the outbox retries.
func TestSendCallback(t *testing.T) {
	cs := newCallbackServer(t)
	h := &channeltest.Host{}
	a := newAdapter(t, map[string]string{"callback_url": cs.URL + "/channel"}, h)
	a.Now = time.Now
	m := moltbot.Message{ID: "msg-9", Role: moltbot.RoleAssistant, Content: "the answer", Created: 5}
	if err := a.Send(context.Background(), "ev-1 "+cs.URL+"/per-event", m); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(context.Background(), "ev-2 ", m); err != nil {
		t.Fatal(err)
	}
	cs.mu.Lock()
	if len(cs.replies) != 2 || cs.bad != 0 || cs.replies[0] != (Reply{ID: "msg-9", InReplyTo: "ev-1", Channel: "hooks", Text: "the answer", Created: 5}) ||
		cs.replies[1].InReplyTo != "ev-2" || cs.keys[0] != "msg-9" {
		t.Fatalf("replies %+v, bad %d", cs.replies, cs.bad)
	}
	cs.status = 400
	cs.mu.Unlock()
	if err := a.Send(context.Background(), "ev-3 ", m); moltbot.ErrorCode(err) != moltbot.EInvalid {
		t.Fatalf("a 400: %v", err)
	}
	cs.mu.Lock()
	cs.status = 503
	cs.mu.Unlock()
	if err := a.Send(context.Background(), "ev-4 ", m); err == nil || moltbot.ErrorCode(err) == moltbot.EInvalid {
		t.Fatalf("a 503: %v (want an error retried)", err)
	}
	// A redirect is not followed (the signed reply goes nowhere else).
	moved := httptest.NewServer(http.RedirectHandler(cs.URL, http.StatusTemporaryRedirect))
	defer moved.Close()
	cs.mu.Lock()
	cs.status = 200
	n := len(cs.replies)
	cs.mu.Unlock()
	if err := a.Send(context.Background(), "ev-6 "+moved.URL, m); moltbot.ErrorCode(err) != moltbot.EInvalid {
		t.Fatalf("a redirect: %v", err)
	}
	cs.mu.Lock()
	if len(cs.replies) != n {
		t.Fatal("the redirect was followed")
	}
	cs.mu.Unlock()
	// No callback anywhere: dropped without error (nothing to retry).
	b := newAdapter(t, nil, h)
	if err := b.Send(context.Background(), "ev-5 ", m); err != nil {
		t.Fatal(err)
	}
}

// reply: sync answers the request with the reply when it comes within the
// wait; a slower one is 202 and goes to the callback.
func TestSyncReply(t *testing.T) {
	h := &channeltest.Host{Accepted: make(chan channels.Message, 4)}
	a := newAdapter(t, map[string]string{"reply": "sync", "wait": "5s"}, h)
	go func() {
		m := <-h.Accepted
		a.Send(context.Background(), m.Reply, moltbot.Message{ID: "r1", Content: "pong"})
	}()
	code, out := serve(a, signed(t, `{"id":"s1","user":"u","text":"ping"}`, now.Unix(), nil))
	rep, _ := out["reply"].(map[string]any)
	if code != 200 || out["status"] != "answered" || rep["text"] != "pong" || rep["in_reply_to"] != "s1" {
		t.Fatalf("%d %v", code, out)
	}
	cs := newCallbackServer(t)
	b := newAdapter(t, map[string]string{"reply": "sync", "wait": "10ms", "callback_url": cs.URL}, &channeltest.Host{})
	b.Now = time.Now
	r := signed(t, `{"id":"s2","user":"u","text":"ping"}`, time.Now().Unix(), nil)
	if code, out := serve(b, r); code != http.StatusAccepted || out["status"] != "accepted" {
		t.Fatalf("slow: %d %v", code, out)
	}
	if err := b.Send(context.Background(), "s2 ", moltbot.Message{ID: "r2", Content: "late"}); err != nil {
		t.Fatal(err)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.replies) != 1 || cs.replies[0].Text != "late" {
		t.Fatalf("late reply: %+v", cs.replies)
	}
}

// inFlight answers every Accept as a duplicate whose turn is to come.
type inFlight struct{ channeltest.Host }

func (*inFlight) Accept(context.Context, channels.Message) error {
	return errors.Join(channels.ErrDuplicate, channels.ErrInFlight)
}

// A sync retry of an event whose turn is still to come waits for its
// reply; one answered before is a duplicate at once.
func TestSyncRetry(t *testing.T) {
	a := newAdapter(t, map[string]string{"reply": "sync", "wait": "10s"}, &inFlight{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		code, out := serve(a, signed(t, `{"id":"s1","user":"u","text":"ping"}`, now.Unix(), nil))
		if rep, _ := out["reply"].(map[string]any); code != 200 || out["status"] != "answered" || rep["text"] != "pong" {
			t.Errorf("retry in flight: %d %v", code, out)
		}
	}()
	for !a.waitingFor("s1") {
		time.Sleep(time.Millisecond)
	}
	a.Send(context.Background(), "s1 ", moltbot.Message{ID: "r", Content: "pong"})
	<-done
	b := newAdapter(t, map[string]string{"reply": "sync", "wait": "100s"}, &channeltest.Host{Refuse: channels.ErrDuplicate})
	if code, out := serve(b, signed(t, `{"id":"s2","user":"u","text":"ping"}`, now.Unix(), nil)); code != 200 || out["status"] != "duplicate" {
		t.Fatalf("answered before: %d %v", code, out)
	}
}

// Options are checked, each error naming its key.
func TestOptions(t *testing.T) {
	for opts, want := range map[string]map[string]string{
		"secret":       {"secret": "short"},
		"callback_url": {"secret": secret, "callback_url": "file:///etc/passwd"},
		"reply":        {"secret": secret, "reply": "later"},
		"wait":         {"secret": secret, "wait": "10m"},
	} {
		err := Type().Check(channels.Config{Name: "x", Options: want})
		if err == nil || !strings.HasPrefix(err.Error(), opts+": ") {
			t.Errorf("%v: %v, want an error naming %s", want, err, opts)
		}
	}
	if err := Type().Check(channels.Config{Name: "x", Options: map[string]string{"secret": secret, "reply": "sync", "wait": "30s"}}); err != nil {
		t.Fatal(err)
	}
}

// The parser never panics, and what it takes is within its limits.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"id":"ev-1","user":"u1","chat":"c","text":"hello","images":[{"mime":"image/png","data":"AQID"}]}`), "")
	f.Add([]byte(`{"user":"u"}`), "key")
	f.Add([]byte(`{"id":"a","user":"u","callback_url":"http://x/y"}`), "")
	f.Add([]byte(`[]`), "")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		ev, err := Parse(body, key)
		if err != nil {
			return
		}
		if !validID(ev.ID) || ev.User == "" || len(ev.User) > channels.MaxUserLen || len(ev.Images) > MaxImages || ev.Chat == "" {
			t.Fatalf("took %+v", ev)
		}
		if key != "" && ev.ID != key {
			t.Fatalf("id %q, want the key %q", ev.ID, key)
		}
	})
}

// Whatever the headers and body, nothing unsigned is accepted.
func FuzzServe(f *testing.F) {
	f.Add([]byte(`{"id":"a","user":"u","text":"x"}`), "1800000000", "sha256=00")
	f.Add([]byte(``), "", "")
	f.Add([]byte(`{}`), "-1", "sha256=")
	f.Fuzz(func(t *testing.T, body []byte, ts, sig string) {
		h := &channeltest.Host{}
		a := newAdapter(t, nil, h)
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set(moltbot.HeaderHookTimestamp, ts)
		r.Header.Set(moltbot.HeaderHookSignature, sig)
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		valid := moltbot.VerifyHook(secret, ts, sig, body, now, Skew) == nil
		if !valid && (w.Code != http.StatusUnauthorized || len(h.Messages()) != 0) {
			t.Fatalf("unsigned request answered %d, accepted %d", w.Code, len(h.Messages()))
		}
	})
}

// BenchmarkServe is the adapter's request path alone (verify, parse,
// accept into a Host in memory): the bare cost beside the node's.
//
//	go test -run '^$' -bench Serve ./channels/webhook/
func BenchmarkServe(b *testing.B) {
	a := newAdapter(b, nil, &nullHost{})
	body := []byte(`{"id":"e-1","user":"u1","text":"where is my order?"}`)
	sig := moltbot.SignHook(secret, now.Unix(), body)
	ts := strconv.FormatInt(now.Unix(), 10)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set(moltbot.HeaderHookTimestamp, ts)
		r.Header.Set(moltbot.HeaderHookSignature, sig)
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		if w.Code != http.StatusAccepted {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkVerifyHook is the signature check alone.
func BenchmarkVerifyHook(b *testing.B) {
	body := []byte(`{"id":"e-1","user":"u1","text":"where is my order?"}`)
	sig := moltbot.SignHook(secret, now.Unix(), body)
	ts := strconv.FormatInt(now.Unix(), 10)
	b.ReportAllocs()
	for b.Loop() {
		if err := moltbot.VerifyHook(secret, ts, sig, body, now, Skew); err != nil {
			b.Fatal(err)
		}
	}
}

type nullHost struct{ channeltest.Host }

func (*nullHost) Accept(context.Context, channels.Message) error { return nil }

// The Idempotency-Key header is not signed: a captured request replayed
// within the window with another key must not become a second event. The
// body's (signed) id wins; a header naming another id is refused.
func TestReplayWithAnotherIdempotencyKey(t *testing.T) {
	h := &channeltest.Host{}
	a := newAdapter(t, nil, h)
	body := `{"id":"ev-1","user":"u1","text":"transfer"}`
	if code, out := serve(a, signed(t, body, now.Unix(), nil)); code != http.StatusAccepted {
		t.Fatalf("first: %d %v", code, out)
	}
	// The same signed bytes, an attacker's header.
	code, out := serve(a, signed(t, body, now.Unix(), map[string]string{"Idempotency-Key": "replayed-1"}))
	if code != http.StatusBadRequest {
		t.Fatalf("replay with another Idempotency-Key: %d %v", code, out)
	}
	if msg, _ := out["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "Idempotency-Key") {
		t.Fatalf("the error does not name the header: %v", out)
	}
	// The header equal to the body's id is the same event.
	if code, out := serve(a, signed(t, body, now.Unix(), map[string]string{"Idempotency-Key": "ev-1"})); code != http.StatusOK || out["status"] != "duplicate" {
		t.Fatalf("same key: %d %v", code, out)
	}
	if n := len(h.Messages()); n != 1 {
		t.Fatalf("%d messages accepted from one signed event", n)
	}
}

// answering is a Host whose turn's reply comes at once: before Accept
// returns, the outbox (another goroutine) has handed it to the waiting
// request; sent is what each Send answered.
type answering struct {
	channeltest.Host
	a    *Adapter
	sent chan error
}

func (h *answering) Accept(ctx context.Context, m channels.Message) error {
	if err := h.Host.Accept(ctx, m); err != nil {
		return err
	}
	go func() {
		h.sent <- h.a.Send(context.Background(), m.Reply, moltbot.Message{ID: m.ID + ":r", Content: "pong"})
	}()
	for {
		h.a.mu.Lock()
		list := h.a.waiting[m.ID]
		handed := len(list) == 1 && len(list[0].m) == 1
		h.a.mu.Unlock()
		if handed {
			return nil
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// A reply handed to a waiting sync request is never dropped: Send
// answered nil (the outbox counts it delivered, no callback), so the
// request must return it even when its wait ran out at the same moment.
func TestSyncReplyAtTheDeadline(t *testing.T) {
	h := &answering{sent: make(chan error, 1)}
	a := newAdapter(t, map[string]string{"reply": "sync", "wait": "1ns"}, h)
	h.a = a
	for i := range 64 {
		id := "d" + strconv.Itoa(i)
		code, out := serve(a, signed(t, `{"id":"`+id+`","user":"u","text":"ping"}`, now.Unix(), nil))
		if rep, _ := out["reply"].(map[string]any); code != http.StatusOK || out["status"] != "answered" || rep["text"] != "pong" {
			t.Fatalf("event %d: the reply handed over was lost: %d %v", i, code, out)
		}
		if err := <-h.sent; err != nil {
			t.Fatalf("event %d: send: %v", i, err)
		}
	}
}

// Two replies of one event handed to its sync request (the bot's and,
// as the request writes it, an agent's): the request answers with the
// first, the second is given back to Send, which posts it to the
// callback; no Send waits forever for a request that has answered.
func TestSyncSecondReplyGivenBack(t *testing.T) {
	cs := newCallbackServer(t)
	h := &answering{sent: make(chan error, 1)}
	a := newAdapter(t, map[string]string{"reply": "sync", "wait": "10s", "callback_url": cs.URL}, h)
	a.Now = time.Now
	h.a = a
	second := make(chan error, 1)
	w := &hookWriter{ResponseRecorder: httptest.NewRecorder(), before: func() {
		// While the request writes the first reply, a second one comes.
		go func() { second <- a.Send(context.Background(), "e1 ", moltbot.Message{ID: "r2", Content: "second"}) }()
		for {
			a.mu.Lock()
			list := a.waiting["e1"]
			handed := len(list) == 1 && len(list[0].m) == 1
			a.mu.Unlock()
			if handed {
				return
			}
			time.Sleep(50 * time.Microsecond)
		}
	}}
	a.ServeHTTP(w, signed(t, `{"id":"e1","user":"u","text":"ping"}`, time.Now().Unix(), nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"pong"`) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if err := <-h.sent; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the second reply's Send waits for a request that has answered")
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.replies) != 1 || cs.replies[0].Text != "second" {
		t.Fatalf("the second reply did not reach the callback: %+v", cs.replies)
	}
}

// hookWriter runs before once, at the first Write.
type hookWriter struct {
	*httptest.ResponseRecorder
	before func()
}

func (w *hookWriter) Write(b []byte) (int, error) {
	if w.before != nil {
		w.before()
		w.before = nil
	}
	return w.ResponseRecorder.Write(b)
}

// A test (moltbot channels test, a tenant admin's call) goes only to the
// origin of the channel's callback_url: not to any URL its caller names.
func TestCheckTestAddress(t *testing.T) {
	a := &Adapter{o: opts{callback: "https://crm.example.com/moltbot/replies"}}
	for _, tc := range []struct {
		to string
		ok bool
	}{
		{"https://crm.example.com/moltbot/replies", true},
		{"https://crm.example.com/other", true},
		{"http://crm.example.com/moltbot/replies", false},
		{"https://crm.example.com:8443/x", false},
		{"https://169.254.169.254/latest/meta-data", false},
		{"http://127.0.0.1:3000/v1/admin/tenants", false},
		{"https://user@crm.example.com/x", false},
		{"::not a url", false},
		{"probe-1 https://crm.example.com/x", true},
		{"probe-1 https://evil.example/x", false},
		{"probe-1", true},
	} {
		if err := a.CheckTestAddress(tc.to); (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok %v", tc.to, err, tc.ok)
		}
	}
	if err := (&Adapter{}).CheckTestAddress("p https://crm.example.com/x"); err == nil {
		t.Error("a channel without callback_url took a test address")
	}
	var _ channels.TestChecker = a
}
