package channels

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
)

// PathPrefix is where the channels' inbound requests arrive:
// /channels/{name}/...
const PathPrefix = "/channels/"

// ServeHTTP hands a request to /channels/{name}/rest to the channel's
// adapter as /rest, its body capped at MaxBody. No moltbot credential is
// asked: the adapter checks its platform's signature. An unknown channel
// is 404.
func (c *Core) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok {
		httpError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
		return
	}
	name, sub, _ := strings.Cut(rest, "/")
	ch := c.channel(name)
	if ch == nil {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no channel %q on this node", name))
		return
	}
	if r.ContentLength > MaxBody {
		w.Header().Set("Connection", "close")
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is %d bytes; at most %d are taken", r.ContentLength, MaxBody))
		return
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = "/"+sub, ""
	r2.URL = &u
	if r.Body != nil && r.Body != http.NoBody {
		r2.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	}
	ch.ad.ServeHTTP(w, r2)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"message": msg}})
	w.Write(append(b, '\n'))
}

// Has reports whether name is a channel of this node (the outbox's
// Destination.Channel).
func (c *Core) Has(name string) bool { return c.channel(name) != nil }

// Deliver sends a conversation's message to its destination through the
// channel's adapter: the outbox's Deliverer for the channels. An error
// makes the outbox try again later (one coded EInvalid, ENotFound or
// EForbidden gives up).
func (c *Core) Deliver(ctx context.Context, space, conversation string, to moltbot.Destination, m moltbot.Message) error {
	ch := c.channel(to.Channel)
	if ch == nil {
		return fmt.Errorf("channels: no channel %q on this node", to.Channel)
	}
	return ch.send(ctx, to.Address, m)
}

// Test sends text through channel name's adapter to address (`moltbot
// channels test`): what the adapter's Send answered.
func (c *Core) Test(ctx context.Context, name, address, text string) error {
	ch := c.channel(name)
	if ch == nil {
		return moltbot.Errorf(moltbot.ENotFound, "no channel %q", name)
	}
	if address == "" {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "to", Message: "a test needs an address to send to (--to): a chat id, a callback URL, as the channel's type reads it"}
	}
	if len(address) > MaxReplyLen {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "to", Message: fmt.Sprintf("an address is at most %d bytes", MaxReplyLen)}
	}
	if tc, ok := ch.ad.(TestChecker); ok {
		if err := tc.CheckTestAddress(address); err != nil {
			return &moltbot.Error{Code: moltbot.EInvalid, Param: "to", Message: err.Error()}
		}
	}
	if text == "" {
		text = "moltbot test message from channel " + name
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := c.cfg.Now()
	err := ch.send(sctx, address, moltbot.Message{ID: fmt.Sprintf("test-%d", now.UnixNano()), Role: moltbot.RoleAssistant, Content: text, Created: now.UnixMilli()})
	if err != nil {
		ch.Report(ch.snapshot().State, err)
		return &moltbot.Error{Code: moltbot.EUnavailable, Message: "the adapter's send failed: " + RedactError(err)}
	}
	return nil
}
