package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/moltbot/moltbot/channels"
)

// offsetKey is the Host state holding the poller's next offset.
const offsetKey = "offset"

// staleOffset: after a week without updates Telegram picks the next
// update_id at random, possibly under a saved offset (which would then
// confirm, unseen, the updates under it). An offset saved longer ago is
// dropped: getUpdates from 0 gives every unconfirmed update (kept 24 h
// at most), and the Host's dedup absorbs those already taken.
const staleOffset = 6 * 24 * time.Hour

type savedOffset struct {
	Offset int64 `json:"offset"`
	At     int64 `json:"at"` // Unix seconds
}

// Run long-polls getUpdates until ctx ends (mode: poll); in webhook mode
// it has nothing to keep and returns nil at once. A 401 (the token
// revoked) is Fatal; a 409 (another poller on the token, or a webhook
// set) and every other failure back off with jitter and try again.
func (a *Adapter) Run(ctx context.Context) error {
	if a.webhook {
		a.host.Report(channels.StateListening, nil)
		return nil
	}
	a.host.Report(channels.StateConnecting, nil)
	offset := a.loadOffset()
	fails := 0
	connected := false
	for ctx.Err() == nil {
		_, err := a.identity(ctx) // group mentions need the bot's username
		var ups []json.RawMessage
		if err == nil {
			if !connected {
				// The token works and the API answers.
				a.host.Report(channels.StateConnected, nil)
				connected = true
			}
			ups, err = a.poll(ctx, offset)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ae *apiError
			if errors.As(err, &ae) && ae.unauthorized() {
				err = channels.Fatal(errors.New("telegram: the token was refused (" + ae.Error() + "): fix it and reload the config"))
				a.host.Report(channels.StateFatal, err)
				a.log.Error("telegram: stopped", "err", err)
				return err
			}
			wait := channels.Backoff(fails, a.base(), a.maxBackoff())
			if ae != nil && ae.RetryAfter > wait {
				wait = ae.RetryAfter
			}
			if ae != nil && ae.Code == 409 {
				err = errors.New(ae.Error() + " (another process polls this token, or a webhook is set: see the README's Telegram section)")
			}
			fails++
			connected = false
			a.host.Report(channels.StateBackoff, err)
			a.log.Warn("telegram: getUpdates failed", "err", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				break
			}
			continue
		}
		fails = 0
		next, err := a.take(ctx, ups, offset)
		if next != offset {
			offset = next
			a.saveOffset(offset)
		}
		if ctx.Err() != nil {
			break // the context ended mid-batch: the rest is the next poller's
		}
		if err != nil {
			// An update not taken for now: it is polled again after a wait.
			wait := channels.Backoff(0, a.base(), a.maxBackoff())
			var nt *notTaken
			if errors.As(err, &nt) {
				wait = max(wait, nt.wait)
			}
			a.log.Warn("telegram: an update was not taken; polling it again", "err", channels.Redact(err.Error()), "retry_in", wait)
			if !sleep(ctx, wait) {
				break
			}
		}
	}
	a.host.Report(channels.StateStopped, nil)
	return nil
}

// poll is one getUpdates, cancelled if it has not answered pollMargin
// after its long-poll timeout (a half-open connection: the watchdog).
func (a *Adapter) poll(ctx context.Context, offset int64) ([]json.RawMessage, error) {
	timeout, margin := a.pollTimeout, a.pollMargin
	if timeout <= 0 {
		timeout = pollTimeout
	}
	if margin <= 0 {
		margin = pollMargin
	}
	pctx, cancel := context.WithTimeout(ctx, timeout+margin)
	defer cancel()
	params := getUpdates{Offset: offset, Limit: 100, Timeout: int(timeout / time.Second), AllowedUpdates: []string{"message"}}
	var ups []json.RawMessage
	err := a.call(pctx, "getUpdates", params, &ups)
	if err != nil && ctx.Err() == nil && pctx.Err() != nil {
		err = errors.New("telegram: getUpdates did not answer within its timeout and margin: cancelled (a stalled connection)")
	}
	return ups, err
}

type getUpdates struct {
	Offset         int64    `json:"offset,omitempty"`
	Limit          int      `json:"limit"`
	Timeout        int      `json:"timeout"`
	AllowedUpdates []string `json:"allowed_updates"`
}

// take hands a batch's messages to the Host in order and returns the next
// offset: past every update taken. It stops early, with an error, at an
// update not taken (the context ended, the core busy): that update is not
// confirmed.
func (a *Adapter) take(ctx context.Context, ups []json.RawMessage, offset int64) (int64, error) {
	for _, raw := range ups {
		u, err := parseUpdate(raw)
		if err != nil {
			// Unreadable (never from Telegram): its id, if any, is still
			// confirmed so the poller does not spin on it.
			var id struct {
				UpdateID int64 `json:"update_id"`
			}
			if json.Unmarshal(raw, &id) == nil && id.UpdateID >= offset {
				offset = id.UpdateID + 1
			}
			a.log.Warn("telegram: an unreadable update skipped", "err", err)
			continue
		}
		if u.UpdateID < offset {
			continue // already taken (a server that ignores offset)
		}
		if err := a.handle(ctx, u); err != nil {
			// The context ended, the core is busy, the bot's identity
			// could not be read: the update is left for the next poll.
			return offset, err
		}
		offset = u.UpdateID + 1
	}
	return offset, nil
}

func (a *Adapter) loadOffset() int64 {
	b, ok := a.host.Get(offsetKey)
	if !ok {
		return 0
	}
	var s savedOffset
	if err := json.Unmarshal(b, &s); err != nil || s.Offset < 0 {
		a.log.Warn("telegram: the saved offset is unreadable; polling from the oldest unconfirmed update")
		return 0
	}
	if a.clock().Sub(time.Unix(s.At, 0)) > staleOffset {
		a.log.Info("telegram: the saved offset is over six days old; polling from the oldest unconfirmed update")
		return 0
	}
	return s.Offset
}

func (a *Adapter) saveOffset(offset int64) {
	b, _ := json.Marshal(savedOffset{Offset: offset, At: a.clock().Unix()})
	if err := a.host.Put(offsetKey, b); err != nil {
		// The next poll confirms the batch anyway; a poller elsewhere
		// would take it again, and the Host's dedup drop it.
		a.log.Warn("telegram: the offset could not be saved", "err", err)
	}
}

func (a *Adapter) base() time.Duration {
	if a.backoffBase > 0 {
		return a.backoffBase
	}
	return time.Second
}

func (a *Adapter) maxBackoff() time.Duration {
	if a.backoffMax > 0 {
		return a.backoffMax
	}
	return time.Minute
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
