package discord

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

const (
	userAgent = "DiscordBot (https://github.com/moltbot/moltbot, 1)"
	// Discord bans an IP for a while after 10,000 responses 401, 403 or
	// 429 in 10 minutes; the adapter stops sending at invalidStop.
	invalidWindow = 10 * time.Minute
	invalidStop   = 9000
	// maxRetryWait: a 429 asking to wait longer is an error (the outbox
	// tries again later) instead of a wait inside one delivery.
	maxRetryWait = 10 * time.Second
	maxResponse  = 1 << 20
)

// rest is Discord's HTTP API with its rate limits: per-route buckets
// (X-RateLimit-Bucket, Remaining, Reset-After: a bucket at 0 waits for
// its reset), the global 50 requests a second, 429s held for their
// retry_after, and a count of invalid responses.
type rest struct {
	api, token string
	client     *http.Client

	pace channels.Limiter // "" is global; a bucket key for each route

	mu      sync.Mutex
	buckets map[string]string // route -> X-RateLimit-Bucket
	invalid [10]struct {      // 401/403/429 responses per minute, a ring
		minute int64
		n      int
	}
	now func() time.Time
}

func newREST(api, token string, hc *http.Client) *rest {
	return &rest{api: api, token: token, client: hc, pace: channels.Limiter{Rate: 50, Burst: 50}, now: time.Now}
}

// apiError is Discord's error body.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// 429s
	RetryAfter float64 `json:"retry_after"`
	Global     bool    `json:"global"`
}

// countInvalid notes an invalid response; invalidCount is the count in
// the last 10 minutes.
func (r *rest) countInvalid() {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.now().Unix() / 60
	s := &r.invalid[m%10]
	if s.minute != m {
		s.minute, s.n = m, 0
	}
	s.n++
}

func (r *rest) invalidCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.now().Unix() / 60
	n := 0
	for _, s := range r.invalid {
		if m-s.minute < 10 {
			n += s.n
		}
	}
	return n
}

// bucketKey is where a route's pacing lives: its bucket (once Discord
// named it) and its major parameter.
func (r *rest) bucketKey(route, major string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.buckets[route]; b != "" {
		return b + ":" + major
	}
	return route + ":" + major
}

func (r *rest) learn(route, bucket string) {
	if bucket == "" || len(bucket) > 64 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buckets == nil || len(r.buckets) >= 256 {
		r.buckets = map[string]string{}
	}
	r.buckets[route] = bucket
}

// call is one request: method, path under the API (with the ids in it),
// route (the path with its ids as {placeholders}, for the buckets) and
// major (the major parameter's value). auth false: a webhook's request
// (the interaction token in the path is the credential). It returns the
// status and body of a 2xx; anything else is an error whose code says
// whether trying again can help.
func (r *rest) call(ctx context.Context, method, path, route, major string, body any, auth bool) (int, []byte, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		if n := r.invalidCount(); n >= invalidStop {
			return 0, nil, &moltbot.Error{Code: moltbot.EUnavailable, RetryAfter: time.Minute,
				Message: fmt.Sprintf("discord: %d responses 401, 403 or 429 in 10 minutes: sending paused to stay clear of Discord's ban", n)}
		}
		key := r.bucketKey(route, major)
		if err := r.pace.Wait(ctx, ""); err != nil {
			return 0, nil, err
		}
		if err := r.pace.Wait(ctx, key); err != nil {
			return 0, nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, r.api+path, bytes.NewReader(payload))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("User-Agent", userAgent)
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth {
			req.Header.Set("Authorization", "Bot "+r.token)
		}
		resp, err := r.client.Do(req)
		if err != nil {
			// Never the URL: an interaction's token is in some paths.
			if ue, ok := errors.AsType[*url.Error](err); ok {
				err = ue.Err
			}
			return 0, nil, moltbot.Errorf(moltbot.EUnavailable, "discord: %s %s: %s", method, route, channels.Redact(err.Error()))
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		resp.Body.Close()
		if err != nil {
			return 0, nil, moltbot.Errorf(moltbot.EUnavailable, "discord: %s %s: %s", method, route, channels.RedactError(err))
		}
		h := resp.Header
		r.learn(route, h.Get("X-RateLimit-Bucket"))
		key = r.bucketKey(route, major)
		if rem := h.Get("X-RateLimit-Remaining"); rem == "0" {
			if d := seconds(h.Get("X-RateLimit-Reset-After")); d > 0 {
				r.pace.Hold(key, d)
			}
		}
		st := resp.StatusCode
		if st == 401 || st == 403 || (st == 429 && h.Get("X-RateLimit-Scope") != "shared") {
			r.countInvalid()
		}
		if st >= 200 && st < 300 {
			return st, data, nil
		}
		var ae apiError
		json.Unmarshal(data, &ae)
		if st == 429 {
			wait := time.Duration(ae.RetryAfter * float64(time.Second))
			if wait <= 0 {
				wait = seconds(h.Get("Retry-After"))
			}
			wait = max(wait, 50*time.Millisecond)
			global := ae.Global || h.Get("X-RateLimit-Global") == "true" || h.Get("X-RateLimit-Scope") == "global"
			if global {
				r.pace.Hold("", wait)
			} else {
				r.pace.Hold(key, wait)
			}
			dl, hasDL := ctx.Deadline()
			if wait > maxRetryWait || attempt >= 4 || (hasDL && time.Until(dl) < wait+time.Second) {
				return st, nil, &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: wait,
					Message: fmt.Sprintf("discord: %s %s: rate limited for %v", method, route, wait)}
			}
			continue // the limiter waits it out
		}
		msg := fmt.Sprintf("discord: %s %s: %d %s", method, route, st, channels.Redact(ae.Message))
		switch {
		case st == 400:
			return st, nil, &moltbot.Error{Code: moltbot.EInvalid, Message: msg}
		case st == 403:
			return st, nil, &moltbot.Error{Code: moltbot.EForbidden, Message: msg + " (the bot lacks a permission: Send Messages, Read Message History)"}
		case st == 404:
			return st, nil, &moltbot.Error{Code: moltbot.ENotFound, Message: msg}
		case st == 401:
			return st, nil, &moltbot.Error{Code: moltbot.EUnauthorized, Message: msg}
		}
		return st, nil, &moltbot.Error{Code: moltbot.EUnavailable, Message: msg}
	}
}

// seconds reads a header's seconds ("1.25"); 0 when absent or bad.
func seconds(v string) time.Duration {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f <= 0 || f > 86400 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}
