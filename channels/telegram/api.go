package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/moltbot/moltbot/channels"
)

// The Bot API's answer: {"ok":true,"result":...} or {"ok":false,
// "error_code":N,"description":"...","parameters":{...}}.
type apiResponse struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  *struct {
		RetryAfter      int   `json:"retry_after"`
		MigrateToChatID int64 `json:"migrate_to_chat_id"`
	} `json:"parameters"`
}

// apiError is an answer with ok false.
type apiError struct {
	Method      string
	Code        int
	Description string
	RetryAfter  time.Duration // a 429's parameters.retry_after
	MigrateTo   int64         // a group that became a supergroup
}

func (e *apiError) Error() string {
	return fmt.Sprintf("telegram: %s: %d %s", e.Method, e.Code, channels.Redact(e.Description))
}

// unauthorized: a revoked or wrong token (401; 404 for a malformed one).
func (e *apiError) unauthorized() bool { return e.Code == 401 || e.Code == 404 }

// call POSTs params as JSON to method and decodes the result into out
// (nil: ignored). Its errors never carry the token: a transport error is
// rewritten with channels.RedactError, not wrapped.
func (a *Adapter) call(ctx context.Context, method string, params, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		// Every call but a poll (which has its own) is bounded: a stalled
		// getMe or getFile must not hold the poller for good.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callTimeout)
		defer cancel()
	}
	body, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("telegram: %s: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.api+"/bot"+a.token+"/"+method, bytes.NewReader(body))
	if err != nil {
		return errors.New("telegram: " + method + ": " + channels.RedactError(err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("telegram: %s: %w", method, ctx.Err())
		}
		return errors.New("telegram: " + channels.RedactError(err))
	}
	defer resp.Body.Close()
	var r apiResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&r); err != nil {
		return fmt.Errorf("telegram: %s: HTTP %d with an unreadable answer: %s", method, resp.StatusCode, channels.Redact(err.Error()))
	}
	if !r.OK {
		e := &apiError{Method: method, Code: r.ErrorCode, Description: r.Description}
		if e.Code == 0 {
			e.Code = resp.StatusCode
		}
		if p := r.Parameters; p != nil {
			e.RetryAfter = time.Duration(min(max(p.RetryAfter, 0), 3600)) * time.Second
			e.MigrateTo = p.MigrateToChatID
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			return fmt.Errorf("telegram: %s: unreadable result: %s", method, channels.Redact(err.Error()))
		}
	}
	return nil
}

// readBody reads a webhook's body, capped at channels.MaxBody (the core
// caps it too; the adapter does not count on it).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, channels.MaxBody))
}
