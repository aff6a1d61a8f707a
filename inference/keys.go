package inference

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot/internal/h1"

	"golang.org/x/oauth2"
)

// Credentials supplies a provider's bearer credentials. A call takes a key,
// and reports how the server answered it: keys that get 401 or 429 are put
// aside for a while (Retry-After honoured) and the next one is used; a key
// that keeps failing with 401 is disabled. With OAuth, the key is an access
// token obtained by the client credentials grant, cached and refreshed before
// it expires, one refresh at a time.
type Credentials struct {
	mu    sync.Mutex
	keys  []*poolKey
	next  int
	now   func() time.Time
	oauth oauth2.TokenSource
	// OnCooldown is called when a key is put aside (for metrics).
	OnCooldown func()
}

type poolKey struct {
	value     string
	until     time.Time // put aside until
	failed401 int
	disabled  bool
}

// disableAfter consecutive 401s disable a key.
const disableAfter = 3

// NewKeyPool returns credentials over static API keys (empty ones dropped).
func NewKeyPool(keys []string) *Credentials {
	c := &Credentials{now: time.Now}
	c.Replace(keys)
	return c
}

// NewOAuth returns credentials from an OAuth 2.0 token source.
func NewOAuth(ts oauth2.TokenSource) *Credentials {
	return &Credentials{now: time.Now, oauth: oauth2.ReuseTokenSourceWithExpiry(nil, ts, time.Minute)}
}

// Replace swaps the keys (moltbot keys reload). Calls in flight keep the key
// they took; the state of keys that stay is kept.
func (c *Credentials) Replace(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := map[string]*poolKey{}
	for _, k := range c.keys {
		old[k.value] = k
	}
	c.keys = nil
	for _, v := range keys {
		if v == "" {
			continue
		}
		if k, ok := old[v]; ok {
			// A kept key keeps its cooldown, but a reload is the operator
			// saying "try again": a disabled key gets its chance back.
			k.disabled, k.failed401 = false, 0
			c.keys = append(c.keys, k)
		} else {
			c.keys = append(c.keys, &poolKey{value: v})
		}
	}
	c.next = 0
}

// Len is how many keys there are (0 for OAuth or none).
func (c *Credentials) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys)
}

// KeyHandle identifies the key a call took, for Report. It stays valid
// across Replace: a late report about a removed key changes nothing.
type KeyHandle = *poolKey

// Take returns a key to use (round-robin over usable keys) and its handle,
// or "" when there are none or all are put aside.
func (c *Credentials) Take(ctx context.Context) (key string, h KeyHandle, err error) {
	if c == nil {
		return "", nil, nil
	}
	if c.oauth != nil {
		t, err := c.oauth.Token()
		if err != nil {
			return "", nil, err
		}
		return t.AccessToken, nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var now time.Time // read only for a key that was put aside
	for i := 0; i < len(c.keys); i++ {
		j := (c.next + i) % len(c.keys)
		k := c.keys[j]
		if k.disabled {
			continue
		}
		if !k.until.IsZero() {
			if now.IsZero() {
				now = c.now()
			}
			if now.Before(k.until) {
				continue
			}
		}
		c.next = (j + 1) % len(c.keys)
		return k.value, k, nil
	}
	return "", nil, nil
}

// Usable reports whether some key can be taken now.
func (c *Credentials) Usable() bool {
	if c == nil || c.oauth != nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) == 0 {
		return true // no key at all: the server may need none
	}
	now := c.now()
	for _, k := range c.keys {
		if !k.disabled && !now.Before(k.until) {
			return true
		}
	}
	return false
}

// Report records the answer to a call made with the key of handle k.
func (c *Credentials) Report(k KeyHandle, status int, retryAfter time.Duration) {
	if c == nil || k == nil {
		return
	}
	c.mu.Lock()
	cooled := false
	switch {
	case status == 401 || status == 403:
		k.failed401++
		if k.failed401 >= disableAfter {
			k.disabled = true
		}
		k.until = c.now().Add(time.Minute)
		cooled = true
	case status == 429:
		if retryAfter <= 0 {
			retryAfter = 10 * time.Second
		}
		k.until = c.now().Add(retryAfter)
		cooled = true
	case status/100 == 2:
		k.failed401 = 0
	}
	c.mu.Unlock()
	if cooled && c.OnCooldown != nil {
		c.OnCooldown()
	}
}

// KeyStatus is one key's state (never its value).
type KeyStatus struct {
	Index       int    `json:"index"`
	Suffix      string `json:"suffix"` // the last 4 characters, to tell keys apart
	State       string `json:"state"`  // ok, cooling, disabled
	CooldownFor string `json:"cooldown_for,omitempty"`
	Failures401 int    `json:"failures_401,omitempty"`
}

// Status lists the keys' states.
func (c *Credentials) Status() []KeyStatus {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var out []KeyStatus
	for i, k := range c.keys {
		st := KeyStatus{Index: i, State: "ok", Failures401: k.failed401}
		if len(k.value) > 8 {
			st.Suffix = "..." + k.value[len(k.value)-4:]
		}
		switch {
		case k.disabled:
			st.State = "disabled"
		case now.Before(k.until):
			st.State, st.CooldownFor = "cooling", k.until.Sub(now).Round(time.Second).String()
		}
		out = append(out, st)
	}
	return out
}

// DoWithKeys sends the request built by mk, authenticated by set with a key
// from creds. On 401, 403 or 429 the key is reported and, while another key
// is usable, the request is sent again with it. It returns a 2xx response, or
// the *Error built by fail for the last answer (or a transport error).
func DoWithKeys(ctx context.Context, provider string, creds *Credentials, hc *http.Client,
	mk func() (*http.Request, error), set func(r *http.Request, key string), fail func(*http.Response) *Error) (*http.Response, error) {
	attempts := max(1, creds.Len())
	var last *Error
	for a := 0; a < attempts; a++ {
		key, h, err := creds.Take(ctx)
		if err != nil {
			return nil, &Error{Kind: KindAuth, Provider: provider, Message: "cannot get an OAuth token: " + err.Error(), Err: err}
		}
		if key == "" && creds.Len() > 0 {
			if last != nil {
				return nil, last
			}
			return nil, &Error{Kind: KindRateLimited, Provider: provider, Message: fmt.Sprintf("all %d API keys are cooling down or disabled", creds.Len()), RetryAfter: time.Second}
		}
		req, err := mk()
		if err != nil {
			return nil, Errorf(KindBadRequest, provider, "build request: %v", err)
		}
		if key != "" {
			set(req, key)
		}
		resp, err := Send(hc, req)
		if err != nil {
			return nil, Classify(ctx, provider, err)
		}
		if resp.StatusCode/100 == 2 {
			creds.Report(h, resp.StatusCode, 0)
			return resp, nil
		}
		last = fail(resp)
		resp.Body.Close()
		switch resp.StatusCode {
		case 401, 403, 429:
			creds.Report(h, resp.StatusCode, last.RetryAfter)
			if creds.Len() > 1 && creds.Usable() {
				continue // the next key
			}
		}
		return nil, last
	}
	return nil, last
}

// Send is hc.Do(req), except that a request hc would hand to an
// internal/h1 transport with nothing of its own to add (no redirect
// policy, cookie jar, timeout, or credentials in the URL) goes to the
// transport directly: http.Client copies every request's headers for the
// redirects it may follow, 8 allocations a model call. A redirect answer
// is then asked again through hc, which follows it as before (the first
// answer's body is dropped; a body that cannot be sent again leaves the
// redirect answer as it is). Errors are wrapped as hc.Do wraps them.
func Send(hc *http.Client, req *http.Request) (*http.Response, error) {
	t, ok := hc.Transport.(*h1.Transport)
	if !ok || hc.CheckRedirect != nil || hc.Jar != nil || hc.Timeout != 0 || req.URL == nil || req.URL.User != nil {
		return hc.Do(req)
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return nil, &url.Error{Op: urlErrorOp(req.Method), URL: req.URL.String(), Err: err}
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil || resp.Header.Get("Location") == "" {
			return resp, nil // as hc.Do answers a redirect it cannot follow
		}
		resp.Body.Close()
		again := req.Clone(req.Context())
		if req.GetBody != nil {
			if again.Body, err = req.GetBody(); err != nil {
				return nil, &url.Error{Op: urlErrorOp(req.Method), URL: req.URL.String(), Err: err}
			}
		}
		return hc.Do(again)
	}
	return resp, nil
}

// urlErrorOp is http.Client's: "Post" for POST.
func urlErrorOp(method string) string {
	if method == "" {
		return "Get"
	}
	if len(method) > 1 {
		return method[:1] + strings.ToLower(method[1:])
	}
	return method
}
