package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
)

// The channels' doors: /channels/{name}/... is the adapters' (a chat
// platform's events, a signed webhook), served without a moltbot
// credential, the adapter checking its platform's signature; and the
// admin API of the channels, /v1/admin/channels.

const channelsPath = "/channels/"

// channelFailures are the refused signatures an address may send a minute
// before its requests to the channels are refused unheard (429).
const channelFailures = 30

// serveChannel hands a request to the channels (Config.Channels): at most
// MaxAnonymous*4 at once from one address, and none for a minute from an
// address whose requests failed the adapters' signature checks
// channelFailures times in the last minute.
func (s *Server) serveChannel(w *statusWriter, r *http.Request) {
	client := s.clientKey(r)
	if wait, ok := s.chanFails.allowed(client, time.Now()); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		w.Header().Set("Connection", "close")
		writeError(w, &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: wait,
			Message: "too many requests with a bad signature from this address; try again later"})
		return
	}
	release, ok := s.anon.Take("ch/"+client, s.cfg.MaxAnonymous*4, 1<<30)
	if !ok {
		w.Header().Set("Connection", "close")
		writeError(w, &moltbot.Error{Code: moltbot.ERateLimited, Message: "too many channel requests in flight from this address"})
		return
	}
	defer release()
	if r.Body != nil && r.Body != http.NoBody {
		// The body within server.read_body_timeout; once it is read the
		// deadline goes (a sync webhook waits for its reply).
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)) == nil {
			r.Body = &channelBody{deadlineBody{ReadCloser: r.Body, d: s.cfg.BodyReadTimeout}, rc}
		}
	}
	s.cfg.Channels.ServeHTTP(w, r)
	if w.code == http.StatusUnauthorized || w.code == http.StatusForbidden {
		s.chanFails.fail(client, time.Now())
	}
}

// channelBody clears the read deadline at the body's end.
type channelBody struct {
	deadlineBody
	rc *http.ResponseController
}

func (b *channelBody) Read(p []byte) (int, error) {
	n, err := b.deadlineBody.Read(p)
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// failBudget counts failures per address in a minute's window. Its table
// holds at most maxFailClients addresses; a full one is swept at most
// once a second (not at each new address: that was a scan of the whole
// table per request), and while it stays full a new address is not
// counted (the in-flight bound per address still holds it).
type failBudget struct {
	mu    sync.Mutex
	m     map[string]*failWindow
	swept time.Time
}

// maxFailClients bounds failBudget's table (about 100 bytes an address).
const maxFailClients = 16384

type failWindow struct {
	start time.Time
	n     int
}

func (b *failBudget) allowed(client string, now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.m[client]
	if f == nil || now.Sub(f.start) >= time.Minute {
		return 0, true
	}
	if f.n >= channelFailures {
		return f.start.Add(time.Minute).Sub(now), false
	}
	return 0, true
}

func (b *failBudget) fail(client string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*failWindow{}
	}
	f := b.m[client]
	if f == nil || now.Sub(f.start) >= time.Minute {
		if f == nil && len(b.m) >= maxFailClients {
			if now.Sub(b.swept) >= time.Second || now.Before(b.swept) {
				b.swept = now
				for k, w := range b.m {
					if now.Sub(w.start) >= time.Minute {
						delete(b.m, k)
					}
				}
			}
			if len(b.m) >= maxFailClients {
				return
			}
		}
		f = &failWindow{start: now}
		b.m[client] = f
	}
	f.n++
}

// isChannelPath: a request for the channels (when the node has any).
func (s *Server) isChannelPath(path string) bool {
	return s.cfg.Channels != nil && strings.HasPrefix(path, channelsPath)
}

// channelsList answers GET /v1/admin/channels: the channels an admin may
// see, as this node has them.
func (s *Server) channelsList(w http.ResponseWriter, r *http.Request) {
	list, err := s.mg.Channels(principal(r), r.URL.Query().Get("tenant"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "channels": list})
}

// channel answers GET /v1/admin/channels/{name}.
func (s *Server) channel(w http.ResponseWriter, r *http.Request) {
	st, err := s.mg.Channel(principal(r), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// channelTest answers POST /v1/admin/channels/{name}/test {to, text}:
// a message sent through the channel's adapter.
func (s *Server) channelTest(w http.ResponseWriter, r *http.Request) {
	var body struct {
		To   string `json:"to"`
		Text string `json:"text"`
	}
	if err := s.decode(w, r, &body, false); err != nil {
		writeError(w, err)
		return
	}
	if len(body.Text) > 4096 {
		writeError(w, &moltbot.Error{Code: moltbot.EInvalid, Param: "text", Message: "a test message is at most 4096 bytes"})
		return
	}
	if err := s.mg.TestChannel(r.Context(), principal(r), r.PathValue("name"), body.To, body.Text); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sent": true, "channel": r.PathValue("name"), "to": body.To})
}
