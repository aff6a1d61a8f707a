package slack

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/slack/fakeslack"
)

var clock = time.Unix(1700000100, 0)

func httpFixture(t *testing.T) *fixture {
	f := newFixture(t, ModeHTTP, &channeltest.Host{})
	f.a.now = func() time.Time { return clock }
	return f
}

func serve(f *fixture, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.a.ServeHTTP(w, r)
	return w
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("HTTP %d: body %q is not a JSON error", w.Code, w.Body.String())
	}
	return e.Error
}

// Bad, missing, stale, future and malformed signatures are refused with
// 401 before the body is parsed (a body that is not even JSON gets 401,
// not 400), and nothing reaches the Host.
func TestHTTPSignature(t *testing.T) {
	f := httpFixture(t)
	good := f.fake.Callback(mention("1700000001.000100", "<@UFAKEBOT> hi"))
	now := clock.Unix()
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		want string
	}{
		{"wrong secret", func() *http.Request { return fakeslack.Request("/", "not-the-secret", now, good, 0) }, "does not match"},
		{"not JSON, wrong secret", func() *http.Request { return fakeslack.Request("/", "nope", now, []byte("{{{not json"), 0) }, "does not match"},
		{"body changed", func() *http.Request {
			r := fakeslack.Request("/", secret, now, good, 0)
			r.Body = http.NoBody
			return r
		}, "does not match"},
		{"no signature", func() *http.Request {
			r := fakeslack.Request("/", secret, now, good, 0)
			r.Header.Del("X-Slack-Signature")
			return r
		}, "missing"},
		{"no timestamp", func() *http.Request {
			r := fakeslack.Request("/", secret, now, good, 0)
			r.Header.Del("X-Slack-Request-Timestamp")
			return r
		}, "missing"},
		{"stale", func() *http.Request { return fakeslack.Request("/", secret, now-301, good, 0) }, "5 minutes"},
		{"future", func() *http.Request { return fakeslack.Request("/", secret, now+301, good, 0) }, "5 minutes"},
		{"timestamp not an integer", func() *http.Request {
			r := fakeslack.Request("/", secret, now, good, 0)
			r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now, 10)+".5")
			return r
		}, "not a Unix time"},
		{"signature not v0", func() *http.Request {
			r := fakeslack.Request("/", secret, now, good, 0)
			r.Header.Set("X-Slack-Signature", "v1="+strings.Repeat("0", 64))
			return r
		}, "does not match"},
		{"signature not hex", func() *http.Request {
			r := fakeslack.Request("/", secret, now, good, 0)
			r.Header.Set("X-Slack-Signature", "v0="+strings.Repeat("z", 64))
			return r
		}, "does not match"},
		{"url_verification unsigned", func() *http.Request {
			r := fakeslack.Request("/", "nope", now, []byte(`{"type":"url_verification","challenge":"abc"}`), 0)
			return r
		}, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(f, tc.req())
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("HTTP %d, want 401: %s", w.Code, w.Body)
			}
			if e := errorOf(t, w); !strings.Contains(e, tc.want) {
				t.Fatalf("error %q, want it to say %q", e, tc.want)
			}
		})
	}
	if n := len(f.host.Messages()); n != 0 {
		t.Fatalf("%d messages accepted from refused requests", n)
	}
	// The edges of the window are in it.
	for _, ts := range []int64{now - 300, now + 300} {
		if w := serve(f, fakeslack.Request("/", secret, ts, []byte(`{"type":"app_rate_limited"}`), 0)); w.Code != http.StatusOK {
			t.Fatalf("timestamp %d (300 s off): HTTP %d", ts, w.Code)
		}
	}
}

// The URL check is answered with its challenge once signed.
func TestHTTPURLVerification(t *testing.T) {
	f := httpFixture(t)
	w := serve(f, fakeslack.Request("/", secret, clock.Unix(), []byte(`{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`), 0))
	var got struct {
		Challenge string `json:"challenge"`
	}
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &got) != nil || got.Challenge != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Fatalf("HTTP %d %s", w.Code, w.Body)
	}
}

// An event is accepted before the 200; Slack's retries of it, and the
// message event of the same mention, are answered 200 and make no
// second turn.
func TestHTTPEventAndRetries(t *testing.T) {
	f := httpFixture(t)
	ev := fakeslack.Event{Type: "app_mention", User: "U0ALICE", Text: "<@UFAKEBOT> hello", TS: "1700000010.000100", ThreadTS: "1700000009.000100", Channel: "C0GENERAL"}
	body := f.fake.Callback(ev)
	for retry := range 3 {
		w := serve(f, fakeslack.Request("/", secret, clock.Unix(), body, retry))
		if w.Code != http.StatusOK {
			t.Fatalf("retry %d: HTTP %d %s", retry, w.Code, w.Body)
		}
		if n := len(f.host.Messages()); n != 1 {
			t.Fatalf("after retry %d: %d messages, want 1", retry, n)
		}
	}
	// The same mention as a channel message event: not taken (only
	// mentions and DMs), and with the same ID it would be one anyway.
	ev.Type, ev.ChannelType = "message", "channel"
	if w := serve(f, fakeslack.Request("/", secret, clock.Unix(), f.fake.Callback(ev), 0)); w.Code != http.StatusOK {
		t.Fatalf("HTTP %d", w.Code)
	}
	m := f.host.Messages()
	if len(m) != 1 || m[0].ID != "C0GENERAL:1700000010.000100" || m[0].Thread != "1700000009.000100" || m[0].Reply != "C0GENERAL/1700000009.000100" {
		t.Fatalf("messages %+v", m)
	}
}

// Requests that are not the Events API's: a wrong method, an oversize
// body, a signed body that is not JSON, a socket-mode channel.
func TestHTTPBadRequests(t *testing.T) {
	f := httpFixture(t)
	if w := serve(f, httptest.NewRequest(http.MethodGet, "/", nil)); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: HTTP %d", w.Code)
	}
	big := bytes.Repeat([]byte("a"), channels.MaxBody+1)
	if w := serve(f, fakeslack.Request("/", secret, clock.Unix(), big, 0)); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize: HTTP %d", w.Code)
	} else {
		errorOf(t, w)
	}
	if w := serve(f, fakeslack.Request("/", secret, clock.Unix(), []byte("not json"), 0)); w.Code != http.StatusBadRequest {
		t.Fatalf("signed, not JSON: HTTP %d", w.Code)
	}
	s := newFixture(t, ModeSocket, nil)
	if w := serve(s, fakeslack.Request("/", secret, time.Now().Unix(), []byte(`{}`), 0)); w.Code != http.StatusNotFound {
		t.Fatalf("socket mode: HTTP %d", w.Code)
	}
}

// In http mode Run keeps nothing: it reports listening and returns nil.
func TestHTTPRun(t *testing.T) {
	f := httpFixture(t)
	if err := <-f.run(t); err != nil || f.host.State() != channels.StateListening {
		t.Fatalf("Run: %v, state %q", err, f.host.State())
	}
	if f.fake.Opens() != 0 {
		t.Fatal("http mode opened a socket")
	}
}

// Our own user id comes from auth.test on the first event (http mode has
// no Run on every node): our own message in a DM is dropped even when the
// payload's authorizations do not name us.
func TestHTTPSelfFromAuthTest(t *testing.T) {
	f := httpFixture(t)
	body := []byte(`{"type":"event_callback","event_id":"Ev1","event":{"type":"message","channel_type":"im","user":"UFAKEBOT","text":"mine","ts":"1700000011.000100","channel":"D0ALICE"}}`)
	if w := serve(f, fakeslack.Request("/", secret, clock.Unix(), body, 0)); w.Code != http.StatusOK {
		t.Fatalf("HTTP %d", w.Code)
	}
	if n := len(f.host.Messages()); n != 0 {
		t.Fatalf("our own message accepted (%d)", n)
	}
	if f.a.selfID() != fakeslack.UserID {
		t.Fatalf("self %q", f.a.selfID())
	}
}
