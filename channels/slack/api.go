package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/moltbot/moltbot/channels"
)

// maxAPIBody caps a Web API answer read into memory.
const maxAPIBody = 1 << 20

// apiResult is the envelope of every Web API answer.
type apiResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

func (r *apiResult) result() *apiResult { return r }

type resulter interface{ result() *apiResult }

// APIError is a Web API call Slack answered with ok: false.
type APIError struct {
	Method, Code string
}

func (e *APIError) Error() string { return "slack: " + e.Method + ": " + e.Code }

// fatalCode reports whether a Web API error means the token or the app is
// wrong: retrying cannot help until the config changes.
func fatalCode(code string) bool {
	switch code {
	case "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
		"not_allowed_token_type", "missing_scope", "no_permission", "team_access_not_granted",
		"ekm_access_denied", "invalid_token":
		return true
	}
	return false
}

// rateLimited is a 429 (or ok:false "ratelimited"): wait After.
type rateLimited struct {
	Method string
	After  time.Duration
}

func (e *rateLimited) Error() string {
	return fmt.Sprintf("slack: %s: rate limited, retry after %s", e.Method, e.After)
}

// call POSTs body (JSON; nil: an empty form) to the Web API method with
// token as the Bearer and decodes the answer into out. A 429 returns a
// *rateLimited; ok:false an *APIError. Errors never carry the token.
func (a *Adapter) call(ctx context.Context, method, token string, body []byte, out resulter) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.api+method, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("slack: %s: %s", method, channels.RedactError(err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	} else {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("slack: %s: %s", method, channels.RedactError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxAPIBody))
		return &rateLimited{Method: method, After: retryAfter(resp.Header.Get("Retry-After"))}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody+1))
	if err != nil {
		return fmt.Errorf("slack: %s: reading the answer: %s", method, channels.RedactError(err))
	}
	if len(raw) > maxAPIBody {
		return fmt.Errorf("slack: %s: the answer is over %d bytes", method, maxAPIBody)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("slack: %s: HTTP %d", method, resp.StatusCode)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("slack: %s: the answer is not JSON: %v", method, err)
	}
	r := out.result()
	if !r.OK {
		if r.Error == "ratelimited" {
			return &rateLimited{Method: method, After: retryAfter(resp.Header.Get("Retry-After"))}
		}
		code := r.Error
		if code == "" {
			code = "ok: false without an error"
		}
		err := &APIError{Method: method, Code: code}
		if fatalCode(code) {
			return channels.Fatal(err)
		}
		return err
	}
	return nil
}

// retryAfter reads a Retry-After in seconds (Slack sends an integer); a
// missing or bad one is a second, a huge one is capped at ten minutes.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return time.Second
	}
	return time.Duration(min(n, 600)) * time.Second
}

type authTestResult struct {
	apiResult
	UserID string `json:"user_id"`
	BotID  string `json:"bot_id"`
}

// authTest asks who the bot token is and remembers our user id.
func (a *Adapter) authTest(ctx context.Context) error {
	var r authTestResult
	if err := a.call(ctx, "auth.test", a.bot, nil, &r); err != nil {
		return err
	}
	if r.UserID == "" {
		return errors.New("slack: auth.test: no user_id in the answer")
	}
	a.mu.Lock()
	a.self = r.UserID
	a.mu.Unlock()
	return nil
}

type connectionsOpenResult struct {
	apiResult
	URL string `json:"url"`
}

// connectionsOpen asks for a fresh Socket Mode URL.
func (a *Adapter) connectionsOpen(ctx context.Context) (string, error) {
	var r connectionsOpenResult
	if err := a.call(ctx, "apps.connections.open", a.app, nil, &r); err != nil {
		return "", err
	}
	if r.URL == "" {
		return "", errors.New("slack: apps.connections.open: no url in the answer")
	}
	return r.URL, nil
}
